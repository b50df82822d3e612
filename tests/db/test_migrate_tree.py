"""Migration 010 on a database that already holds chains: the tree of the stored entries is
built in the migration's own transaction, and appends then extend it."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from auditlog.db.migrate import migrations, upgrade
from auditlog.db.server import make_engine
from auditlog.integrity.keys import Signer
from auditlog.integrity.rule import ZERO_HASH
from auditlog.proofs.merkle import leaf_hash, root_of
from auditlog.proofs.tree import STORED_LEVEL
from auditlog.settings import Settings
from auditlog.store import AuditLog, prepare
from tests.support.database import create_database, register
from tests.support.factories import valid


def migrate_to(engine: Engine, last: int) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE schema_migrations (version int PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        raw: Any = conn.connection.driver_connection
        for version, name, sql in migrations():
            if version <= last:
                raw.cursor().execute(sql)
                conn.execute(
                    sa.text("INSERT INTO schema_migrations (version, name) VALUES (:v, :n)"),
                    {"v": version, "n": name},
                )


def old_chain(engine: Engine, settings: Settings, category: str, n: int) -> list[bytes]:
    """n entries stored as a version-009 writer stored them (links check skipped: superuser)."""
    prev, out = ZERO_HASH, []
    with engine.begin() as conn:
        conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
        raw: Any = conn.connection.driver_connection
        cur = raw.cursor()
        with cur.copy("COPY events (record, prev_hash, entry_hash) FROM STDIN") as copy:
            for seq in range(1, n + 1):
                p = prepare(valid(category=category, event_id=str(uuid.uuid4())), settings)
                record = p.record_text(False, "2026-01-01T00:00:00.000000Z", seq)
                entry = hashlib.sha256(prev + record.encode()).digest()
                copy.write_row((record, prev, entry))
                out.append(entry)
                prev = entry
    return out


def test_upgrade_builds_the_tree_of_the_chains_already_stored(
    pg_server_url: URL, settings: Settings, signer: Signer
) -> None:
    name = f"auditlog_tree_{uuid.uuid4().hex[:8]}"
    create_database(pg_server_url, name)
    url = pg_server_url.set(database=name)
    admin = make_engine(url, "admin")
    migrate_to(admin, 9)
    gov = old_chain(admin, settings, "governance", 1300)
    assert upgrade(admin)[0] == "010_merkle.sql"
    with admin.connect() as conn:
        rows = conn.execute(sa.text("SELECT level, idx, hash FROM merkle_nodes")).all()
    leaves = [leaf_hash(e) for e in gov]
    assert {(lv, i) for lv, i, _ in rows} == {
        (lv, i) for lv in range(STORED_LEVEL, 11) for i in range(1300 >> lv)
    }
    for lv, i, h in rows:
        assert bytes(h) == root_of(leaves[i << lv : (i + 1) << lv])
    register(admin, signer)
    writer = make_engine(url.set(username="auditlog_ingest"), "writer")
    log = AuditLog(writer, settings, signer=signer)
    log.record_many([valid(category="governance") for _ in range(300)])
    with admin.connect() as conn:
        n = conn.scalar(sa.text("SELECT count(*) FROM merkle_nodes WHERE level = 8"))
    assert n == 1600 // 256
    writer.dispose()
    admin.dispose()
