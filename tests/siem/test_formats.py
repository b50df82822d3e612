"""SIEM formats: RFC 5424, CEF and OCSF escape for themselves; values read back unchanged."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auditlog.integrity.database import db_checkpoints
from auditlog.siem import ocsf
from auditlog.siem.delivery import backoff, fetch_checkpoints
from auditlog.siem.formats import Formatter, Item, cef_event, octet_frame, sd_escape
from auditlog.siem.parse import parse_cef, parse_syslog, split_frames
from auditlog.siem.transports import retry_after
from auditlog.store import AuditLog
from tests.support.factories import valid
from tests.support.hostile import HOSTILE, hostile_event
from tests.support.siem import stored_items


@pytest.fixture
def hostile_items(log: AuditLog) -> list[Item]:
    return stored_items(log, [hostile_event(v, i) for i, v in enumerate(HOSTILE)])


def _stored_records(log: AuditLog) -> dict[str, dict[str, Any]]:
    from auditlog.columns import COPY_COLUMNS
    from auditlog.integrity.rule import row_to_record

    cols = [c for c in COPY_COLUMNS if c != "record"]
    with log.engine.connect() as conn:
        rows = conn.exec_driver_sql(f"SELECT {', '.join(cols)} FROM events").mappings().all()
    return {str(r["event_id"]): row_to_record(r) for r in rows}


def test_delivered_records_equal_the_stored_rows(log: AuditLog, hostile_items: list[Item]) -> None:
    stored = _stored_records(log)
    assert len(hostile_items) == len(HOSTILE)
    for item in hostile_items:
        assert item.data == stored[item.key]


def test_rfc5424_round_trips_hostile_values_and_forges_nothing(
    hostile_items: list[Item],
) -> None:
    fmt = Formatter("rfc5424", hostname="audit-host")
    stream = b"".join(octet_frame(fmt.syslog(i)) for i in hostile_items)
    frames, rest = split_frames(stream)
    assert rest == b""
    assert len(frames) == len(hostile_items)
    for item, frame in zip(hostile_items, frames, strict=True):
        msg = parse_syslog(frame)
        assert (msg.pri, msg.hostname, msg.app_name, msg.msgid) == (
            109,
            "audit-host",
            "auditlog",
            "EVENT",
        )
        assert msg.timestamp == item.data["occurred_at"]
        sd = msg.sd["auditlog@32473"]
        assert list(msg.sd) == ["auditlog@32473"]  # no value opened an SD element
        assert sd == {
            "event_id": item.key,
            "category": item.data["category"],
            "seq": str(item.data["seq"]),
            "action": item.data["action"],
            "outcome": item.data["outcome"],
            "correlation_id": item.data["correlation_id"],
        }
        assert msg.msg.isascii()
        assert "\n" not in msg.msg
        assert "\r" not in msg.msg
        assert msg.json() == item.data


def test_msg_len_counts_utf8_bytes() -> None:
    frame = octet_frame('<109>1 - - - - - [x@1 a="😀é"] {}')
    length, _, body = frame.partition(b" ")
    assert int(length) == len(body) == len('<109>1 - - - - - [x@1 a=""] {}') + 4 + 2


def test_cef_round_trips_hostile_values_and_forges_no_field(hostile_items: list[Item]) -> None:
    keys = None
    for item in hostile_items:
        line = cef_event(item.data)
        assert "\n" not in line
        assert "\r" not in line
        head, ext = parse_cef(line)
        assert head == [
            "auditlog",
            "auditlog",
            "0.1.0",
            item.data["action"],
            item.data["action"],
            "3",
        ]
        keys = keys or list(ext)
        assert list(ext) == keys  # the same fields every time: none forged, none lost
        rec = item.data
        assert ext["externalId"] == rec["event_id"]
        assert ext["suser"] == "a@contoso.com"
        assert ext["suid"] == rec["actor"]["id"]
        assert ext["cs2"] == rec["target"]["id"]
        assert ext["cs3"] == rec["target"]["name"]
        assert ext["cs4"] == rec["correlation_id"]
        assert ext["requestClientApplication"] == rec["user_agent"]
        assert ext["cn1"] == str(rec["seq"])
        assert json.loads(ext["cs6"]) == rec


def test_ocsf_round_trips_hostile_values(hostile_items: list[Item]) -> None:
    for item in hostile_items:
        event = parse_syslog(Formatter("ocsf").syslog(item)).json()
        rec = item.data
        assert event["metadata"]["uid"] == rec["event_id"]
        assert event["metadata"]["correlation_uid"] == rec["correlation_id"]
        assert event["actor"]["user"]["uid"] == rec["actor"]["id"]
        assert event["actor"]["user"]["name"] == rec["actor"]["display_name"]  # "" stays ""
        assert event["resources"] == [
            {"type": "policy", "uid": rec["target"]["id"], "name": rec["target"]["name"]}
        ]
        assert event["http_request"]["user_agent"] == rec["user_agent"]
        assert event["unmapped"]["auditlog"] == rec


@pytest.mark.parametrize(
    ("action", "class_uid", "activity_id"),
    [
        ("user.login", 3002, 1),
        ("user.logout", 3002, 2),
        ("rbac.role_assigned", 3001, 7),
        ("rbac.role_removed", 3001, 8),
        ("user.created", 3001, 1),
        ("policy.updated", 6003, 3),
        ("dashboard.viewed", 6003, 2),
        ("export.downloaded", 6003, 2),
        ("automation.executed", 6003, 3),
        ("policy.deleted", 6003, 4),
        ("approval.escalated", 6003, 99),
    ],
)
def test_ocsf_class_follows_the_action(action: str, class_uid: int, activity_id: int) -> None:
    cls, _, _, _, act, _ = ocsf.classify(action)
    assert (cls, act) == (class_uid, activity_id)


def test_ocsf_event_has_the_required_attributes(hostile_items: list[Item]) -> None:
    event = ocsf.event(hostile_items[0].data, "0.1.0")
    for key in (
        "class_uid",
        "category_uid",
        "activity_id",
        "type_uid",
        "severity_id",
        "time",
        "metadata",
        "actor",
        "api",
        "src_endpoint",
    ):
        assert key in event
    assert event["type_uid"] == event["class_uid"] * 100 + event["activity_id"]
    assert event["metadata"]["version"] == ocsf.VERSION
    assert event["metadata"]["sequence"] == hostile_items[0].position


def test_checkpoints_are_their_own_messages(log: AuditLog) -> None:
    log.record(valid())  # the first entry of a chain is checkpointed with it
    with log.engine.connect() as conn:
        (cp,) = db_checkpoints(conn.connection.driver_connection, "configuration")
        (item,) = fetch_checkpoints(conn, 0, {"configuration": 1}, 10)
        assert fetch_checkpoints(conn, 0, {"configuration": 0}, 10) == []  # waits for its event
    assert item.data == cp.to_json()
    msg = parse_syslog(Formatter("rfc5424").syslog(item))
    assert msg.msgid == "CHECKPOINT"
    assert msg.sd["auditlog-checkpoint@32473"]["entry_hash"] == cp.entry_hash.hex()
    assert msg.json() == cp.to_json()
    _, ext = parse_cef(parse_syslog(Formatter("cef").syslog(item)).msg)
    assert json.loads(ext["cs6"]) == cp.to_json()


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_characters="\x00"), max_size=40))
def test_any_text_survives_sd_and_cef_escaping(value: str) -> None:
    msg = parse_syslog(f'<109>1 - - - - - [x@1 a="{sd_escape(value)}" b="end"] tail')
    assert msg.sd == {"x@1": {"a": value, "b": "end"}}
    assert msg.msg == "tail"
    rec = {
        "event_id": "e",
        "category": "c",
        "action": "a.b",
        "outcome": "success",
        "seq": 1,
        "occurred_at": "2026-01-01T00:00:00.000000Z",
        "recorded_at": "2026-01-01T00:00:00.000000Z",
        "actor": {"id": value, "upn": value},
        "target": {"type": value, "id": value, "name": value},
        "correlation_id": value,
        "user_agent": value,
    }
    _, ext = parse_cef(cef_event(rec))
    assert ext["cs1"] == ext["cs2"] == ext["cs3"] == ext["cs4"] == value
    assert ext["suser"] == ext["requestClientApplication"] == value


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after("7") == 7.0
    assert retry_after("999999") == 3600.0
    assert retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert retry_after("soon") is None
    assert retry_after(None) is None


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    low = [backoff(n, rng=lambda a, b: a) for n in range(1, 12)]
    high = [backoff(n, rng=lambda a, b: b) for n in range(1, 12)]
    assert high[:5] == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert low[:3] == [0.25, 0.5, 1.0]
    assert max(high) == 60.0
    assert all(0.25 <= backoff(3) <= 2.0 for _ in range(100))
