"""The source column (migration 014), held by PostgreSQL: derived from the hashed record like
every other column, so the write credential cannot set it beside the record, give the record a
malformed one, or change it later without ``verify`` naming the row."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from auditlog.db.migrate import migrations, upgrade
from auditlog.db.server import make_engine
from auditlog.integrity.database import verify_database
from auditlog.integrity.keys import Signer
from auditlog.integrity.rule import ZERO_HASH
from auditlog.model import utc_text
from auditlog.settings import Settings
from auditlog.store import AuditLog, prepare, prepare_many
from tests.support.database import create_database, register
from tests.support.factories import tamper, valid

KEY = {"type": "api_key", "id": "k-7f3a", "name": "Billing service"}
Change = Callable[[dict[str, Any]], None]


def store_with_source(log: AuditLog, n: int = 1, source: dict[str, str] = KEY) -> None:
    good, bad = prepare_many([valid() for _ in range(n)], log.settings, source=source)
    assert not bad
    log.append_prepared(good)


def forge(engine: Engine, settings: Settings, change: Change, source: Any = KEY) -> str | None:
    """As ``engine``: the correct next configuration row (with ``source`` in its record),
    edited by ``change`` (which may rewrite the record and add columns), rehashed, inserted.
    The database's refusal, or None when the row was stored."""
    try:
        with engine.begin() as conn:
            seq, prev = conn.execute(
                sa.text("SELECT seq, entry_hash FROM auditlog_chain_head('configuration')")
            ).one()
            now = conn.scalar(sa.text("SELECT clock_timestamp()"))
            p = prepare(valid(), settings, source=source)
            row: dict[str, Any] = {"prev_hash": bytes(prev)}
            row["record"] = p.record_text(False, utc_text(now), int(seq) + 1)
            change(row)
            row.setdefault("entry_hash", sha(row))
            cols = ", ".join(row)
            vals = ", ".join(f"CAST(:{c} AS jsonb)" if c == "source" else f":{c}" for c in row)
            conn.execute(sa.text(f"INSERT INTO events ({cols}) VALUES ({vals})"), row)
    except sa.exc.DBAPIError as exc:
        return str(exc.orig).splitlines()[0]
    return None


def sha(row: dict[str, Any]) -> bytes:
    return hashlib.sha256(row["prev_hash"] + row["record"].encode()).digest()


def edit_record(fn: Callable[[dict[str, Any]], None]) -> Change:
    """Change the record's members (re-canonicalised: keys sorted, no spaces)."""

    def change(row: dict[str, Any]) -> None:
        rec = json.loads(row["record"])
        fn(rec)
        row["record"] = json.dumps(rec, sort_keys=True, separators=(",", ":"))

    return change


def test_a_stored_source_is_the_column_and_the_chain_verifies(
    log: AuditLog, reader_engine: Engine
) -> None:
    store_with_source(log, 3)
    log.record(valid())  # in-process: no source
    with reader_engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT seq, source, record FROM events ORDER BY seq")).all()
    assert [r.source for r in rows] == [KEY, KEY, KEY, None]
    assert [json.loads(r.record).get("source") for r in rows] == [KEY, KEY, KEY, None]
    assert '"source"' not in rows[3].record.replace('"source_ip"', "")
    assert verify_database(reader_engine).ok


def test_the_writer_may_append_a_correct_row_with_a_source(engine: Engine, log: AuditLog) -> None:
    assert forge(engine, log.settings, lambda row: None) is None


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        # the column set beside a record that has no source
        (lambda row: row.update(source=json.dumps(KEY)), "derived from the hashed record"),
        # the column set to another key than the record names
        (
            lambda row: row.update(source=json.dumps({**KEY, "name": "Payroll"})),
            "derived from the hashed record",
        ),
        # the record names a source its hash does not cover (hashed without it)
        (
            lambda row: row.update(
                entry_hash=hashlib.sha256(
                    row["prev_hash"] + row["record"].replace(',"source":' + json.dumps(
                        KEY, sort_keys=True, separators=(",", ":")), "").encode()
                ).digest()
            ),
            "entry_hash is not SHA-256",
        ),
        (edit_record(lambda r: r.update(source=None)), "source must be"),
        (edit_record(lambda r: r.update(source="api_key:k-7f3a")), "source must be"),
        (edit_record(lambda r: r.update(source={**KEY, "scope": "all"})), "source must be"),
        (edit_record(lambda r: r.update(source={"type": "api_key", "id": "k"})), "source must be"),
        (edit_record(lambda r: r.update(source={**KEY, "id": 7})), "source must be"),
        (edit_record(lambda r: r.update(source={**KEY, "type": "API key"})), "source must be"),
        (edit_record(lambda r: r.update(source={**KEY, "id": ""})), "source must be"),
        (edit_record(lambda r: r.update(source={**KEY, "name": "n" * 257})), "source must be"),
        (edit_record(lambda r: r.update(sources=KEY)), "exactly the hashed fields"),
    ],
    ids=[
        "column-beside-record-without", "column-differs", "hash-without-source", "null",
        "string", "extra-key", "missing-key", "number", "bad-type", "empty-id", "long-name",
        "other-member",
    ],
)  # fmt: skip
def test_the_writer_cannot_forge_a_source(
    engine: Engine, log: AuditLog, change: Change, refusal: str
) -> None:
    log.record(valid())
    assert refusal in (forge(engine, log.settings, change) or "stored")
    with engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM events")) == 1


def test_the_writer_cannot_set_a_source_on_a_record_without_one(
    engine: Engine, log: AuditLog
) -> None:
    refusal = forge(engine, log.settings, lambda row: row.update(source=json.dumps(KEY)), None)
    assert "derived from the hashed record" in (refusal or "stored")


def test_a_source_changed_in_the_column_is_named_by_verify(
    log: AuditLog, admin_engine: Engine, reader_engine: Engine
) -> None:
    store_with_source(log, 3)
    forged = json.dumps({**KEY, "name": "Payroll"})
    tamper(admin_engine, f"UPDATE events SET source = '{forged}' WHERE seq = 2")
    problems = verify_database(reader_engine).problems
    assert [(p.category, p.seq, p.kind) for p in problems] == [
        ("configuration", 2, "content changed")
    ]
    assert "column(s) source" in problems[0].message


def test_a_source_removed_from_the_column_is_named_by_verify(
    log: AuditLog, admin_engine: Engine, reader_engine: Engine
) -> None:
    """Hiding which key wrote an entry (the column set null, the record left) is found."""
    store_with_source(log, 2)
    tamper(admin_engine, "UPDATE events SET source = NULL WHERE seq = 1")
    problems = verify_database(reader_engine).problems
    assert [(p.seq, p.kind) for p in problems] == [(1, "content changed")]
    assert "source" in problems[0].message


def test_a_source_added_to_a_row_without_one_is_named_by_verify(
    log: AuditLog, admin_engine: Engine, reader_engine: Engine
) -> None:
    """Pinning an in-process entry on a key, in the column and in the record, breaks the hash."""
    log.record_many([valid(), valid()])
    key = json.dumps(KEY, sort_keys=True, separators=(",", ":"))
    tamper(
        admin_engine,
        f"UPDATE events SET source = '{key}', "
        f'record = replace(record, \',"source_ip":\', \',"source":{key},"source_ip":\') '
        "WHERE seq = 2",
    )
    problems = verify_database(reader_engine).problems
    assert [(p.seq, p.kind) for p in problems] == [(2, "content changed")]
    assert "entry_hash does not match" in problems[0].message


# --- migration 014 on a database that already holds chains ---------------------------------


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


def test_migration_keeps_the_stored_chains_verifying(
    pg_server_url: URL, settings: Settings, signer: Signer
) -> None:
    name = f"auditlog_src_{uuid.uuid4().hex[:8]}"
    create_database(pg_server_url, name)
    url = pg_server_url.set(database=name)
    admin = make_engine(url, "admin")
    migrate_to(admin, 13)
    register(admin, signer)
    writer = make_engine(url.set(username="auditlog_ingest"), "writer")
    old = AuditLog(writer, settings, signer=signer)
    old.record_many([valid(category=c) for c in ("configuration", "governance") for _ in range(5)])
    with admin.connect() as conn:
        before = conn.execute(sa.text("SELECT seq, entry_hash, record FROM events")).all()
    assert upgrade(admin)[0] == "014_event_source.sql"
    reader = make_engine(url.set(username="auditlog_dashboard"), "reader")
    assert verify_database(reader).ok
    # the rows are untouched, have no source, and the chains extend with sourced rows
    with admin.connect() as conn:
        after = conn.execute(sa.text("SELECT seq, entry_hash, record FROM events")).all()
        assert conn.scalar(sa.text("SELECT count(*) FROM events WHERE source IS NULL")) == 10
    assert sorted(map(tuple, after)) == sorted(map(tuple, before))
    store_with_source(AuditLog(writer, settings, signer=signer), 2)
    assert verify_database(reader).ok
    with reader.connect() as conn:
        sourced = sa.text("SELECT count(*) FROM events WHERE source = CAST(:k AS jsonb)")
        assert conn.scalar(sourced, {"k": json.dumps(KEY)}) == 2
    for engine in (reader, writer, admin):
        engine.dispose()


def test_old_rows_keep_their_first_hash_link(log: AuditLog, reader_engine: Engine) -> None:
    """A chain mixing rows with and without a source links as one chain."""
    log.record(valid())
    store_with_source(log, 1)
    log.record(valid())
    with reader_engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT prev_hash, entry_hash FROM events ORDER BY seq")).all()
    assert bytes(rows[0].prev_hash) == ZERO_HASH
    assert [bytes(r.prev_hash) for r in rows[1:]] == [bytes(r.entry_hash) for r in rows[:-1]]
    assert verify_database(reader_engine).ok
