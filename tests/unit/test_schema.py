"""etl.core.schema: loading, validation of schema files, partner selection, caching."""

from __future__ import annotations

import copy
import json
import os

import pytest

from etl.core.schema import SCHEMA_DIR, SchemaError, load_schema, load_schema_file, parse_schema
from etl.errors import PermanentError

with open(os.path.join(SCHEMA_DIR, "default.json"), encoding="utf-8") as fh:
    DEFAULT_DOC = json.load(fh)


def test_default_schema_contract():
    s = load_schema("default")
    assert s.schema_id == "transactions_v1" and s.dataset == "transactions" and s.version
    assert s.source_columns == [
        "transaction_id",
        "account_id",
        "transaction_date",
        "posted_at",
        "amount",
        "currency",
        "transaction_type",
        "merchant_name",
        "merchant_category_code",
        "description",
    ]
    assert s.column_mapping == {c: c for c in s.source_columns}
    assert s.reject_threshold == 0.01 and s.delimiter == "," and s.encoding == "utf-8"
    amount = s.get_field("amount")
    assert (amount.type, amount.precision, amount.scale, amount.required) == ("number", 18, 2, True)
    cur = s.get_field("currency")
    assert cur.enum and {"USD", "EUR", "GBP", "JPY", "XCG", "ZWG"} <= set(cur.enum)
    assert not {"ANG", "HRK", "ZWL", "CUC", "SLL"} & set(cur.enum)  # withdrawn codes
    assert s.get_field("transaction_type").enum == ("DEBIT", "CREDIT", "FEE", "REFUND", "TRANSFER")
    assert not s.get_field("posted_at").required and s.get_field("posted_at").type == "datetime"


def test_partner_schema_and_fallback():
    acme = load_schema("acme_bank")
    assert acme.delimiter == ";" and acme.reject_threshold == 0.02
    assert acme.source_columns[0] == "TxnRef" and acme.column_mapping["TxnRef"] == "transaction_id"
    assert acme.ignored_columns == ["BranchCode"] and "BranchCode" not in acme.column_mapping
    assert acme.target_columns == load_schema("default").target_columns
    for partner in ("unknown_partner", "", "../etl", "a/b", "default"):
        assert load_schema(partner).schema_id == "transactions_v1"


def test_loaded_schemas_are_cached():
    assert load_schema("default") is load_schema("default")


def _with(mutate):
    doc = copy.deepcopy(DEFAULT_DOC)
    mutate(doc)
    return doc


BAD_DOCS = [
    (lambda d: d.pop("x-etl-schema-id"), "x-etl-schema-id is required"),
    (lambda d: d.update({"x-etl-reject-threshold": 1.5}), "x-etl-reject-threshold"),
    (lambda d: d.update({"x-etl-unknown": 1}), "unknown top-level keys x-etl-unknown"),
    (lambda d: d.update({"encoding": "latin-1"}), "encoding"),
    (lambda d: d["dialect"].update({"delimiter": ";;"}), "dialect.delimiter"),
    (lambda d: d["dialect"].update({"quoteChar": "'"}), "quoteChar"),
    (lambda d: d["dialect"].update({"header": False}), "dialect.header"),
    (lambda d: d.update({"fields": []}), "fields must be a non-empty list"),
    (lambda d: d["fields"][0].update({"type": "boolean"}), "type 'boolean' is not one of"),
    (lambda d: d["fields"][0].update({"name": "bad name"}), "name must be an identifier"),
    (lambda d: d["fields"][0]["constraints"].update({"pattern": "(unclosed"}), "does not compile"),
    (lambda d: d["fields"][0]["constraints"].update({"pattern": "(a)\\1"}), "pattern"),
    (lambda d: d["fields"][0]["constraints"].update({"minimum": 1}), "unsupported constraints minimum"),
    (lambda d: d["fields"][0]["constraints"].update({"required": "yes"}), "required must be true or false"),
    (lambda d: d["fields"][4].pop("x-etl-decimal"), "x-etl-decimal"),
    (lambda d: d["fields"][4].update({"x-etl-decimal": {"precision": 40, "scale": 2}}), "precision <= 38"),
    (lambda d: d["fields"][4].update({"x-etl-decimal": {"precision": 4, "scale": 5}}), "scale <= precision"),
    (lambda d: d["fields"][5].update({"x-etl-enum-file": "../secrets.json"}), "relative path inside"),
    (
        lambda d: d["fields"][5].update({"x-etl-enum-file": "data/missing.json"}),
        "cannot read x-etl-enum-file",
    ),
    (lambda d: d["fields"][6]["constraints"].update({"enum": []}), "enum must be a non-empty list"),
    (lambda d: d["fields"].append(dict(d["fields"][0])), "duplicate source column"),
    (lambda d: d["fields"][2].update({"format": "%d/%m/%Y"}), "format"),
    (lambda d: d["fields"][0].update({"colour": "red"}), "unknown keys colour"),
    (lambda d: d.update({"missingValues": ["", "NA"]}), "missingValues"),
    (lambda d: d.update({"x-etl-due-by": "6:00"}), "x-etl-due-by must be a UTC time of day"),
    (lambda d: d.update({"x-etl-due-by": "24:00Z"}), "x-etl-due-by"),
    (lambda d: d.update({"x-etl-due-by": "06:00+01:00"}), "x-etl-due-by"),
    (lambda d: d.update({"x-etl-due-by": 600}), "x-etl-due-by"),
]


def test_OPS3_due_by_is_parsed_and_acme_declares_it():
    here = os.path.join(SCHEMA_DIR, "x.json")
    assert parse_schema(_with(lambda d: d.update({"x-etl-due-by": "23:59Z"})), here).due_by == (23, 59)
    assert parse_schema(_with(lambda d: None), here).due_by is None
    assert load_schema("acme_bank").due_by == (6, 0)
    assert load_schema("default").due_by is None


@pytest.mark.parametrize("mutate,message", BAD_DOCS)
def test_bad_schema_documents(mutate, message):
    with pytest.raises(SchemaError, match=None) as exc:
        parse_schema(_with(mutate), os.path.join(SCHEMA_DIR, "broken.json"))
    assert message in str(exc.value)
    assert str(exc.value).startswith("schema broken.json: ")
    assert isinstance(exc.value, PermanentError)


def test_bad_schema_files(tmp_path):
    p = tmp_path / "x.json"
    p.write_text("{not json")
    with pytest.raises(SchemaError, match="not valid JSON"):
        load_schema_file(str(p))
    with pytest.raises(SchemaError, match="cannot read"):
        load_schema_file(str(tmp_path / "absent.json"))
    p.write_text("[]")
    with pytest.raises(SchemaError, match="top level must be a JSON object"):
        load_schema_file(str(p))


def test_edited_file_is_reloaded(tmp_path):
    p = tmp_path / "p.json"
    doc = _with(lambda d: d.pop("fields") and d.update({"fields": [{"name": "a", "type": "string"}]}))
    doc.pop("primaryKey")
    p.write_text(json.dumps(doc))
    assert load_schema_file(str(p)).source_columns == ["a"]
    doc["fields"].append({"name": "b", "type": "integer"})
    p.write_text(json.dumps(doc))
    os.utime(p, ns=(os.stat(p).st_atime_ns, os.stat(p).st_mtime_ns + 1_000_000))
    assert load_schema_file(str(p)).source_columns == ["a", "b"]


def test_primary_key_names_output_fields():
    here = os.path.join(SCHEMA_DIR, "x.json")
    assert load_schema("default").primary_key == ("transaction_id",)
    both = _with(lambda d: d.update({"primaryKey": ["transaction_id", "account_id"]}))
    assert parse_schema(both, here).primary_key == ("transaction_id", "account_id")
    assert parse_schema(_with(lambda d: d.pop("primaryKey")), here).primary_key == ()
    for bad in ("nope", [], ["transaction_id", 3], {"fields": "transaction_id"}):
        with pytest.raises(SchemaError, match="primaryKey"):
            parse_schema(_with(lambda d, bad=bad: d.update({"primaryKey": bad})), here)


def test_all_shipped_schema_files_load():
    names = [n[:-5] for n in os.listdir(SCHEMA_DIR) if n.endswith(".json")]
    assert {"default", "acme_bank"} <= set(names)
    for name in names:
        assert load_schema_file(os.path.join(SCHEMA_DIR, name + ".json")).fields
