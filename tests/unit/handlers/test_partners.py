"""SEC2: a partner without a schema is refused (UnknownPartner) unless declared to use the
default schema (the CLI's refusal: tests/cli/test_partners_cli.py)."""

from __future__ import annotations

import pytest

from etl.core.schema import known_partners, schema_for_partner
from etl.errors import PermanentError, UnknownPartner
from etl.handlers import register, validate_header

ARN = "arn:aws:states:us-east-1:123456789012:execution:etl-test:run-1"


def test_SEC2_partner_without_schema_is_refused_naming_the_known_partners(chain, etl_aws, monkeypatch):
    monkeypatch.setenv("DEFAULT_SCHEMA_PARTNERS", "globex")
    data = chain.make_csv(3)
    file = register.handler(
        {"event": chain.upload("incoming/initech/tx.csv", data), "execution_arn": ARN}, None
    )
    with pytest.raises(UnknownPartner) as caught:
        validate_header.handler({"file": file}, None)
    message = str(caught.value)
    assert "'initech'" in message and "known partners: acme_bank, default, globex" in message
    assert issubclass(UnknownPartner, PermanentError)  # routed to MarkFailed, never retried
    # Declared to use the default schema: accepted; with its own schema file: its schema.
    file = register.handler(
        {"event": chain.upload("incoming/globex/tx.csv", data), "execution_arn": ARN}, None
    )
    assert validate_header.handler({"file": file}, None)["schema_id"] == "transactions_v1"
    # Nothing declared: only schema files and the default partner.
    monkeypatch.delenv("DEFAULT_SCHEMA_PARTNERS")
    with pytest.raises(UnknownPartner):
        validate_header.handler({"file": file}, None)


def test_SEC2_schema_for_partner() -> None:
    assert known_partners() == ["acme_bank", "default"]
    assert schema_for_partner("acme_bank").schema_id != schema_for_partner("default").schema_id
    assert schema_for_partner("globex", ["globex"]).schema_id == schema_for_partner("default").schema_id
    for unknown in ("globex", "ACME_BANK", "../default"):
        with pytest.raises(UnknownPartner):
            schema_for_partner(unknown)
