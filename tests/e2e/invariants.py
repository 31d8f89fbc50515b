"""The table's invariants (SPEC TBL3, docs/dataset.md "Invariants"), checked from outside.

An oracle independent of the code under test: the tables are read with pyiceberg's own
``GlueCatalog`` and pyarrow FileIO (not the handlers' ``etl.aws.iceberg_io``), object sizes and
ETags with a plain S3 client, statuses from the status table. Nothing here imports
``etl.aws.catalog``.

- I1 a file's rows are in ``transactions`` iff it SUCCEEDED and is the live version of its key
  (the newest SUCCEEDED registration of that partner's key, unless ``rollbacks`` names another).
- I2 no (file_id, line) twice; a visible file's rows equal its ``rows_valid``.
- I3 every data file the current snapshot references exists with the size its manifest
  records; no object the table ever referenced changed its bytes (ETags remembered across calls).
- I4 once every file is terminal, no object under a table's data prefix is unreferenced.
- I5 ``transaction_rejects`` holds ``rows_rejected`` entries per visible file.
- I6 every file is terminal (the caller waits up to the sweep bound first).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pyarrow.compute as pc

from etl import contracts
from etl.core import dataset

TERMINAL = ("SUCCEEDED", "FAILED", "DUPLICATE_CONTENT")


@dataclass
class Checker:
    catalog: Any
    database: str
    s3: Any
    bucket: str
    ddb: Any
    status_table: str
    # I3: every object the table has referenced, with the ETag first seen.
    etags: dict[str, str] = field(default_factory=dict)

    def files(self) -> list[dict[str, Any]]:
        from boto3.dynamodb.types import TypeDeserializer

        des = TypeDeserializer()
        items: list[dict[str, Any]] = []
        for page in self.ddb.get_paginator("scan").paginate(TableName=self.status_table):
            for raw in page.get("Items", []):
                item = {k: des.deserialize(v) for k, v in raw.items()}
                if item.get("chunk_id") == contracts.FILE_ITEM:
                    items.append(item)
        return items

    def _objects(self, prefix: str) -> dict[str, dict[str, Any]]:
        out = {}
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                out[f"s3://{self.bucket}/{obj['Key']}"] = obj
        return out

    def _referenced(self, table: Any) -> set[str]:
        out: set[str] = set()
        seen: set[str] = set()
        for snap in table.metadata.snapshots:
            for manifest in snap.manifests(table.io):
                if manifest.manifest_path in seen:
                    continue
                seen.add(manifest.manifest_path)
                for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=False):
                    out.add(entry.data_file.file_path)
        return out

    def live_files(self, items: list[dict[str, Any]], rollbacks: dict[str, str] | None = None) -> set[str]:
        """file_ids whose rows must be visible (I1)."""
        by_key: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for item in items:
            if item.get("status") == "SUCCEEDED":
                key = (str(item.get("partner")), str(item.get("original_key") or item.get("key")))
                by_key.setdefault(key, []).append(item)
        live = set()
        for (_, key), group in by_key.items():
            if rollbacks and key in rollbacks:
                live.add(rollbacks[key])
                continue
            live.add(str(max(group, key=lambda i: str(i.get("created_at")))["file_id"]))
        return live

    def check(self, *, all_terminal: bool = True, rollbacks: dict[str, str] | None = None) -> list[str]:
        """Every violated invariant, as one line each (empty: the table holds)."""
        v: list[str] = []
        items = self.files()
        by_id = {str(i["file_id"]): i for i in items}
        if all_terminal:
            v += [f"I6 {i['file_id']} is {i.get('status')}" for i in items if i.get("status") not in TERMINAL]
        tx = self.catalog.load_table(f"{self.database}.{contracts.TRANSACTIONS_TABLE}")
        rows = tx.scan(selected_fields=("file_id", "line")).to_arrow()
        pairs = Counter(zip(rows.column("file_id").to_pylist(), rows.column("line").to_pylist(), strict=True))
        twice = [p for p, n in pairs.items() if n > 1]
        if twice:
            v.append(f"I2 {len(twice)} (file_id, line) pairs more than once, e.g. {twice[:3]}")
        visible = Counter(f for f, _ in pairs.elements())
        live = self.live_files(items, rollbacks)
        for fid in sorted(set(visible) | live):
            item = by_id.get(fid)
            if fid not in live:
                status = item.get("status") if item else "no status item"
                v.append(f"I1 {fid} ({status}) has {visible[fid]} visible rows; it is not the live version")
            elif item is not None and visible[fid] != int(item.get("rows_valid") or 0):
                v.append(f"I2 {fid}: {visible[fid]} visible rows, rows_valid {item.get('rows_valid')}")
        v += self._check_files(all_terminal)
        v += self._check_rejects(live, by_id)
        return v

    def _check_files(self, all_terminal: bool) -> list[str]:
        v: list[str] = []
        for name in contracts.DATASET_TABLES:
            table = self.catalog.load_table(f"{self.database}.{name}")
            objects = self._objects(f"{contracts.TABLES_PREFIX}{name}/data/")
            if table.metadata.current_snapshot() is not None:
                for task in table.scan().plan_files():
                    path, size = task.file.file_path, int(task.file.file_size_in_bytes)
                    obj = objects.get(path)
                    if obj is None:
                        v.append(f"I3 {name}: {path} is referenced but missing")
                    elif int(obj["Size"]) != size:
                        v.append(f"I3 {name}: {path} is {obj['Size']} bytes, the manifest says {size}")
            referenced = self._referenced(table)
            for path in referenced:
                obj = objects.get(path)
                if obj is None:
                    continue
                first = self.etags.setdefault(path, str(obj["ETag"]))
                if first != str(obj["ETag"]):
                    v.append(f"I3 {name}: {path} was rewritten (ETag {first} -> {obj['ETag']})")
            if all_terminal:
                stray = sorted(set(objects) - referenced)
                if stray:
                    v.append(f"I4 {name}: {len(stray)} unreferenced data objects, e.g. {stray[:2]}")
        return v

    def _check_rejects(self, live: set[str], by_id: dict[str, dict[str, Any]]) -> list[str]:
        rejects = self.catalog.load_table(f"{self.database}.{contracts.REJECTS_TABLE}")
        col = rejects.scan(selected_fields=("file_id",)).to_arrow().column("file_id")
        counts = {str(k): int(n) for k, n in zip(*_value_counts(col), strict=True)}
        v = []
        for fid in sorted(live):
            item = by_id.get(fid) or {}
            want = int(item.get("rows_rejected") or 0)
            if counts.get(fid, 0) != want:
                v.append(f"I5 {fid}: {counts.get(fid, 0)} rejects rows, rows_rejected {want}")
        return v


def _value_counts(col: Any) -> tuple[list[Any], list[int]]:
    if len(col) == 0:
        return [], []
    vc = pc.value_counts(col)
    return vc.field("values").to_pylist(), vc.field("counts").to_pylist()


def checker_for(stack: Any) -> Checker:
    """The checker of an e2e ``Stack`` (tests/e2e/conftest.py)."""
    from etl_cli.dataset import emulator_catalog

    out = stack.outputs
    return Checker(
        catalog=emulator_catalog(stack.emulator.endpoint, out.region),
        database=str(out.glue_database),
        s3=stack.s3,
        bucket=out.bucket,
        ddb=stack.pipeline.client("dynamodb"),
        status_table=out.table,
    )


__all__ = ["Checker", "checker_for", "dataset"]
