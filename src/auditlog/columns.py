"""The columns of a stored event, defined once.

Each :class:`EventColumn` says how one field is stored and how every format carries it:

- ``pg``: its PostgreSQL type (a SQLAlchemy type; ``db.tables.events`` is built from these);
- ``record``: its form in the hashed record (docs/integrity.md), or None when not hashed:
  ``text``, ``int``, ``bool``, ``uuid`` (lower-case text), ``timestamp`` (RFC 3339 UTC with
  microseconds), ``ip`` (``model.canonical_ip``) or ``json``;
- ``arrow``: its Arrow type in archives (``string``, ``int64``, ``int16``, ``bool``,
  ``timestamp`` = microseconds UTC, ``binary32``), mapped by :func:`arrow_type` and
  :func:`polars_type`;
- ``csv``: how its evidence-CSV cell reads back (docs/evidence.md), or None when not in the
  CSV: ``text``, ``int``, ``bool``, ``json``, ``nullable`` (empty = null) or ``hex``;
- ``escape``: producer text that may start with a spreadsheet formula trigger, so the CSV
  escapes it (the other text columns cannot: enums, numbers, uuids, timestamps).

The orders: :data:`COPY_COLUMNS` is the table's, :data:`HASHED_FIELDS` the record's (JCS sorts
keys; those in :data:`OPTIONAL_FIELDS` are members only when not null), :data:`CSV_COLUMNS`
and :data:`ARCHIVE_COLUMNS` are the files' (fixed by the formats).
Everything here is computed at import time; nothing runs per row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import BYTEA, INET, JSONB, UUID

RecordForm = Literal["text", "int", "bool", "uuid", "timestamp", "ip", "json"]
ArrowKind = Literal["string", "int64", "int16", "bool", "timestamp", "binary32"]
CsvKind = Literal["text", "int", "bool", "json", "nullable", "hex"]


@dataclass(frozen=True)
class EventColumn:
    """One column of ``events``: storage, record form, Arrow type and CSV kind."""

    name: str
    pg: Any  # a SQLAlchemy type (class or instance)
    nullable: bool
    record: RecordForm | None
    arrow: ArrowKind
    csv: CsvKind | None
    escape: bool = False


_TS = sa.DateTime(timezone=True)
_c = EventColumn
# In the table's column order (001_core.sql).
EVENT_COLUMNS: tuple[EventColumn, ...] = (
    _c("category", sa.Text, False, "text", "string", "text"),
    _c("seq", sa.BigInteger, False, "int", "int64", "int"),
    _c("event_id", UUID(as_uuid=True), False, "uuid", "string", "text"),
    _c("action", sa.Text, False, "text", "string", "text", escape=True),
    _c("outcome", sa.Text, False, "text", "string", "text"),
    _c("occurred_at", _TS, False, "timestamp", "timestamp", "text"),
    _c("occurred_offset", sa.SmallInteger, False, "int", "int16", "int", escape=True),
    _c("recorded_at", _TS, False, "timestamp", "timestamp", "text"),
    _c("clock_skew", sa.Boolean, False, "bool", "bool", "bool"),
    _c("actor", JSONB, False, "json", "string", "json"),
    _c("target", JSONB, False, "json", "string", "json"),
    _c("before", JSONB, True, "json", "string", "json"),
    _c("after", JSONB, True, "json", "string", "json"),
    _c("source_ip", INET, True, "ip", "string", "nullable"),
    _c("user_agent", sa.Text, True, "text", "string", "nullable", escape=True),
    _c("correlation_id", sa.Text, True, "text", "string", "nullable", escape=True),
    _c("details", JSONB, False, "json", "string", "json"),
    _c("prev_hash", BYTEA, False, None, "binary32", "hex"),
    _c("entry_hash", BYTEA, False, None, "binary32", "hex"),
    # The exact text hashed: JCS(record) of the hashed columns above.
    _c("record", sa.Text, False, None, "string", None),
    # The API key that submitted the event (014_event_source.sql); in the record only when set.
    _c("source", JSONB, True, "json", "string", "json"),
)
BY_NAME = {col.name: col for col in EVENT_COLUMNS}

COPY_COLUMNS = tuple(col.name for col in EVENT_COLUMNS)
# Sorted as JCS sorts them (all ASCII), so a record can be assembled field by field.
HASHED_FIELDS = tuple(sorted(col.name for col in EVENT_COLUMNS if col.record is not None))
# Hashed fields the record holds only when they are not null (docs/integrity.md, section 2):
# added after chains existed, so a row without one hashes exactly as before.
OPTIONAL_FIELDS = ("source",)
CHAIN_FIELDS = ("prev_hash", "entry_hash")
# The evidence CSV's columns, in the order docs/evidence.md specifies.
CSV_COLUMNS = (
    "category", "seq", "event_id", "occurred_at", "occurred_offset", "recorded_at",
    "clock_skew", "action", "outcome", "actor", "target", "source_ip", "source", "user_agent",
    "correlation_id", "before", "after", "details", "prev_hash", "entry_hash",
)  # fmt: skip
# The CSV header before ``source`` existed: bundles and exports written then still verify.
LEGACY_CSV_COLUMNS = tuple(name for name in CSV_COLUMNS if name not in OPTIONAL_FIELDS)
CSV_KINDS: dict[str, CsvKind] = {name: BY_NAME[name].csv for name in CSV_COLUMNS}  # type: ignore[misc]
# An archive's Parquet columns: the record, its hashes, and typed columns for querying.
ARCHIVE_COLUMNS = (
    "category", "seq", "event_id", "action", "outcome", "occurred_at", "recorded_at",
    "correlation_id", "record", "prev_hash", "entry_hash",
)  # fmt: skip


def _check() -> None:
    """The orders above name every column they must, and only columns that exist."""
    in_csv = {col.name for col in EVENT_COLUMNS if col.csv is not None}
    if set(CSV_COLUMNS) != in_csv or len(CSV_COLUMNS) != len(in_csv):
        raise AssertionError("CSV_COLUMNS must list each column with a csv kind once")
    if not set(ARCHIVE_COLUMNS) <= set(BY_NAME) or "record" not in ARCHIVE_COLUMNS:
        raise AssertionError("ARCHIVE_COLUMNS must be event columns and include record")


_check()


def arrow_type(name: str) -> Any:
    """The ``pyarrow`` type of column ``name`` (pyarrow is imported here, not by the writer)."""
    import pyarrow as pa

    kind = BY_NAME[name].arrow
    if kind == "timestamp":
        return pa.timestamp("us", tz="UTC")
    if kind == "binary32":
        return pa.binary(32)
    return {"string": pa.string(), "int64": pa.int64(), "int16": pa.int16(), "bool": pa.bool_()}[
        kind
    ]


def polars_type(name: str) -> Any:
    """The Polars type of column ``name``: the type Polars reads its Arrow type as."""
    import polars as pl

    kind = BY_NAME[name].arrow
    if kind == "timestamp":
        return pl.Datetime("us", "UTC")
    types = {"string": pl.String, "int64": pl.Int64, "int16": pl.Int16, "bool": pl.Boolean}
    return (types | {"binary32": pl.Binary})[kind]()
