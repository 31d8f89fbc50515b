"""RUN8/INF5: which botocore failures the state machine retries (etl.aws.errors)."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from etl.aws.errors import is_transient, transient_errors
from etl.errors import TransientError


def client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op"
    )


@pytest.mark.parametrize("status", [500, 502, 503, 504, 599])
def test_any_5xx_is_transient_whatever_its_code(status: int) -> None:
    # A code we have never heard of, but a server-side status: worth a retry.
    assert is_transient(client_error("SomethingNew", status))


@pytest.mark.parametrize(
    ("code", "status"),
    [("AccessDenied", 403), ("NoSuchKey", 404), ("ValidationException", 400), ("SomethingNew", 499)],
)
def test_client_errors_are_not_transient(code: str, status: int) -> None:
    assert not is_transient(client_error(code, status))


@pytest.mark.parametrize(
    "code", ["SlowDown", "ThrottlingException", "ProvisionedThroughputExceededException"]
)
def test_throttling_codes_are_transient_even_as_4xx(code: str) -> None:
    assert is_transient(client_error(code, 400))


def test_network_errors_are_transient() -> None:
    assert is_transient(EndpointConnectionError(endpoint_url="https://s3"))
    assert not is_transient(ValueError("x"))


def test_transient_errors_wraps_only_transient_failures() -> None:
    with pytest.raises(TransientError, match="GetObject failed after retries"), transient_errors("GetObject"):
        raise client_error("SomethingNew", 502)
    with pytest.raises(ClientError), transient_errors("GetObject"):
        raise client_error("AccessDenied", 403)
