"""The status table: one file item and one item per chunk (see docs/contracts.md).

Every status change is a conditional write, so two executions (a duplicate event, a redrive,
a Lambda retry running beside a slow first attempt) can never silently overwrite each
other's state: the loser gets :class:`etl.errors.InvalidFileState` naming the status it found
(or ``False`` from :meth:`StatusRepository.register_file`).

The low-level client is used (thread-safe, unlike boto3 resources) with boto3's type
(de)serializer; numbers are stored as DynamoDB Numbers and come back as ``int`` (or
``float`` for non-integral values).

Shipped to Lambda: Python 3.9 compatible.
"""

from __future__ import annotations

import datetime
import decimal
import os
import time
from collections.abc import Iterable, Mapping
from typing import Any, cast

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from etl.aws import clients
from etl.aws.errors import error_code, transient_errors
from etl.contracts import (
    CHUNK_PREFIX,
    FILE_ITEM,
    OPEN_IN_FLIGHT,
    OPEN_INDEX,
    OPEN_NOT_NOTIFIED,
    OPEN_SINCE,
    OPEN_STATE,
    PARTNER_INDEX,
)
from etl.errors import InvalidFileState, TransientError
from etl.payloads import ChunkItem, FileItem

# File statuses (docs/contracts.md "Status table").
REGISTERED = "REGISTERED"
VALIDATING = "VALIDATING"
PLANNED = "PLANNED"
PROCESSING = "PROCESSING"
SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"
# DATA4(a): the same bytes were already loaded for the partner by another SUCCEEDED file;
# nothing was published. Terminal and not a failure (`etl reprocess --force` loads it anyway).
DUPLICATE_CONTENT = "DUPLICATE_CONTENT"
# Chunk statuses.
PENDING = "PENDING"
RUNNING = "RUNNING"

FILE_STATUSES = (REGISTERED, VALIDATING, PLANNED, PROCESSING, SUCCEEDED, FAILED, DUPLICATE_CONTENT)
# A file in one of these has finished; its execution ended (FAILED: failed, the others: succeeded).
TERMINAL_FILE_STATUSES = (SUCCEEDED, FAILED, DUPLICATE_CONTENT)
TERMINAL_STATUSES = TERMINAL_FILE_STATUSES
CHUNK_STATUSES = (PENDING, RUNNING, SUCCEEDED, FAILED)

LEASE_PREFIX = "LEASE#"
# One item per partner key naming its live version (SPEC TBL5); no index sees it.
LIVE_PREFIX = "LIVE#"
LIVE_SORT_KEY = "LIVE"
LEASE_SORT_KEY = "LEASE"
MAX_ERROR_CHARS = 4000  # an error text is for people; keep items far below the 400 KB limit
_BATCH_WRITE_ATTEMPTS = 8

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def utc_now() -> str:
    """ISO 8601 UTC timestamp with milliseconds, e.g. ``2026-11-25T23:45:01.123Z``."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _to_dynamo(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, float):
        # boto3 refuses floats (inexact); the decimal of the repr is what the caller meant.
        value = decimal.Decimal(repr(value))
    return cast("dict[str, Any]", _serializer.serialize(value))


def _from_dynamo(value: dict[str, Any]) -> Any:
    return _plain(_deserializer.deserialize(value))


def _plain(value: Any) -> Any:
    """Decimals back to int/float, recursively (items are JSON-friendly for handlers)."""
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, set):
        return {_plain(v) for v in value}
    return value


def _item_from_dynamo(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _from_dynamo(v) for k, v in item.items()}


def _item_to_dynamo(item: Mapping[str, Any]) -> dict[str, Any]:
    # None values are left out: DynamoDB has NULL, but an absent attribute reads better.
    return {k: _to_dynamo(v) for k, v in item.items() if v is not None}


def _truncate(text: str | None) -> str | None:
    if text is None or len(text) <= MAX_ERROR_CHARS:
        return text
    return text[: MAX_ERROR_CHARS - 3] + "..."


def _open_attrs(to_status: str, now: str) -> dict[str, Any]:
    """The open-files index attributes a status change implies (``None`` removes them): a
    file enters it when registered or claimed, leaves it when FAILED, and moves to
    NOT_NOTIFIED when SUCCEEDED until its result message is sent (:meth:`mark_notified`)."""
    if to_status in (FAILED, DUPLICATE_CONTENT):
        # DUPLICATE_CONTENT published nothing: no in-flight work left, no outbox (its result
        # message is sent once by NotifyResult; reconcile does not re-send it).
        return {OPEN_STATE: None, OPEN_SINCE: None}
    if to_status == SUCCEEDED:
        return {OPEN_STATE: OPEN_NOT_NOTIFIED, OPEN_SINCE: now, "notified": False}
    if to_status == REGISTERED:
        return {OPEN_STATE: OPEN_IN_FLIGHT, OPEN_SINCE: now}
    return {}


class _Update:
    """Builds an UpdateExpression with placeholder names/values (reserved words: status, key,
    start, end, size ... are DynamoDB reserved words, so every name is a placeholder)."""

    def __init__(self) -> None:
        self.sets: list[str] = []
        self.removes: list[str] = []
        self.names: dict[str, str] = {}
        self.values: dict[str, Any] = {}

    def name(self, attr: str) -> str:
        ph = f"#n{len(self.names)}"
        for existing, value in self.names.items():
            if value == attr:
                return existing
        self.names[ph] = attr
        return ph

    def value(self, val: Any) -> str:
        ph = f":v{len(self.values)}"
        self.values[ph] = _to_dynamo(val)
        return ph

    def set(self, attr: str, val: Any) -> None:
        if val is None:
            self.removes.append(self.name(attr))
        else:
            self.sets.append(f"{self.name(attr)} = {self.value(val)}")

    def add_one(self, attr: str) -> None:
        n = self.name(attr)
        self.sets.append(f"{n} = if_not_exists({n}, {self.value(0)}) + {self.value(1)}")

    def status_in(self, statuses: Iterable[str]) -> str:
        allowed = sorted(set(statuses))
        if not allowed:
            raise ValueError("allowed_from must not be empty")
        return "attribute_exists({}) AND {} IN ({})".format(
            self.name("file_id"),
            self.name("status"),
            ", ".join(self.value(s) for s in allowed),
        )

    def expression(self) -> str:
        parts = []
        if self.sets:
            parts.append("SET " + ", ".join(self.sets))
        if self.removes:
            parts.append("REMOVE " + ", ".join(self.removes))
        return " ".join(parts)


class StatusRepository:
    """Reads and conditional writes of file and chunk items in the status table."""

    def __init__(self, table_name: str | None = None, client: Any = None) -> None:
        """``table_name`` defaults to ``$TABLE_NAME`` (the handlers' environment); ``client``
        (a boto3 DynamoDB client) to the process-wide one. The operator CLI passes its own
        session's client: one status layer for handlers and CLI (SPEC DX2)."""
        self.table_name = table_name or os.environ["TABLE_NAME"]
        self._client = client

    # -- helpers -------------------------------------------------------------------------
    def _ddb(self) -> Any:
        return self._client if self._client is not None else clients.dynamodb()

    @staticmethod
    def _key(file_id: str, chunk_id: str) -> dict[str, Any]:
        return {"file_id": {"S": file_id}, "chunk_id": {"S": chunk_id}}

    def _get(self, file_id: str, chunk_id: str) -> dict[str, Any] | None:
        with transient_errors(f"GetItem {file_id}/{chunk_id}"):
            resp = self._ddb().get_item(
                TableName=self.table_name, Key=self._key(file_id, chunk_id), ConsistentRead=True
            )
        item = resp.get("Item")
        return _item_from_dynamo(item) if item else None

    def _update(
        self, file_id: str, chunk_id: str, upd: _Update, condition: str
    ) -> tuple[bool, dict[str, Any]]:
        """Run a conditional update; ``(True, new item)`` or ``(False, current item or {})``."""
        try:
            with transient_errors(f"UpdateItem {file_id}/{chunk_id}"):
                resp = self._ddb().update_item(
                    TableName=self.table_name,
                    Key=self._key(file_id, chunk_id),
                    UpdateExpression=upd.expression(),
                    ConditionExpression=condition,
                    ExpressionAttributeNames=upd.names,
                    ExpressionAttributeValues=upd.values,
                    ReturnValues="ALL_NEW",
                )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            return False, self._get(file_id, chunk_id) or {}
        return True, _item_from_dynamo(resp.get("Attributes", {}))

    # -- file item -----------------------------------------------------------------------
    def register_file(self, item: Mapping[str, Any]) -> bool:
        """Put the file item if no item exists for its ``file_id``; False on a duplicate.

        ``item`` holds the contract's file attributes; ``status`` defaults to REGISTERED,
        ``attempts`` to 1, ``created_at``/``updated_at`` to now.
        """
        now = utc_now()
        full: dict[str, Any] = {"status": REGISTERED, "attempts": 1, "created_at": now, "updated_at": now}
        full.update(item)
        full["chunk_id"] = FILE_ITEM
        if full["status"] not in TERMINAL_STATUSES:
            full.setdefault(OPEN_STATE, OPEN_IN_FLIGHT)
            full.setdefault(OPEN_SINCE, full["created_at"])
        if not full.get("file_id"):
            raise ValueError("register_file needs a file_id")
        return self._put_once(full)

    def get_file(self, file_id: str) -> FileItem | None:
        """The file item (strongly consistent read), or None."""
        return cast("FileItem | None", self._get(file_id, FILE_ITEM))

    def claim_reprocess(
        self, file_id: str, execution_arn: str, allowed_from: Iterable[str] = (FAILED,), **attrs: Any
    ) -> FileItem:
        """FAILED (or another of ``allowed_from``: DUPLICATE_CONTENT for a forced reprocess)
        -> REGISTERED for a new execution; ``attempts`` += 1. Extra ``attrs`` are set
        (``None`` removes). Returns the new item; raises InvalidFileState otherwise."""
        upd = _Update()
        upd.set("status", REGISTERED)
        upd.set("execution_arn", execution_arn)
        now = utc_now()
        upd.set("updated_at", now)
        upd.add_one("attempts")
        for attr, val in {**_open_attrs(REGISTERED, now), "notified": None, **attrs}.items():
            upd.set(attr, val)
        allowed = sorted(set(allowed_from))
        ok, item = self._update(file_id, FILE_ITEM, upd, upd.status_in(allowed))
        if not ok:
            raise InvalidFileState(
                "file {} cannot be reprocessed: its status is {}, only {} files can be".format(
                    file_id, item.get("status", "<no file item>"), "/".join(allowed)
                )
            )
        return cast(FileItem, item)

    def transition_file(
        self, file_id: str, allowed_from: Iterable[str], to_status: str, **attrs: Any
    ) -> FileItem:
        """Set the file's status to ``to_status`` if it is currently one of ``allowed_from``;
        also set ``attrs`` (``None`` removes the attribute). Returns the new item.

        Raises InvalidFileState naming the current status when the condition fails.
        """
        allowed = sorted(set(allowed_from))
        upd = _Update()
        now = utc_now()
        upd.set("status", to_status)
        upd.set("updated_at", now)
        for attr, val in {**_open_attrs(to_status, now), **attrs}.items():
            upd.set(attr, val)
        ok, item = self._update(file_id, FILE_ITEM, upd, upd.status_in(allowed))
        if not ok:
            raise InvalidFileState(
                "file {} is {}; cannot change it to {} (allowed from {})".format(
                    file_id, item.get("status", "<no file item>"), to_status, "/".join(allowed)
                )
            )
        return cast(FileItem, item)

    # docs/internal-api.md calls it update_file_status.
    update_file_status = transition_file

    # -- outbox (OPS4) -------------------------------------------------------------------
    def claim_notify_attempt(self, file_id: str) -> FileItem:
        """Count a re-send of a SUCCEEDED file's result (``notify_attempts`` += 1) and return
        the item; the count makes each deliberate re-send's FIFO dedup id unique."""
        upd = _Update()
        upd.add_one("notify_attempts")
        upd.set("updated_at", utc_now())
        ok, item = self._update(file_id, FILE_ITEM, upd, upd.status_in([SUCCEEDED]))
        if not ok:
            raise InvalidFileState(
                "file {} is {}; only a SUCCEEDED file has a result to send".format(
                    file_id, item.get("status", "<no file item>")
                )
            )
        return cast(FileItem, item)

    def mark_notified(self, file_id: str, dedup_id: str) -> FileItem:
        """The result message was sent: ``notified`` true, off the open-files index."""
        upd = _Update()
        now = utc_now()
        for attr, val in {
            "notified": True,
            "notified_at": now,
            "notify_dedup_id": dedup_id,
            "notify_error": None,
            OPEN_STATE: None,
            OPEN_SINCE: None,
            "updated_at": now,
        }.items():
            upd.set(attr, val)
        ok, item = self._update(file_id, FILE_ITEM, upd, upd.status_in([SUCCEEDED]))
        if not ok:
            raise InvalidFileState(f"file {file_id} is {item.get('status')}; not marked notified")
        return cast(FileItem, item)

    def mark_not_notified(self, file_id: str, error: str) -> bool:
        """A send failed: ``notified`` false with the error (stays on the open-files index)."""
        upd = _Update()
        upd.set("notified", False)
        upd.set("notify_error", _truncate(error))
        upd.set("updated_at", utc_now())
        ok, _ = self._update(file_id, FILE_ITEM, upd, upd.status_in([SUCCEEDED]))
        return ok

    # -- standby (DR2): what a standby region would have sent -------------------------------
    def record_suppressed(
        self, file_id: str, attr: str, entry: Mapping[str, Any], append: bool = False
    ) -> bool:
        """Record on the file item a message a standby region did not send: ``attr`` set to
        ``entry`` (the result), or ``entry`` appended to the list ``attr`` (alerts). False when
        there is no file item."""
        now = utc_now()
        names = {"#a": attr, "#u": "updated_at", "#pk": "file_id"}
        values: dict[str, Any] = {":e": _to_dynamo({**entry, "at": now}), ":now": _to_dynamo(now)}
        if append:
            values[":empty"] = {"L": []}
            values[":e"] = {"L": [values[":e"]]}
            expression = "SET #a = list_append(if_not_exists(#a, :empty), :e), #u = :now"
        else:
            expression = "SET #a = :e, #u = :now"
        try:
            with transient_errors(f"UpdateItem {file_id}/{FILE_ITEM}"):
                clients.dynamodb().update_item(
                    TableName=self.table_name,
                    Key=self._key(file_id, FILE_ITEM),
                    UpdateExpression=expression,
                    ConditionExpression="attribute_exists(#pk)",
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues=values,
                )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    # -- indexes (OPS1, OPS3) ------------------------------------------------------------
    def list_open(self, open_state: str, older_than: str | None = None) -> list[FileItem]:
        """File items on the sparse open-files index in ``open_state`` (IN_FLIGHT or
        NOT_NOTIFIED), optionally only those open since ``older_than`` or earlier (ISO 8601).
        Eventually consistent (a GSI): callers re-read the item before acting."""
        names = {"#st": OPEN_STATE}
        values: dict[str, Any] = {":st": {"S": open_state}}
        condition = "#st = :st"
        if older_than:
            names["#since"] = OPEN_SINCE
            values[":before"] = {"S": older_than}
            condition += " AND #since <= :before"
        items: list[Any] = []
        with transient_errors(f"Query {self.table_name}/{OPEN_INDEX}"):
            for page in (
                self._ddb()
                .get_paginator("query")
                .paginate(
                    TableName=self.table_name,
                    IndexName=OPEN_INDEX,
                    KeyConditionExpression=condition,
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues=values,
                )
            ):
                items.extend(_item_from_dynamo(i) for i in page.get("Items", []))
        return items

    def latest_registration(self, partner: str) -> str | None:
        """``created_at`` of the partner's most recently registered file, or None."""
        with transient_errors(f"Query {self.table_name}/{PARTNER_INDEX}"):
            resp = self._ddb().query(
                TableName=self.table_name,
                IndexName=PARTNER_INDEX,
                KeyConditionExpression="#p = :p",
                ExpressionAttributeNames={"#p": "partner"},
                ExpressionAttributeValues={":p": {"S": partner}},
                ScanIndexForward=False,
                Limit=1,
            )
        items = resp.get("Items") or []
        return str(_item_from_dynamo(items[0]).get("created_at")) if items else None

    def put_marker(self, key: str, sort_key: str, **attrs: Any) -> bool:
        """Put a bookkeeping item (e.g. "alert sent for this due time") once; False if it
        already exists. Markers have no ``partner``/``created_at``/``open_state``: no index
        sees them."""
        return self._put_once({"file_id": key, "chunk_id": sort_key, "created": utc_now(), **attrs})

    # -- live versions (SPEC TBL5) -----------------------------------------------------------
    @staticmethod
    def _live_key(partner: str, original_key: str) -> str:
        return f"{LIVE_PREFIX}{partner}/{original_key}"

    def get_live(self, partner: str, original_key: str) -> dict[str, Any] | None:
        """The live version of a partner's key: ``{"live_file_id", "live_created_at",
        "previous_file_id", ...}`` or None (no version of the key was ever published)."""
        return self._get(self._live_key(partner, original_key), LIVE_SORT_KEY)

    def set_live(
        self, partner: str, original_key: str, file_id: str, created_at: str, previous: str | None
    ) -> None:
        """Record ``file_id`` as the live version of the key (after its commit landed)."""
        item = {
            "file_id": self._live_key(partner, original_key),
            "chunk_id": LIVE_SORT_KEY,
            "live_file_id": file_id,
            "live_created_at": created_at,
            "previous_file_id": previous,
            "updated_at": utc_now(),
        }
        with transient_errors(f"PutItem live {partner}/{original_key}"):
            self._ddb().put_item(
                TableName=self.table_name,
                Item=_item_to_dynamo({k: v for k, v in item.items() if v is not None}),
            )

    # -- leases (SPEC TBL6: commits to one table take turns in a burst) ----------------------
    def acquire_lease(self, name: str, owner: str, seconds: float) -> bool:
        """Take the lease ``name`` for ``seconds`` if it is free, expired or already ``owner``'s.
        A lease item has no ``partner``/``created_at``: no index sees it."""
        now = time.time()
        try:
            with transient_errors(f"PutItem lease {name}"):
                self._ddb().put_item(
                    TableName=self.table_name,
                    Item=_item_to_dynamo(
                        {
                            "file_id": LEASE_PREFIX + name,
                            "chunk_id": LEASE_SORT_KEY,
                            "owner": owner,
                            "expires_at": decimal.Decimal(repr(round(now + seconds, 3))),
                        }
                    ),
                    ConditionExpression="attribute_not_exists(#pk) OR #exp < :now OR #owner = :me",
                    ExpressionAttributeNames={"#pk": "file_id", "#exp": "expires_at", "#owner": "owner"},
                    ExpressionAttributeValues={":now": {"N": repr(round(now, 3))}, ":me": {"S": owner}},
                )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def release_lease(self, name: str, owner: str) -> None:
        """Give the lease back if ``owner`` still holds it (an expired one may be another's)."""
        try:
            with transient_errors(f"DeleteItem lease {name}"):
                self._ddb().delete_item(
                    TableName=self.table_name,
                    Key=self._key(LEASE_PREFIX + name, LEASE_SORT_KEY),
                    ConditionExpression="#owner = :me",
                    ExpressionAttributeNames={"#owner": "owner"},
                    ExpressionAttributeValues={":me": {"S": owner}},
                )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise

    def _put_once(self, item: dict[str, Any]) -> bool:
        """Conditional PutItem: True if written, False if an item with this key exists."""
        try:
            with transient_errors(f"PutItem {item['file_id']}/{item['chunk_id']}"):
                self._ddb().put_item(
                    TableName=self.table_name,
                    Item=_item_to_dynamo(item),
                    ConditionExpression="attribute_not_exists(#pk)",
                    ExpressionAttributeNames={"#pk": "file_id"},
                )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def list_files(self, status: str | None = None, since: str | None = None) -> list[FileItem]:
        """File items, optionally only one status and/or ``created_at >= since`` (ISO 8601).

        A paginated Scan with a filter: fine for an operator CLI on a table of thousands of
        files. At scale this would be a Query on a GSI (pk ``status``, sk ``created_at``,
        projecting the file items only).
        """
        names = {"#sk": "chunk_id"}
        values: dict[str, Any] = {":file": {"S": FILE_ITEM}}
        filters = ["#sk = :file"]
        if status:
            names["#st"] = "status"
            values[":st"] = {"S": status}
            filters.append("#st = :st")
        if since:
            names["#ca"] = "created_at"
            values[":since"] = {"S": since}
            filters.append("#ca >= :since")
        items: list[Any] = []
        with transient_errors(f"Scan {self.table_name}"):
            for page in (
                self._ddb()
                .get_paginator("scan")
                .paginate(
                    TableName=self.table_name,
                    FilterExpression=" AND ".join(filters),
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues=values,
                )
            ):
                items.extend(_item_from_dynamo(i) for i in page.get("Items", []))
        items.sort(key=lambda i: (str(i.get("created_at", "")), str(i["file_id"])))
        return items

    # -- chunk items ---------------------------------------------------------------------
    def put_chunks(self, file_id: str, chunks: Iterable[Mapping[str, Any]]) -> int:
        """Write PENDING chunk items (``chunk_id``, ``key``, ``start``, ``end``, ``first_line``
        ... per chunk) with BatchWriteItem. Re-planning the same file writes identical items
        over the old ones (PutItem semantics). Returns the number written."""
        now = utc_now()
        requests = []
        for chunk in chunks:
            item: dict[str, Any] = {"status": PENDING, "attempts": 0, "updated_at": now}
            item.update(chunk)
            item["file_id"] = file_id
            if not str(item.get("chunk_id", "")).startswith(CHUNK_PREFIX):
                raise ValueError(
                    "chunk item needs a chunk_id like CHUNK#00001: {!r}".format(item.get("chunk_id"))
                )
            requests.append({"PutRequest": {"Item": _item_to_dynamo(item)}})
        self._batch_write(requests)
        return len(requests)

    def delete_chunks(self, file_id: str, chunk_ids: Iterable[str]) -> int:
        """Delete chunk items (stale ones after a re-plan with fewer chunks)."""
        requests = [{"DeleteRequest": {"Key": self._key(file_id, c)}} for c in chunk_ids]
        self._batch_write(requests)
        return len(requests)

    def _batch_write(self, requests: list[dict[str, Any]]) -> None:
        for i in range(0, len(requests), 25):
            pending = {self.table_name: requests[i : i + 25]}
            for attempt in range(_BATCH_WRITE_ATTEMPTS):
                with transient_errors(f"BatchWriteItem {self.table_name}"):
                    resp = self._ddb().batch_write_item(RequestItems=pending)
                pending = resp.get("UnprocessedItems") or {}
                if not pending:
                    break
                # Unprocessed items mean throttling: back off before resubmitting only them.
                time.sleep(min(0.05 * (2**attempt), 2.0))
            if pending:
                raise TransientError(
                    f"BatchWriteItem left {len(pending.get(self.table_name, []))} items unprocessed "
                    f"after {_BATCH_WRITE_ATTEMPTS} attempts"
                )

    def start_chunk(self, file_id: str, chunk_id: str) -> ChunkItem:
        """Mark a chunk RUNNING (from any chunk status, SUCCEEDED included: a re-run writes
        identical objects) and count the attempt. Returns the item, which still carries the
        previous run's output keys. Raises InvalidFileState if the chunk was never planned."""
        upd = _Update()
        upd.set("status", RUNNING)
        upd.set("started_at", utc_now())
        upd.set("updated_at", utc_now())
        upd.set("error", None)
        upd.add_one("attempts")
        ok, _ = self._update(file_id, chunk_id, upd, upd.status_in(CHUNK_STATUSES))
        if not ok:
            raise InvalidFileState(f"chunk {chunk_id} of file {file_id} was never planned")
        return cast(ChunkItem, _)

    def complete_chunk(
        self,
        file_id: str,
        chunk_id: str,
        rows_in: int,
        rows_valid: int,
        rows_rejected: int,
        output_key: str | None,
        rejects_key: str | None,
        **attrs: Any,
    ) -> ChunkItem:
        """RUNNING (or SUCCEEDED, a concurrent identical re-run) -> SUCCEEDED with counts and
        output keys; ``rejects_key=None`` removes a key left by an earlier run."""
        now = utc_now()
        upd = _Update()
        upd.set("status", SUCCEEDED)
        upd.set("rows_in", int(rows_in))
        upd.set("rows_valid", int(rows_valid))
        upd.set("rows_rejected", int(rows_rejected))
        upd.set("output_key", output_key)
        upd.set("rejects_key", rejects_key)
        upd.set("finished_at", now)
        upd.set("updated_at", now)
        for attr, val in attrs.items():
            upd.set(attr, val)
        ok, item = self._update(file_id, chunk_id, upd, upd.status_in([RUNNING, SUCCEEDED]))
        if not ok:
            raise InvalidFileState(
                "chunk {} of file {} is {}; cannot mark it SUCCEEDED".format(
                    chunk_id, file_id, item.get("status", "<no chunk item>")
                )
            )
        return cast(ChunkItem, item)

    def fail_chunk(self, file_id: str, chunk_id: str, error: str) -> bool:
        """Record a chunk failure (any status but SUCCEEDED); False if nothing changed."""
        now = utc_now()
        upd = _Update()
        upd.set("status", FAILED)
        upd.set("error", _truncate(error))
        upd.set("finished_at", now)
        upd.set("updated_at", now)
        ok, _ = self._update(file_id, chunk_id, upd, upd.status_in([PENDING, RUNNING, FAILED]))
        return ok

    def get_chunk(self, file_id: str, chunk_id: str) -> ChunkItem | None:
        """One chunk item (strongly consistent), or None."""
        return cast("ChunkItem | None", self._get(file_id, chunk_id))

    def list_chunks(self, file_id: str) -> list[ChunkItem]:
        """All chunk items of a file in chunk order (Query, paginated, strongly consistent)."""
        items: list[Any] = []
        with transient_errors(f"Query {file_id}"):
            for page in (
                self._ddb()
                .get_paginator("query")
                .paginate(
                    TableName=self.table_name,
                    KeyConditionExpression="#pk = :pk AND begins_with(#sk, :prefix)",
                    ExpressionAttributeNames={"#pk": "file_id", "#sk": "chunk_id"},
                    ExpressionAttributeValues={":pk": {"S": file_id}, ":prefix": {"S": CHUNK_PREFIX}},
                    ConsistentRead=True,
                )
            ):
                items.extend(_item_from_dynamo(i) for i in page.get("Items", []))
        return items
