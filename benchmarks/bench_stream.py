"""SIEM streaming speed (issue 6 targets), against a real rsyslogd on loopback.

Prints: delivery throughput of N events already in the log to rsyslog over TCP (RFC 5424,
octet counting) with the worker running, measured from worker start until rsyslog has
written the last one (also TLS and the OCSF format, for reference); and commit-to-received
latency (p50/p95/max) of single events recorded while the worker runs. Targets: TCP >= 20,000
events/s, p95 <= 1 s.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))  # the tests' real rsyslog receiver

from _common import fresh_database, rate, server_url, writer_log

from auditlog.access import Identity
from auditlog.demo import demo_events
from auditlog.settings import load_settings
from auditlog.siem.destinations import Destination, add_destination
from auditlog.siem.worker import Streamer
from auditlog.store import AuditLog
from tests.support.rsyslog import Rsyslog, make_tls_files

ADMIN = Identity("bench@contoso.com")
EVENT_ID = re.compile(rb' EVENT \[auditlog@32473 event_id=\\?"([0-9a-f-]{36})')


class LineCounter:
    """Counts lines written to a listener's files, reading only what is new each time."""

    def __init__(self, rsyslog: Rsyslog, listener: str) -> None:
        # rsyslog creates the file at the first message it writes
        self.files = [rsyslog.dir / f"{listener}-{rsyslog.gen}.log"]
        self.offsets = {p: p.stat().st_size if p.exists() else 0 for p in self.files}
        self.count = 0

    def __call__(self) -> int:
        for path in self.files:
            if not path.exists():
                continue
            with path.open("rb") as f:
                f.seek(self.offsets[path])
                chunk = f.read()
            self.offsets[path] += len(chunk)
            self.count += chunk.count(b"\n")
        return self.count


def throughput(
    log: AuditLog, rsyslog: Rsyslog, name: str, transport: str, fmt: str, n: int, **options: object
) -> float:
    port = rsyslog.tls_port if transport == "syslog-tls" else rsyslog.port
    listener = "tls" if transport == "syslog-tls" else "plain"
    lines = LineCounter(rsyslog, listener)
    dest = Destination(name, transport, f"127.0.0.1:{port}", fmt, options)
    add_destination(log, dest, ADMIN, "admin")
    with log.engine.connect() as conn:  # every event and checkpoint is one line
        total = conn.scalar(
            sa.text("SELECT (SELECT count(*) FROM events) + (SELECT count(*) FROM checkpoints)")
        )
    start = time.perf_counter()
    streamer = Streamer(log.engine, names=[name]).start()
    try:
        while lines() < total:
            time.sleep(0.01)
        elapsed = time.perf_counter() - start
    finally:
        streamer.close()
    return elapsed


class Tail(threading.Thread):
    """Follows rsyslog's output file; notes when each event_id arrived."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path, self.seen, self.stop = path, {}, threading.Event()

    def run(self) -> None:
        pos, buf = 0, b""
        while not self.stop.is_set():
            with self.path.open("rb") as f:
                f.seek(pos)
                chunk = f.read()
            pos += len(chunk)
            buf += chunk
            *done, buf = buf.split(b"\n")
            now = time.perf_counter()
            for line in done:
                m = EVENT_ID.search(line, 0, 220)
                if m:
                    self.seen.setdefault(m.group(1).decode(), now)
            time.sleep(0.002)


def latency(log: AuditLog, rsyslog: Rsyslog, count: int, per_second: float) -> list[float]:
    add_destination(
        log,
        Destination("latency", "syslog-tcp", f"127.0.0.1:{rsyslog.port}", "rfc5424"),
        ADMIN,
        "admin",
        start="now",
    )
    streamer = Streamer(log.engine, names=["latency"]).start()
    tail = Tail(next(rsyslog.dir.glob("plain-*.log")))
    tail.start()
    committed: dict[str, float] = {}
    events = list(demo_events(count, seed=11))
    try:
        time.sleep(1.0)
        for ev in events:
            receipt = log.record(ev)
            committed[receipt.event_id] = time.perf_counter()
            time.sleep(1 / per_second)
        end = time.monotonic() + 10
        while len(set(committed) & set(tail.seen)) < len(committed) and time.monotonic() < end:
            time.sleep(0.01)
    finally:
        tail.stop.set()
        streamer.close()
    missing = set(committed) - set(tail.seen)
    if missing:
        print(f"  {len(missing)} event(s) not received within 10 s")
    return sorted(tail.seen[e] - t for e, t in committed.items() if e in tail.seen)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--latency-events", type=int, default=500)
    ap.add_argument("--rate", type=float, default=100.0, help="events/s during the latency run")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="auditlog-bench-stream-"))
    url = fresh_database(server_url(), "bench_stream")
    store = {"home": work / "home", "database_url": url.render_as_string(False)}
    settings = load_settings(env={}, store=store)
    log = writer_log(url, settings, login="auditlog_stream")
    engine = log.engine
    rsyslog = Rsyslog(work / "rsyslog", make_tls_files(work / "tls")).start()
    try:
        events = list(demo_events(args.events, seed=1))
        t0 = time.perf_counter()
        for i in range(0, len(events), 10_000):
            log.record_many(events[i : i + 10_000])
        print(f"loaded {args.events:,} events in {time.perf_counter() - t0:.1f}s")
        n = args.events
        for name, transport, fmt in (
            ("tcp", "syslog-tcp", "rfc5424"),
            ("tls", "syslog-tls", "rfc5424"),
            ("tcp-ocsf", "syslog-tcp", "ocsf"),
        ):
            opts = {"ca_pem": rsyslog.tls.ca_pem} if transport == "syslog-tls" else {}  # type: ignore[union-attr]
            secs = throughput(log, rsyslog, name, transport, fmt, n, **opts)
            target = "  (target >= 20,000/s)" if name == "tcp" else ""
            print(
                f"stream {name:<9} {fmt:<8} {n:,} events in {secs:.2f}s = {rate(n, secs)}{target}"
            )
        lat = latency(log, rsyslog, args.latency_events, args.rate)
        p95 = lat[int(len(lat) * 0.95) - 1]
        print(
            f"commit-to-received ({len(lat)} events at {args.rate:.0f}/s): "
            f"p50 {statistics.median(lat) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms, "
            f"max {lat[-1] * 1000:.1f} ms  (target p95 <= 1000 ms)"
        )
    finally:
        rsyslog.stop()
        engine.dispose()


if __name__ == "__main__":
    main()
