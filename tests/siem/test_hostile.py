"""Every SIEM format encodes every field for itself: for each free-text field and each hostile
value (tests/support/hostile.py), stored through a real log into PostgreSQL, no raw control,
line-separator or bidi character reaches a syslog header or SD, a CEF header or extension,
and the value read back from each format equals the value stored."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.engine import URL

from auditlog.siem.formats import Formatter, Item, cef_event, octet_frame
from auditlog.siem.parse import parse_cef, parse_syslog, split_frames
from tests.support.hostile import field_cases, field_value, raw_controls
from tests.support.hostile_store import HostileStore, hostile_store

CASES = field_cases()
SD_ID = "auditlog@32473"
# Where CEF carries each field besides the full record in cs6 (docs/siem.md).
CEF_KEY = {
    "correlation_id": "cs4",
    "user_agent": "requestClientApplication",
    "actor.id": "suid",
    "actor.upn": "suser",
    "target.type": "cs1",
    "target.id": "cs2",
    "target.name": "cs3",
}
CEF_KEYS = [
    "rt", "start", "externalId", "cat", "act", "outcome", "suser", "suid", "src",
    "requestClientApplication", "cs1Label", "cs1", "cs2Label", "cs2", "cs3Label", "cs3",
    "cs4Label", "cs4", "cs5Label", "cs5", "cn1Label", "cn1", "cs6Label", "cs6",
]  # fmt: skip
# Where OCSF (API Activity, as for policy.updated) carries each field besides unmapped.auditlog.
OCSF_PATH = {
    "correlation_id": ("metadata", "correlation_uid"),
    "user_agent": ("http_request", "user_agent"),
    "actor.id": ("actor", "user", "uid"),
    "actor.display_name": ("actor", "user", "name"),
    "actor.upn": ("actor", "user", "email_addr"),
    "target.type": ("resources", 0, "type"),
    "target.id": ("resources", 0, "uid"),
    "target.name": ("resources", 0, "name"),
}


@pytest.fixture(scope="module")
def matrix(
    pg_server_url: URL, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HostileStore]:
    with hostile_store(pg_server_url, template_db, tmp_path_factory.mktemp("home")) as store:
        yield store


def _at(doc: Any, path: tuple[str | int, ...]) -> Any:
    for step in path:
        doc = doc[step]
    return doc


@pytest.mark.parametrize(("field", "value"), CASES)
def test_the_stored_value_is_the_value_sent(matrix: HostileStore, field: str, value: str) -> None:
    assert field_value(matrix.item(field, value).data, field) == value


@pytest.mark.parametrize("fmt", ["rfc5424", "json"])
@pytest.mark.parametrize(("field", "value"), CASES)
def test_rfc5424_carries_no_raw_control_and_reads_back_the_stored_value(
    matrix: HostileStore, field: str, value: str, fmt: Any
) -> None:
    item = matrix.item(field, value)
    message = Formatter(fmt, hostname="audit-host").syslog(item)
    assert raw_controls(message) == []
    frames, rest = split_frames(octet_frame(message) * 2)  # MSG-LEN frames it exactly
    assert (frames, rest) == ([message.encode()] * 2, b"")
    msg = parse_syslog(frames[0])
    assert (msg.pri, msg.timestamp, msg.hostname, msg.app_name, msg.procid, msg.msgid) == (
        109,
        item.data["occurred_at"],
        "audit-host",
        "auditlog",
        "-",
        "EVENT",
    )
    assert msg.sd == {  # no value closed the element or opened another
        SD_ID: {
            "event_id": item.key,
            "category": "configuration",
            "seq": str(item.position),
            "action": "policy.updated",
            "outcome": "success",
            **({"correlation_id": value} if field == "correlation_id" else {}),
        }
    }
    assert msg.msg.isascii()
    assert msg.json() == item.data
    assert field_value(msg.json(), field) == value


@pytest.mark.parametrize(("field", "value"), CASES)
def test_cef_carries_no_raw_control_and_reads_back_the_stored_value(
    matrix: HostileStore, field: str, value: str
) -> None:
    item = matrix.item(field, value)
    line = cef_event(item.data)
    assert raw_controls(line) == []
    assert parse_syslog(Formatter("cef", hostname="audit-host").syslog(item)).msg == line
    head, ext = parse_cef(line)
    assert head == ["auditlog", "auditlog", "0.1.0", "policy.updated", "policy.updated", "3"]
    rec = item.data
    nullable = {"cs3": rec["target"].get("name"), "cs4": rec["correlation_id"]}
    nullable["requestClientApplication"] = rec["user_agent"]
    keys = [k for k in CEF_KEYS if nullable.get(k, "") is not None]
    assert list(ext) == keys  # the fields the record has, in order: none forged, none lost
    if field in CEF_KEY:
        assert ext[CEF_KEY[field]] == value
    record = json.loads(ext["cs6"])
    assert record == item.data
    assert field_value(record, field) == value


@pytest.mark.parametrize(("field", "value"), CASES)
def test_ocsf_reads_back_the_stored_value_over_syslog_and_http(
    matrix: HostileStore, field: str, value: str
) -> None:
    item = matrix.item(field, value)
    fmt = Formatter("ocsf", hostname="audit-host")
    message = fmt.syslog(item)
    assert raw_controls(message) == []
    over_syslog = parse_syslog(message).json()
    over_http = json.loads(json.dumps(fmt.payload(item)))
    for event in (over_syslog, over_http):
        assert event["unmapped"]["auditlog"] == item.data
        assert field_value(event["unmapped"]["auditlog"], field) == value
        if field in OCSF_PATH:
            assert _at(event, OCSF_PATH[field]) == value


def test_a_header_field_that_is_not_printable_ascii_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"syslog hostname: 'audit\\nhost' is not 1-255"):
        Formatter("rfc5424", hostname="audit\nhost")
    with pytest.raises(ValueError, match="syslog app_name: 'audit log' is not 1-48"):
        Formatter("rfc5424", hostname="h", app_name="audit log")
    with pytest.raises(ValueError, match="syslog app_name"):
        Formatter("rfc5424", hostname="h", app_name="a" * 49)


def test_a_timestamp_that_is_not_rfc5424s_form_is_sent_as_the_nil_value(
    matrix: HostileStore,
) -> None:
    item = next(iter(matrix.items.values()))
    odd = Item(item.kind, item.stream, item.position, {**item.data, "occurred_at": "x y"})
    msg = parse_syslog(Formatter("rfc5424", hostname="h").syslog(odd))
    assert (msg.timestamp, msg.hostname, msg.json()["occurred_at"]) == ("-", "h", "x y")
