"""Typed errors the state machine routes on.

Step Functions sees a Lambda exception as ``Error = <class name>``. Every subclass of
:class:`PermanentError` describes input that cannot succeed on a retry, so the workflow's Retry
blocks list only Lambda service errors and :class:`TransientError`; everything else goes
straight to the Catch -> MarkFailed -> alert -> Fail path.

Code here is shipped to Lambda: keep it Python 3.9 compatible.
"""

from __future__ import annotations


class EtlError(Exception):
    """Base of every error this project raises on purpose."""


class TransientError(EtlError):
    """A dependency was throttled or unavailable after the SDK's own retries; worth retrying."""


class PermanentError(EtlError):
    """The input (or the file's state) cannot succeed by retrying."""


class EmptyFile(PermanentError):
    """The object has no bytes, or no data rows after the header."""


class InvalidEncoding(PermanentError):
    """The bytes are not UTF-8 text (binary garbage, wrong code page)."""


class UnknownPartner(PermanentError):
    """SEC2: the key's partner has no schema file and is not declared to use the default one."""


class TooLarge(PermanentError):
    """SEC4: a gzip object decompresses to more than the pipeline accepts."""


class SchemaMismatch(PermanentError):
    """The header does not match the partner's schema; the message names the columns."""


class MalformedCsv(PermanentError):
    """The CSV cannot be parsed: unterminated quote, bad quoting, wrong delimiter."""


class RecordTooLarge(PermanentError):
    """One record is larger than the configured maximum record size."""


class CorruptGzip(PermanentError):
    """A ``.csv.gz`` object is not a valid gzip stream."""


class TooManyRejects(PermanentError):
    """The rejected share of rows exceeds the schema's threshold."""


class ConservationViolation(PermanentError):
    """rows_in != rows_valid + rows_rejected for a chunk or the file: never publish that."""


class InvalidFileState(PermanentError):
    """The status table says this step must not run (e.g. reprocess of a file that succeeded)."""


class SupersededVersion(PermanentError):
    """An older version of a key would replace the rows of a newer one that is live (SPEC TBL5);
    ``etl reprocess --rollback`` does it on purpose."""


class InvalidEvent(PermanentError):
    """The execution input is neither an S3 Object Created event nor a reprocess request."""


# The names the state machine's Retry blocks list besides Lambda's own service errors.
RETRYABLE_ERRORS = ("TransientError",)
