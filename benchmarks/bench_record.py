"""Single-event record() from many threads of one process: group commit (issue 12).

Prints, for 1, 8 and 32 threads each calling ``AuditLog.record`` in a loop on one AuditLog:
events/s in total, p50/p99 latency of one call, and how many events one group transaction
held on average (the committer's counters). Beside each, the same threads each appending
their event in a transaction of its own (``append_prepared``: what record() did before group
commit), measured in the same run, so the ratio is not at the mercy of a noisy machine. Each
measurement runs into a fresh database, after a CHECKPOINT. Target: 32 threads >= 10,000/s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import fresh_database, server_url, writer_log
from bench_ingest import settle

from auditlog.demo import demo_events
from auditlog.integrity.keys import Signer
from auditlog.settings import load_settings
from auditlog.store import AuditLog, prepare

# make_engine's pool (10 + 10 overflow): more callers each holding a connection for their own
# transaction wait on the pool itself, and time out after 30 s
POOLED = 20


def alone(log: AuditLog) -> Callable[[dict], object]:
    """One transaction per event, each caller its own (record() before group commit)."""
    return lambda ev: log.append_prepared([prepare(ev, log.settings, log.resolve)])


def hammer(
    log: AuditLog, events: list[dict], threads: int, call: Callable[[dict], object] | None = None
) -> tuple[float, list[float]]:
    """``threads`` callers share ``events`` out and record them one by one; (seconds, ms)."""
    record = call or log.record
    latencies: list[list[float]] = [[] for _ in range(threads)]
    start = threading.Barrier(threads + 1)

    def caller(i: int) -> None:
        mine, lat = events[i::threads], latencies[i]
        start.wait()
        for ev in mine:
            t = time.perf_counter()
            record(ev)
            lat.append((time.perf_counter() - t) * 1000)

    workers = [threading.Thread(target=caller, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    start.wait()
    began = time.perf_counter()
    for w in workers:
        w.join()
    return time.perf_counter() - began, [x for lat in latencies for x in lat]


def measure(server, settings, signer, events: list[dict], n: int, grouped: bool) -> str:  # type: ignore[no-untyped-def]
    name = f"bench_record_{n}_{'group' if grouped else 'alone'}"
    log = writer_log(fresh_database(server, name), settings, signer)
    settle(server)
    took, lat = hammer(log, events, n, None if grouped else alone(log))
    stats = log.commit_stats()
    log.close()
    q = statistics.quantiles(lat, n=100)
    line = f"{len(lat) / took:>7,.0f}/s p50 {q[49]:6.2f} ms p99 {q[98]:6.2f} ms"
    if grouped:
        line += f", {stats.groups:,} transactions ({stats.events / stats.groups:.1f} events each)"
    return line


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=30_000, help="events per run with threads")
    ap.add_argument("--single", type=int, default=3_000, help="events of the one-thread runs")
    ap.add_argument("--threads", default="1,8,32", help="comma-separated thread counts")
    ap.add_argument("--warmup", type=int, default=5_000, help="events recorded untimed first")
    args = ap.parse_args()
    server = server_url()
    settings = load_settings(env={})
    signer = Signer.generate()
    counts = [int(n) for n in args.threads.split(",")]
    print(f"record(): demo events, one AuditLog per run, threads {counts}")
    warm = writer_log(fresh_database(server, "bench_record_warmup"), settings, signer)
    hammer(warm, list(demo_events(args.warmup, seed=21)), 8)
    warm.close()
    for n in counts:
        events = list(demo_events(args.single if n == 1 else args.events, seed=22 + n))
        grouped = measure(server, settings, signer, events, n, True)
        print(f"  {n:>2} threads, group commit:       {grouped}")
        if n > POOLED:
            print(f"  {n:>2} threads, a transaction each: not run (more callers than the pool)")
            continue
        alone = measure(server, settings, signer, events, n, False)
        print(f"  {n:>2} threads, a transaction each: {alone}")
    print("  target: 32 threads >= 10,000 events/s with group commit")


if __name__ == "__main__":
    main()
