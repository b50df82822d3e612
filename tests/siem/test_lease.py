"""One worker per destination: two ``auditlog stream`` workers against one real HTTPS receiver
deliver every event and checkpoint exactly once; a second worker waits for the first's lease
(or, with --no-wait, refuses in one line) and takes over when the first stops or dies."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL
from typer.testing import CliRunner

from auditlog.cli.app import app
from auditlog.siem.status import destination_status
from auditlog.siem.worker import Leases, Streamer, drain_all
from auditlog.store import AuditLog
from tests.support.factories import valid
from tests.support.http_receiver import Receiver
from tests.support.rsyslog import TlsFiles, make_tls_files
from tests.support.siem import add_as_admin, stored_items, wait_until

SECRET = "hec-token-lease-0123456789"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def receiver(tls: TlsFiles) -> Iterator[Receiver]:
    with Receiver(tls) as r:
        yield r


def expected_keys(log: AuditLog) -> set[str]:
    keys = {i.key for i in stored_items(log, [])}
    with log.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT category, seq FROM checkpoints")).all()
    return keys | {f"checkpoint:{c}:{s}" for c, s in rows}


def delivered(receiver: Receiver) -> Counter[str]:
    return Counter(e["fields"]["auditlog_key"] for r in receiver.received() for e in r.hec_events())


def holder(log: AuditLog) -> str | None:
    rows = destination_status(log.engine)["worker"].unique().to_list()
    return rows[0] if len(rows) == 1 else None


def write(log: AuditLog, rounds: int) -> None:
    for _ in range(rounds):
        log.record_many([valid() for _ in range(15)])
        log.record_many([valid(category="governance") for _ in range(4)])
        log.checkpoint()
        time.sleep(0.05)


def test_two_workers_deliver_every_event_and_checkpoint_exactly_once(
    log: AuditLog, receiver: Receiver, tls: TlsFiles
) -> None:
    add_as_admin(log, "splunk", "hec", receiver.url, "json", SECRET, ca_pem=tls.ca_pem, batch=7)
    a = Streamer(log.engine, poll_seconds=0.1, reload_seconds=0.1, holder="worker-a").start()
    assert wait_until(lambda: holder(log) == "worker-a", timeout=10)
    b = Streamer(log.engine, poll_seconds=0.1, reload_seconds=0.1, holder="worker-b").start()
    try:
        write(log, 4)
        want = expected_keys(log)
        assert wait_until(lambda: set(delivered(receiver)) >= want, timeout=20)
        assert holder(log) == "worker-a"  # b waited
        assert not b.running
        assert b.waiting
        a.close()  # a clean stop releases the lease at once; b takes over
        assert wait_until(lambda: holder(log) == "worker-b", timeout=10)
        write(log, 3)
        want = expected_keys(log)
        assert wait_until(lambda: set(delivered(receiver)) >= want, timeout=20)
        time.sleep(0.5)  # anything sent twice would have arrived by now
    finally:
        a.close()
        b.close()
    counts = delivered(receiver)
    assert set(counts) == want
    assert [k for k, n in counts.items() if n != 1] == []
    assert any(k.startswith("checkpoint:") for k in counts)
    status = destination_status(log.engine)
    assert status["lag_events"].sum() == 0
    assert status["worker"].null_count() == status.height  # b's clean stop cleared it


def test_a_killed_worker_frees_its_lease_and_the_next_one_resumes_from_the_cursor(
    log: AuditLog, receiver: Receiver, tls: TlsFiles, db_url: URL, tmp_path: Path
) -> None:
    add_as_admin(log, "splunk", "hec", receiver.url, "json", SECRET, ca_pem=tls.ca_pem)
    write(log, 2)
    url = db_url.set(username="auditlog_stream").render_as_string(hide_password=False)
    script = (
        "import sys, time\n"
        "from auditlog.db.server import make_engine\n"
        "from auditlog.siem.worker import Leases\n"
        "leases = Leases(make_engine(sys.argv[1], 'stream'), 'doomed-worker')\n"
        "assert leases.try_acquire(int(sys.argv[2]))\n"
        "print('held', flush=True)\n"
        "time.sleep(600)\n"
    )
    with log.engine.connect() as conn:
        dest_id = int(conn.execute(sa.text("SELECT id FROM siem_destinations")).scalar_one())
    argv = [sys.executable, "-c", script, url, str(dest_id)]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "held"
        mine = Leases(log.engine, "next-worker")
        assert not mine.try_acquire(dest_id)
        assert "doomed-worker" in (mine.holder_of(dest_id) or "")
        assert not drain_all(log.engine, timeout=0.6)  # --once waits, then gives up
        assert delivered(receiver) == Counter()
        proc.kill()  # SIGKILL: no clean release; the server drops the lock with the session
        proc.wait(10)
        assert wait_until(lambda: mine.try_acquire(dest_id), timeout=10)
        mine.close()
    assert drain_all(log.engine, timeout=30)
    assert set(delivered(receiver)) == expected_keys(log)


def test_stream_no_wait_refuses_in_one_line_while_another_worker_holds_the_lease(
    log: AuditLog, receiver: Receiver, tls: TlsFiles, db_url: URL, tmp_path: Path
) -> None:
    add_as_admin(log, "splunk", "hec", receiver.url, "json", SECRET, ca_pem=tls.ca_pem)
    write(log, 1)
    first = Streamer(log.engine, poll_seconds=0.1, reload_seconds=0.1, holder="first").start()
    env = {
        "AUDITLOG_DATABASE_URL": db_url.render_as_string(hide_password=False),
        "AUDITLOG_HOME": str(tmp_path / "home"),
    }
    try:
        assert wait_until(lambda: holder(log) == "first", timeout=10)
        for args in (["stream", "--once", "--no-wait"], ["stream", "--no-wait"]):
            result = CliRunner().invoke(app, args, env=env)
            assert result.exit_code == 1, result.output
            line = result.output.strip().splitlines()[-1]
            assert line.startswith("error: SIEM destination 'splunk' is being delivered by another")
            assert "(first, since " in line
            assert "Traceback" not in result.output
    finally:
        first.close()
    counts = delivered(receiver)
    assert set(counts) == expected_keys(log)
    assert max(counts.values()) == 1
