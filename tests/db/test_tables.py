"""db/tables.py describes the schema the migrations create: checked on a migrated database."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Engine

from auditlog.db.tables import metadata

_PG = postgresql.dialect()  # type: ignore[no-untyped-call]


def _shape(columns: list[tuple[str, Any, bool]]) -> list[tuple[str, str, bool]]:
    """(name, PostgreSQL type as DDL text, nullable) of each column, in order."""
    return [(name, str(type_.compile(dialect=_PG)), nullable) for name, type_, nullable in columns]


def test_every_migrated_table_and_view_has_a_table_object(admin_engine: Engine) -> None:
    inspector = sa.inspect(admin_engine)
    migrated = set(inspector.get_table_names()) | set(inspector.get_view_names())
    assert migrated == set(metadata.tables)


@pytest.mark.parametrize("name", sorted(metadata.tables))
def test_table_object_has_the_migrated_columns_types_and_nullability(
    admin_engine: Engine, name: str
) -> None:
    table = metadata.tables[name]
    found = sa.inspect(admin_engine).get_columns(name)
    described = [(c.name, c.type, bool(c.nullable)) for c in table.columns]
    assert _shape(described) == _shape([(c["name"], c["type"], c["nullable"]) for c in found])


@pytest.mark.parametrize("name", sorted(metadata.tables))
def test_table_object_has_the_migrated_primary_key(admin_engine: Engine, name: str) -> None:
    migrated = sa.inspect(admin_engine).get_pk_constraint(name)["constrained_columns"]
    assert [c.name for c in metadata.tables[name].primary_key] == migrated
