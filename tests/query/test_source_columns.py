"""The timeline and the event detail show which API key submitted an event."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from auditlog.query.drilldown import get_event
from auditlog.query.filters import Filters
from auditlog.query.timeline import search
from auditlog.store import AuditLog, prepare_many
from tests.support.factories import valid

KEY = {"type": "api_key", "id": "k-7f3a", "name": "Billing service"}


def test_timeline_rows_name_the_submitting_key_and_the_detail_holds_it(
    log: AuditLog, reader_engine: Engine
) -> None:
    good, _ = prepare_many([valid(correlation_id="via-api")], log.settings, source=KEY)
    (sent,) = log.append_prepared(good)
    (direct,) = log.record_many([valid(correlation_id="in-process")])
    rows = search(reader_engine, Filters()).rows
    names = dict(zip(rows["event_id"], rows["source_name"], strict=True))
    assert names == {sent.event_id: "Billing service", direct.event_id: None}
    assert get_event(reader_engine, sent.event_id)["source"] == KEY
    assert get_event(reader_engine, direct.event_id)["source"] is None
