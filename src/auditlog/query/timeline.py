"""Timeline queries: filters -> SQL (SQLAlchemy Core, bound parameters) -> Polars frames.

Public API::

    Filters, PRESETS                      (from auditlog.query.filters)
    search(engine, f, ...)       -> Page(rows, next_cursor, page_size)   keyset, newest first
    count(engine, f)             -> int
    histogram(engine, f, tz=...) -> DataFrame(bucket, category, n)
    bucket_width(f, ...)         -> timedelta chosen from the time range
    action_counts(engine, f)     -> DataFrame(action, n)   (ignores f.actions)
    timeline(engine, f, ...)     -> Timeline(count, histogram, page, bucket) in one connection
    correlation(engine, cid)     -> DataFrame of every event with that correlation id, in order
    correlation_summary(frame)   -> CorrelationSummary
    get_event(engine, event_id)  -> dict (one event, before/after as Python values)
    target_history(engine, type, id) -> DataFrame (oldest first, before/after JSON + summary)
    format_times(frame, tz)      -> frame with "<col>_local" text columns showing the offset

Every filter value reaches SQL as a bound parameter; JSON keys and columns come from
:mod:`auditlog.event_table` only. Drilldowns live in :mod:`auditlog.drilldown` and are
re-exported here. Paging is keyset on (occurred_at DESC, event_id DESC), served by the
``events_occurred_at`` index, so page N costs what page 1 costs.

Errors: :class:`InvalidFilter` (a bad filter value, naming the field), ``NotFound``.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import INET
from sqlalchemy.engine import Connection, Engine

from auditlog.errors import InvalidFilter
from auditlog.model import parse_timestamp, utc_text
from auditlog.query.filters import Filters
from auditlog.query.table import (
    HOUR,
    NEWEST_FIRST,
    ROW_COLUMNS,
    ROW_SCHEMA,
    c,
    check_tz,
    field,
    rollup,
    rows_frame,
    utc,
)

MAX_PAGE_SIZE = 1000
BUCKETS = [timedelta(minutes=m) for m in (1, 5, 10, 15, 30, 60, 180, 360, 720, 1440, 10080)]
MAX_BARS = 150
_WEEK_ORIGIN = datetime(2000, 1, 3)  # a Monday: weekly buckets start on Mondays
_FIRST_UTC: sa.ColumnElement[datetime] = sa.literal_column(
    "'0001-01-01 00:00:00'::timestamp", sa.DateTime
)


@dataclass(frozen=True)
class Page:
    """One page of timeline rows, newest first.

    ``rows`` columns are :data:`ROW_SCHEMA`: event_id, occurred_at (UTC), occurred_offset
    (minutes east of UTC as sent), recorded_at, category, seq, action, outcome, actor_type,
    actor_id, actor_upn, actor_name, actor_oid, target_type, target_id, target_name, source_ip,
    source_name (the name of the API key that submitted it, or null), user_agent,
    correlation_id, has_before, has_after. ``next_cursor`` is None on the last page.
    """

    rows: pl.DataFrame
    next_cursor: str | None
    page_size: int


@dataclass(frozen=True)
class Timeline:
    """The timeline's first view: matched count, histogram, one page of rows."""

    count: int
    histogram: pl.DataFrame
    page: Page
    bucket: timedelta


# -- filters -> WHERE ------------------------------------------------------------------------


def _like_literal(text: str) -> str:
    """A LIKE pattern body matching ``text`` literally (backslash is LIKE's escape)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _json_text(text: str) -> str:
    """``text`` as it appears inside a JSON string in jsonb's text output."""
    return json.dumps(text, ensure_ascii=False)[1:-1]


def _actor_clause(value: str) -> sa.ColumnElement[bool]:
    arms = [
        sa.func.lower(field("actor", "upn")) == sa.func.lower(value),
        field("actor", "id") == value,
        sa.func.lower(field("actor", "display_name")).like(
            sa.func.lower(_like_literal(value)) + "%"
        ),
    ]
    with contextlib.suppress(ValueError):
        arms.append(field("actor", "entra_object_id") == str(uuid.UUID(value)))
    return sa.or_(*arms)


def _text_clause(value: str) -> sa.ColumnElement[bool]:
    haystack = sa.func.concat_ws(
        " ", sa.cast(c.before, sa.Text), sa.cast(c.after, sa.Text), sa.cast(c.details, sa.Text)
    )
    # Match the text as typed (keys, structure) or as it reads inside a JSON string value.
    forms = dict.fromkeys((value, _json_text(value)))
    return sa.or_(*(haystack.ilike("%" + _like_literal(form) + "%") for form in forms))


def _facets(cols: Any, f: Filters, skip_actions: bool = False) -> list[sa.ColumnElement[bool]]:
    """Category / action / outcome conditions on ``events`` or ``event_rollup`` columns."""
    out = []
    for col, values in ((cols.category, f.categories), (cols.outcome, f.outcomes)):
        if values:
            out.append(col.in_(values))
    if f.actions and not skip_actions:
        out.append(cols.action.in_(f.actions))
    return out


def where_clauses(
    f: Filters, now: datetime | None, skip_actions: bool = False
) -> list[sa.ColumnElement[bool]]:
    start, end = f.window(now)
    out = _facets(c, f, skip_actions)
    if start is not None:
        out.append(c.occurred_at >= start)
    if end is not None:
        out.append(c.occurred_at < end)
    if f.actor:
        out.append(_actor_clause(f.actor))
    if f.target_type:
        out.append(field("target", "type") == f.target_type)
    if f.target_id:
        out.append(field("target", "id") == f.target_id)
    if f.target_name:
        out.append(field("target", "name").ilike("%" + _like_literal(f.target_name) + "%"))
    if f.ip:
        out.append(c.source_ip.op("<<=")(sa.cast(f.ip, INET)))
    if f.correlation_id:
        out.append(c.correlation_id == f.correlation_id)
    if f.text:
        out.append(_text_clause(f.text))
    return out


# -- the facet source: whole hours from event_rollup, the rest from events -------------------


def _facet_only(f: Filters) -> bool:
    """True when every filter is one the rollup keeps (time, category, action, outcome)."""
    rest = (f.actor, f.target_type, f.target_id, f.target_name, f.ip, f.correlation_id, f.text)
    return not any(rest)


def _hour_floor(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _hour_ceil(t: datetime) -> datetime:
    floor = _hour_floor(t)
    return floor if floor == t else floor + HOUR


def _source(
    f: Filters, now: datetime | None, use_rollup: bool, skip_actions: bool = False
) -> sa.Subquery:
    """Rows (ts, category, action, outcome, n) that add up to the matching events.

    With ``use_rollup`` (and only time/category/action/outcome filters) whole UTC hours come
    from ``event_rollup`` (ts = the hour, n = its count) and only the partial hours at the
    window's edges from ``events`` (n = 1 each); otherwise every match from ``events``.
    """

    def raw(*extra: sa.ColumnElement[bool]) -> sa.Select[Any]:
        cols = (c.occurred_at.label("ts"), c.category, c.action, c.outcome)
        return sa.select(*cols, sa.literal(1, sa.BigInteger).label("n")).where(
            *where_clauses(f, now, skip_actions), *extra
        )

    start, end = f.window(now)
    lo = _hour_ceil(start) if start else None
    hi = _hour_floor(end) if end else None
    if not (use_rollup and _facet_only(f)) or (lo and hi and lo >= hi):
        return raw().subquery()
    r = rollup.c
    whole = sa.select(r.hour.label("ts"), r.category, r.action, r.outcome, r.n).where(
        *_facets(r, f, skip_actions),
        *([r.hour >= lo] if lo else []),
        *([r.hour < hi] if hi else []),
    )
    parts = [whole]
    if start is not None and lo is not None and lo > start:
        parts.append(raw(c.occurred_at < lo))
    if end is not None and hi is not None and hi < end:
        parts.append(raw(c.occurred_at >= hi))
    return sa.union_all(*parts).subquery()


_ZONE_RULES = (datetime(1800, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))


def _whole_hour_zone(tz: str, start: datetime, end: datetime) -> bool:
    """True when ``tz`` is a whole number of hours from UTC across [start, end], so UTC hours
    fall wholly inside its local buckets.

    Sampled at both ends and weekly in between, the range clamped to 1800..2100: before its
    first transition a zone keeps one offset (local mean time) and after its last one it
    repeats one yearly rule, so times outside add no offset (and a range over years 1..9999
    stays cheap and never converts a time to a local year 0 or 10000).
    """
    zone = ZoneInfo(tz)

    def whole(t: datetime) -> bool:
        off = t.astimezone(zone).utcoffset() or timedelta(0)
        return not off % HOUR

    first, last = _ZONE_RULES
    t, stop = min(max(start, first), last), min(max(end, first), last)
    week = timedelta(days=7)
    while t < stop:
        if not whole(t):
            return False
        t = min(t + week, stop)
    return whole(stop)


# -- cursors -----------------------------------------------------------------------------------


def _encode_cursor(occurred_at: datetime, event_id: str) -> str:
    return f"{utc_text(occurred_at)}~{event_id}"


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        ts, _, eid = cursor.partition("~")
        return parse_timestamp(ts), uuid.UUID(eid)
    except (ValueError, TypeError):
        raise InvalidFilter(
            "cursor", "not a cursor from a previous page; start again from the first page"
        ) from None


# -- frames --------------------------------------------------------------------------------


# -- the timeline ----------------------------------------------------------------------------


def _search(
    conn: Connection, f: Filters, page_size: int, after: str | None, now: datetime | None
) -> Page:
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidFilter("page_size", f"{page_size} is not between 1 and {MAX_PAGE_SIZE}")
    clauses = where_clauses(f, now)
    if after:
        ts, eid = _decode_cursor(after)
        clauses.append(sa.tuple_(c.occurred_at, c.event_id) < sa.tuple_(ts, eid))
    stmt = sa.select(*ROW_COLUMNS).where(*clauses).order_by(*NEWEST_FIRST).limit(page_size + 1)
    rows = conn.execute(stmt).all()
    more = len(rows) > page_size
    frame = rows_frame(rows[:page_size], ROW_SCHEMA)
    cursor = None
    if more:
        last = rows[page_size - 1]
        cursor = _encode_cursor(last.occurred_at.replace(tzinfo=UTC), last.event_id)
    return Page(frame, cursor, page_size)


def search(
    engine: Engine,
    filters: Filters,
    page_size: int = 50,
    after: str | None = None,
    now: datetime | None = None,
) -> Page:
    """One page of matching events, newest first, keyset-paged on (occurred_at, event_id).

    ``after`` is a previous page's ``next_cursor``; an unreadable cursor raises InvalidFilter.
    ``now`` pins a relative (``last``) window, e.g. across the pages of one view.
    """
    with engine.connect() as conn:
        return _search(conn, filters, page_size, after, now)


def _count(conn: Connection, f: Filters, now: datetime | None) -> int:
    src = _source(f, now, use_rollup=True)
    return int(conn.scalar(sa.select(sa.func.sum(src.c.n))) or 0)


def count(engine: Engine, filters: Filters, now: datetime | None = None) -> int:
    """How many events match ``filters``."""
    with engine.connect() as conn:
        return _count(conn, filters, now)


def bucket_width(
    filters: Filters, now: datetime | None = None, bounds: tuple[datetime, datetime] | None = None
) -> timedelta:
    """The histogram bucket for the filter's range: the smallest of :data:`BUCKETS` giving
    at most :data:`MAX_BARS` bars.

    ``bounds`` (the data's first and last event) fills an open end of the range; with
    neither, the range runs to ``now``.
    """
    start, end = filters.window(now)
    end = (
        end or (bounds[1] if bounds and filters.last is None else None) or now or datetime.now(UTC)
    )
    start = start or (bounds[0] if bounds else end - timedelta(days=1))
    span = max(end - start, timedelta(0))
    return next((b for b in BUCKETS if span / b <= MAX_BARS), BUCKETS[-1])


def _bounds(conn: Connection) -> tuple[datetime, datetime] | None:
    # As naive UTC (see table.utc): a session time zone west of UTC would turn 0001-01-01Z
    # into a year-0 local time, which no Python datetime holds.
    lo, hi = utc(sa.func.min(c.occurred_at)), utc(sa.func.max(c.occurred_at))
    row = conn.execute(sa.select(lo, hi)).one()
    return None if row[0] is None else (row[0].replace(tzinfo=UTC), row[1].replace(tzinfo=UTC))


def _histogram(
    conn: Connection, f: Filters, tz: str, now: datetime | None
) -> tuple[pl.DataFrame, timedelta]:
    start, end = f.window(now)
    bounds = _bounds(conn) if start is None or (end is None and f.last is None) else None
    step = bucket_width(f, now, bounds)
    span_lo = start or (bounds[0] if bounds else None)
    span_hi = end or (bounds[1] if bounds else None) or now or datetime.now(UTC)
    whole = step >= HOUR and (span_lo is None or _whole_hour_zone(tz, span_lo, span_hi))
    src = _source(f, now, use_rollup=whole)
    zone = sa.bindparam("tz", tz, sa.Text)
    local = sa.func.date_bin(step, src.c.ts.op("AT TIME ZONE")(zone), _WEEK_ORIGIN)
    # The first bucket of an event in year 1 may start before it (in BC): it starts at
    # 0001-01-01 UTC instead, the earliest time Python (and so every reader) has.
    bucket = sa.func.greatest(utc(local.op("AT TIME ZONE")(zone)), _FIRST_UTC).label("bucket")
    stmt = (
        sa.select(bucket, src.c.category, sa.func.sum(src.c.n).label("n"))
        .group_by(bucket, src.c.category)
        .order_by(bucket, src.c.category)
    )
    schema = {"bucket": pl.Datetime("us", "UTC"), "category": pl.String(), "n": pl.Int64()}
    return rows_frame(conn.execute(stmt).all(), schema), step


def histogram(
    engine: Engine, filters: Filters, tz: str = "UTC", now: datetime | None = None
) -> pl.DataFrame:
    """Events per (bucket, category): columns bucket (start, tz-aware UTC), category, n.

    Buckets are :func:`bucket_width` wide and aligned to local midnight (weeks: Mondays)
    in ``tz``. Empty buckets are absent.
    """
    with engine.connect() as conn:
        return _histogram(conn, filters, check_tz(tz), now)[0]


def action_counts(engine: Engine, filters: Filters, now: datetime | None = None) -> pl.DataFrame:
    """Matching events per action (columns action, n; most first), ignoring
    ``filters.actions`` so that the choices do not vanish once one is picked."""
    src = _source(filters, now, use_rollup=True, skip_actions=True)
    n = sa.func.sum(src.c.n).label("n")
    stmt = sa.select(src.c.action, n).group_by(src.c.action).order_by(n.desc(), src.c.action)
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    return rows_frame(rows, {"action": pl.String(), "n": pl.Int64()})


def timeline(
    engine: Engine,
    filters: Filters,
    page_size: int = 50,
    after: str | None = None,
    tz: str = "UTC",
    now: datetime | None = None,
) -> Timeline:
    """Count, histogram and one page over one connection: the timeline's first view.

    ``now`` defaults to the current time, fixed once so all three see the same window.
    """
    check_tz(tz)
    now = now or datetime.now(UTC)
    with engine.connect() as conn:
        hist, step = _histogram(conn, filters, tz, now)
        page = _search(conn, filters, page_size, after, now)
    # The histogram counts every match once, so its total is the count (one scan, not two).
    return Timeline(int(hist.get_column("n").sum()), hist, page, step)


def format_times(
    frame: pl.DataFrame, tz: str, columns: Sequence[str] = ("occurred_at",)
) -> pl.DataFrame:
    """Add ``<column>_local`` text columns: the time in ``tz`` with its offset visible
    (``2026-11-28 10:15:02 +01:00``). Raises InvalidFilter("tz") for an unknown zone."""
    check_tz(tz)
    return frame.with_columns(
        pl.col(col)
        .dt.convert_time_zone(tz)
        .dt.strftime("%Y-%m-%d %H:%M:%S %:z")
        .alias(f"{col}_local")
        for col in columns
    )
