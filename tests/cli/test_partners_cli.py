"""SEC2: the CLI refuses a --partner that neither a schema file nor the stack's declared
default-schema partners (output DefaultSchemaPartners) knows, before uploading anything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from etl.stack_outputs import Outputs
from etl_cli.pipeline import Pipeline, PipelineError


def test_SEC2_cli_refuses_an_unknown_partner_before_uploading(tmp_path: Path) -> None:
    outputs = Outputs(
        bucket="b", table="t", state_machine_arn="arn", default_schema_partners=json.dumps(["globex"])
    )
    pipe = Pipeline(session=None, outputs=outputs)
    path = tmp_path / "f.csv"
    path.write_text("x\n")
    with pytest.raises(
        PipelineError, match=r"unknown partner 'initech'.*known partners: acme_bank, default, globex"
    ):
        pipe.upload(path, "initech")  # refused before any client is made (session None)
    pipe.check_partner("globex")
    pipe.check_partner("acme_bank")
