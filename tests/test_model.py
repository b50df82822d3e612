"""Event validation: every bad input names its field and reason."""

from __future__ import annotations

from typing import Any

import pytest

from auditlog.errors import InvalidEvent
from auditlog.model import canonical_ip, parse_event, parse_timestamp
from tests.support.factories import valid


def test_valid_event_keeps_offset_and_generates_event_id() -> None:
    ev = parse_event(valid())
    assert ev.occurred_at.utcoffset().total_seconds() == 3600
    assert ev.event_id is not None


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        ({"occurred_at": "2026-11-28T09:15:02"}, "occurred_at", "explicit offset"),
        ({"occurred_at": "now"}, "occurred_at", "RFC 3339"),
        ({"occurred_at": "infinity"}, "occurred_at", "RFC 3339"),
        ({"occurred_at": "2026-02-30T10:00:00Z"}, "occurred_at", "not a real date"),
        ({"occurred_at": "yesterday at noon"}, "occurred_at", "RFC 3339"),
        ({"occurred_at": 1700000000}, "occurred_at", "RFC 3339 string"),
        ({"category": "billing"}, "category", "configuration"),
        ({"outcome": "maybe"}, "outcome", "success"),
        ({"source_ip": "300.1.1.1"}, "source_ip", "not an IPv4 or IPv6"),
        ({"source_ip": "10.0.0.0/8"}, "source_ip", "not an IPv4 or IPv6"),
        ({"source_ip": "010.1.1.1"}, "source_ip", "not an IPv4 or IPv6"),
        ({"source_ip": "fe80::1%eth0"}, "source_ip", "not an IPv4 or IPv6"),
        ({"action": "PolicyUpdated"}, "action", "dotted lower-case verb"),
        ({"action": "policy"}, "action", "dotted lower-case verb"),
        ({"action": "policy.updated\n"}, "action", "dotted lower-case verb"),
        ({"actor": {"type": "user"}}, "actor", "at least one of id, upn"),
        ({"actor": {"type": "robot", "id": "x"}}, "actor.type", "user"),
        ({"target": {"type": "policy"}}, "target.id", "required"),
        ({"before": ["not", "an", "object"]}, "before", "dict"),
        ({"extra_field": 1}, "extra_field", "not permitted"),
        ({"event_id": "not-a-uuid"}, "event_id", "UUID"),
    ],
)
def test_bad_input_names_field_and_reason(changes: dict[str, Any], field: str, reason: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        parse_event(valid(**changes))
    assert info.value.field == field
    assert reason.lower() in info.value.reason.lower()


def test_missing_required_field_is_named() -> None:
    event = valid()
    del event["outcome"]
    with pytest.raises(InvalidEvent, match="outcome"):
        parse_event(event)


def test_json_text_that_is_not_an_object_is_rejected() -> None:
    with pytest.raises(InvalidEvent, match="JSON object"):
        parse_event("[1, 2]")
    with pytest.raises(InvalidEvent, match="not valid JSON"):
        parse_event("{broken")


def test_timestamp_keeps_microseconds_and_truncates_nanoseconds() -> None:
    ts = parse_timestamp("2026-11-28T09:15:02.123456789-05:30")
    assert ts.microsecond == 123456
    assert ts.utcoffset().total_seconds() == -(5 * 3600 + 30 * 60)


def test_lower_case_z_and_t_are_accepted() -> None:
    assert parse_timestamp("2026-11-28t09:15:02z").utcoffset().total_seconds() == 0


def test_ip_addresses_are_stored_in_canonical_form() -> None:
    assert canonical_ip("2001:DB8::1") == "2001:0db8:0000:0000:0000:0000:0000:0001"
    assert canonical_ip("::ffff:192.0.2.1") == "0000:0000:0000:0000:0000:ffff:c000:0201"
    assert canonical_ip("192.0.2.1") == "192.0.2.1"
