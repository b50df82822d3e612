"""Arguments PostgreSQL text cannot hold (NUL, a lone surrogate) in a drilldown or a filter are
an InvalidFilter naming the argument, never a driver error (issue 10)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from auditlog.errors import InvalidFilter
from auditlog.query.drilldown import correlation, get_event, target_history
from auditlog.query.filters import Filters
from auditlog.query.timeline import histogram, search
from auditlog.store import AuditLog
from tests.support.factories import valid

UNHOLDABLE = ["chg\x00-1", "\x00", "chg-\ud800"]

DRILLDOWNS: dict[str, Callable[[Engine, str], Any]] = {
    "correlation_id": lambda e, v: correlation(e, v),
    "target_type": lambda e, v: target_history(e, v, "mfa-required"),
    "target_id": lambda e, v: target_history(e, "policy", v),
    "event_id": lambda e, v: get_event(e, v),
}


@pytest.mark.parametrize("value", UNHOLDABLE)
@pytest.mark.parametrize("name", DRILLDOWNS)
def test_a_drilldown_argument_postgres_cannot_hold_is_an_invalid_filter_naming_it(
    log: AuditLog, reader_engine: Engine, name: str, value: str
) -> None:
    log.record(valid(correlation_id="chg-1"))
    with pytest.raises(InvalidFilter) as caught:
        DRILLDOWNS[name](reader_engine, value)
    assert caught.value.field == name
    assert str(caught.value).startswith(f"filter {name}: ")


def test_a_drilldown_argument_that_is_fine_still_finds_its_events(
    log: AuditLog, reader_engine: Engine
) -> None:
    log.record(valid(correlation_id="chg-1"))
    assert correlation(reader_engine, "chg-1").height == 1
    assert target_history(reader_engine, "policy", "mfa-required").height == 1


@pytest.mark.parametrize("value", UNHOLDABLE)
@pytest.mark.parametrize(
    "key", ["actor", "target_type", "target_id", "target_name", "correlation_id", "q", "action"]
)
def test_a_filter_value_postgres_cannot_hold_is_refused_naming_the_filter(
    key: str, value: str
) -> None:
    with pytest.raises(InvalidFilter) as caught:
        Filters.from_query_params({key: value})
    assert caught.value.field in {key, "text"}
    assert "NUL" in caught.value.reason or "surrogate" in caught.value.reason


@pytest.mark.parametrize("value", UNHOLDABLE)
def test_a_cursor_or_time_zone_postgres_cannot_hold_is_an_invalid_filter(
    log: AuditLog, reader_engine: Engine, value: str
) -> None:
    log.record(valid())
    with pytest.raises(InvalidFilter, match="cursor"):
        search(reader_engine, Filters(), after=value)
    with pytest.raises(InvalidFilter, match="tz"):
        histogram(reader_engine, Filters(), tz=f"Europe/{value}")
