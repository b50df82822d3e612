"""Databases for tests: each test gets a fresh one cloned from a migrated template."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from auditlog.db.tables import signing_keys
from auditlog.integrity.keys import Signer, public_pem
from auditlog.store import AuditLog


def create_database(server: URL, name: str, template: str | None = None) -> None:
    """CREATE DATABASE ``name`` on ``server``, as a copy of ``template`` when given."""
    engine = sa.create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        tmpl = f' TEMPLATE "{template}"' if template else ""
        conn.execute(sa.text(f'CREATE DATABASE "{name}"{tmpl}'))
    engine.dispose()


def register(admin: Engine, signer: Signer) -> None:
    """Register ``signer``'s public key directly (test setup, as the superuser): what a key
    administrator's ``auditlog keys register`` does, without its audit event."""
    with admin.begin() as conn:
        conn.execute(
            sa.insert(signing_keys).values(
                key_id=signer.key_id, public_key=public_pem(signer.public).encode()
            )
        )


def unpooled(url: URL, setup: str) -> Engine:
    """An engine with no pool (nothing is left open for a test to dispose of) whose every
    session first runs ``setup``."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)

    @sa.event.listens_for(engine, "connect")
    def _setup(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        with dbapi_conn.cursor() as cur:
            cur.execute(setup)
        dbapi_conn.commit()

    return engine


def backdating_engine(admin_url: URL) -> Engine:
    """A superuser engine whose sessions skip the append check (session_replication_role =
    replica), so an AuditLog with ``clock=`` can store rows recorded in the past. Only a
    superuser can do this; the application roles cannot (tests/db/test_trust_boundary.py)."""
    return unpooled(admin_url, "SET session_replication_role = replica")


def backdated(log: AuditLog, clock: Callable[[], datetime]) -> AuditLog:
    """``log``'s settings and signer on a :func:`backdating_engine` of its (superuser) test
    database, recording at ``clock()`` instead of the server clock."""
    url = sa.make_url(str(log.settings.store.database_url))
    url = url.set(drivername="postgresql+psycopg")
    return AuditLog(backdating_engine(url), log.settings, signer=log.signer, clock=clock)


def reader_of(engine: Engine) -> Engine:
    """An auditor's engine (auditlog_dashboard acting as auditlog_reader) on ``engine``'s
    database: verification reads keys and checkpoints, which the writer may not."""
    return unpooled(engine.url.set(username="auditlog_dashboard"), "SET ROLE auditlog_reader")
