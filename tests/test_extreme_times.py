"""Every read path is correct for any occurred_at the log stores, years 0001..9999 in UTC
(issue 10, item 4): count, histogram, timeline paging, charts, export, bundle and verify."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from auditlog.charts import correlation_timeline_figure, histogram_figure
from auditlog.evidence.bundle import write_bundle
from auditlog.evidence.export import write_export
from auditlog.evidence.verify import verify_bundle
from auditlog.integrity.database import verify_database
from auditlog.integrity.keys import Signer
from auditlog.query.drilldown import correlation, correlation_summary, get_event
from auditlog.query.filters import Filters
from auditlog.query.timeline import (
    action_counts,
    bucket_width,
    count,
    format_times,
    histogram,
    search,
    timeline,
)
from auditlog.settings import Settings
from auditlog.store import AuditLog
from tests.support.factories import ACTOR, valid

FIRST = datetime(1, 1, 1, tzinfo=UTC)
LAST = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
WIDE = {"occurred_past_days": 4_000_000, "occurred_future_hours": 10**8}


@pytest.fixture
def wide_log(engine: Engine, settings: Settings, signer: Signer) -> AuditLog:
    return AuditLog(engine, settings.replace(store=WIDE), signer=signer)


def _event(ts: datetime, n: int, offset_minutes: int = 0) -> dict[str, Any]:
    return _edge_event(_with_offset(ts, offset_minutes), n)


def _check_every_read_path(log: AuditLog, reader: Engine, edge: list[datetime]) -> None:
    """Every read path over the whole log, which holds the ``edge`` events (correlation id
    "edge") and the export events earlier checks recorded; compared with plain SQL."""
    stored = _stored_times(reader)
    assert sorted(_stored_times(reader, "edge")) == sorted(edge)
    now = datetime.now(UTC)
    everything = Filters()
    assert count(reader, everything) == len(stored)
    hist = histogram(reader, everything, tz="Europe/Oslo")
    assert int(hist.get_column("n").sum()) == len(stored)
    view = timeline(reader, everything, page_size=7, tz="America/New_York", now=now)
    assert view.count == len(stored)
    histogram_figure(view.histogram, "America/New_York", view.bucket)
    seen: list[datetime] = []
    page = view.page
    while True:
        seen += page.rows.get_column("occurred_at").to_list()
        format_times(page.rows, "Pacific/Kiritimati")
        if page.next_cursor is None:
            break
        page = search(reader, everything, page_size=7, after=page.next_cursor, now=now)
    assert sorted(seen, reverse=True) == seen
    assert sorted(seen) == sorted(stored)
    assert int(action_counts(reader, everything).get_column("n").sum()) == len(stored)
    assert bucket_width(Filters(time_from=FIRST, time_to=LAST)) == timedelta(days=7)
    related = correlation(reader, "edge")
    summary = correlation_summary(related)
    assert (summary.events, summary.first, summary.last) == (len(edge), min(edge), max(edge))
    for tz in ("UTC", "Pacific/Kiritimati", "Pacific/Pago_Pago"):
        correlation_timeline_figure(related, tz)
        span = histogram(reader, Filters(time_from=FIRST, time_to=LAST), tz=tz)
        assert int(span.get_column("n").sum()) == len([t for t in stored if t < LAST])
        histogram_figure(span, tz)
    _check_exports(log, reader, edge)
    assert verify_database(reader).ok


def _check_exports(log: AuditLog, reader: Engine, edge: list[datetime]) -> None:
    mine = Filters(correlation_id="edge")
    out = io.BytesIO()
    assert write_export(reader, out, mine, "ndjson", log=log, actor=ACTOR).rows == len(edge)
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    assert sorted(datetime.fromisoformat(x["occurred_at"]) for x in lines) == sorted(edge)
    csv_out = io.BytesIO()
    assert write_export(reader, csv_out, mine, "csv", log=log, actor=ACTOR).rows == len(edge)
    bundle = io.BytesIO()
    write_bundle(reader, bundle, mine, log=log, actor=ACTOR)
    report = verify_bundle(io.BytesIO(bundle.getvalue()))
    assert report.ok, report.problems


def test_events_at_year_1_and_year_9999_leave_every_read_path_working(
    wide_log: AuditLog, reader_engine: Engine
) -> None:
    wide_log.record_many([_event(FIRST, 0), _event(LAST, 1, offset_minutes=-(23 * 60 + 59))])
    _check_every_read_path(wide_log, reader_engine, [FIRST, LAST])
    one = search(reader_engine, Filters(), page_size=1)
    assert get_event(reader_engine, one.rows.get_column("event_id")[0])["occurred_at"] == LAST


extreme = st.one_of(
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(1, 1, 3)),
    st.datetimes(
        min_value=datetime(9999, 12, 29), max_value=datetime(9999, 12, 31, 23, 59, 59, 999999)
    ),
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59, 999999)),
).map(lambda t: t.replace(tzinfo=UTC))
offsets = st.integers(-(23 * 60 + 59), 23 * 60 + 59)


@hsettings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=st.lists(st.tuples(extreme, offsets), min_size=1, max_size=3))
def test_any_storable_occurred_at_leaves_every_read_path_working(
    wide_log: AuditLog, reader_engine: Engine, batch: list[tuple[datetime, int]]
) -> None:
    # Examples share the database: each checks everything stored so far.
    already = _stored_times(reader_engine, "edge")
    shown = [_with_offset(ts, off) for ts, off in batch]
    wide_log.record_many([_edge_event(t, i) for i, t in enumerate(shown)])
    _check_every_read_path(wide_log, reader_engine, already + [t.astimezone(UTC) for t in shown])


def _edge_event(ts: datetime, n: int) -> dict[str, Any]:
    return valid(occurred_at=ts.isoformat(), details={"n": n}, correlation_id="edge")


def _with_offset(ts: datetime, minutes: int) -> datetime:
    """``ts`` as sent with a UTC offset of ``minutes``, where that is a datetime at all."""
    try:
        return ts.astimezone(timezone(timedelta(minutes=minutes)))
    except OverflowError:
        return ts


def _stored_times(reader: Engine, correlation_id: str | None = None) -> list[datetime]:
    where = "WHERE correlation_id = %(cid)s" if correlation_id else ""
    with reader.connect() as conn:
        rows = conn.exec_driver_sql(
            f"SELECT occurred_at AT TIME ZONE 'UTC' FROM events {where}", {"cid": correlation_id}
        ).all()
    return [r[0].replace(tzinfo=UTC) for r in rows]
