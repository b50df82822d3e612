"""Evidence export speed and memory (issue 6): CSV export of 1,000,000 events.

Targets: >= 150,000 rows/s with peak memory <= 300 MB. Also reports NDJSON, and an evidence
bundle (write + verify_bundle) of one category, for scale.

Loads demo events through ``AuditLog.record_many`` (batches of 10,000; ~1.5 min for 1M) into a
fresh database of AUDITLOG_BENCH_DATABASE_URL's server (else an embedded one), VACUUM
ANALYZEs, then runs each export in a fresh child process (so its peak RSS is the export's,
not the loader's; VmHWM) as the dashboard's SELECT-only role, writing the file to /dev/null (bundles
to a temp file). ``--database URL`` reuses an already loaded database (admin URL).

Usage: ``python benchmarks/bench_export.py [--events 1000000] [--database URL]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL

sys.path.insert(0, str(Path(__file__).parent))

from _common import fresh_database, load_demo, rate, server_url, writer_log

from auditlog.db.server import make_engine
from auditlog.settings import load_settings

TARGET_RATE, TARGET_MB = 150_000, 300
ACTOR = {"type": "user", "id": "bench-auditor"}


def stored(url: URL) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.exec_driver_sql("SELECT count(*) FROM events").scalar_one())
    finally:
        engine.dispose()


# --- the child: one export, measured -----------------------------------------------------------


def peak_mb() -> float:
    """Peak RSS of this process image: VmHWM (reset by exec, unlike getrusage's ru_maxrss,
    which a child started by a big parent inherits), else ru_maxrss."""
    try:
        with open("/proc/self/status") as fh:
            kb = next(line.split()[1] for line in fh if line.startswith("VmHWM:"))
        return int(kb) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(url_text: str, fmt: str) -> None:
    """Run one export and print its figures as JSON (runs in its own process)."""
    from auditlog.evidence.bundle import write_bundle
    from auditlog.evidence.export import write_export
    from auditlog.evidence.verify import verify_bundle
    from auditlog.query.filters import Filters
    from auditlog.settings import ExportSettings

    url = sa.make_url(url_text)
    home = Path(tempfile.mkdtemp(prefix="bench-export-child-"))
    reader = make_engine(url.set(username="auditlog_dashboard"), "reader", 30_000)
    log = writer_log(url, load_settings(env={}, store={"home": home}))
    writer = log.engine
    limits = ExportSettings(max_export_rows=0)
    base_mb = peak_mb()
    out: dict[str, Any] = {"base_mb": base_mb}
    start = time.perf_counter()
    if fmt == "bundle":
        path = home / "bundle.zip"
        res = write_bundle(
            reader, path, Filters(categories=("governance",)), log=log, actor=ACTOR, limits=limits
        )
        out |= {"rows": res.rows, "bytes": res.size, "seconds": time.perf_counter() - start}
        start = time.perf_counter()
        report = verify_bundle(path)
        out |= {"verify_seconds": time.perf_counter() - start, "verify_ok": report.ok}
        path.unlink()
    else:
        with open(os.devnull, "wb") as sink:
            res2 = write_export(reader, sink, Filters(), fmt, log=log, actor=ACTOR, limits=limits)  # type: ignore[arg-type]
        out |= {"rows": res2.rows, "bytes": res2.size, "seconds": time.perf_counter() - start}
    out["peak_mb"] = peak_mb()
    writer.dispose()
    reader.dispose()
    print(json.dumps(out))


def measure(url: URL, fmt: str) -> dict[str, Any]:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        fmt,
        "--database",
        url.render_as_string(hide_password=False),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--database", help="admin URL of an already loaded database")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--runs", type=int, default=2, help="CSV exports to time (best is kept)")
    args = ap.parse_args()
    if args.child:
        child(args.database, args.child)
        return
    url = sa.make_url(args.database) if args.database else None
    if url is None or stored(url) < args.events:
        url = url or fresh_database(server_url(), "bench_export")
        took = load_demo(url, args.events)
        print(f"loaded {args.events:,} demo events in {took:.1f} s ({rate(args.events, took)})")
    csv_runs = [measure(url, "csv") for _ in range(args.runs)]
    best = min(csv_runs, key=lambda r: r["seconds"])
    speed, peak = best["rows"] / best["seconds"], max(r["peak_mb"] for r in csv_runs)
    print(
        f"CSV export: {best['rows']:,} rows, {best['bytes'] / 1e6:,.0f} MB in "
        f"{best['seconds']:.2f} s = {speed:,.0f} rows/s (target >= {TARGET_RATE:,}); runs: "
        + ", ".join(f"{r['rows'] / r['seconds']:,.0f}/s" for r in csv_runs)
    )
    print(
        f"CSV export peak RSS: {peak:.0f} MB (target <= {TARGET_MB}); the process before "
        f"exporting: {best['base_mb']:.0f} MB"
    )
    nd = measure(url, "ndjson")
    print(
        f"NDJSON export: {nd['rows']:,} rows in {nd['seconds']:.2f} s = "
        f"{rate(nd['rows'], nd['seconds'])}; peak RSS {nd['peak_mb']:.0f} MB"
    )
    bd = measure(url, "bundle")
    print(
        f"bundle (governance only): {bd['rows']:,} rows, {bd['bytes'] / 1e6:,.0f} MB ZIP in "
        f"{bd['seconds']:.2f} s ({rate(bd['rows'], bd['seconds'])}); verify_bundle "
        f"{bd['verify_seconds']:.1f} s ({rate(bd['rows'], bd['verify_seconds'])}), "
        f"ok={bd['verify_ok']}; peak RSS {bd['peak_mb']:.0f} MB"
    )
    ok = speed >= TARGET_RATE and peak <= TARGET_MB
    print("export targets met" if ok else "export targets NOT met")


if __name__ == "__main__":
    main()
