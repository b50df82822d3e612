"""Proofs from the stored Merkle tree (issue 11, item 9) at 1,000,000 demo events.

Loads demo events through ``AuditLog.record_many`` (validated, chained, the tree kept as
batches append; batches of 10,000), VACUUM ANALYZEs, then times, as the dashboard's
SELECT-only role, each proof on a fresh ``TreeReader`` (nothing memoised from the proof
before):

- an inclusion proof for one event picked by event_id: look up its category, seq and
  entry_hash, read the audit path to its chain's latest checkpoint size and that tree's
  root; verified with ``merkle.verify_inclusion`` (timed apart) against the root computed
  once beforehand; target p95 <= 5 ms;
- a consistency proof between two checkpoint sizes of the largest chain: random pairs and
  the worst case old = 1, new = size; each verified against the two roots; target <= 20 ms;
- the root of each chain's whole tree (``TreeReader.root(size)``);
- ``auditlog verify`` (``verify_database``, which also recomputes every stored tree node),
  rows/s; target >= 50,000/s;
- an evidence bundle of about 100,000 filtered rows at 1,000,000 events (governance, the
  first 24% of its time range: some 200 runs of seqs), each row with its inclusion proof
  (the node table of proofs.ndjson format 2): rows/s written (target >= 20,000/s), and the
  bundle's ``verify_bundle.py`` run with ``python3 -I`` (standard library only, ``--pure``;
  target >= 20,000 rows/s) and with ``cryptography``.

Usage: ``python benchmarks/bench_proofs.py [--events 1000000] [--samples 500]``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import psycopg
from sqlalchemy.engine import Engine

sys.path.insert(0, str(Path(__file__).parent))

from _common import fresh_database, load_demo, rate, server_url

from auditlog.db.server import make_engine
from auditlog.integrity.database import verify_database
from auditlog.proofs.merkle import leaf_hash, verify_consistency, verify_inclusion
from auditlog.proofs.tree import TreeReader

END = datetime(2026, 6, 1, tzinfo=UTC)  # demo data spans the 90 days before this
Cursor = psycopg.Cursor[Any]
Timings = dict[str, list[float]]


def ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000


def summary(ms: list[float]) -> str:
    q = statistics.quantiles(ms, n=20) if len(ms) > 1 else [ms[0]] * 19
    return f"p50 {statistics.median(ms):7.2f}  p95 {q[-1]:7.2f}  max {max(ms):7.2f} ms"


def checkpoint_sizes(cur: Cursor) -> dict[str, list[int]]:
    """Each chain's checkpointed tree sizes (the seq each checkpoint signs), ascending."""
    cur.execute("SELECT category, seq FROM checkpoints GROUP BY 1, 2 ORDER BY 1, 2")
    out: dict[str, list[int]] = {}
    for category, seq in cur.fetchall():
        out.setdefault(str(category), []).append(int(seq))
    return out


def sample_events(cur: Cursor, heads: dict[str, int], k: int) -> list[str]:
    """``k`` random event ids, each covered by its chain's latest checkpoint."""
    cur.execute("SELECT setseed(0.7)")
    cur.execute(
        "SELECT e.event_id FROM events e"
        " JOIN unnest(%s::text[], %s::bigint[]) AS h(category, size) USING (category)"
        " WHERE e.seq <= h.size ORDER BY random() LIMIT %s",
        (list(heads), list(heads.values()), k),
    )
    return [str(v) for (v,) in cur.fetchall()]


def timed_root(cur: Cursor, category: str, size: int) -> tuple[bytes, float]:
    start = time.perf_counter()
    root = TreeReader(cur, category).root(size)
    return root, ms_since(start)


def one_inclusion(
    cur: Cursor, event_id: str, heads: dict[str, int], roots: dict[str, bytes]
) -> tuple[bool, Timings]:
    """Prove one event as ``auditlog proof inclusion`` would; (verified, timings). It is
    verified against the root read beforehand by another reader, not the proof's own."""
    start = time.perf_counter()
    cur.execute("SELECT category, seq, entry_hash FROM events WHERE event_id = %s", (event_id,))
    category, seq, entry = cur.fetchone() or ("", 0, b"")
    index, size = int(seq) - 1, heads[category]
    tree = TreeReader(cur, category)
    path, root = tree.inclusion(index, size), tree.root(size)
    proved = ms_since(start)
    start = time.perf_counter()
    ok = verify_inclusion(index, size, leaf_hash(bytes(entry)), path, roots[category])
    verified = ms_since(start)
    return ok and root == roots[category], {
        "prove": [proved],
        "verify": [verified],
        "path": [len(path)],
    }


def inclusions(cur: Cursor, heads: dict[str, int], samples: int) -> None:
    roots = {c: TreeReader(cur, c).root(n) for c, n in heads.items()}
    times: Timings = {"prove": [], "verify": [], "path": []}
    bad = 0
    for event_id in sample_events(cur, heads, samples):
        ok, t = one_inclusion(cur, event_id, heads, roots)
        bad += not ok
        for key, vals in t.items():
            times[key] += vals
    n = len(times["prove"])
    print(
        f"\ninclusion proof for one event ({n} random events, audit paths of "
        f"{min(times['path']):.0f}..{max(times['path']):.0f} hashes):"
    )
    print(f"  lookup + path + root: {summary(times['prove'])}   (target p95 <= 5)")
    print(f"  verify_inclusion:     {summary(times['verify'])}")
    print(f"  verified against the chain's root: {n - bad}/{n}")


def consistency_pairs(sizes: list[int], k: int) -> list[tuple[int, int]]:
    """``k`` random (old, new) pairs of distinct checkpoint sizes, old < new."""
    rnd = random.Random(11)
    return [(min(p), max(p)) for p in (rnd.sample(sizes, 2) for _ in range(k))]


def consistencies(cur: Cursor, category: str, sizes: list[int], samples: int) -> None:
    roots: dict[int, bytes] = {}

    def root(n: int) -> bytes:  # read apart from the timed proof, by its own reader
        if n not in roots:
            roots[n] = TreeReader(cur, category).root(n)
        return roots[n]

    for label, pairs in (
        ("random checkpoint pairs", consistency_pairs(sizes, samples)),
        (f"worst case 1 -> {sizes[-1]:,}", [(1, sizes[-1])] * 50),
    ):
        ms, bad = [], 0
        for old, new in pairs:
            start = time.perf_counter()
            proof = TreeReader(cur, category).consistency(old, new)
            ms.append(ms_since(start))
            bad += not verify_consistency(old, new, root(old), root(new), proof)
        print(f"  {label:30} {summary(ms)}   verified {len(ms) - bad}/{len(ms)}")


def roots_of(cur: Cursor, heads: dict[str, int]) -> None:
    print("\nroot of the whole tree (TreeReader.root(size), fresh reader, best / worst of 5):")
    for category, size in heads.items():
        ms = [timed_root(cur, category, size)[1] for _ in range(5)]
        print(f"  {category:14} {size:>10,} leaves  {min(ms):7.2f} / {max(ms):7.2f} ms")


def verify_rate(reader: Engine) -> None:
    start = time.perf_counter()
    report = verify_database(reader)
    took = time.perf_counter() - start
    print(
        f"\nauditlog verify (chains + stored tree): {report.rows:,} rows in {took:.1f} s = "
        f"{rate(report.rows, took)} ok={report.ok} (target >= 50,000/s)"
    )


def bundle_rates(url: Any, reader: Engine) -> None:
    """A filtered bundle with proofs, written, then checked by the stand-alone script."""
    import subprocess
    import tempfile

    import sqlalchemy as sa
    from _common import writer_log

    from auditlog.evidence.bundle import write_bundle
    from auditlog.integrity.keys import Signer
    from auditlog.query.filters import Filters
    from auditlog.settings import ExportSettings, load_settings

    with reader.connect() as conn:
        lo, hi = conn.execute(
            sa.text("SELECT min(occurred_at), max(occurred_at) FROM events"
                    " WHERE category = 'governance'")
        ).one()  # fmt: skip
    home = Path(tempfile.mkdtemp(prefix="bench-proofs-"))
    signer = Signer.generate()
    log = writer_log(url, load_settings(env={}, store={"home": home}), signer)
    only = Filters(categories=("governance",), time_from=lo, time_to=lo + (hi - lo) * 0.24)
    path = home / "bundle.zip"
    start = time.perf_counter()
    res = write_bundle(reader, path, only, log=log, actor={"type": "user", "id": "bench"},
                       limits=ExportSettings(max_export_rows=0))  # fmt: skip
    took = time.perf_counter() - start
    proven, table = res.manifest["proofs"]["rows"], res.manifest["proofs"]["bytes"]
    print(
        f"\nbundle with proofs: {res.rows:,} rows ({proven:,} proven), "
        f"{res.size / 1e6:.0f} MB ({table / 1e6:.1f} MB of proofs) in {took:.1f} s = "
        f"{rate(res.rows, took)} (target >= 20,000/s)"
    )
    pins = []  # every registered key: the loader's signed the older checkpoints
    with reader.connect() as conn:
        for n, (pem_bytes,) in enumerate(
            conn.execute(sa.text("SELECT public_key FROM signing_keys"))
        ):
            pem = home / f"key{n}.pem"
            pem.write_bytes(bytes(pem_bytes))
            pins += ["--public-key", str(pem)]
    script = Path(__file__).parents[1] / "src" / "auditlog" / "evidence" / "verify_bundle.py"
    for flags, what in ((["--pure"], "standard library only"), ([], "with cryptography")):
        cmd = ["/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable,
               "-I", str(script), str(path), *pins, *flags]  # fmt: skip
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=home)
        took = time.perf_counter() - start
        print(
            f"verify_bundle.py ({what}): {res.rows:,} rows in {took:.1f} s = "
            f"{rate(res.rows, took)}, exit {done.returncode} (target >= 20,000/s)"
        )
    log.engine.dispose()


def proofs(reader: Engine, samples: int) -> None:
    with reader.connect() as sa_conn:
        conn = cast(psycopg.Connection[Any], sa_conn.connection.driver_connection)
        cur = conn.cursor()
        sizes = checkpoint_sizes(cur)
        heads = {c: s[-1] for c, s in sizes.items()}
        print(
            "chains (latest checkpoint size): " + ", ".join(f"{c} {n:,}" for c, n in heads.items())
        )
        inclusions(cur, heads, samples)
        largest = max(heads, key=lambda c: heads[c])
        print(f"\nconsistency proof, {largest} ({len(sizes[largest]):,} checkpoints):")
        consistencies(cur, largest, sizes[largest], samples)
        roots_of(cur, heads)
        conn.rollback()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--samples", type=int, default=500)
    args = ap.parse_args()
    url = fresh_database(server_url(), "bench_proofs")
    took = load_demo(url, args.events, end=END)
    print(
        f"loaded {args.events:,} demo events through AuditLog.record_many in {took:.1f} s "
        f"({rate(args.events, took)})",
        flush=True,
    )
    reader = make_engine(url.set(username="auditlog_dashboard"), "reader")
    try:
        proofs(reader, args.samples)
        verify_rate(reader)
        bundle_rates(url, reader)
    finally:
        reader.dispose()


if __name__ == "__main__":
    main()
