"""SPEC DATA2/DATA5/DATA6 on the emulator: real pyiceberg commits to moto's Glue + S3, through
the real state machine and handlers. The table is read back with pyiceberg's own pyarrow
FileIO (any Iceberg client), and the CSV module is the independent oracle."""

from __future__ import annotations

import csv
import datetime
import json
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from etl import contracts
from etl.core import dataset
from etl_cli.dataset import emulator_catalog, rows_of_file, scan, snapshots
from etl_local import lambda_runtime, state
from etl_local.datagen import generate_csv

from .conftest import SMALL_CHUNK, Stack

pytestmark = pytest.mark.e2e
LINEAGE_KEYS = ("file_id", "partner", "source_key", "source_version", "manifest_key", "execution_arn")


def make_csv(tmp_path: Path, rows: int, bad_share: float = 0.0, seed: int = 7, name: str = "tx.csv") -> Any:
    """A generated file whose valid dates look like a daily export: the previous business day,
    a few rows (1 in 50) a few days late (the generator's bad values are kept)."""
    path = tmp_path / name
    stats = generate_csv(path, rows=rows, seed=seed, bad_row_share=bad_share)
    text = path.read_text(encoding="utf-8", errors="surrogateescape")
    days = ["2026-11-27", "2026-11-26", "2026-11-24"]
    out = []
    for i, line in enumerate(text.split("\n")):
        parts = line.split(",")
        if i > 0 and len(parts) > 2 and _is_date(parts[2]):  # a valid date: make it realistic
            parts[2] = days[0] if i % 50 else days[1 + (i // 50) % 2]
        out.append(",".join(parts))
    path.write_text("\n".join(out), encoding="utf-8", errors="surrogateescape")
    return path, stats


def _is_date(text: str) -> bool:
    try:
        datetime.date.fromisoformat(text)
    except ValueError:
        return False
    return len(text) == 10


def catalog_of(stack: Stack) -> Any:
    return emulator_catalog(stack.emulator.endpoint, stack.outputs.region)


def data_objects(stack: Stack, file_id: str) -> list[str]:
    return [k for t in contracts.DATASET_TABLES for k in stack.keys(dataset.data_prefix(t, file_id))]


def source_records(path: Path) -> dict[int, dict[str, str]]:
    """Physical start line -> record, by Python's csv module (quoted newlines counted)."""
    out: dict[int, dict[str, str]] = {}
    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        start = reader.line_num + 1
        for rec in reader:
            if rec:
                out[start] = dict(zip(header, rec, strict=False))
            start = reader.line_num + 1
    return out


def file_snapshots(
    stack: Stack, file_id: str, table: str = contracts.TRANSACTIONS_TABLE
) -> list[dict[str, Any]]:
    db = stack.outputs.glue_database
    assert db
    return [s for s in snapshots(catalog_of(stack), db, table) if s["summary"].get("etl.file_id") == file_id]


def use_cli_state(stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state, "STATE_FILE", tmp_path / "emulator.json")
    monkeypatch.setattr(state, "STATE_DIR", tmp_path)
    state.write(
        {
            "endpoint": stack.emulator.endpoint,
            "outputs": stack.outputs.to_json(),
            "default_chunk_size_bytes": SMALL_CHUNK,
        }
    )


def test_DATA2_succeeded_file_rows_equal_the_table_rows_and_the_snapshot_names_the_load(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, stats = make_csv(tmp_path, rows=3000, bad_share=0.005, seed=11)
    info = stack.upload(path, "default")
    rep = stack.wait(info["file_id"])
    assert rep.status == "SUCCEEDED", rep.error
    fid, db = info["file_id"], stack.outputs.glue_database
    assert db == contracts.glue_database("local")
    cat = catalog_of(stack)

    rows = rows_of_file(cat, db, fid).to_pylist()
    source = source_records(path)
    # Independent oracle for the counts: the csv module sees every record.
    assert len(source) == stats.rows == rep.rows_total
    assert len(rows) == rep.rows_valid == stats.rows - stats.bad_rows
    rejects = rows_of_file(cat, db, fid, contracts.REJECTS_TABLE).to_pylist()
    assert len({r["line"] for r in rejects}) == rep.rows_rejected == stats.bad_rows
    assert {r["line"] for r in rows}.isdisjoint(r["line"] for r in rejects)
    assert {r["line"] for r in rows} | {r["line"] for r in rejects} == set(source)
    assert {r["rule"] for r in rejects} <= set(contracts_rules())
    # Typed values equal the source record at the row's line.
    for r in rows:
        src = source[r["line"]]
        assert r["transaction_id"] == src["transaction_id"]
        assert r["account_id"] == src["account_id"]
        assert r["amount"] == Decimal(src["amount"])
        assert r["transaction_date"] == datetime.date.fromisoformat(src["transaction_date"])
        assert r["currency"] == src["currency"]
        assert (r["description"] or "") == src["description"]
        if src["posted_at"]:
            posted = datetime.datetime.fromisoformat(src["posted_at"].replace("Z", "+00:00"))
            assert r["posted_at"] == posted
        assert (r["file_id"], r["partner"], r["source_key"]) == (fid, "default", info["key"])
    # Every data file holds one (partner, transaction_date): the partition it is filed under.
    table = cat.load_table(f"{db}.transactions")
    for task in table.scan().plan_files():
        lo = task.file.lower_bounds
        hi = task.file.upper_bounds
        assert lo == {**lo} and task.file.partition[1] is not None
        assert lo.get(3) == hi.get(3)  # transaction_date (field id 3): one value per file

    # One append snapshot names the load; the FIFO message and the file item carry its id.
    snaps = file_snapshots(stack, fid)
    assert [s["operation"] for s in snaps] == ["append"]
    summary = snaps[0]["summary"]
    item = stack.pipeline.get_file(fid)
    assert item is not None
    assert summary["etl.file_id"] == fid
    assert summary["etl.partner"] == "default"
    assert summary["etl.source_key"] == info["key"]
    assert summary["etl.source_version"] == (item.get("version_id") or "")
    assert summary["etl.manifest_key"] == item["manifest_key"]
    assert summary["etl.execution_arn"] == item["execution_arn"]
    assert item["snapshot_id"] == snaps[0]["snapshot_id"] == rep.snapshot_id
    assert item["published_rows"] == len(rows)
    message = json.loads(stack.receive(stack.outputs.results_queue_url)[0]["Body"])
    assert message["snapshot_id"] == snaps[0]["snapshot_id"]

    # etl query (DATA6): DuckDB over the pyiceberg scans, by table name.
    use_cli_state(stack, tmp_path, monkeypatch)
    from etl_cli.main import cli

    sql = (
        "SELECT count(*) AS n, count(DISTINCT transaction_id) AS ids "
        f"FROM transactions WHERE file_id = '{fid}'"
    )
    result = CliRunner().invoke(cli, ["--local", "query", sql, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1]) == [{"n": len(rows), "ids": len(rows)}]


def contracts_rules() -> tuple[str, ...]:
    from etl.core.process import RULES

    return RULES


def test_DATA2_TBL7_failed_by_threshold_leaves_no_rows_and_keeps_its_rejects(
    stack: Stack, tmp_path: Path
) -> None:
    path, _ = make_csv(tmp_path, rows=2000, bad_share=0.2, seed=3)
    info = stack.upload(path, "default")
    rep = stack.wait(info["file_id"])
    assert rep.status == "FAILED"
    assert "TooManyRejects" in (rep.error or "")
    assert len(stack.calls("ProcessChunk")) >= 2  # data files were written, then removed
    db = stack.outputs.glue_database
    fid = info["file_id"]
    assert rows_of_file(catalog_of(stack), db, fid).num_rows == 0
    assert file_snapshots(stack, fid) == []
    # TBL7: its rejects stay diagnosable, marked as from a load that did not publish.
    rejects = rows_of_file(catalog_of(stack), db, fid, contracts.REJECTS_TABLE)
    assert rejects.num_rows == rep.rows_rejected
    marks = {
        s["summary"].get("etl.load_outcome") for s in file_snapshots(stack, fid, contracts.REJECTS_TABLE)
    }
    assert marks == {"FAILED"}
    # Only rejects data files remain (referenced by that commit); no transactions data file.
    assert data_objects(stack, fid)
    assert all(
        k.startswith(dataset.data_prefix(contracts.REJECTS_TABLE, fid)) for k in data_objects(stack, fid)
    )


def test_DATA2_failing_last_chunk_leaves_nothing_and_reprocess_publishes_once(
    stack: Stack, tmp_path: Path
) -> None:
    path, stats = make_csv(tmp_path, rows=3000, bad_share=0.004, seed=5)
    size = path.stat().st_size
    fault = lambda_runtime.STATE.add_fault(
        lambda_runtime.Fault(
            stack.outputs.functions["ProcessChunk"],
            when=lambda e: int(e["chunk"]["end"]) == size,  # the last chunk
            times=10**6,
            kind="raise",
            exception=lambda: RuntimeError("late failure (injected)"),
        )
    )
    info = stack.upload(path, "default")
    fid = info["file_id"]
    rep = stack.wait(fid)
    assert rep.status == "FAILED" and fault.fired == 1
    assert rep.chunks is not None and rep.chunks >= 3
    # Sibling chunks still running when MarkFailed cleaned up remove their own data files
    # (their completion is refused): wait for every invocation to end, then look.
    stack.wait_for(lambda: all(c.finished for c in stack.calls("ProcessChunk")), what="chunks done")
    db = stack.outputs.glue_database
    assert rows_of_file(catalog_of(stack), db, fid).num_rows == 0
    assert data_objects(stack, fid) == []  # the earlier chunks' data files are gone

    lambda_runtime.STATE.faults.clear()
    stack.pipeline.reprocess(fid)
    again = stack.wait(fid, execution_arn=None)
    stack.wait_for(
        lambda: (stack.pipeline.get_file(fid) or {}).get("status") == "SUCCEEDED", what="reprocess"
    )
    again = stack.pipeline.report(fid)
    assert again.status == "SUCCEEDED", again.error
    rows = rows_of_file(catalog_of(stack), db, fid).to_pylist()
    assert len(rows) == again.rows_valid == stats.rows - stats.bad_rows
    assert len({r["line"] for r in rows}) == len(rows)  # published once: no line twice
    assert [s["operation"] for s in file_snapshots(stack, fid)] == ["append"]


def test_DATA4b_a_new_version_of_the_key_replaces_the_old_rows_in_one_commit(
    stack: Stack, tmp_path: Path
) -> None:
    first, s1 = make_csv(tmp_path, rows=1200, seed=21, name="daily.csv")
    one = stack.upload(first, "default", name="daily.csv")
    assert stack.wait(one["file_id"]).status == "SUCCEEDED"
    second, s2 = make_csv(tmp_path, rows=900, seed=22, name="daily-fixed.csv")
    two = stack.upload(second, "default", name="daily.csv")
    assert one["key"] == two["key"] and one["file_id"] != two["file_id"]
    assert stack.wait(two["file_id"]).status == "SUCCEEDED"

    db = stack.outputs.glue_database
    cat = catalog_of(stack)
    rows = scan(cat, db).to_pylist()
    assert {r["file_id"] for r in rows if r["source_key"] == two["key"]} == {two["file_id"]}
    assert len(rows) == s2.rows
    # The correction's delete and append are one commit: no table version ever had the old
    # rows removed without the new ones added.
    snaps = file_snapshots(stack, two["file_id"])
    assert [s["operation"] for s in snaps] == ["delete", "append"]
    assert int(snaps[0]["summary"]["deleted-records"]) == s1.rows
    table = cat.load_table(f"{db}.transactions")
    from pyiceberg.serializers import FromInputFile

    current_ids = [
        FromInputFile.table_metadata(table.io.new_input(entry.metadata_file)).current_snapshot_id
        for entry in table.metadata.metadata_log
    ] + [table.metadata.current_snapshot_id]
    assert snaps[0]["snapshot_id"] not in current_ids
    assert snaps[1]["snapshot_id"] in current_ids


def test_DATA2_two_commits_at_the_same_moment_both_land(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two Finalize commits that read the same table version: the loser's UpdateTable is refused
    (Glue VersionId / snapshot requirement), it reloads and redoes its transaction."""
    from etl.aws import catalog, clients
    from etl.core.process import process_chunk
    from etl.core.schema import load_schema
    from etl.handlers.process_chunk import write_data_files
    from etl_local import iam

    monkeypatch.setenv("AWS_ENDPOINT_URL", stack.emulator.endpoint)
    clients.reset_clients()
    try:
        bucket, db = stack.outputs.bucket, stack.outputs.glue_database
        assert db
        files = []
        for n in (1, 2):
            path, _ = make_csv(tmp_path, rows=300, seed=40 + n, name=f"c{n}.csv")
            result = process_chunk(path.read_bytes(), load_schema("default"), 2)
            file = {
                "file_id": f"concurrent{n}",
                "partner": "default",
                "key": f"incoming/default/c{n}.csv",
                "original_key": f"incoming/default/c{n}.csv",
                "version_id": None,
            }
            # Handler code run by the test itself: as the operator (etl_local/iam.py).
            with iam.operator():
                keys, _ = write_data_files(bucket, file, 1, result)
            files.append((file, keys, result.rows_valid))

        barrier = threading.Barrier(2, timeout=60)

        class SameMoment:
            """Both commits load the table before either commits (then behave normally)."""

            def __init__(self) -> None:
                self.inner = catalog.load_catalog()
                self.loads = 0

            def load_table(self, ident: str) -> Any:
                table = self.inner.load_table(ident)
                self.loads += 1
                if self.loads == 1:
                    barrier.wait()
                return table

        out: dict[str, Any] = {}

        def commit(file: dict[str, Any], keys: list[str]) -> None:
            out[file["file_id"]] = catalog.publish(
                db,
                contracts.TRANSACTIONS_TABLE,
                bucket,
                keys,
                dataset.lineage_of(file),
                None,
                "arn:e2e",
                SameMoment(),
            )

        threads = [threading.Thread(target=commit, args=(f, k)) for f, k, _ in files]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert len(out) == 2, out
        assert sorted(p.attempts for p in out.values()) == [1, 2]  # one conflict, one redo
        rows = scan(catalog_of(stack), db).to_pylist()
        for file, _, n in files:
            assert sum(1 for r in rows if r["file_id"] == file["file_id"]) == n
    finally:
        clients.reset_clients()


def test_emulated_glue_refuses_an_update_of_a_stale_version(stack: Stack) -> None:
    glue = stack.pipeline.client("glue")
    db = stack.outputs.glue_database
    t = glue.get_table(DatabaseName=db, Name="transactions")["Table"]
    keep = {k: t[k] for k in ("Name", "TableType", "Parameters", "StorageDescriptor") if k in t}
    glue.update_table(DatabaseName=db, TableInput=keep, VersionId=t["VersionId"])
    with pytest.raises(glue.exceptions.ConcurrentModificationException):
        glue.update_table(DatabaseName=db, TableInput=keep, VersionId=t["VersionId"])


def test_DATA6_local_up_json_names_the_catalog(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_cli_state(stack, tmp_path, monkeypatch)
    from etl_cli.main import cli

    result = CliRunner().invoke(cli, ["local", "up", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output.strip().splitlines()[-1])
    assert info["endpoint"] == stack.emulator.endpoint
    assert info["glue_database"] == stack.outputs.glue_database
    assert info["tables"] == ["transactions", "transaction_rejects", "transaction_loads"]
    # Any Iceberg client with these settings reads the tables.
    cat = emulator_catalog(info["endpoint"], info["region"])
    assert {t for _, t in cat.list_tables(info["glue_database"])} == set(info["tables"])
