"""Dashboard query speed (issue 3-6 targets) on 100,000 and 1,000,000 demo events.

Loads demo events through ``AuditLog.record_many`` (validated, hash-chained; batches of
10,000), VACUUM ANALYZEs (what autovacuum does after a bulk load), then times, as the
dashboard's SELECT-only role:

- the timeline's first view (filtered count + histogram + first page of 50 rows) for several
  filter sets; target p95 <= 1.0 s at 1M, and at most 2x its 100k time. Both databases span
  the same 90 days, so each window holds 10x the events at 1M: views filtered only by time,
  category, action and outcome read whole hours from ``event_rollup`` and stay flat; views
  with actor / target / IP / text filters scale with the events they match;
- a correlation lookup (random correlation ids); target p95 <= 50 ms;
- the diff of one event (fetch + structural diff + highlighted lines); target p95 <= 100 ms.

Usage: ``python benchmarks/bench_query.py [--sizes 100000,1000000] [--runs 30]``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import Engine

sys.path.insert(0, str(Path(__file__).parent))

from _common import fresh_database, load_demo, rate, server_url

from auditlog import diff
from auditlog.db.server import make_engine
from auditlog.query.drilldown import correlation, get_event
from auditlog.query.filters import Filters
from auditlog.query.timeline import count, timeline

END = datetime(2026, 6, 1, tzinfo=UTC)  # demo data spans the 90 days before this
VIEWS: dict[str, Filters] = {
    "last 24h": Filters(last="24h"),
    "last 7d": Filters(last="7d"),
    "last 30d": Filters(last="30d"),
    "all 90d": Filters(),
    "7d governance failed": Filters(last="7d", categories=("governance",),
                                    outcomes=("failure", "denied")),
    "30d action policy.updated": Filters(last="30d", actions=("policy.updated",)),
    "30d actor (upn)": Filters(last="30d", actor="{upn}"),
    "30d target policy": Filters(last="30d", target_type="policy", target_id="mfa-required"),
    "30d ip 10.0.0.0/16": Filters(last="30d", ip="10.0.0.0/16"),
    "7d free text": Filters(last="7d", text="break-glass"),
}  # fmt: skip
DEFAULT_VIEW = "last 7d"


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    fn()  # warm: first connection, plan, caches
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def p95(ms: list[float]) -> float:
    return statistics.quantiles(ms, n=20)[-1] if len(ms) > 1 else ms[0]


def _sample(reader: Engine, sql: str, k: int) -> list[str]:
    with reader.connect() as conn:
        return [str(v) for v in conn.exec_driver_sql(sql, (k,)).scalars()]


def measure(reader: Engine, runs: int) -> dict[str, float]:
    """p95 in ms of each timeline view, the correlation lookup and the diff."""
    upn = _sample(
        reader, "SELECT actor->>'upn' FROM events WHERE actor->>'upn' IS NOT NULL LIMIT %s", 1
    )[0]
    out: dict[str, float] = {}
    for name, f in VIEWS.items():
        f = f.replace(actor=upn) if f.actor else f
        out[name] = p95(timed(lambda f=f: timeline(reader, f, now=END), runs))
        out[f"{name} (count)"] = count(reader, f, now=END)
    rnd = random.Random(1)
    cids = _sample(
        reader,
        "SELECT DISTINCT correlation_id FROM events "
        "WHERE correlation_id IS NOT NULL ORDER BY 1 LIMIT %s",
        500,
    )
    out["correlation"] = p95(timed(lambda: correlation(reader, rnd.choice(cids)), runs * 5))
    eids = _sample(
        reader,
        "SELECT event_id FROM events WHERE before IS NOT NULL ORDER BY event_id LIMIT %s",
        500,
    )

    def one_diff() -> None:
        event = get_event(reader, rnd.choice(eids))
        diff.diff(event["before"], event["after"])
        diff.highlighted(event["before"], event["after"])

    out["diff"] = p95(timed(one_diff, runs * 5))
    return out


def report(results: dict[int, dict[str, float]]) -> None:
    sizes = sorted(results)
    print(f"\n{'p95 ms':34}" + "".join(f"{n:>14,}" for n in sizes) + "   ratio")
    for key in [k for k in results[sizes[0]] if not k.endswith("(count)")]:
        vals = [results[n][key] for n in sizes]
        ratio = f"{vals[-1] / vals[0]:7.2f}" if len(vals) > 1 else ""
        counts = "".join(f"{int(results[n].get(key + ' (count)', 0)):>10,}" for n in sizes)
        extra = f"   matched {counts}" if key in VIEWS else ""
        print(f"{key:34}" + "".join(f"{v:14.1f}" for v in vals) + f"   {ratio}{extra}")
    big, small = results[sizes[-1]], results[sizes[0]]
    worst = max(big[k] for k in VIEWS)
    print(f"\ntimeline first view, worst p95 at {sizes[-1]:,}: {worst:.0f} ms (target <= 1000)")
    if len(sizes) > 1:
        r = big[DEFAULT_VIEW] / small[DEFAULT_VIEW]
        worst_r = max(big[k] / small[k] for k in VIEWS)
        print(
            f"default view ({DEFAULT_VIEW}) {sizes[-1]:,} vs {sizes[0]:,}: {r:.2f}x "
            f"(target <= 2x); worst view {worst_r:.2f}x"
        )
    print(f"correlation lookup p95: {big['correlation']:.1f} ms (target <= 50)")
    print(f"diff of one event p95:  {big['diff']:.1f} ms (target <= 100)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    server = server_url()
    results: dict[int, dict[str, float]] = {}
    for n in (int(s) for s in args.sizes.split(",")):
        url = fresh_database(server, f"bench_query_{n}")
        took = load_demo(url, n, end=END)
        print(
            f"loaded {n:,} demo events through AuditLog.record_many in {took:.1f} s "
            f"({rate(n, took)})",
            flush=True,
        )
        reader = make_engine(url.set(username="auditlog_dashboard"), "reader", 30_000)
        try:
            results[n] = measure(reader, args.runs)
        finally:
            reader.dispose()
    report(results)


if __name__ == "__main__":
    main()
