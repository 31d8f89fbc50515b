"""Turning botocore failures into the project's typed errors.

botocore has already retried throttling and 5xx responses by the time an exception reaches
us (see ``etl.aws.clients``); what is left is reported as :class:`etl.errors.TransientError`
so the state machine's Retry (which lists ``TransientError``) tries the step again later.
Everything else propagates unchanged: it is a bug or a permission problem, not a blip.

Shipped to Lambda: Python 3.9 compatible.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    IncompleteReadError,
    ReadTimeoutError,
    ResponseStreamingError,
)

from etl.errors import TransientError

# Error codes AWS uses for "slow down / try again" (S3, DynamoDB, STS and friends).
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "RequestThrottled",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "ProvisionedThroughputExceeded",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "SlowDown",
        "PriorRequestNotComplete",
        "InternalError",
        "InternalServerError",
        "ServiceUnavailable",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)

# Network-level failures that survive botocore's retries.
NETWORK_ERRORS = (
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    IncompleteReadError,
    ReadTimeoutError,
    ResponseStreamingError,
)


def error_code(exc: ClientError) -> str:
    """The AWS error code of a ClientError (``""`` if absent)."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def http_status(exc: ClientError) -> int:
    """The HTTP status of a ClientError (0 if absent)."""
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def is_transient(exc: BaseException) -> bool:
    """True for throttling, 5xx and network errors."""
    if isinstance(exc, NETWORK_ERRORS):
        return True
    if isinstance(exc, ClientError):
        return error_code(exc) in THROTTLING_CODES or http_status(exc) >= 500
    return False


@contextlib.contextmanager
def transient_errors(operation: str) -> Iterator[None]:
    """Re-raise transient botocore failures inside the block as ``TransientError``.

    The message keeps the operation and the original error text so logs and the state
    machine's error cause say what was throttled.
    """
    try:
        yield
    except (ClientError, *NETWORK_ERRORS) as exc:
        if is_transient(exc):
            raise TransientError(f"{operation} failed after retries: {exc}") from exc
        raise
