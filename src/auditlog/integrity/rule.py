"""The chain rule of docs/integrity.md: the hashed record, its bytes, the link hash.

entry_hash = SHA-256(prev_hash || JCS(record)); record = every stored field but the hashes,
where a field of :data:`~auditlog.columns.OPTIONAL_FIELDS` (``source``) is a member only when it
is not null.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from auditlog.canonical import jcs_text
from auditlog.columns import BY_NAME, CHAIN_FIELDS, HASHED_FIELDS, OPTIONAL_FIELDS
from auditlog.model import canonical_ip, utc_text

ZERO_HASH = bytes(32)


_REQUIRED = tuple(k for k in HASHED_FIELDS if k not in OPTIONAL_FIELDS)


def record_bytes_from_texts(texts: Mapping[str, str]) -> bytes:
    """JCS of a record whose field values are already canonical JSON texts; an optional field
    that is absent or ``null`` is no member."""
    body = ",".join(
        f'"{k}":{texts[k]}'
        for k in HASHED_FIELDS
        if k in _REQUIRED or texts.get(k, "null") != "null"
    )
    return ("{" + body + "}").encode("utf-8")


def record_bytes(record: Mapping[str, Any]) -> bytes:
    """JCS of the hashed part of a stored record (record form: JSON values); an optional
    field (``source``) that is absent or None is no member, so old rows hash as before."""
    texts = {k: jcs_text(record[k]) for k in _REQUIRED}
    texts.update((k, jcs_text(record[k])) for k in OPTIONAL_FIELDS if record.get(k) is not None)
    return record_bytes_from_texts(texts)


def chain_hash(prev_hash: bytes, record_json: bytes) -> bytes:
    return hashlib.sha256(prev_hash + record_json).digest()


def record_seq(record: bytes) -> int | None:
    """The top-level ``seq`` of a canonical record, without parsing it all.

    In JCS the top-level keys are sorted, so only source, source_ip, target (source and
    target have fixed keys, none of them ``seq``) and user_agent follow ``seq``; a quote
    inside a string is escaped. So the last ``,"seq":`` is the top-level one.
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
    """A database row (Python types) in record form: the JSON values the hash covers, the
    members of its record (an optional field that is null is none), and the chain hashes."""
    record = {name: convert(row[name]) for name, convert in _CONVERT if name in _REQUIRED}
    # (a row read without the optional fields selected has none)
    record.update((k, row[k]) for k in OPTIONAL_FIELDS if row.get(k) is not None)
    record.update((name, bytes(row[name]).hex()) for name in CHAIN_FIELDS)
    return record
