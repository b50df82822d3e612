"""The row append check runs without a per-call search_path (migration 016): what the
``SET search_path`` guarded against is held otherwise. A writer that shadows the types the
check names (temporary tables named jsonb, text and bytea, pg_temp first in its path) can still
append only correct rows, and no application role can create anything the check could find."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from auditlog.model import utc_text
from auditlog.store import AuditLog, prepare
from tests.support.factories import valid

SHADOWS = (
    "CREATE TEMP TABLE jsonb (x int)",
    "CREATE TEMP TABLE text (x int)",
    "CREATE TEMP TABLE bytea (x int)",
    "SET search_path = pg_temp, public, pg_catalog",
)


def _append(engine: Engine, log: AuditLog, edit: str) -> str | None:
    """As the writer, in a session with the shadows: the correct next row, edited by ``edit``
    (``column``: sets a derived column itself; ``hash``: a wrong entry_hash; else as is)."""
    try:
        with engine.begin() as conn:
            for stmt in SHADOWS:
                conn.exec_driver_sql(stmt)
            seq, prev = conn.execute(
                sa.text("SELECT seq, entry_hash FROM public.auditlog_chain_head('configuration')")
            ).one()
            now = conn.scalar(sa.text("SELECT pg_catalog.clock_timestamp()"))
            p = prepare(valid(), log.settings)
            record = p.record_text(False, utc_text(now), int(seq) + 1)
            row: dict[str, Any] = {"record": record, "prev_hash": bytes(prev)}
            row["entry_hash"] = hashlib.sha256(bytes(prev) + record.encode()).digest()
            if edit == "hash":
                row["entry_hash"] = hashlib.sha256(b"forged").digest()
            if edit == "column":
                row["action"] = "policy.deleted"
            cols = ", ".join(row)
            vals = ", ".join(f":{c}" for c in row)
            conn.execute(sa.text(f"INSERT INTO public.events ({cols}) VALUES ({vals})"), row)
    except sa.exc.DBAPIError as exc:
        return str(exc.orig).splitlines()[0]
    return None


def test_the_check_holds_for_a_writer_that_shadows_its_types(engine: Engine, log: AuditLog) -> None:
    log.record(valid())
    assert "entry_hash is not SHA-256" in (_append(engine, log, "hash") or "stored")
    assert "derived from the hashed record" in (_append(engine, log, "column") or "stored")
    assert _append(engine, log, "as is") is None  # the shadows change nothing for a good row
    with engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM events")) == 2


def test_the_check_function_sets_no_search_path(admin_engine: Engine) -> None:
    with admin_engine.connect() as conn:
        config, definer = conn.execute(
            sa.text(
                "SELECT proconfig, prosecdef FROM pg_proc WHERE proname = 'auditlog_append_check'"
            )
        ).one()
    assert config is None
    assert definer


@pytest.mark.parametrize(
    "role",
    ["auditlog_ingest", "auditlog_dashboard", "auditlog_stream", "auditlog_retention_admin",
     "auditlog_key_admin"],
)  # fmt: skip
def test_no_application_role_may_create_objects(admin_engine: Engine, role: str) -> None:
    with admin_engine.connect() as conn:
        creatable = conn.execute(
            sa.text(
                "SELECT nspname FROM pg_namespace WHERE nspname !~ '^pg_(toast|temp)' "
                "AND has_schema_privilege(:r, oid, 'CREATE')"
            ),
            {"r": role},
        ).all()
        on_db = conn.scalar(
            sa.text("SELECT has_database_privilege(:r, current_database(), 'CREATE')"), {"r": role}
        )
    assert creatable == []
    assert on_db is False
