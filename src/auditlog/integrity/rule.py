"""The chain rule of docs/integrity.md: the hashed record, its bytes, the link hash.

entry_hash = SHA-256(prev_hash || JCS(record)); record = every stored field but the hashes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from auditlog.canonical import jcs_text
from auditlog.model import canonical_ip, utc_text

ZERO_HASH = bytes(32)
# Sorted as JCS sorts them (all ASCII), so a record can be assembled field by field.
HASHED_FIELDS = (
    "action",
    "actor",
    "after",
    "before",
    "category",
    "clock_skew",
    "correlation_id",
    "details",
    "event_id",
    "occurred_at",
    "occurred_offset",
    "outcome",
    "recorded_at",
    "seq",
    "source_ip",
    "target",
    "user_agent",
)
CHAIN_FIELDS = ("prev_hash", "entry_hash")


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


def row_to_record(row: Mapping[str, Any]) -> dict[str, Any]:
    """A database row (Python types) in record form: the JSON values the hash covers."""
    occurred, recorded = row["occurred_at"], row["recorded_at"]
    ip = row["source_ip"]
    return {
        "action": row["action"],
        "actor": row["actor"],
        "after": row["after"],
        "before": row["before"],
        "category": row["category"],
        "clock_skew": bool(row["clock_skew"]),
        "correlation_id": row["correlation_id"],
        "details": row["details"],
        "event_id": str(row["event_id"]),
        "occurred_at": utc_text(occurred) if isinstance(occurred, datetime) else occurred,
        "occurred_offset": int(row["occurred_offset"]),
        "outcome": row["outcome"],
        "recorded_at": utc_text(recorded) if isinstance(recorded, datetime) else recorded,
        "seq": int(row["seq"]),
        "source_ip": None if ip is None else canonical_ip(str(ip)),
        "target": row["target"],
        "user_agent": row["user_agent"],
        "prev_hash": bytes(row["prev_hash"]).hex(),
        "entry_hash": bytes(row["entry_hash"]).hex(),
    }
