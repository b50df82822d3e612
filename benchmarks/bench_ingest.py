"""Ingest, single-record latency and verify speed (issue 2 targets).

Prints: batched ingest of N demo events with validation + chaining, events/s, and the ratio to a
bare COPY of the same rows into the same table (no validation, no hashing), measured in the same
run; p50/p99 of single record(); verify events/s. Targets: >= 30,000/s, ratio >= 0.7,
p99 <= 10 ms, verify >= 50,000/s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import fresh_database, rate, server_url

from auditlog.columns import COPY_COLUMNS
from auditlog.db.server import make_engine
from auditlog.demo import demo_events
from auditlog.integrity.database import verify_database
from auditlog.integrity.keys import Signer
from auditlog.settings import load_settings
from auditlog.store import COPY_SQL, AuditLog


def ingest(log: AuditLog, events: list[dict], batch: int) -> float:
    start = time.perf_counter()
    for i in range(0, len(events), batch):
        log.record_many(events[i : i + batch])
    return time.perf_counter() - start


def bare_copy(source, target_url, batch: int) -> tuple[int, float]:
    """COPY the stored rows, as they are, into a fresh events table: no validation, no hash."""
    with source.connect() as conn:
        jsonb = {"actor", "target", "before", "after", "details", "source_ip"}
        cols = ", ".join(f"{c}::text" if c in jsonb else c for c in COPY_COLUMNS)
        rows = conn.exec_driver_sql(f"SELECT {cols} FROM events").all()
    rows = [tuple(r) for r in rows]
    target = make_engine(target_url.set(username="auditlog_app"), "writer")
    start = time.perf_counter()
    for i in range(0, len(rows), batch):
        with target.begin() as conn:
            cur = conn.connection.driver_connection.cursor()
            with cur.copy(COPY_SQL) as copy:
                for row in rows[i : i + batch]:
                    copy.write_row(row)
    elapsed = time.perf_counter() - start
    target.dispose()
    return len(rows), elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--singles", type=int, default=2_000)
    args = ap.parse_args()
    server = server_url()
    url = fresh_database(server, "bench_ingest")
    settings = load_settings(env={})
    engine = make_engine(url.set(username="auditlog_app"), "writer")
    log = AuditLog(engine, settings, signer=Signer.generate())
    events = list(demo_events(args.events, seed=11))
    print(f"ingest: {args.events:,} demo events in batches of {args.batch:,}")
    took = ingest(log, events, args.batch)
    ours = args.events / took
    print(f"  validated + chained + COPY: {took:.2f} s = {rate(args.events, took)}")
    n, bare = bare_copy(engine, fresh_database(server, "bench_bare"), args.batch)
    print(f"  bare COPY of the same rows:  {bare:.2f} s = {rate(n, bare)}")
    print(f"  ratio to bare COPY: {ours / (n / bare):.2f}  (target >= 0.70; >= 30,000/s)")
    singles = [e | {"event_id": None} for e in demo_events(args.singles, seed=12)]
    lat = []
    for ev in singles:
        ev.pop("event_id")
        t = time.perf_counter()
        log.record(ev)
        lat.append((time.perf_counter() - t) * 1000)
    q = statistics.quantiles(lat, n=100)
    print(f"record(): p50 {q[49]:.2f} ms, p99 {q[98]:.2f} ms over {len(lat):,} (target p99 <= 10)")
    t = time.perf_counter()
    report = verify_database(engine)
    took = time.perf_counter() - t
    print(
        f"verify: {report.rows:,} rows in {took:.2f} s = {rate(report.rows, took)} "
        f"ok={report.ok} (target >= 50,000/s)"
    )
    engine.dispose()


if __name__ == "__main__":
    main()
