"""The API key that submitted an event reaches the SIEM in every format: in the full record
each carries, and where the format has a natural place (RFC 5424 structured data, CEF
``sourceServiceName`` / ``flexString1``, OCSF ``actor.app_name`` / ``actor.app_uid``)."""

from __future__ import annotations

import json

import pytest

from auditlog.siem import ocsf
from auditlog.siem.delivery import fetch_events
from auditlog.siem.formats import Formatter, Item, cef_event
from auditlog.siem.parse import parse_cef, parse_syslog
from auditlog.store import AuditLog, prepare_many
from tests.support.factories import valid

# A name a format must encode: quotes, a bracket, an equals sign, a pipe, a line break.
KEY = {"type": "api_key", "id": "k-7f3a", "name": 'Billing "eu" ] a=b | x\nforged=1'}


@pytest.fixture
def items(log: AuditLog) -> dict[bool, Item]:
    """The stored event with a source (True) and one without (False), as delivered."""
    good, _ = prepare_many([valid()], log.settings, source=KEY)
    log.append_prepared(good)
    log.record(valid())
    with log.engine.connect() as conn:
        first, second = fetch_events(conn, "configuration", 0, 10)
    return {True: first, False: second}


def test_the_delivered_record_carries_the_source_only_when_there_is_one(
    items: dict[bool, Item],
) -> None:
    assert items[True].data["source"] == KEY
    assert "source" not in items[False].data


def test_rfc5424_names_the_key_in_structured_data(items: dict[bool, Item]) -> None:
    fmt = Formatter("rfc5424", hostname="audit-host")
    msg = parse_syslog(fmt.syslog(items[True]))
    (sd,) = msg.sd.values()
    assert (sd["source_id"], sd["source_name"]) == (KEY["id"], KEY["name"])
    assert json.loads(msg.msg)["source"] == KEY
    (plain,) = parse_syslog(fmt.syslog(items[False])).sd.values()
    assert "source_id" not in plain
    assert "source_name" not in plain


def test_cef_names_the_key_as_the_source_service(items: dict[bool, Item]) -> None:
    _, ext = parse_cef(cef_event(items[True].data))
    assert ext["sourceServiceName"] == KEY["name"]
    assert (ext["flexString1Label"], ext["flexString1"]) == ("sourceKeyId", KEY["id"])
    assert "forged" not in ext
    assert json.loads(ext["cs6"])["source"] == KEY
    _, plain = parse_cef(cef_event(items[False].data))
    assert "sourceServiceName" not in plain
    assert "flexString1" not in plain


def test_ocsf_names_the_key_as_the_actors_app(items: dict[bool, Item]) -> None:
    out = ocsf.event(items[True].data, "test")
    assert (out["actor"]["app_name"], out["actor"]["app_uid"]) == (KEY["name"], KEY["id"])
    assert out["unmapped"]["auditlog"]["source"] == KEY
    assert set(ocsf.event(items[False].data, "test")["actor"]) == {"user"}
