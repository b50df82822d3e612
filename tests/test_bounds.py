"""Bounds of one event (issue 10, item 4): nesting depth and key counts checked before anything
recurses, duplicate JSON keys refused (RFC 7493), occurred_at within a window, and every problem
of an event reported at once, each with its path."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from auditlog.cli.app import app
from auditlog.errors import BatchRejected, ConfigError, InvalidEvent
from auditlog.model import AuditEvent, deep_path, parse_event, window_problem
from auditlog.settings import Settings, StoreSettings, load_settings
from auditlog.store import AuditLog, prepare
from tests.support.factories import valid

DEEP = 10_000


def _text(event: dict[str, Any], details_json: str) -> str:
    """``event`` as JSON text with ``details`` replaced by the given raw JSON text."""
    head = json.dumps({**event, "details": "@@"})
    return head.replace('"@@"', details_json)


def _nested_dict(depth: int, key: str = "k") -> dict[str, Any]:
    root: dict[str, Any] = {}
    node = root
    for _ in range(depth - 1):
        node[key] = {}
        node = node[key]
    return root


def _problems(raw: Any, store: StoreSettings | None = None) -> list[tuple[str, str]]:
    with pytest.raises(InvalidEvent) as caught:
        parse_event(raw, store or StoreSettings())
    return caught.value.problems


# --- nesting ----------------------------------------------------------------------------------


def test_json_nested_ten_thousand_deep_is_an_invalid_event_naming_the_path() -> None:
    text = _text(valid(), '{"a": {"b": [0, 1, 2, ' + "[" * DEEP + "]" * DEEP + "]}}")
    problems = _problems(text)
    assert problems == [("details.a.b[3]" + "[0]" * 28, "nesting deeper than 32")]


def test_deep_json_as_bytes_and_as_an_array_at_the_top_are_refused_too() -> None:
    assert _problems(_text(valid(), "[" * DEEP + "]" * DEEP).encode())[0][1] == (
        "nesting deeper than 32"
    )
    path, reason = _problems("[" * DEEP)[0]
    assert path.startswith("event[0]")
    assert reason == "nesting deeper than 32"


def test_nesting_up_to_the_limit_is_accepted_and_one_more_is_refused() -> None:
    # the event object is level 1, details level 2: 31 more levels inside details reach 32
    ok = _nested_dict(31)
    assert parse_event(valid(details=ok)).details == ok
    assert parse_event(json.dumps(valid(details=ok))).details == ok
    too_deep = _nested_dict(32)
    path = "details" + ".k" * 31
    assert _problems(valid(details=too_deep)) == [(path, "nesting deeper than 32")]
    assert _problems(json.dumps(valid(details=too_deep))) == [(path, "nesting deeper than 32")]


def test_a_python_value_nested_ten_thousand_deep_or_referring_to_itself_is_refused() -> None:
    deep: list[Any] = []
    node = deep
    for _ in range(DEEP):
        node.append([])
        node = node[0]
    assert _problems(valid(after={"x": deep}))[0] == (
        "after.x" + "[0]" * 30,
        "nesting deeper than 32",
    )
    cycle: dict[str, Any] = {}
    cycle["self"] = cycle
    path, reason = _problems(valid(before=cycle))[0]
    assert path == "before" + ".self" * 31
    assert reason == "nesting deeper than 32"


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    text = _text(valid(), json.dumps({"note": "[" * DEEP + "{" * DEEP}))
    assert parse_event(text).details["note"].startswith("[[[")


def test_many_shallow_brackets_are_accepted() -> None:
    details = {"items": [{"n": i} for i in range(200)]}
    assert parse_event(json.dumps(valid(details=details))).details == details


def test_the_depth_limit_is_a_setting() -> None:
    store = StoreSettings(max_json_depth=3)
    assert _problems(valid(details={"a": {"b": {"c": 1}}}), store) == [
        ("details.a.b", "nesting deeper than 3")
    ]
    assert parse_event(valid(details={"a": 1}), store).details == {"a": 1}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-9, 9) | st.text('ab[]{}"\\', max_size=4),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text("xy", max_size=2), inner, max_size=3)
    ),
    max_leaves=30,
)


def _depth(value: Any) -> int:
    """Nesting depth of a small JSON value, counted the obvious (recursive) way."""
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


@hsettings(max_examples=300, deadline=None)
@given(value=json_values, limit=st.integers(1, 6))
def test_deep_path_finds_nesting_exactly_when_it_exceeds_the_limit(value: Any, limit: int) -> None:
    found = deep_path(json.dumps(value), limit)
    assert (found is not None) == (_depth(value) > limit)


# --- key counts and duplicate keys --------------------------------------------------------------


def test_an_object_with_too_many_keys_is_refused_by_path_for_text_and_dicts() -> None:
    store = StoreSettings(max_object_keys=12)  # the event object itself has 10
    big = {"inner": {str(i): i for i in range(13)}}
    for raw in (valid(details=big), json.dumps(valid(details=big))):
        assert _problems(raw, store) == [
            ("details.inner", "13 keys, more than 12 in one object (setting max_object_keys)")
        ]
    assert parse_event(valid(details={str(i): i for i in range(12)}), store)


def test_the_default_key_limit_is_a_thousand() -> None:
    assert parse_event(valid(details={str(i): i for i in range(1000)}))
    path, reason = _problems(valid(details={str(i): i for i in range(1001)}))[0]
    assert path == "details"
    assert reason.startswith("1001 keys, more than 1000")


def test_a_second_top_level_action_is_refused_not_last_wins() -> None:
    text = json.dumps(valid())[:-1] + ', "action": "policy.deleted"}'
    assert _problems(text) == [("action", "duplicate key")]


def test_duplicate_keys_at_any_depth_are_all_named_with_their_paths() -> None:
    details = '{"x": {"action": 1, "action": 2}, "list": [{"a": 1}, {"b": 1, "b": 2}]}'
    text = _text(valid(), details)
    assert _problems(text) == [
        ("details.x", 'duplicate key "action"'),
        ("details.list[1]", 'duplicate key "b"'),
    ]


def test_equal_keys_in_different_objects_are_not_duplicates() -> None:
    text = _text(valid(), '{"type": 1, "inner": {"type": 2}}')
    assert parse_event(text).details == {"type": 1, "inner": {"type": 2}}


def test_a_duplicate_key_is_reported_together_with_the_events_other_problems() -> None:
    text = json.dumps(valid(outcome="maybe"))[:-1] + ', "outcome": "meh"}'
    problems = _problems(text)
    assert ("outcome", "duplicate key") in problems
    assert any(path == "outcome" and "success" in why for path, why in problems)


# --- occurred_at window -------------------------------------------------------------------------


def _at(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).isoformat()


def test_occurred_at_more_than_twenty_years_back_or_a_day_ahead_is_refused() -> None:
    ((path, reason),) = _problems(valid(occurred_at=_at(-timedelta(days=7306))))
    assert path == "occurred_at"
    assert "more than 7305 days before now" in reason
    assert "AUDITLOG_OCCURRED_PAST_DAYS" in reason
    ((path, reason),) = _problems(valid(occurred_at=_at(timedelta(hours=25))))
    assert path == "occurred_at"
    assert "more than 24 hours after now" in reason
    assert parse_event(valid(occurred_at=_at(-timedelta(days=7300))))
    assert parse_event(valid(occurred_at=_at(timedelta(hours=23))))


def test_the_window_is_set_by_the_settings_and_read_from_the_environment() -> None:
    s = load_settings(
        env={"AUDITLOG_OCCURRED_PAST_DAYS": "1", "AUDITLOG_OCCURRED_FUTURE_HOURS": "0"}
    )
    assert (s.store.occurred_past_days, s.store.occurred_future_hours) == (1, 0)
    assert _problems(valid(occurred_at=_at(-timedelta(days=2))), s.store)[0][0] == "occurred_at"
    assert _problems(valid(occurred_at=_at(timedelta(minutes=5))), s.store)[0][0] == "occurred_at"


def test_a_window_wider_than_the_calendar_admits_years_1_and_9999_without_overflow() -> None:
    wide = StoreSettings(occurred_past_days=4_000_000, occurred_future_hours=10**8)
    assert parse_event(valid(occurred_at="0001-01-01T00:00:00Z"), wide)
    assert parse_event(valid(occurred_at="9999-12-31T23:59:59.999999Z"), wide)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert window_problem(datetime(1, 1, 1, tzinfo=UTC), wide, now) == ""


@pytest.mark.parametrize("ts", ["0001-01-01T00:30:00+01:00", "9999-12-31T23:30:00-01:00"])
def test_a_time_outside_years_1_to_9999_in_utc_is_refused_whatever_the_window(ts: str) -> None:
    wide = StoreSettings(occurred_past_days=4_000_000, occurred_future_hours=10**8)
    ((path, reason),) = _problems(valid(occurred_at=ts), wide)
    assert path == "occurred_at"
    assert "outside years 0001..9999 in UTC" in reason


@pytest.mark.parametrize(
    ("name", "value"),
    [("max_json_depth", 0), ("max_json_depth", 257), ("max_object_keys", 0),
     ("occurred_past_days", -1), ("occurred_future_hours", -1)],
)  # fmt: skip
def test_bounds_settings_out_of_range_are_refused_naming_them(name: str, value: int) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings(env={}, store={name: value})


# --- every problem at once ----------------------------------------------------------------------


def test_every_problem_of_an_event_is_reported_at_once_with_its_path() -> None:
    bad = valid(
        category="billing",
        outcome="maybe",
        source_ip="1.2.3",
        actor={"type": "robot", "upn": "x@y"},
        occurred_at=_at(-timedelta(days=9000)),
        details={"deep": _nested_dict(40)},
    )
    with pytest.raises(InvalidEvent) as caught:
        parse_event(bad)
    paths = [p for p, _ in caught.value.problems]
    assert set(paths) >= {"category", "outcome", "source_ip", "actor.type", "occurred_at"}
    assert any(p.startswith("details.deep.k") for p in paths)
    text = str(caught.value)
    for path, reason in caught.value.problems:
        assert f"{path}: {reason}" in text
    assert text.count("; ") == len(paths) - 1


def test_invalid_event_with_one_problem_keeps_its_field_reason_and_message() -> None:
    exc = InvalidEvent("source_ip", "not an address")
    assert (exc.field, exc.reason, str(exc)) == (
        "source_ip",
        "not an address",
        "source_ip: not an address",
    )
    assert exc.problems == [("source_ip", "not an address")]
    many = InvalidEvent.of([(f"f{i}", "bad") for i in range(25)])
    assert (many.field, many.reason) == ("f0", "bad")
    assert str(many).endswith("; and 5 more problem(s)")


# --- through the store and the CLI ----------------------------------------------------------------


def test_a_deep_event_in_a_batch_is_named_by_index_and_the_valid_ones_then_store(
    log: AuditLog,
) -> None:
    deep = _text(valid(), "[" * DEEP + "]" * DEEP)
    with pytest.raises(BatchRejected) as caught:
        log.record_many([valid(), deep, valid(details={"d": _nested_dict(50)})])
    assert sorted(caught.value.errors) == [1, 2]
    assert all("nesting deeper than 32" in str(e) for e in caught.value.errors.values())
    assert len(log.record_many([valid(), valid()])) == 2


def test_prepare_applies_the_settings_bounds(settings: Settings) -> None:
    tight = settings.replace(store={"max_json_depth": 2})
    assert prepare(valid(details={"a": 1}), tight)
    with pytest.raises(InvalidEvent, match=r"details.a: nesting deeper than 2"):
        prepare(valid(details={"a": {"b": 1}}), tight)


def test_ingest_reports_a_ten_thousand_deep_line_and_stores_the_others(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, admin_engine: Engine
) -> None:
    monkeypatch.setenv("AUDITLOG_DATABASE_URL", settings.store.database_url or "")
    monkeypatch.setenv("AUDITLOG_HOME", str(settings.store.home))
    src = tmp_path / "in.ndjson"
    lines = [json.dumps(valid()), _text(valid(), "[" * DEEP + "]" * DEEP), json.dumps(valid())]
    dup = json.dumps(valid())[:-1] + ', "action": "policy.deleted"}'
    src.write_text("\n".join([*lines, dup]) + "\n", "utf-8")
    result = CliRunner().invoke(app, ["ingest", str(src)], catch_exceptions=False)
    assert result.exit_code == 1
    assert f"line 2: details{'[0]' * 31}: nesting deeper than 32" in result.output
    assert "line 4: action: duplicate key" in result.output
    assert "stored 2, already present 0, rejected 2" in result.output
    assert "Traceback" not in result.output
    with admin_engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM events").scalar_one() == 2


def test_an_audit_event_built_directly_is_held_to_the_same_bounds(log: AuditLog) -> None:
    deep = AuditEvent.model_validate(valid(details={"d": _nested_dict(40)}))
    with pytest.raises(InvalidEvent, match=r"details\.d(\.k)+: nesting deeper than 32"):
        log.record(deep)
    old = AuditEvent.model_validate(valid(occurred_at="1990-01-01T00:00:00Z"))
    with pytest.raises(InvalidEvent, match=r"occurred_at: .* days before now"):
        log.record(old)
    assert log.record(AuditEvent.model_validate(valid())).seq == 1
