"""What every command shares: the settings, sessions that close, trusted keys, exit codes.

Errors reach a user of the command line as one line, ``error: <message>``, and exit code 1
(:func:`fail`); a check that finds a problem also exits 1, after saying what it found.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.engine import Engine

from auditlog import access
from auditlog.access import Identity, Role
from auditlog.db.server import Role as DbRole
from auditlog.db.server import connect
from auditlog.errors import AuditLogError
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


@contextmanager
def errors() -> Iterator[None]:
    """Turn a library error into one line and exit code 1 (no traceback)."""
    try:
        yield
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
