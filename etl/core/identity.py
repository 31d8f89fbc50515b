"""File identity and partner routing from an S3 object's key and version (RUN1, RUN2, DR2).

Pure functions, no boto3. Shipped to Lambda: Python 3.9 compatible.
"""

from __future__ import annotations

import hashlib
import re
from urllib.parse import unquote_plus

from etl.contracts import DEFAULT_PARTNER, INCOMING_PREFIX
from etl.errors import InvalidEvent

# A partner prefix becomes part of a schema file name (etl/schemas/<partner>.json) and of log
# fields, so only a conservative alphabet is accepted; anything else routes to the default schema
# (whose header check then fails loudly if the file is not a default-schema file).
_SAFE_PARTNER = re.compile(r"[a-z0-9_-]{1,64}")


def file_id_for(key: str, version_id: str | None, etag: str | None) -> str:
    """Deterministic id of one *version* of an object: 32 hex chars of SHA-256.

    Hashes ``key NUL (version_id or etag or "")``; never the bucket name (SPEC RUN1, DR2): S3
    replication keeps an object's key and version id, so the primary and the disaster-recovery
    region give a replicated file the same id, and a file processed in both regions is one file
    downstream. NUL cannot occur in S3 keys, so distinct pairs never collide by concatenation.
    The version id wins (the bucket is versioned, so it names the exact bytes); the ETag is a
    fallback for unversioned sources. Surrounding double quotes are stripped from the ETag
    because S3 APIs return it quoted (``"abc"``) while S3 events carry it bare, and both must
    give the same id. ``key`` must be the *decoded* key (see :func:`decode_event_key`).

    Migration: ids computed before this rule hashed the bucket too; an item registered under an
    old id keeps it (its outputs are named by it), only new versions get the new ids
    (docs/disaster-recovery.md, "Identity").
    """
    tag = version_id or (etag.strip('"') if etag else "") or ""
    material = "\0".join((key, tag)).encode("utf-8")
    return hashlib.sha256(material).hexdigest()[:32]


def decode_event_key(raw: str) -> str:
    """Decode an object key as S3 puts it into event notifications.

    S3 URL-encodes keys in event payloads the way HTML forms do: a space becomes ``+``, a literal
    ``+`` becomes ``%2B`` and non-ASCII characters are percent-encoded UTF-8
    (``incoming/acme/Q1+r%C3%A9sum%C3%A9.csv`` -> ``incoming/acme/Q1 résumé.csv``). Hence
    ``unquote_plus``, not ``unquote``. Decode exactly once: decoding an already-decoded key would
    corrupt keys containing ``+`` or ``%``. Raises :class:`~etl.errors.InvalidEvent` when the
    escapes do not decode as UTF-8.
    """
    try:
        return unquote_plus(raw, encoding="utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        # S3 keys are UTF-8, so an escape sequence that is not UTF-8 means a forged/broken event.
        raise InvalidEvent(f"object key {raw!r} is not URL-encoded UTF-8: {exc}") from exc


def partner_from_key(key: str) -> str:
    """Partner name from a decoded key: ``incoming/<partner>/...`` -> ``<partner>`` (lower-cased).

    Returns :data:`~etl.contracts.DEFAULT_PARTNER` for a file directly under ``incoming/``
    (``incoming/file.csv``), for a key outside ``incoming/``, and for a partner segment that is not
    a safe name (``[a-z0-9_-]``, at most 64 chars, after lower-casing), so that an odd prefix can
    never select an arbitrary file as schema.
    """
    if not key.startswith(INCOMING_PREFIX):
        return DEFAULT_PARTNER
    rest = key[len(INCOMING_PREFIX) :]
    if "/" not in rest:
        return DEFAULT_PARTNER
    candidate = rest.split("/", 1)[0].lower()
    if _SAFE_PARTNER.fullmatch(candidate):
        return candidate
    return DEFAULT_PARTNER
