"""ValidateHeader: read the head of the object, check it against the partner's schema.

Input ``{"file": $.file}``; output ``$.header`` = ``{"schema_id", "schema_version",
"header_bytes", "columns"}``. A header that does not match raises ``SchemaMismatch`` (the
message names the columns); empty, binary or non-UTF-8 objects raise their typed errors.

Shipped to Lambda: Python 3.9 compatible.
"""

from __future__ import annotations

import gzip
import os
import zlib
from typing import Any

from etl import contracts
from etl import observability as obs
from etl.aws import s3
from etl.aws.errors import transient_errors
from etl.aws.status import REGISTERED, VALIDATING, StatusRepository
from etl.core.header import parse_header
from etl.core.schema import schema_for_partner
from etl.errors import CorruptGzip, EmptyFile
from etl.handlers.common import HEAD_BYTES, file_of, source_version, table_name
from etl.payloads import HeaderInfo


def read_gzip_head(bucket: str, key: str, version_id: str | None, limit: int) -> tuple[bytes, bool]:
    """Up to ``limit`` decompressed bytes from the start of a gzip object, and whether that is
    the whole decompressed content. Only the compressed bytes needed are downloaded."""
    body = s3.open_stream(bucket, key, version_id)
    try:
        with transient_errors(f"reading gzip s3://{bucket}/{key}"):
            try:
                with gzip.GzipFile(fileobj=body, mode="rb") as gz:
                    head = gz.read(limit + 1)
            except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
                raise CorruptGzip(f"s3://{bucket}/{key} is not a valid gzip stream: {exc}") from exc
    finally:
        body.close()
    return head[:limit], len(head) <= limit


def default_schema_partners() -> list[str]:
    """SEC2: the partners the stack declares to use the default schema (infra/functions.py)."""
    raw = os.environ.get(contracts.DEFAULT_SCHEMA_PARTNERS_ENV, "")
    return [name.strip() for name in raw.split(",") if name.strip()]


@obs.lambda_handler("ValidateHeader")
def handler(event: Any, context: Any = None) -> HeaderInfo:
    """Validate the header line; file status VALIDATING with the schema id/version."""
    file = file_of(event)
    # SEC2: a partner with no schema that is not declared to use the default one is refused.
    schema = schema_for_partner(file["partner"], default_schema_partners())
    repo = StatusRepository(table_name())
    # REGISTERED -> VALIDATING (VALIDATING again on a retry of this step).
    repo.transition_file(
        file["file_id"],
        {REGISTERED, VALIDATING},
        VALIDATING,
        schema_id=schema.schema_id,
        schema_version=schema.version,
    )
    bucket, key, size = file["bucket"], file["key"], int(file["size"])
    version = source_version(file)
    if file.get("compression") == "gzip":
        if size == 0:
            raise EmptyFile(f"s3://{bucket}/{key} is empty (0 bytes)")
        head, whole = read_gzip_head(bucket, key, version, HEAD_BYTES)
        # The decompressed size is unknown until the end: "one more byte than we have" tells
        # parse_header there is more when the stream did not end within the head.
        info = parse_header(head, schema, len(head) if whole else len(head) + 1)
    else:
        head = s3.read_range(bucket, key, 0, min(size, HEAD_BYTES), version)
        info = parse_header(head, schema, size)
    obs.logger.info(
        "header valid",
        extra={"schema_id": schema.schema_id, "header_bytes": info.header_bytes, "bom": info.has_bom},
    )
    return {
        "schema_id": schema.schema_id,
        "schema_version": schema.version,
        "header_bytes": info.header_bytes,
        "columns": list(info.columns),
    }
