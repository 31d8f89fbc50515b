"""DATA1 on the synthesized templates: Glue database, tables custom resource, Athena workgroup,
named queries (each one run in DuckDB against empty tables of the real column names)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest

from etl import contracts
from infra.dataset import ENSURE_TABLES_HANDLER, GLUE_DATABASE_ACTIONS, NAMED_QUERIES, named_query_sql

from .conftest import DR, PRIMARY, SUFFIX, Synth
from .test_stack import as_list, data_bucket, literal_text, props, ref_id, resources, role_statements

STACKS = (PRIMARY, DR)
DATABASE = f"transaction_etl_{SUFFIX}"
REPO_ROOT = Path(__file__).resolve().parents[2]


def one(template: dict[str, Any], kind: str) -> tuple[str, dict[str, Any]]:
    (found,) = resources(template, kind).items()
    return found


def tables_function(template: dict[str, Any]) -> dict[str, Any]:
    (fn,) = [
        r
        for r in resources(template, "AWS::Lambda::Function").values()
        if props(r).get("Handler") == ENSURE_TABLES_HANDLER
    ]
    return fn


# ---- Glue database ----------------------------------------------------------------------------
@pytest.mark.parametrize("stack", STACKS)
def test_DATA1_glue_database_named_with_suffix(templates: dict[str, Any], stack: str) -> None:
    _, database = one(templates[stack], "AWS::Glue::Database")
    database_input = props(database)["DatabaseInput"]
    assert database_input["Name"] == DATABASE == contracts.glue_database(SUFFIX)
    assert literal_text(database_input["LocationUri"]) == "s3://<ref>/tables/"
    assert props(database)["CatalogId"] == {"Ref": "AWS::AccountId"}


def test_DATA1_glue_database_name_follows_any_suffix(variant_synth: Synth) -> None:
    _, database = one(variant_synth.templates["EtlPipeline-qa-7"], "AWS::Glue::Database")
    assert props(database)["DatabaseInput"]["Name"] == "transaction_etl_qa_7"


# ---- tables (custom resource) -----------------------------------------------------------------
@pytest.mark.parametrize("stack", STACKS)
def test_DATA1_tables_custom_resource_properties(templates: dict[str, Any], stack: str) -> None:
    template = templates[stack]
    database_id, _ = one(template, "AWS::Glue::Database")
    _, tables = one(template, "Custom::IcebergTables")
    p = props(tables)
    assert set(p) == {"ServiceToken", "Database", "Warehouse"}
    assert p["Database"] == DATABASE
    assert literal_text(p["Warehouse"]) == "s3://<ref>/tables/"
    assert ref_id(p["Warehouse"]["Fn::Join"][1][1]) == ref_id(data_bucket_ref(template))
    assert database_id in as_list(tables.get("DependsOn", []))
    # The service token is the provider framework, which invokes our handler.
    framework = resources(template)[ref_id(p["ServiceToken"])]
    target = framework["Properties"]["Environment"]["Variables"]["USER_ON_EVENT_FUNCTION_ARN"]
    assert props(resources(template)[ref_id(target)])["Handler"] == ENSURE_TABLES_HANDLER


def data_bucket_ref(template: dict[str, Any]) -> dict[str, str]:
    (bucket_id,) = [
        lid
        for lid, r in resources(template, "AWS::S3::Bucket").items()
        if literal_text(props(r)["BucketName"]).startswith("etl-data-")
    ]
    return {"Ref": bucket_id}


@pytest.mark.parametrize("stack", STACKS)
def test_DATA1_tables_function_follows_function_conventions(templates: dict[str, Any], stack: str) -> None:
    template = templates[stack]
    p = props(tables_function(template))
    assert p["FunctionName"] == f"etl-ensure-tables-{SUFFIX}"
    assert (p["MemorySize"], p["Timeout"], p["Runtime"]) == (3072, 900, "python3.13")
    assert p["TracingConfig"] == {"Mode": "Active"} and p["LoggingConfig"]["LogFormat"] == "JSON"
    log_group = resources(template)[ref_id(p["LoggingConfig"]["LogGroup"])]
    assert props(log_group)["RetentionInDays"] == 30 and log_group["DeletionPolicy"] == "Delete"
    # The same layers as the Iceberg step functions: AWS SDK for pandas + the pyiceberg layer.
    layers = p["Layers"]
    assert template["Parameters"][ref_id(layers[0])]["Default"].startswith("/aws/service/aws-sdk-pandas/")
    assert resources(template)[ref_id(layers[1])]["Type"] == "AWS::Lambda::LayerVersion"


def test_DATA1_tables_role_is_least_privilege(primary: dict[str, Any]) -> None:
    statements = [
        s
        for s in role_statements(primary, ref_id(props(tables_function(primary))["Role"]))
        if s["Effect"] == "Allow"
    ]
    by_service: dict[str, list[dict[str, Any]]] = {}
    for s in statements:
        by_service.setdefault(as_list(s["Action"])[0].split(":")[0], []).append(s)
    assert set(by_service) == {"glue", "s3", "logs", "xray"}
    database, tables = sorted(by_service["glue"], key=lambda s: len(as_list(s["Resource"])))
    catalog_and_database = [
        "arn:aws:glue:us-east-1:<ref>:catalog",
        f"arn:aws:glue:us-east-1:<ref>:database/{DATABASE}",
    ]
    assert as_list(database["Action"]) == ["glue:GetDatabase"] == list(GLUE_DATABASE_ACTIONS)
    assert sorted(literal_text(r) for r in as_list(database["Resource"])) == catalog_and_database
    # Create-if-missing, and (TBL6) property updates of an existing table: no GetTables (OPS5
    # records the calls).
    assert sorted(as_list(tables["Action"])) == ["glue:CreateTable", "glue:GetTable", "glue:UpdateTable"]
    assert sorted(literal_text(r) for r in as_list(tables["Resource"])) == sorted(
        [*catalog_and_database, f"arn:aws:glue:us-east-1:<ref>:table/{DATABASE}/*"]
    )
    objects, listing = sorted(by_service["s3"], key=lambda s: "s3:ListBucket" in as_list(s["Action"]))
    assert sorted(as_list(objects["Action"])) == ["s3:GetObject", "s3:PutObject"]
    assert [literal_text(r) for r in as_list(objects["Resource"])] == ["<ref>/tables/*"]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["tables/*"]}}


def test_DATA1_local_deploy_skips_the_tables_function() -> None:
    """Local mode creates the tables itself; its deploy must not try to run this handler."""
    from etl_local.deploy import LOCAL_SKIPPED_HANDLERS

    assert ENSURE_TABLES_HANDLER in LOCAL_SKIPPED_HANDLERS


# ---- Athena workgroup -------------------------------------------------------------------------
@pytest.mark.parametrize("stack", STACKS)
def test_DATA1_workgroup_enforced_sse_s3_results_expiring_prefix_bytes_cutoff(
    templates: dict[str, Any], stack: str
) -> None:
    template = templates[stack]
    _, workgroup = one(template, "AWS::Athena::WorkGroup")
    p = props(workgroup)
    assert p["Name"] == f"etl-{SUFFIX}"
    assert p["RecursiveDeleteOption"] is True  # INF12: destroyable with its named queries
    configuration = p["WorkGroupConfiguration"]
    assert configuration["EnforceWorkGroupConfiguration"] is True
    assert configuration["PublishCloudWatchMetricsEnabled"] is True
    assert configuration["BytesScannedCutoffPerQuery"] == 100 * 1024**3
    assert configuration["EngineVersion"] == {"SelectedEngineVersion": "AUTO"}
    results = configuration["ResultConfiguration"]
    assert literal_text(results["OutputLocation"]) == f"s3://<ref>/{contracts.ATHENA_RESULTS_PREFIX}"
    assert ref_id(results["OutputLocation"]["Fn::Join"][1][1]) == ref_id(data_bucket_ref(template))
    assert results["EncryptionConfiguration"] == {"EncryptionOption": "SSE_S3"}
    rules = data_bucket(template)["LifecycleConfiguration"]["Rules"]
    (expiry,) = [r for r in rules if r.get("Prefix") == contracts.ATHENA_RESULTS_PREFIX]
    assert expiry["Status"] == "Enabled" and 1 <= expiry["ExpirationInDays"] <= 30


def test_DATA1_bytes_scanned_cutoff_is_a_validated_context_value() -> None:
    from infra.config import ConfigError, EtlConfig

    assert EtlConfig(athena_scan_cutoff_gb=3).athena_scan_cutoff_bytes == 3 * 1024**3
    for bad in (0, -1, 100_001):
        with pytest.raises(ConfigError, match="athenaScanCutoffGb"):
            EtlConfig(athena_scan_cutoff_gb=bad)


# ---- named queries ----------------------------------------------------------------------------
@pytest.mark.parametrize("stack", STACKS)
def test_DATA1_named_queries_in_the_workgroup(templates: dict[str, Any], stack: str) -> None:
    template = templates[stack]
    workgroup_id, _ = one(template, "AWS::Athena::WorkGroup")
    queries = {props(q)["Name"]: props(q) for q in resources(template, "AWS::Athena::NamedQuery").values()}
    assert set(queries) == {f"etl-{name}-{SUFFIX}" for name in NAMED_QUERIES}
    assert {"daily-totals", "rejects-by-rule", "load-history", "duplicate-ids-across-files"} == set(
        NAMED_QUERIES
    )
    for name in NAMED_QUERIES:
        q = queries[f"etl-{name}-{SUFFIX}"]
        assert q["WorkGroup"] == {"Ref": workgroup_id}
        assert q["Database"] == DATABASE
        assert q["QueryString"] == named_query_sql(name, DATABASE)
        assert f'"{DATABASE}".' in q["QueryString"]


DEFAULT_COLUMNS = {
    "transaction_id": "VARCHAR",
    "account_id": "VARCHAR",
    "transaction_date": "DATE",
    "posted_at": "TIMESTAMP",
    "amount": "DECIMAL(18, 2)",
    "currency": "VARCHAR",
    "transaction_type": "VARCHAR",
    "merchant_name": "VARCHAR",
    "merchant_category_code": "VARCHAR",
    "description": "VARCHAR",
}
LINEAGE = {
    "file_id": "VARCHAR",
    "partner": "VARCHAR",
    "source_key": "VARCHAR",
    "source_version": "VARCHAR",
    "line": "BIGINT",
}
REJECTS = {**LINEAGE, "column_name": "VARCHAR", "rule": "VARCHAR", "value": "VARCHAR", "reason": "VARCHAR"}
# SPEC TBL6: the load audit table (etl.core.dataset.loads_arrow_schema, in DuckDB types).
LOADS = {
    "file_id": "VARCHAR",
    "partner": "VARCHAR",
    "source_key": "VARCHAR",
    "source_version": "VARCHAR",
    "manifest_key": "VARCHAR",
    "execution_arn": "VARCHAR",
    "snapshot_id": "BIGINT",
    "rejects_snapshot_id": "BIGINT",
    "rows_added": "BIGINT",
    "rows_removed": "BIGINT",
    "rejects_added": "BIGINT",
    "committed_at": "TIMESTAMP WITH TIME ZONE",
    "commit_token": "VARCHAR",
}


def test_DATA1_query_columns_match_the_default_schema() -> None:
    schema = json.loads((REPO_ROOT / "etl" / "schemas" / "default.json").read_text())
    assert [f["name"] for f in schema["fields"]] == list(DEFAULT_COLUMNS)


@pytest.fixture
def dataset_db() -> duckdb.DuckDBPyConnection:
    """DuckDB with empty stand-ins of the three tables."""
    con = duckdb.connect()
    con.execute(f'CREATE SCHEMA "{DATABASE}"')

    def create(name: str, columns: dict[str, str]) -> None:
        con.execute(
            f'CREATE TABLE "{DATABASE}"."{name}" ({", ".join(f"{c} {t}" for c, t in columns.items())})'
        )

    create("transactions", {**DEFAULT_COLUMNS, **LINEAGE})
    create("transaction_rejects", REJECTS)
    create("transaction_loads", LOADS)
    return con


def run(con: duckdb.DuckDBPyConnection, name: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    sql = named_query_sql(name, DATABASE)
    # Through Arrow: DuckDB's own Python conversion of TIMESTAMPTZ needs pytz.
    table = con.sql(sql).to_arrow_table()
    return table.column_names, [tuple(row.values()) for row in table.to_pylist()]


@pytest.mark.parametrize("name", sorted(NAMED_QUERIES))
def test_DATA1_named_query_runs_on_empty_tables(dataset_db: duckdb.DuckDBPyConnection, name: str) -> None:
    columns, rows = run(dataset_db, name)
    assert rows == [] and columns


def test_DATA1_named_queries_answer_their_question(dataset_db: duckdb.DuckDBPyConnection) -> None:
    con = dataset_db
    con.execute(
        f"""INSERT INTO "{DATABASE}"."transactions" VALUES
        ('T1','A1','2026-11-27','2026-11-27',10.50,'EUR','debit','M','5411','','f1','acme','k1','v1',2),
        ('T2','A1','2026-11-27','2026-11-27',4.50,'EUR','debit','M','5411','','f1','acme','k1','v1',3),
        ('T1','A1','2026-11-27','2026-11-27',10.5,'EUR','debit','M','5411','','f2','acme','k2','v1',2)"""
    )
    con.execute(
        f"""INSERT INTO "{DATABASE}"."transaction_rejects" VALUES
        ('f1','acme','k1','v1',4,'amount','type','x','not a number'),
        ('f1','acme','k1','v1',5,'amount','type','y','not a number'),
        ('f1','acme','k1','v1',5,'currency','enum','XXX','not ISO 4217')"""
    )
    con.execute(
        f"""INSERT INTO "{DATABASE}"."transaction_loads" VALUES
        ('f0','acme','k1','v0','manifests/f0.json','arn:w',6,NULL,5,0,0,'2026-11-27 01:00:00+00','t0'),
        ('f1','acme','k1','v1','manifests/f1.json','arn:x',7,8,2,5,3,'2026-11-28 01:00:00+00','t1')"""
    )
    columns, rows = run(con, "daily-totals")
    assert columns == ["transaction_date", "partner", "currency", "transactions", "total_amount"]
    assert [(str(d), p, c, n, float(s)) for d, p, c, n, s in rows] == [("2026-11-27", "acme", "EUR", 3, 25.5)]
    columns, rows = run(con, "rejects-by-rule")
    assert rows == [("acme", "type", "amount", 2), ("acme", "enum", "currency", 1)]
    columns, rows = run(con, "load-history")
    record = dict(zip(columns, rows[0], strict=True))  # newest first
    assert (
        record["file_id"],
        record["source_key"],
        record["manifest_key"],
        record["rows_added"],
        record["rows_removed"],
        record["rejects_added"],
        record["snapshot_id"],
    ) == ("f1", "k1", "manifests/f1.json", 2, 5, 3, 7)
    assert [r[1] for r in rows] == ["f1", "f0"]
    columns, rows = run(con, "duplicate-ids-across-files")
    assert [(r[0], r[1], r[2], sorted(r[3])) for r in rows] == [("T1", 2, 2, ["f1", "f2"])]


# ---- outputs ----------------------------------------------------------------------------------
@pytest.mark.parametrize("stack", STACKS)
def test_DATA1_outputs_name_the_database_and_workgroup(templates: dict[str, Any], stack: str) -> None:
    template = templates[stack]
    outputs = template["Outputs"]
    workgroup_id, _ = one(template, "AWS::Athena::WorkGroup")
    assert outputs["GlueDatabaseName"]["Value"] == DATABASE
    assert outputs["AthenaWorkGroupName"]["Value"] == {"Ref": workgroup_id}

    from etl_cli.pipeline import Outputs

    parsed = Outputs.from_stack_outputs(
        {
            "BucketName": "b",
            "TableName": "t",
            "StateMachineArn": "a",
            "GlueDatabaseName": DATABASE,
            "AthenaWorkGroupName": "w",
        }
    )
    assert (parsed.glue_database, parsed.athena_workgroup) == (DATABASE, "w")
