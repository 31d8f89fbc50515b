"""A pyiceberg ``FileIO`` over the project's boto3 S3 client (``etl.aws.clients``).

The functions commit to Iceberg through this FileIO instead of pyiceberg's pyarrow S3
filesystem, for three reasons: every S3 call a commit makes (metadata JSON, manifest lists,
manifests, Parquet footers of ``add_files``) goes through the same botocore client as the rest
of the handlers, so the IAM coverage test sees it and the emulator endpoint
(``AWS_ENDPOINT_URL``) applies without extra properties; no second S3 stack (credentials,
region, retries) to configure on Lambda; and it works under ``moto.mock_aws`` in unit tests.

A commit only reads and writes metadata and reads data files' footers (the deletes of a file's
rows are metadata-only: see etl.core.dataset.EXACT_METRICS_COLUMNS). Scans (``etl query``,
the tests' read-back) use pyiceberg's own pyarrow FileIO instead.

Shipped to Lambda: Python 3.9 compatible (pyiceberg itself needs Python >= 3.10).
"""

from __future__ import annotations

import io
from typing import Any, cast
from urllib.parse import urlparse

from botocore.exceptions import ClientError
from pyiceberg.io import FileIO, InputFile, InputStream, OutputFile, OutputStream

from etl.aws import clients
from etl.aws.errors import error_code, http_status, transient_errors

# Objects up to this size are read with one GET; larger ones (data files) are read by range,
# so reading a Parquet footer costs two small GETs, not the file.
WHOLE_READ_BYTES = 1 << 20


def _split(location: str) -> tuple[str, str]:
    parsed = urlparse(location)
    if parsed.scheme not in ("s3", "s3a", "s3n"):
        raise ValueError(f"not an S3 location: {location}")
    return parsed.netloc, parsed.path.lstrip("/")


def _missing(exc: ClientError) -> bool:
    return error_code(exc) in ("404", "NoSuchKey", "NotFound") or http_status(exc) == 404


class _RangedReader(io.RawIOBase):
    """Seekable reads by HTTP range of an object of known size (read-only, no buffering)."""

    def __init__(self, bucket: str, key: str, size: int) -> None:
        self._bucket, self._key, self._size, self._pos = bucket, key, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def read(self, size: int = -1) -> bytes:
        if self._pos >= self._size:
            return b""
        end = self._size if size is None or size < 0 else min(self._size, self._pos + size)
        with transient_errors(f"GetObject s3://{self._bucket}/{self._key}"):
            body = (
                clients.s3()
                .get_object(Bucket=self._bucket, Key=self._key, Range=f"bytes={self._pos}-{end - 1}")["Body"]
                .read()
            )
        self._pos += len(body)
        return cast(bytes, body)

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)


class S3InputFile(InputFile):
    def __init__(self, location: str) -> None:
        super().__init__(location)
        self._bucket, self._key = _split(location)
        self._size: int | None = None

    def __len__(self) -> int:
        if self._size is None:
            with transient_errors(f"HeadObject {self.location}"):
                self._size = int(
                    clients.s3().head_object(Bucket=self._bucket, Key=self._key)["ContentLength"]
                )
        return self._size

    def exists(self) -> bool:
        try:
            len(self)
        except ClientError as exc:
            if _missing(exc):
                return False
            raise
        return True

    def open(self, seekable: bool = True) -> InputStream:
        try:
            size = len(self)
        except ClientError as exc:
            if _missing(exc):
                raise FileNotFoundError(self.location) from exc
            raise
        if size <= WHOLE_READ_BYTES:
            with transient_errors(f"GetObject {self.location}"):
                body = clients.s3().get_object(Bucket=self._bucket, Key=self._key)["Body"].read()
            return io.BytesIO(body)
        return _RangedReader(self._bucket, self._key, size)


class _Upload(io.BytesIO):
    """Buffers the object and PUTs it on close (metadata files are small)."""

    def __init__(self, bucket: str, key: str) -> None:
        super().__init__()
        self._bucket, self._key, self._done = bucket, key, False

    def close(self) -> None:
        if not self._done and not self.closed:
            self._done = True
            with transient_errors(f"PutObject s3://{self._bucket}/{self._key}"):
                clients.s3().put_object(Bucket=self._bucket, Key=self._key, Body=self.getvalue())
        super().close()


class S3OutputFile(OutputFile):
    def __init__(self, location: str) -> None:
        super().__init__(location)
        self._bucket, self._key = _split(location)

    def __len__(self) -> int:
        return len(S3InputFile(self.location))

    def exists(self) -> bool:
        return S3InputFile(self.location).exists()

    def to_input_file(self) -> InputFile:
        return S3InputFile(self.location)

    def create(self, overwrite: bool = False) -> OutputStream:
        # Iceberg writes every metadata/manifest file under a fresh UUID name, so the
        # existence check pyiceberg asks for (overwrite=False) would only cost a HEAD.
        return _Upload(self._bucket, self._key)


class S3FileIO(FileIO):
    """``py-io-impl`` = ``etl.aws.iceberg_io.S3FileIO``."""

    def new_input(self, location: str) -> InputFile:
        return S3InputFile(location)

    def new_output(self, location: str) -> OutputFile:
        return S3OutputFile(location)

    def delete(self, location: str | InputFile | OutputFile) -> None:
        loc = location if isinstance(location, str) else location.location
        bucket, key = _split(loc)
        with transient_errors(f"DeleteObject {loc}"):
            clients.s3().delete_object(Bucket=bucket, Key=key)
