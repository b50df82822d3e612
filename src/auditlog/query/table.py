"""The ``events`` and ``event_rollup`` tables as SQLAlchemy Core objects, the columns the
dashboard reads from an event row, and building Polars frames from result rows.

Shared by :mod:`auditlog.query` (the timeline) and :mod:`auditlog.drilldown`. JSON keys and
column names used in SQL come only from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import polars as pl
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import INET, JSONB, UUID

from auditlog.errors import InvalidFilter

events = sa.table(
    "events",
    sa.column("category", sa.Text),
    sa.column("seq", sa.BigInteger),
    sa.column("event_id", UUID(as_uuid=True)),
    sa.column("action", sa.Text),
    sa.column("outcome", sa.Text),
    sa.column("occurred_at", sa.DateTime(timezone=True)),
    sa.column("occurred_offset", sa.SmallInteger),
    sa.column("recorded_at", sa.DateTime(timezone=True)),
    sa.column("clock_skew", sa.Boolean),
    sa.column("actor", JSONB),
    sa.column("target", JSONB),
    sa.column("before", JSONB),
    sa.column("after", JSONB),
    sa.column("source_ip", INET),
    sa.column("user_agent", sa.Text),
    sa.column("correlation_id", sa.Text),
    sa.column("details", JSONB),
    sa.column("entry_hash", sa.LargeBinary),
)
c = events.c
rollup = sa.table(
    "event_rollup",
    sa.column("hour", sa.DateTime(timezone=True)),
    sa.column("category", sa.Text),
    sa.column("action", sa.Text),
    sa.column("outcome", sa.Text),
    sa.column("n", sa.BigInteger),
)
HOUR = timedelta(hours=1)
_JSON_KEYS = {
    "actor": {"type", "id", "upn", "display_name", "entra_object_id", "tenant_id"},
    "target": {"type", "id", "name"},
}


def field(column: str, key: str) -> sa.ColumnElement[str]:
    """``column ->> 'key'`` with the key as a literal, so expression indexes match."""
    if key not in _JSON_KEYS[column]:
        raise ValueError(f"{column}.{key} is not a known field")
    return sa.literal_column(f"({column} ->> '{key}')", sa.Text)


def utc(col: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """A timestamptz as naive UTC, whatever the session's TimeZone."""
    return col.op("AT TIME ZONE")(sa.literal_column("'UTC'"))


ROW_SCHEMA: dict[str, pl.DataType] = {
    "event_id": pl.String(),
    "occurred_at": pl.Datetime("us", "UTC"),
    "occurred_offset": pl.Int16(),
    "recorded_at": pl.Datetime("us", "UTC"),
    "category": pl.String(),
    "seq": pl.Int64(),
    "action": pl.String(),
    "outcome": pl.String(),
    "actor_type": pl.String(),
    "actor_id": pl.String(),
    "actor_upn": pl.String(),
    "actor_name": pl.String(),
    "actor_oid": pl.String(),
    "target_type": pl.String(),
    "target_id": pl.String(),
    "target_name": pl.String(),
    "source_ip": pl.String(),
    "user_agent": pl.String(),
    "correlation_id": pl.String(),
    "has_before": pl.Boolean(),
    "has_after": pl.Boolean(),
}
ROW_COLUMNS: list[sa.ColumnElement[Any]] = [
    sa.cast(c.event_id, sa.Text).label("event_id"),
    utc(c.occurred_at).label("occurred_at"),
    c.occurred_offset,
    utc(c.recorded_at).label("recorded_at"),
    c.category,
    c.seq,
    c.action,
    c.outcome,
    field("actor", "type").label("actor_type"),
    field("actor", "id").label("actor_id"),
    field("actor", "upn").label("actor_upn"),
    field("actor", "display_name").label("actor_name"),
    field("actor", "entra_object_id").label("actor_oid"),
    field("target", "type").label("target_type"),
    field("target", "id").label("target_id"),
    field("target", "name").label("target_name"),
    sa.func.host(c.source_ip).label("source_ip"),
    c.user_agent,
    c.correlation_id,
    c.before.isnot(None).label("has_before"),
    c.after.isnot(None).label("has_after"),
]
NEWEST_FIRST = (c.occurred_at.desc(), c.event_id.desc())
OLDEST_FIRST = (c.occurred_at.asc(), c.event_id.asc())


def rows_frame(rows: Sequence[Sequence[Any]], schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """A frame with a fixed schema; timestamps arrive as naive UTC (see :func:`utc`)."""
    naive = {k: (pl.Datetime("us") if isinstance(v, pl.Datetime) else v) for k, v in schema.items()}
    frame = pl.DataFrame([tuple(r) for r in rows], schema=naive, orient="row")
    return frame.with_columns(
        pl.col(k).dt.replace_time_zone("UTC")
        for k, v in schema.items()
        if isinstance(v, pl.Datetime)
    )


def check_tz(tz: str) -> str:
    """``tz`` if it is an IANA zone name, else InvalidFilter("tz")."""
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidFilter(
            "tz", f"{tz[:60]!r} is not an IANA time zone such as Europe/Oslo"
        ) from None
    return tz


def local_times(frame: pl.DataFrame, tz: str) -> pl.DataFrame:
    """Every time-zone-aware column of ``frame`` shown in ``tz`` (InvalidFilter if unknown)."""
    zone = check_tz(tz)
    cols = [c for c, t in frame.schema.items() if isinstance(t, pl.Datetime) and t.time_zone]
    return frame.with_columns(pl.col(c).dt.convert_time_zone(zone) for c in cols)
