"""SIEM delivery against real receivers: rsyslogd (TCP, TLS) and an HTTPS server (HEC, webhook).

Shown here: every event arrives with its fields intact; killing the receiver or the worker
mid-stream loses nothing (duplicates counted); 503 + Retry-After is retried; a 400 lands in the
dead-letter table; checkpoints follow their events; destination changes are audited without
their secrets.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from auditlog.access import Identity
from auditlog.demo import demo_events
from auditlog.errors import InvalidDestination
from auditlog.integrity.checkpoints import Checkpoint, signature_ok
from auditlog.settings import load_settings
from auditlog.siem.destinations import (
    Destination,
    add_destination,
    change_destination,
    list_destinations,
    remove_destination,
)
from auditlog.siem.formats import Item
from auditlog.siem.parse import parse_syslog
from auditlog.siem.status import dead_letters, destination_status
from auditlog.siem.worker import Streamer, drain_all
from auditlog.store import AuditLog
from tests.support.cli import register_host_key
from tests.support.factories import valid
from tests.support.hostile import HOSTILE, hostile_event
from tests.support.http_receiver import Receiver, Request
from tests.support.rsyslog import Rsyslog, TlsFiles, make_tls_files
from tests.support.siem import add_as_admin as add
from tests.support.siem import stored_items, wait_until

ADMIN = Identity("admin@contoso.com")
SECRET = "hec-token-7f3a9c0e-do-not-log"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def rsyslog(tmp_path: Path, tls: TlsFiles) -> Iterator[Rsyslog]:
    receiver = Rsyslog(tmp_path / "rsyslog", tls).start()
    yield receiver
    receiver.stop()


def all_items(log: AuditLog) -> list[Item]:
    return stored_items(log, [])


EVENT_ID = re.compile(r' EVENT \[auditlog@32473 event_id="([0-9a-f-]{36})"')


def event_ids(messages: list[str]) -> Counter[str]:
    """How often each event_id arrived (the first SD param of an EVENT message)."""
    found: Counter[str] = Counter()
    for m in messages:
        hit = EVENT_ID.search(m, 0, 200)
        if hit:
            found[hit.group(1)] += 1
    return found


def all_arrived(receiver: Rsyslog, n: int) -> Callable[[], list[str]]:
    def check() -> list[str]:
        found = receiver.messages()
        return found if len(found) >= n and len(event_ids(found)) >= n else []

    return check


# --- every event arrives intact ----------------------------------------------------------


@pytest.mark.parametrize("fmt", ["rfc5424", "cef", "ocsf"])
def test_every_event_reaches_rsyslog_over_tcp_byte_for_byte(
    log: AuditLog, rsyslog: Rsyslog, fmt: str
) -> None:
    log.record_many(list(demo_events(300, seed=3)))
    log.record_many([hostile_event(v, i) for i, v in enumerate(HOSTILE)])
    dest = add(log, "siem", "syslog-tcp", f"127.0.0.1:{rsyslog.port}", fmt, batch=128)
    assert drain_all(log.engine)
    items = all_items(log)
    expected = [dest.formatter().syslog(i) for i in items]
    received = rsyslog.wait_for(len(items))
    events = [m for m in received if " EVENT " in m]
    # rsyslog stored each message exactly as sent: every field intact, nothing split or forged
    assert sorted(events) == sorted(expected)


def test_checkpoints_follow_the_events_they_cover_and_verify(
    log: AuditLog, rsyslog: Rsyslog
) -> None:
    for i in range(5):
        log.record_many([valid(), valid(category="governance")])
        if i % 2:
            log.checkpoint()
    add(log, "siem", "syslog-tcp", f"127.0.0.1:{rsyslog.port}")
    assert drain_all(log.engine)
    with log.engine.connect() as conn:
        n_cp = conn.scalar(sa.text("SELECT count(*) FROM checkpoints"))
    received = [parse_syslog(m) for m in rsyslog.wait_for(10 + n_cp)]
    keys = {log.signer.key_id: log.signer.public}
    seen: set[tuple[str, int]] = set()
    checkpoints = 0
    for msg in received:
        if msg.msgid == "EVENT":
            sd = msg.sd["auditlog@32473"]
            seen.add((sd["category"], int(sd["seq"])))
            continue
        assert msg.msgid == "CHECKPOINT"
        cp = msg.json()
        assert (cp["category"], cp["seq"]) in seen  # its events came first
        checkpoint = Checkpoint.from_json(cp)  # a note over the tree, chained (version 3)
        assert checkpoint.version == 3
        assert checkpoint.root is not None
        assert checkpoint.origin == f"auditlog.local/{cp['category']}"
        assert signature_ok(checkpoint, keys)
        checkpoints += 1
    assert checkpoints == n_cp >= 2


def test_tls_destination_verifies_the_server_certificate(
    log: AuditLog, rsyslog: Rsyslog, tls: TlsFiles, tmp_path: Path
) -> None:
    log.record_many([valid() for _ in range(20)])
    other_ca = make_tls_files(tmp_path / "other", "someone else's CA").ca_pem
    add(log, "good", "syslog-tls", f"127.0.0.1:{rsyslog.tls_port}", ca_pem=tls.ca_pem)
    add(log, "wrong-ca", "syslog-tls", f"127.0.0.1:{rsyslog.tls_port}", ca_pem=other_ca)
    assert not drain_all(log.engine)  # "wrong-ca" cannot deliver
    n = len(all_items(log))  # the 20, and the two siem.destination_added events
    received = rsyslog.wait_for(n + 1, listener="tls")  # and one checkpoint, each once
    assert len(event_ids(received)) == n == 22
    assert len(received) == n + 1
    status = destination_status(log.engine).filter(category="configuration")
    good, bad = status.sort("destination").rows(named=True)
    assert (good["delivered_seq"], good["lag_events"], good["errors"]) == (n, 0, 0)
    assert (bad["delivered_seq"], bad["lag_events"], bad["errors"]) == (0, n, 1)
    assert "certificate verify failed" in bad["last_error"]


# --- no loss across crashes ----------------------------------------------------------------


def _check_complete(log: AuditLog, received: list[str]) -> Counter[str]:
    ids = event_ids(received)
    with log.engine.connect() as conn:
        stored = {str(e) for e in conn.scalars(sa.text("SELECT event_id FROM events"))}
    missing = stored - set(ids)
    assert not missing, f"{len(missing)} event(s) never arrived"
    return ids


@pytest.mark.parametrize("hung_first", [False, True], ids=["killed", "hung-then-killed"])
def test_receiver_killed_mid_stream_and_restarted_loses_nothing(
    log: AuditLog, rsyslog: Rsyslog, hung_first: bool
) -> None:
    n = 30_000
    log.record_many(list(demo_events(n, seed=5)))
    add(log, "siem", "syslog-tcp", f"127.0.0.1:{rsyslog.port}", batch=500, settle_seconds=1.0)
    streamer = Streamer(log.engine, poll_seconds=0.5).start()
    try:
        assert len(rsyslog.wait_for(3000, timeout=30)) < n  # mid-stream
        if hung_first:  # it stops reading: what we write piles up in its socket buffer
            rsyslog.freeze()
            time.sleep(0.4)
        rsyslog.kill()
        time.sleep(0.3)
        rsyslog.start()
        wait_until(all_arrived(rsyslog, n), timeout=60, every=0.2)
    finally:
        streamer.close()
    ids = _check_complete(log, rsyslog.messages())
    dupes = sum(ids.values()) - len(ids)
    print(f"receiver kill: {n} events, {dupes} duplicates re-sent")
    (row,) = destination_status(log.engine).filter(category="governance").rows(named=True)
    assert row["errors"] >= 1  # the kill was noticed, and the unsettled tail re-sent


def test_worker_killed_mid_batch_and_restarted_loses_nothing(
    log: AuditLog, rsyslog: Rsyslog, db_url: URL, tmp_path: Path
) -> None:
    n = 30_000
    log.record_many(list(demo_events(n, seed=6)))
    add(log, "siem", "syslog-tcp", f"127.0.0.1:{rsyslog.port}", batch=1000, settle_seconds=0.5)
    env = {
        **os.environ,
        "AUDITLOG_DATABASE_URL": db_url.render_as_string(hide_password=False),
        "AUDITLOG_HOME": str(tmp_path / "home"),
    }
    cmd = [sys.executable, "-m", "auditlog", "stream", "--poll", "0.5"]
    worker = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL)
    try:
        assert len(rsyslog.wait_for(3000, timeout=30)) < n  # mid-stream
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        worker = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL)
        wait_until(all_arrived(rsyslog, n), timeout=60, every=0.2)
    finally:
        worker.terminate()
        worker.wait(timeout=10)
    ids = _check_complete(log, rsyslog.messages())
    print(f"worker kill: {n} events, {sum(ids.values()) - len(ids)} duplicates re-sent")


def test_new_events_reach_the_receiver_within_a_second_of_commit(
    log: AuditLog, rsyslog: Rsyslog
) -> None:
    add(log, "siem", "syslog-tcp", f"127.0.0.1:{rsyslog.port}")
    streamer = Streamer(log.engine, poll_seconds=5.0).start()  # so NOTIFY, not polling, wakes it
    latencies = []
    try:
        time.sleep(0.5)
        for i in range(20):
            receipt = log.record(valid())
            start = time.monotonic()
            assert wait_until(
                lambda r=receipt: r.event_id in event_ids(rsyslog.messages()),  # type: ignore[misc]
                timeout=5,
                every=0.005,
            )
            latencies.append(time.monotonic() - start)
            time.sleep(0.02 * (i % 3))
    finally:
        streamer.close()
    p95 = sorted(latencies)[int(len(latencies) * 0.95) - 1]
    print(f"commit-to-received p95 {p95 * 1000:.0f} ms")
    assert p95 < 1.0


# --- HTTP: HEC and webhook -------------------------------------------------------------------


def _hec(log: AuditLog, receiver: Receiver, tls: TlsFiles, fmt: str = "json", **opts: Any) -> None:
    add(log, "splunk", "hec", receiver.url, fmt, SECRET, ca_pem=tls.ca_pem, **opts)


def test_hec_posts_splunk_envelopes_with_the_token(log: AuditLog, tls: TlsFiles) -> None:
    log.record_many([hostile_event(v, i) for i, v in enumerate(HOSTILE)])
    with Receiver(tls) as receiver:
        _hec(log, receiver, tls, index="audit")
        assert drain_all(log.engine)
        requests = receiver.received()
    assert {r.headers["Authorization"] for r in requests} == {f"Splunk {SECRET}"}
    envelopes = [e for r in requests for e in r.hec_events()]
    items = {i.key: i for i in all_items(log)}
    events = [e for e in envelopes if e["sourcetype"] == "auditlog:json:event"]
    assert len(events) == len(items)
    for env in events:
        item = items[env["fields"]["auditlog_key"]]
        assert env["event"] == item.data  # the full record, hostile values unchanged
        assert (env["host"], env["source"], env["index"]) == ("audit-host", "auditlog", "audit")
        assert env["fields"]["auditlog_position"] == item.position


def test_503_with_retry_after_is_retried_after_the_delay(log: AuditLog, tls: TlsFiles) -> None:
    log.record_many([valid() for _ in range(10)])
    calls: list[Request] = []

    def respond(req: Request) -> tuple[int, dict[str, str]]:
        calls.append(req)
        return (503, {"Retry-After": "1"}) if len(calls) == 1 else (200, {})

    with Receiver(tls, respond) as receiver:
        _hec(log, receiver, tls)
        streamer = Streamer(log.engine, poll_seconds=0.2).start()
        try:
            assert wait_until(lambda: len(calls) >= 2, timeout=10)
            assert wait_until(lambda: destination_status(log.engine)["lag_events"].sum() == 0)
        finally:
            streamer.close()
    assert calls[1].at - calls[0].at >= 1.0  # Retry-After honoured
    assert calls[1].body == calls[0].body  # the same batch again
    (row,) = destination_status(log.engine).filter(category="configuration").rows(named=True)
    assert row["errors"] == 1
    assert "HTTP 503" in row["last_error"]
    assert row["retry_at"] is None


def test_a_400_puts_only_the_rejected_event_in_the_dead_letter_table(
    log: AuditLog, tls: TlsFiles
) -> None:
    events = [valid(details={"n": i}) for i in range(40)]
    poison = valid(details={"poison": True})
    log.record_many([*events[:17], poison, *events[17:]])
    accepted: list[str] = []

    def respond(req: Request) -> tuple[int, dict[str, str]]:
        batch = req.hec_events()
        if any(e["event"].get("details", {}).get("poison") for e in batch):
            return 400, {}
        accepted.extend(e["fields"]["auditlog_key"] for e in batch)
        return 200, {}

    with Receiver(tls, respond) as receiver:
        _hec(log, receiver, tls, batch=16)
        assert drain_all(log.engine)
    dead = dead_letters(log.engine)
    assert dead.height == 1
    row = dead.row(0, named=True)
    assert row["destination"] == "splunk"
    assert row["http_status"] == 400
    assert json.loads(row["payload"])["details"] == {"poison": True}
    keys = {i.key for i in all_items(log)}
    delivered = {k for k in accepted if not k.startswith("checkpoint:")}
    assert delivered == keys - {row["item_key"]}  # every other event delivered
    (status,) = destination_status(log.engine).filter(category="configuration").rows(named=True)
    assert status["lag_events"] == 0
    assert status["dead_letters"] == 1


def test_a_receiver_that_rejects_everything_is_paused_not_drained_into_dead_letters(
    log: AuditLog, tls: TlsFiles
) -> None:
    log.record_many([valid() for _ in range(60)])
    with Receiver(tls, lambda _req: (400, {})) as receiver:
        _hec(log, receiver, tls, batch=8)
        assert not drain_all(log.engine)
    assert dead_letters(log.engine).height == 20  # REJECTION_LIMIT, then it stops
    (row,) = destination_status(log.engine).filter(category="configuration").rows(named=True)
    assert row["errors"] == 1
    assert "rejected in a row" in row["last_error"]
    assert row["delivered_seq"] == 20
    assert row["retry_at"] is not None


def test_webhook_body_is_signed_with_hmac_sha256(log: AuditLog, tls: TlsFiles) -> None:
    log.record_many([valid() for _ in range(5)])
    key = "whsec-0123456789abcdef0123456789abcdef"
    with Receiver(tls) as receiver:
        add(log, "hook", "webhook", receiver.url, "ocsf", key, ca_pem=tls.ca_pem)
        assert drain_all(log.engine)
        (req,) = receiver.received()
    stamp = req.headers["X-Auditlog-Timestamp"]
    mac = hmac.new(key.encode(), stamp.encode() + b"." + req.body, hashlib.sha256).hexdigest()
    assert req.headers["X-Auditlog-Signature"] == f"sha256={mac}"
    assert abs(int(stamp) - time.time()) < 60
    items = json.loads(req.body)["items"]
    assert [i["kind"] for i in items] == ["event"] * 6 + ["checkpoint"]  # 5 + destination_added
    assert items[0]["payload"]["class_uid"] == 6003


# --- destinations --------------------------------------------------------------------------


def test_destination_changes_are_audited_and_secrets_never_logged(
    log: AuditLog, reader_engine: Engine
) -> None:
    add(log, "splunk", "hec", "https://splunk.example.com:8088/services/collector", "json", SECRET)
    change_destination(log, "splunk", ADMIN, "admin", enabled=False, secret=SECRET + "-rotated")
    remove_destination(log, "splunk", ADMIN, "admin", reason="replaced")
    with log.engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT action, before, after, details, record FROM events ORDER BY seq")
        ).all()
    assert [r.action for r in rows] == [
        "siem.destination_added",
        "siem.destination_changed",
        "siem.destination_removed",
    ]
    assert all(SECRET not in r.record for r in rows)
    assert rows[0].after["secret"] == "[redacted]"
    assert (rows[1].before["enabled"], rows[1].after["enabled"]) == (True, False)
    assert rows[1].details["secret_changed"] is True
    assert rows[2].details == {"reason": "replaced"}
    assert rows[2].after is None
    assert list_destinations(log.engine) == []
    with reader_engine.connect() as conn, pytest.raises(sa.exc.ProgrammingError):
        conn.execute(sa.text("SELECT secret FROM siem_destinations"))


@pytest.mark.parametrize(
    ("dest", "field"),
    [
        (Destination("Bad Name", "syslog-tcp", "127.0.0.1:514"), "name"),
        (Destination("a", "carrier-pigeon", "127.0.0.1:514"), "transport"),
        (Destination("a", "syslog-tcp", "127.0.0.1"), "endpoint"),
        (Destination("a", "syslog-tcp", "127.0.0.1:70000"), "endpoint"),
        (Destination("a", "syslog-tcp", "127.0.0.1:514", "xml"), "format"),
        (Destination("a", "hec", "https://splunk:8088/x"), "secret"),
        (Destination("a", "hec", "http://splunk.example.com/x", secret=SECRET), "endpoint"),
        (Destination("a", "webhook", "https://u:p@hook.example.com/", secret=SECRET), "endpoint"),
        (Destination("a", "syslog-tcp", "h:514", options={"batch": 0}), "options.batch"),
        (Destination("a", "syslog-tcp", "h:514", options={"colour": 1}), "options.colour"),
        (
            Destination("a", "syslog-tcp", "h:514", options={"categories": ["x"]}),
            "options.categories",
        ),
        (Destination("a", "syslog-tls", "h:6514", options={"ca_pem": "nope"}), "options.ca_pem"),
    ],
)
def test_bad_destination_is_refused_naming_the_field(
    log: AuditLog, dest: Destination, field: str
) -> None:
    with pytest.raises(InvalidDestination) as info:
        add_destination(log, dest, ADMIN, "admin")
    assert info.value.field == field
    assert list_destinations(log.engine) == []


def test_status_shows_lag_and_the_error_while_the_receiver_is_down(log: AuditLog) -> None:
    from tests.support.rsyslog import free_port

    log.record_many([valid(), valid(), valid(category="governance")])
    add(log, "down", "syslog-tcp", f"127.0.0.1:{free_port()}", categories=["configuration"])
    assert not drain_all(log.engine)
    status = destination_status(log.engine)
    assert status["category"].to_list() == ["configuration"]
    row = status.row(0, named=True)
    assert (row["delivered_seq"], row["head_seq"], row["lag_events"]) == (0, 3, 3)  # + added
    assert row["lag_seconds"] > 0
    assert row["errors"] == 1
    assert row["retry_at"] is not None
    assert "cannot connect" in row["last_error"]
    assert dead_letters(log.engine).is_empty()


# --- the command line ------------------------------------------------------------------------


def test_cli_adds_lists_tests_streams_and_removes_destinations(
    log: AuditLog, rsyslog: Rsyslog, db_url: URL, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from auditlog.cli.app import app

    env = {
        "AUDITLOG_DATABASE_URL": db_url.render_as_string(hide_password=False),
        "AUDITLOG_HOME": str(tmp_path / "home"),
        "AUDITLOG_USER": "ops@contoso.com",
    }
    register_host_key(load_settings(env=env))  # as the key administrator did beforehand
    secret_file = tmp_path / "token"
    secret_file.write_text(SECRET + "\n")

    def run(*args: str) -> str:
        result = CliRunner().invoke(app, list(args), env=env)
        assert result.exit_code == 0, result.output
        return result.output

    run(
        "siem",
        "add",
        "local",
        "--transport",
        "syslog-tcp",
        "--endpoint",
        f"127.0.0.1:{rsyslog.port}",
        "--format",
        "cef",
    )
    run(
        "siem",
        "add",
        "splunk",
        "--transport",
        "hec",
        "--endpoint",
        "https://splunk.example.com:8088/services/collector",
        "--secret-file",
        str(secret_file),
        "--format",
        "json",
    )
    refused = CliRunner().invoke(
        app,
        ["siem", "add", "x", "--transport", "webhook", "--endpoint", "https://h.example.com/"],
        env=env,
    )
    assert refused.exit_code == 1
    assert "secret" in refused.output
    listing = run("siem", "list") + run("siem", "list", "--json")
    assert "local" in listing
    assert "splunk" in listing
    assert SECRET not in listing
    assert "test message sent to local" in run("siem", "test", "local")
    run("siem", "set", "splunk", "--disable", "--reason", "maintenance")
    run("stream", "--once")
    received = rsyslog.wait_for(4)
    assert any(" TEST - CEF:0|auditlog|auditlog|0.1.0|auditlog.test|" in m for m in received)
    assert len(event_ids(received)) == 3  # local added, splunk added, splunk changed
    run("siem", "remove", "local", "--reason", "done")
    with log.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT action, actor ->> 'id' FROM events ORDER BY seq")).all()
    assert [tuple(r) for r in rows] == [
        ("siem.destination_added", "ops@contoso.com"),
        ("siem.destination_added", "ops@contoso.com"),
        ("siem.destination_changed", "ops@contoso.com"),
        ("siem.destination_removed", "ops@contoso.com"),
    ]
