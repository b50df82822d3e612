"""What every command shares: the settings, sessions that close, trusted keys, exit codes.

Errors reach a user of the command line as one line, ``error: <message>``, and exit code 1
(:func:`fail`); a check that finds a problem also exits 1, after saying what it found.
Database errors (disk full, server gone, statement timeout...) are named by their cause
(:func:`database_error`), never shown as a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import psycopg
import sqlalchemy as sa
import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.engine import Engine

from auditlog import access
from auditlog.access import Identity, Role
from auditlog.db.server import Role as DbRole
from auditlog.db.server import connect, embedded_server_down
from auditlog.errors import AuditLogError, DatabaseUnavailable, QueryTimeout
from auditlog.identity.directory import Directory
from auditlog.integrity.keyadmin import open_registered
from auditlog.integrity.keys import key_id_of, load_public_key
from auditlog.settings import Settings, load_settings
from auditlog.store import AuditLog


def settings() -> Settings:
    """The settings, read once per command from the environment and ``auditlog.toml``."""
    return load_settings()


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` to standard error and exit with ``code``."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


# What a SQLSTATE means to someone running a command (class 53: insufficient resources).
_CAUSES = {
    "53100": "the database disk is full",
    "53200": "the database server is out of memory",
    "53300": "the database server has too many connections",
    "53400": "a database configuration limit was exceeded",
    "57014": "a statement ran past the statement timeout and was cancelled",
    "57P01": "the database server was shut down or ended the session",
    "57P02": "the database server crashed",
    "57P03": "the database server is not accepting connections yet",
    "25P03": "the session was idle in a transaction past its time-out",
    "40001": "a concurrent transaction conflicted (serialization failure); retry",
    "40P01": "a deadlock was detected; retry",
    "55P03": "a lock could not be taken in time",
}
DB_ERRORS = (psycopg.Error, sa.exc.DBAPIError, DatabaseUnavailable, QueryTimeout)


def _driver_error(exc: BaseException) -> psycopg.Error | None:
    """The psycopg error behind ``exc`` (itself, SQLAlchemy's ``orig``, or a cause)."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return None
        if isinstance(seen, psycopg.Error):
            return seen
        orig = getattr(seen, "orig", None)
        if isinstance(orig, psycopg.Error):
            return orig
        seen = seen.__cause__ or seen.__context__
    return None


def database_error(exc: BaseException, settings: Settings | None = None) -> str:
    """One line naming what went wrong in the database, and how to restart an embedded server
    that is no longer running (``settings`` tells where it lives)."""
    driver = _driver_error(exc)
    if driver is None:
        cause = str(exc)
    else:
        detail = (str(driver).strip().splitlines() or [type(driver).__name__])[0]
        state = driver.sqlstate
        if state in _CAUSES:
            cause = f"{_CAUSES[state]} ({detail})"
        elif state is None or state.startswith("08"):
            why = "" if "connection is lost" in detail else f" ({detail})"
            cause = f"the connection to the database was lost: the server ended the session{why}"
        else:
            cause = f"the database refused the statement, SQLSTATE {state} ({detail})"
    try:
        down = embedded_server_down(settings or load_settings())
    except (AuditLogError, OSError):
        down = None
    return f"{cause}; {down}" if down else cause


@contextmanager
def errors(settings: Settings | None = None) -> Iterator[None]:
    """Turn a library or database error into one line and exit code 1 (no traceback)."""
    try:
        yield
    except DB_ERRORS as exc:
        fail(database_error(exc, settings))
    except AuditLogError as exc:
        fail(str(exc))


def operator(settings: Settings) -> tuple[Identity, Role | None]:
    """The local operator (setting ``dashboard.user``, else the OS user) and their role."""
    identity = access.local_identity(settings.dashboard.user)
    return identity, access.roles_config(settings.roles).role_of(identity)


def open_log(settings: Settings, engine: Engine | None = None) -> AuditLog:
    """The writer, resolving actors through the directory (empty until a sync)."""
    engine = engine or connect(settings, "writer")
    return open_registered(settings, engine=engine, resolve=Directory(engine).resolver())


@contextmanager
def log_session(settings: Settings) -> Iterator[AuditLog]:
    """An AuditLog whose connections are closed when the command ends."""
    log = open_log(settings)
    try:
        yield log
    finally:
        log.engine.dispose()


@contextmanager
def engine_session(settings: Settings, role: DbRole) -> Iterator[Engine]:
    """An engine for ``role``, disposed when the command ends."""
    engine = connect(settings, role)
    try:
        yield engine
    finally:
        engine.dispose()


def trusted_keys(paths: list[Path] | None) -> dict[str, Ed25519PublicKey] | None:
    """Public keys (PEM files) given with ``--public-key``, by key id; None when none given."""
    if not paths:
        return None
    keys = [load_public_key(p.read_bytes()) for p in paths]
    return {key_id_of(k): k for k in keys}
