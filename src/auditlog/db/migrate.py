"""Migrations: ordered SQL files in ``db/migrations``, recorded in ``schema_migrations``."""

from __future__ import annotations

import importlib.resources
import re
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from auditlog.db.tables import schema_migrations
from auditlog.errors import ConfigError

_MIGRATION = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


def _build_trees(raw: Any) -> None:
    from auditlog.proofs.tree import build_trees  # the tree of the entries already stored

    build_trees(raw)


# Steps a migration needs beyond its SQL, run in the same transaction right after it.
_AFTER: dict[int, Callable[[Any], None]] = {10: _build_trees}


def migrations() -> list[tuple[int, str, str]]:
    """Ordered (version, name, sql) of the packaged migrations."""
    found = []
    for entry in importlib.resources.files("auditlog.db.migrations").iterdir():
        m = _MIGRATION.match(entry.name)
        if m:
            found.append((int(m.group(1)), entry.name, entry.read_text("utf-8")))
    return sorted(found)


def _up_to_date(engine: Engine) -> bool:
    """Every packaged migration is recorded: nothing to do, and nothing to lock or create (so
    an application login, which may not create in the schema, can call :func:`upgrade`)."""
    with engine.connect() as conn:
        if conn.scalar(sa.text("SELECT to_regclass('schema_migrations')")) is None:
            return False
        done = set(conn.scalars(sa.text("SELECT version FROM schema_migrations")))
    return {version for version, _, _ in migrations()} <= done


def upgrade(engine: Engine) -> list[str]:
    """Apply pending migrations, each in its own transaction; return the names applied."""
    applied: list[str] = []
    if _up_to_date(engine):
        return applied
    with engine.begin() as conn:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('auditlog:migrate'))"))
        conn.execute(
            sa.text(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version int PRIMARY KEY, name text NOT NULL, "
                "applied_at timestamptz NOT NULL DEFAULT now())"
            )
        )
        done = set(conn.scalars(sa.text("SELECT version FROM schema_migrations")))
        for version, name, sql in migrations():
            if version in done:
                continue
            raw: Any = conn.connection.driver_connection  # a file holds many statements
            with raw.cursor() as cur:
                cur.execute(sql)
            if version in _AFTER:
                _AFTER[version](raw)
            conn.execute(sa.insert(schema_migrations).values(version=version, name=name))
            applied.append(name)
    return applied


def current_version(engine: Engine) -> int:
    with engine.connect() as conn:
        try:
            return int(conn.scalar(sa.text("SELECT max(version) FROM schema_migrations")) or 0)
        except sa.exc.ProgrammingError as exc:
            raise ConfigError("database not migrated; run `auditlog db upgrade`") from exc
