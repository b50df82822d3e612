"""Drilldowns from one event or one correlation id: related events, a summary, one event's
states, and the change story of a target."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from auditlog import diff as _diff
from auditlog.errors import InvalidFilter, NotFound
from auditlog.query.filters import check_text
from auditlog.query.table import OLDEST_FIRST, ROW_COLUMNS, ROW_SCHEMA, c, field, rows_frame

MAX_RELATED_ROWS = 10_000  # correlation drilldown / target history


@dataclass(frozen=True)
class CorrelationSummary:
    """What a correlation id ties together."""

    events: int
    actors: list[str]
    targets: list[str]
    categories: dict[str, int]
    outcomes: dict[str, int]
    first: datetime | None
    last: datetime | None
    span: timedelta


def correlation(engine: Engine, correlation_id: str, limit: int = MAX_RELATED_ROWS) -> pl.DataFrame:
    """Every event with ``correlation_id`` across categories, oldest first (the columns of
    :data:`ROW_SCHEMA`), at most ``limit``. Empty frame when there are none.
    InvalidFilter for an id PostgreSQL text cannot hold (NUL, a lone surrogate)."""
    correlation_id = check_text("correlation_id", correlation_id)
    stmt = (
        sa.select(*ROW_COLUMNS)
        .where(c.correlation_id == correlation_id)
        .order_by(*OLDEST_FIRST)
        .limit(limit)
    )
    with engine.connect() as conn:
        return rows_frame(conn.execute(stmt).all(), ROW_SCHEMA)


def _tally(frame: pl.DataFrame, column: str) -> dict[str, int]:
    return dict(frame.get_column(column).value_counts(sort=True).iter_rows())


def correlation_summary(frame: pl.DataFrame) -> CorrelationSummary:
    """Actors, targets, categories, outcomes and time span of a :func:`correlation` frame."""
    actor = pl.coalesce("actor_upn", "actor_name", "actor_id", "actor_oid", pl.lit("?"))
    target = pl.format("{}:{}", "target_type", pl.coalesce("target_name", "target_id"))
    labels = frame.select(actor.alias("actor"), target.alias("target"))
    times: list[datetime] = frame.get_column("occurred_at").to_list()
    first, last = (min(times), max(times)) if times else (None, None)
    return CorrelationSummary(
        events=frame.height,
        actors=labels.get_column("actor").unique(maintain_order=True).to_list(),
        targets=labels.get_column("target").unique(maintain_order=True).to_list(),
        categories=_tally(frame, "category"),
        outcomes=_tally(frame, "outcome"),
        first=first,
        last=last,
        span=(last - first) if first and last else timedelta(0),
    )


def _event_id(event_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(event_id))
    except ValueError:
        raise InvalidFilter("event_id", f"{str(event_id)[:60]!r} is not a UUID") from None


def get_event(engine: Engine, event_id: str) -> dict[str, Any]:
    """One event: the row's columns with occurred_at/recorded_at as aware UTC datetimes,
    source_ip as text, actor/target/before/after/details and source (the API key that
    submitted it, or None) as Python values, entry_hash as hex. Raises NotFound."""
    stmt = sa.select(
        *ROW_COLUMNS,
        c.clock_skew,
        c.actor,
        c.target,
        c.before,
        c.after,
        c.details,
        c.source,
        sa.func.encode(c.entry_hash, "hex").label("entry_hash"),
    ).where(c.event_id == _event_id(event_id))
    with engine.connect() as conn:
        row = conn.execute(stmt).mappings().first()
    if row is None:
        raise NotFound(f"event {event_id} is not in the log (purged, or a wrong id)")
    out = dict(row)
    for key in ("occurred_at", "recorded_at"):
        out[key] = out[key].replace(tzinfo=UTC)
    return out


def target_history(
    engine: Engine, target_type: str, target_id: str, limit: int = MAX_RELATED_ROWS
) -> pl.DataFrame:
    """Every event on one target, oldest first: the :data:`ROW_SCHEMA` columns plus
    ``before`` and ``after`` (JSON text or null) and ``summary`` (the diff in one line).
    InvalidFilter for a type or id PostgreSQL text cannot hold (NUL, a lone surrogate)."""
    target_type = check_text("target_type", target_type)
    target_id = check_text("target_id", target_id)
    stmt = (
        sa.select(*ROW_COLUMNS, c.before, c.after)
        .where(field("target", "type") == target_type, field("target", "id") == target_id)
        .order_by(*OLDEST_FIRST)
        .limit(limit)
    )
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    schema = ROW_SCHEMA | {"before": pl.String(), "after": pl.String(), "summary": pl.String()}
    return rows_frame([_with_summary(r) for r in rows], schema)


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, sort_keys=True)


def _with_summary(row: Sequence[Any]) -> tuple[Any, ...]:
    *head, before, after = row
    return (*head, _json(before), _json(after), _diff.describe(before, after))
