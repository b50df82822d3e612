"""The hostile matrix delivered through real transports: a real rsyslogd writing every message
raw, one per line, so a line-based reader sees exactly one record per event; and a real HTTPS
receiver, whose HEC and webhook bodies carry every value unchanged."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from auditlog.access import Identity
from auditlog.siem.destinations import Destination, add_destination
from auditlog.siem.formats import Item
from auditlog.siem.parse import parse_cef, parse_syslog
from auditlog.siem.worker import drain_all
from auditlog.store import AuditLog
from tests.support.hostile import event_with, field_cases, field_value, raw_controls
from tests.support.http_receiver import Receiver
from tests.support.rsyslog import Rsyslog, TlsFiles, make_tls_files
from tests.support.siem import stored_items

ADMIN = Identity("admin@contoso.com")
CASES = [tuple(p.values) for p in field_cases()]

# The receiver's plain listener also writes %rawmsg% as it came, control characters and all
# (rsyslog's own escaping off): what a line-based reader of a plain syslog file sees.
LINES_CONFIG = """\
global(workDirectory="{dir}" maxMessageSize="1m"
       parser.escapeControlCharactersOnReceive="off"
       parser.dropTrailingLFOnReception="off")
module(load="imtcp")
template(name="raw" type="string" string="\\"%rawmsg:::json%\\"\\n")
template(name="line" type="string" string="%rawmsg%\\n")
ruleset(name="plain") {{
  action(type="omfile" file="{dir}/plain-{gen}.log" template="raw")
  action(type="omfile" file="{dir}/lines-{gen}.log" template="line")
}}
input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="plain")
"""


class LineRsyslog(Rsyslog):
    """rsyslogd whose plain listener also keeps a raw, line-per-message file."""

    def _config(self) -> str:
        return LINES_CONFIG.format(dir=self.dir, gen=self.gen, port=self.port)

    def lines(self) -> list[bytes]:
        data = b"".join(p.read_bytes() for p in sorted(self.dir.glob("lines-*.log")))
        return data.split(b"\n")[:-1]  # split on LF only, as a line-based reader does


@pytest.fixture
def rsyslog(tmp_path: Path) -> Iterator[LineRsyslog]:
    receiver = LineRsyslog(tmp_path / "rsyslog")
    receiver.start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def matrix(log: AuditLog) -> dict[str, tuple[str, str]]:
    """Every (field, value) case stored through the log; by event_id."""
    events = [event_with(f, v) for f, v in CASES]
    log.record_many(events)
    return {str(e["event_id"]): case for e, case in zip(events, CASES, strict=True)}


def add(log: AuditLog, name: str, transport: str, endpoint: str, fmt: str, **opts: Any) -> None:
    dest = Destination(name, transport, endpoint, fmt, {"hostname": "audit-host", **opts}, None)
    add_destination(log, dest, ADMIN, "admin")


def items_by_key(log: AuditLog) -> dict[str, Item]:
    return {i.key: i for i in stored_items(log, [])}


@pytest.mark.parametrize("fmt", ["rfc5424", "cef"])
def test_a_line_based_reader_of_rsyslogs_file_sees_one_record_per_event(
    log: AuditLog, rsyslog: LineRsyslog, matrix: dict[str, tuple[str, str]], fmt: str
) -> None:
    add(log, "siem", "syslog-tcp", f"127.0.0.1:{rsyslog.port}", fmt, batch=200)
    assert drain_all(log.engine, ["siem"])
    items = items_by_key(log)
    sent = rsyslog.wait_for(len(items))  # the events, the destination_added one, checkpoints
    lines = rsyslog.lines()
    assert len(lines) == len(sent) >= len(items)
    seen: dict[str, Any] = {}
    for line in lines:
        text = line.decode("utf-8")
        assert raw_controls(text) == [], text[:200]
        msg = parse_syslog(text)
        assert msg.hostname == "audit-host"
        if msg.msgid != "EVENT":
            continue
        key = msg.sd["auditlog@32473"]["event_id"]
        seen[key] = msg.json() if fmt == "rfc5424" else json.loads(parse_cef(msg.msg)[1]["cs6"])
    assert set(seen) == set(items)  # every event arrived, and no line was a forged one
    for key, (field, value) in matrix.items():
        assert seen[key] == items[key].data
        assert field_value(seen[key], field) == value


@pytest.mark.parametrize(
    ("transport", "fmt"), [("hec", "json"), ("hec", "ocsf"), ("webhook", "json")]
)
def test_http_bodies_carry_every_value_unchanged(
    log: AuditLog, tls: TlsFiles, matrix: dict[str, tuple[str, str]], transport: str, fmt: str
) -> None:
    with Receiver(tls) as receiver:
        dest = Destination(
            "http", transport, receiver.url, fmt, {"ca_pem": tls.ca_pem}, "s3cret-token"
        )
        add_destination(log, dest, ADMIN, "admin")
        assert drain_all(log.engine, ["http"])
        requests = receiver.received()
    items = items_by_key(log)
    delivered: dict[str, Any] = {}
    for req in requests:
        body = req.body.decode("utf-8")
        assert "\r" not in body
        if transport == "hec":  # newline-separated envelopes: a raw LF would forge one
            for env in req.hec_events():
                delivered[env["fields"]["auditlog_key"]] = env["event"]
        else:
            assert "\n" not in body
            for entry in json.loads(body)["items"]:
                delivered[entry["key"]] = entry["payload"]
    for key, (field, value) in matrix.items():
        payload = delivered[key]
        record = payload["unmapped"]["auditlog"] if fmt == "ocsf" else payload
        assert record == items[key].data
        assert field_value(record, field) == value
