"""Databases for tests: each test gets a fresh one cloned from a migrated template."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import URL


def create_database(server: URL, name: str, template: str | None = None) -> None:
    """CREATE DATABASE ``name`` on ``server``, as a copy of ``template`` when given."""
    engine = sa.create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        tmpl = f' TEMPLATE "{template}"' if template else ""
        conn.execute(sa.text(f'CREATE DATABASE "{name}"{tmpl}'))
    engine.dispose()
