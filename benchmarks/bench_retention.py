"""Retention speed (issue 4 targets).

Loads ``--old`` demo events recorded (the server clock replaced) over 18 months ending two
years ago, and ``--recent`` events over the last 60 days; sets a one-year policy on every
category; then times one ``retention run``: archive to Parquet, read back and verify, purge
(the DELETE through auditlog_purge, with its anchors), and logging. Target: >= 30,000 events/s.

The timeline query over the rows that remain (the last 60 days: count, histogram, first page)
is timed before the purge, right after it, and after the VACUUM ANALYZE that autovacuum would
run (min and median of 21 warm runs), as is the newest-first first page over all time. Target:
no slower after than before.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import sqlalchemy as sa
from _common import fresh_database, rate, server_url, writer_log

from auditlog.access import Identity
from auditlog.db.server import make_engine
from auditlog.demo import demo_events
from auditlog.integrity.database import verify_database
from auditlog.integrity.keys import Signer
from auditlog.model import CATEGORIES
from auditlog.query.filters import Filters
from auditlog.query.timeline import search, timeline
from auditlog.retention.policies import Retention
from auditlog.retention.run import RetentionRun
from auditlog.settings import RetentionSettings, load_settings
from auditlog.store import AuditLog
from tests.support.database import backdated

MONTHS = 18


def load(log: AuditLog, n: int, start: datetime, days: int, seed: int, batch: int) -> None:
    """``n`` demo events recorded over ``days`` from ``start``, in batches of ``batch``: as
    the superuser with the append check skipped (no application role can backdate)."""
    at = {"t": start}
    clocked = backdated(log, lambda: at["t"])
    steps = max(1, n // batch)
    for i in range(steps):
        at["t"] = start + timedelta(days=days) * i / steps
        end = at["t"] + timedelta(seconds=1)
        size = batch if i < steps - 1 else n - batch * (steps - 1)
        clocked.record_many(list(demo_events(size, seed=seed + i, days=1, end=end)))


def timed(fn, repeat: int = 21) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(min, median) seconds of ``fn()`` after one warm-up run. The machine is shared, so
    the minimum is the figure least disturbed by other work."""
    fn()
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
    return min(runs), statistics.median(runs)


def queries(reader, now: datetime) -> dict[str, tuple[float, float]]:  # type: ignore[no-untyped-def]
    recent = Filters(time_from=now - timedelta(days=61), time_to=now + timedelta(days=1))
    return {
        "timeline, last 60 days (count + histogram + page)": timed(
            lambda: timeline(reader, recent, now=now)
        ),
        "first page, all time, newest first": timed(lambda: search(reader, Filters(), now=now)),
    }


def compare(label: str, before: dict, after: dict) -> None:  # type: ignore[type-arg]
    for name, (b_min, b_med) in before.items():
        a_min, a_med = after[name]
        print(
            f"  {name}, {label}: min {b_min * 1e3:.1f} -> {a_min * 1e3:.1f} ms (ratio "
            f"{a_min / b_min:.2f}); median {b_med * 1e3:.1f} -> {a_med * 1e3:.1f} ms "
            f"(ratio {a_med / b_med:.2f})"
        )


def vacuum(url) -> None:  # type: ignore[no-untyped-def]
    """What autovacuum does after a purge (here at once, so the figure does not wait on it)."""
    admin = make_engine(url, "admin")
    with admin.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(
            sa.text("VACUUM ANALYZE events")
        )
    admin.dispose()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old", type=int, default=500_000, help="events past retention")
    ap.add_argument("--recent", type=int, default=100_000, help="events that remain")
    ap.add_argument("--batch", type=int, default=10_000)
    args = ap.parse_args()
    url = fresh_database(server_url(), "bench_retention")
    home = Path(tempfile.mkdtemp(prefix="auditlog-bench-retention-"))
    settings = load_settings(env={}, store={"home": home})
    settings = settings.replace(store={"database_url": url.render_as_string(False)})
    reader = make_engine(url.set(username="auditlog_dashboard"), "reader")
    log = writer_log(url, settings, Signer.generate(), login="auditlog_retention_admin")
    engine = log.engine
    now = datetime.now(UTC)
    old_start = now - timedelta(days=730 + 30 * MONTHS)
    t = time.perf_counter()
    load(log, args.old, old_start, 30 * MONTHS, seed=100, batch=args.batch)
    load(log, args.recent, now - timedelta(days=60), 59, seed=900_000, batch=args.batch)
    print(
        f"loaded {args.old:,} old + {args.recent:,} recent events "
        f"in {time.perf_counter() - t:.0f} s"
    )

    vacuum(url)  # compare like with like: both sides measured on a vacuumed, analysed table
    before = queries(reader, now)
    ret = Retention(log, RetentionSettings(archive_dir=home / "archives"))
    lead = Identity("lead@contoso.com")
    for cat in CATEGORIES:
        ret.set_policy(lead, "compliance_lead", cat, 365, 3650, "benchmark")
    t = time.perf_counter()
    report = RetentionRun(log, ret.settings, home).run()
    took = time.perf_counter() - t
    purged = sum(r.purged_rows for r in report.categories.values())
    for rep in report.categories.values():
        print(" ", rep.summary())
    files = list((home / "archives").rglob("*.parquet"))
    size = sum(f.stat().st_size for f in files)
    print(
        f"retention run: archived + verified + purged {purged:,} events in {took:.2f} s = "
        f"{rate(purged, took)} (target >= 30,000/s); {len(files)} archives, "
        f"{size / 1e6:.0f} MB zstd Parquet"
    )
    print("timeline query on the remaining rows (target: after <= before, within noise):")
    compare("right after the purge", before, queries(reader, now))
    vacuum(url)
    compare("after VACUUM ANALYZE", before, queries(reader, now))
    t = time.perf_counter()
    check = verify_database(reader)
    print(
        f"verify after purge: {check.rows:,} rows, ok={check.ok} in {time.perf_counter() - t:.1f} s"
    )
    engine.dispose()
    reader.dispose()
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
