"""HTTP ingestion against in-process ingestion, side by side in one run (issue 12 targets).

Prints: (a) batched ingest over HTTP (``AuditLogClient.send_many``, batches of 500 over
keep-alive connections) into ``uvicorn auditlog.api.app:create_app --workers N`` running in a
subprocess, events/s, beside in-process ``AuditLog.record_many`` on the same events in
batches of 500 into a fresh database on the same server, and their ratio (targets >= 20,000/s
and >= 0.6); (b) 32 concurrent clients, one event per request, total events/s and p50/p99
latency (targets >= 10,000/s, p99 <= 50 ms); (c) 32 threads calling ``AuditLog.record`` in one
process (target >= 10,000/s; group commit, ``AuditLog.submit``, makes the difference).

The server process and this one share the machine's cores: the figures are for the whole
round trip on one host. uvicorn runs without its access log (one line per request would be
measured too).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import httpx
from _common import fresh_database, rate, server_url, writer_log
from sqlalchemy.engine import URL

from auditlog.access import local_identity
from auditlog.apikeys.admin import create_key
from auditlog.client import AuditLogClient
from auditlog.db.server import make_engine
from auditlog.demo import demo_events
from auditlog.integrity.keys import Signer
from auditlog.settings import Settings, load_settings
from auditlog.store import AuditLog
from tests.support.database import register

BATCH = 500


def _settings(url: URL, home: Path, signer: Signer) -> Settings:
    home.mkdir(parents=True, exist_ok=True)
    s = load_settings(env={}, store={"home": home, "database_url": _text(url)})
    s.store.key_path.parent.mkdir(parents=True, exist_ok=True)
    s.store.key_path.write_bytes(signer.private_pem())
    s.store.key_path.chmod(0o600)
    return s


def _text(url: URL) -> str:
    return url.render_as_string(hide_password=False)


def api_key(url: URL, settings: Settings, signer: Signer) -> str:
    """A write:* key with no practical rate limit, made as the key administrator (the
    signing key registered first, as the superuser standing in for the key admin)."""
    admin = make_engine(url, "admin")
    register(admin, signer)
    admin.dispose()
    engine = make_engine(url.set(username="auditlog_key_admin"), "keys")
    log = AuditLog(engine, settings, signer=signer)
    token = create_key(log, local_identity("bench"), "bench", ["write:*"], rate=1e9, burst=10**9)
    engine.dispose()
    return token.token


def start_server(url: URL, home: Path, port: int, workers: int) -> subprocess.Popen[bytes]:
    """uvicorn with the app factory (as ``auditlog serve --workers N`` runs it); once ready."""
    env = os.environ | {"AUDITLOG_DATABASE_URL": _text(url), "AUDITLOG_HOME": str(home)}
    cmd = [sys.executable, "-m", "uvicorn", "auditlog.api.app:create_app", "--factory"]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    cmd += ["--no-access-log", "--log-level", "warning", "--no-server-header"]
    server = subprocess.Popen(cmd, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.kill()
    raise RuntimeError("the API server did not become ready in 60 s")


def _parallel(n: int, work: Callable[[int], Any]) -> float:
    """Run ``work(i)`` for i < n in n threads; the wall-clock seconds they took."""
    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start


def http_batched(base: str, token: str, events: list[dict[str, Any]], clients: int) -> float:
    """events/s of ``clients`` threads, each sending its share in batches of 500."""
    share = [events[i::clients] for i in range(clients)]

    def work(i: int) -> None:
        with AuditLogClient(base, token, batch_size=BATCH) as client:
            client.send_many(share[i])

    return len(events) / _parallel(clients, work)


def in_process(log: AuditLog, events: list[dict[str, Any]]) -> float:
    start = time.perf_counter()
    for i in range(0, len(events), BATCH):
        log.record_many(events[i : i + BATCH])
    return len(events) / (time.perf_counter() - start)


def concurrent_singles(
    n: int, each: int, send: Callable[[int], Callable[[dict[str, Any]], Any]]
) -> tuple[float, list[float]]:
    """(events/s, latencies in ms) of ``n`` threads each sending ``each`` single events;
    ``send(i)`` makes thread i's sender."""
    events = list(demo_events(n * each, seed=23))
    for e in events:
        e.pop("event_id")
    latencies: list[list[float]] = [[] for _ in range(n)]

    def work(i: int) -> None:
        one = send(i)
        for ev in events[i::n]:
            t = time.perf_counter()
            one(ev)
            latencies[i].append((time.perf_counter() - t) * 1000)

    took = _parallel(n, work)
    return n * each / took, [x for lat in latencies for x in lat]


def _quantiles(lat: list[float]) -> str:
    q = statistics.quantiles(lat, n=100)
    return f"p50 {q[49]:.1f} ms, p99 {q[98]:.1f} ms, max {max(lat):.1f} ms"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=50_000, help="events of the batched runs")
    workers = int(os.environ.get("AUDITLOG_BENCH_WORKERS", "1"))
    ap.add_argument("--workers", type=int, default=workers, help="uvicorn worker processes")
    ap.add_argument("--clients", type=int, default=2, help="batched HTTP client threads")
    ap.add_argument("--concurrency", type=int, default=32, help="single-event clients")
    ap.add_argument("--singles", type=int, default=100, help="events per single-event client")
    ap.add_argument("--port", type=int, default=8611)
    args = ap.parse_args()
    server = server_url()
    signer = Signer.generate()
    tmp = Path(tempfile.mkdtemp(prefix="bench-http-"))
    http_url = fresh_database(server, "bench_http")
    settings = _settings(http_url, tmp / "home", signer)
    token = api_key(http_url, settings, signer)
    log = writer_log(fresh_database(server, "bench_inproc"), settings, signer)
    events = list(demo_events(args.events, seed=21))
    print(
        f"http: {args.events:,} demo events, batches of {BATCH}, uvicorn --workers "
        f"{args.workers}, {os.cpu_count()} CPUs shared by server, client and PostgreSQL"
    )
    proc = start_server(http_url, tmp / "home", args.port, args.workers)
    base = f"http://127.0.0.1:{args.port}"
    try:
        warm = list(demo_events(2_000, seed=22))
        http_batched(base, token, warm, 1)  # untimed: connections, caches, first pages
        log.record_many(warm)
        over_http = http_batched(base, token, events, args.clients)
        local = in_process(log, events)
        print(f"  (a) batched over HTTP ({args.clients} client threads): {over_http:,.0f}/s")
        print(f"      in-process record_many, same events:          {local:,.0f}/s")
        print(f"      ratio {over_http / local:.2f} (targets >= 20,000/s and >= 0.60)")
        clients = [AuditLogClient(base, token) for _ in range(args.concurrency)]
        total, lat = concurrent_singles(args.concurrency, args.singles, lambda i: clients[i].send)
        for c in clients:
            c.close()
        print(
            f"  (b) {args.concurrency} concurrent single-event HTTP clients: "
            f"{rate(int(total), 1)} in total, {_quantiles(lat)} "
            "(targets >= 10,000/s, p99 <= 50 ms)"
        )
    finally:
        proc.terminate()
        proc.wait(30)
    group = "with group commit" if hasattr(AuditLog, "submit") else "no AuditLog.submit here"
    total, lat = concurrent_singles(args.concurrency, args.singles, lambda i: log.record)
    print(
        f"  (c) {args.concurrency} threads calling AuditLog.record in one process ({group}): "
        f"{total:,.0f}/s, {_quantiles(lat)} (target >= 10,000/s)"
    )
    log.engine.dispose()


if __name__ == "__main__":
    main()
