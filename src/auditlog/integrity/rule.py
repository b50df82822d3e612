"""The chain rule of docs/integrity.md: the hashed record, its bytes, the link hash.

entry_hash = SHA-256(prev_hash || JCS(record)); record = every stored field but the hashes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from auditlog.canonical import jcs_text
from auditlog.columns import BY_NAME, CHAIN_FIELDS, HASHED_FIELDS
from auditlog.model import canonical_ip, utc_text

ZERO_HASH = bytes(32)


def record_bytes_from_texts(texts: Mapping[str, str]) -> bytes:
    """JCS of a record whose field values are already canonical JSON texts."""
    body = ",".join(f'"{k}":{texts[k]}' for k in HASHED_FIELDS)
    return ("{" + body + "}").encode("utf-8")


def record_bytes(record: Mapping[str, Any]) -> bytes:
    """JCS of the hashed part of a stored record (record form: JSON values)."""
    return record_bytes_from_texts({k: jcs_text(record[k]) for k in HASHED_FIELDS})


def chain_hash(prev_hash: bytes, record_json: bytes) -> bytes:
    return hashlib.sha256(prev_hash + record_json).digest()


def record_seq(record: bytes) -> int | None:
    """The top-level ``seq`` of a canonical record, without parsing it all.

    In JCS the top-level keys are sorted, so only source_ip, target (fixed keys) and
    user_agent follow ``seq``; a quote inside a string is escaped. So the last ``,"seq":``
    is the top-level one.
    """
    at = record.rfind(b',"seq":')
    if at < 0:
        return None
    end = record.find(b",", at + 7)
    try:
        return int(record[at + 7 : end])
    except ValueError:
        return None


def _timestamp(value: Any) -> Any:
    return utc_text(value) if isinstance(value, datetime) else value


def _ip(value: Any) -> str | None:
    return None if value is None else canonical_ip(str(value))


def _same(value: Any) -> Any:
    return value


# A stored value (Python type from the driver) -> its record form (auditlog.columns).
_TO_RECORD: dict[str, Callable[[Any], Any]] = {
    "text": _same, "json": _same, "int": int, "bool": bool, "uuid": str,
    "timestamp": _timestamp, "ip": _ip,
}  # fmt: skip
_CONVERT = tuple((name, _TO_RECORD[str(BY_NAME[name].record)]) for name in HASHED_FIELDS)


def row_to_record(row: Mapping[Any, Any]) -> dict[str, Any]:
    """A database row (Python types) in record form: the JSON values the hash covers."""
    record = {name: convert(row[name]) for name, convert in _CONVERT}
    record.update((name, bytes(row[name]).hex()) for name in CHAIN_FIELDS)
    return record
