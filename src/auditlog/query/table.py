"""The columns the dashboard reads from an event row, and building Polars frames from them.

Shared by :mod:`auditlog.query` (the timeline) and :mod:`auditlog.drilldown`. The tables are
:mod:`auditlog.db.tables` (``events`` and ``rollup`` here); the JSON keys used in SQL come only
from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import polars as pl
import sqlalchemy as sa

from auditlog.columns import polars_type
from auditlog.db.tables import event_rollup, events
from auditlog.errors import InvalidFilter

c = events.c
rollup = event_rollup
HOUR = timedelta(hours=1)
_JSON_KEYS = {
    "actor": {"type", "id", "upn", "display_name", "entra_object_id", "tenant_id"},
    "target": {"type", "id", "name"},
    "source": {"type", "id", "name"},
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
    "event_id": polars_type("event_id"),
    "occurred_at": polars_type("occurred_at"),
    "occurred_offset": polars_type("occurred_offset"),
    "recorded_at": polars_type("recorded_at"),
    "category": polars_type("category"),
    "seq": polars_type("seq"),
    "action": polars_type("action"),
    "outcome": polars_type("outcome"),
    "actor_type": pl.String(),
    "actor_id": pl.String(),
    "actor_upn": pl.String(),
    "actor_name": pl.String(),
    "actor_oid": pl.String(),
    "target_type": pl.String(),
    "target_id": pl.String(),
    "target_name": pl.String(),
    "source_ip": pl.String(),  # host(inet): the address as text
    "source_name": pl.String(),  # the name of the API key that submitted it, or null
    "user_agent": polars_type("user_agent"),
    "correlation_id": polars_type("correlation_id"),
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
    field("source", "name").label("source_name"),
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
