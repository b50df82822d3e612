"""Ingest, single-record latency and verify speed (issues 2, 10 and 11 targets).

Prints: batched ingest of N demo events with validation, chaining, Merkle tree upkeep and the
database's append checks (auditlog_append_check, auditlog_append_links), events/s; the same
ingest into a database whose append checks are switched off; a bare COPY of the same rows
into the same table with no check, no validation and no hashing; the ratios of both ingests
to the bare COPY, all measured in the same run; p50/p99 of single record(); verify events/s.
Targets: ratio with the checks >= 0.7, p99 <= 10 ms, verify >= 50,000/s. Each measurement
starts after a CHECKPOINT, so none pays for the dirty pages the one before it left.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import fresh_database, rate, server_url, writer_log

from auditlog.columns import COPY_COLUMNS
from auditlog.db.server import make_engine
from auditlog.demo import demo_events
from auditlog.integrity.database import verify_database
from auditlog.integrity.keys import Signer
from auditlog.settings import load_settings
from auditlog.store import AuditLog


def ingest(log: AuditLog, events: list[dict], batch: int) -> float:
    start = time.perf_counter()
    for i in range(0, len(events), batch):
        log.record_many(events[i : i + batch])
    return time.perf_counter() - start


def without_check(url):  # type: ignore[no-untyped-def]
    """Switch the database's append check off (as the superuser), for the bare COPY."""
    admin = make_engine(url, "admin")
    with admin.begin() as conn:
        for trigger in ("events_append_check", "events_append_links"):
            conn.exec_driver_sql(f"ALTER TABLE events DISABLE TRIGGER {trigger}")
    admin.dispose()
    return url


# The writer sends only record and links and the database fills the columns in; "without the
# checks" keeps that filling-in (the writer needs it) and drops every check.
_DERIVE_ONLY = """
CREATE OR REPLACE FUNCTION auditlog_append_check() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW := jsonb_populate_record(NEW, NEW.record::jsonb);
  RETURN NEW;
END $$;
ALTER TABLE events DISABLE TRIGGER events_append_links;
"""


def derive_only(url):  # type: ignore[no-untyped-def]
    admin = make_engine(url, "admin")
    with admin.begin() as conn:
        conn.connection.driver_connection.cursor().execute(_DERIVE_ONLY)
    admin.dispose()
    return url


def bare_copy(source, target_url, batch: int, settle) -> tuple[int, float]:  # type: ignore[no-untyped-def]
    """COPY the stored rows, as they are, into a fresh events table with the append check off:
    no validation, no hashing, no check (their recorded_at is the past: the check refuses)."""
    with source.connect() as conn:
        jsonb = {"actor", "target", "before", "after", "details", "source_ip", "source"}
        cols = ", ".join(f"{c}::text" if c in jsonb else c for c in COPY_COLUMNS)
        rows = conn.exec_driver_sql(f"SELECT {cols} FROM events").all()
    rows = [tuple(r) for r in rows]
    target = make_engine(target_url.set(username="auditlog_ingest"), "writer")
    settle()
    start = time.perf_counter()
    for i in range(0, len(rows), batch):
        with target.begin() as conn:
            cur = conn.connection.driver_connection.cursor()
            with cur.copy(f"COPY events ({', '.join(COPY_COLUMNS)}) FROM STDIN") as copy:
                for row in rows[i : i + batch]:
                    copy.write_row(row)
    elapsed = time.perf_counter() - start
    target.dispose()
    return len(rows), elapsed


def settle(server) -> None:  # type: ignore[no-untyped-def]
    """CHECKPOINT: write out the dirty pages the previous measurement left, so each starts
    with the same clean buffers instead of paying for the one before it."""
    engine = make_engine(server.set(database="postgres"), "admin")
    with engine.connect() as conn:
        conn.exec_driver_sql("CHECKPOINT")
    engine.dispose()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--singles", type=int, default=2_000)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians printed")
    ap.add_argument("--warmup", type=int, default=60_000, help="events ingested untimed first")
    args = ap.parse_args()
    server = server_url()
    settings = load_settings(env={})
    signer = Signer.generate()
    events = list(demo_events(args.events, seed=11))
    print(f"ingest: {args.events:,} demo events in batches of {args.batch:,}, {args.rounds} rounds")
    # Untimed: a fresh server's first writes fault its shared buffers in, which would fall on
    # whichever measurement runs first.
    warm = writer_log(fresh_database(server, "bench_warmup"), settings, signer)
    ingest(warm, events[: args.warmup], args.batch)
    warm.engine.dispose()
    checked, unchecked, bare, ratios = [], [], [], []
    for r in range(args.rounds):
        # the three measurements of a round run back to back, each into a fresh database,
        # so a noisy neighbour slows all three alike; the medians over the rounds are printed
        log = writer_log(fresh_database(server, f"bench_ingest_{r}"), settings, signer)
        settle(server)
        checked.append(args.events / ingest(log, events, args.batch))
        plain_url = derive_only(fresh_database(server, f"bench_nocheck_{r}"))
        plain = writer_log(plain_url, settings, signer)
        settle(server)
        unchecked.append(args.events / ingest(plain, events, args.batch))
        plain.engine.dispose()
        n, took = bare_copy(
            log.engine,
            without_check(fresh_database(server, f"bench_bare_{r}")),
            args.batch,
            lambda: settle(server),
        )
        bare.append(n / took)
        ratios.append((checked[-1] / bare[-1], unchecked[-1] / bare[-1]))
        print(
            f"  round {r + 1}: with the database's checks {checked[-1]:,.0f}/s, without "
            f"{unchecked[-1]:,.0f}/s, bare COPY {bare[-1]:,.0f}/s"
        )
        if r < args.rounds - 1:
            log.engine.dispose()
    med = statistics.median
    print(f"  validated + chained + COPY + the database's checks: {med(checked):,.0f}/s")
    print(f"  the same without the database's checks:            {med(unchecked):,.0f}/s")
    print(f"  bare COPY of the same rows (no checks):             {med(bare):,.0f}/s")
    print(
        f"  ratio to bare COPY: {med(x for x, _ in ratios):.2f} with the database's checks "
        f"(target >= 0.70), {med(y for _, y in ratios):.2f} without"
    )
    engine = log.engine
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
    auditor = make_engine(engine.url.set(username="auditlog_dashboard"), "reader")
    report = verify_database(auditor)
    auditor.dispose()
    took = time.perf_counter() - t
    print(
        f"verify: {report.rows:,} rows in {took:.2f} s = {rate(report.rows, took)} "
        f"ok={report.ok} (target >= 50,000/s)"
    )
    engine.dispose()


if __name__ == "__main__":
    main()
