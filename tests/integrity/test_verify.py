"""Tampering by a superuser is named by verify at the right seq, with the right reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import rfc8785
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from auditlog.canonical import jcs
from auditlog.columns import HASHED_FIELDS, OPTIONAL_FIELDS
from auditlog.integrity.checkpoints import checkpoint_message
from auditlog.integrity.database import verify_database
from auditlog.integrity.keys import Signer
from auditlog.integrity.rule import chain_hash, record_bytes, row_to_record
from auditlog.integrity.verifier import Problem
from auditlog.settings import Settings
from auditlog.store import AuditLog
from tests.support.database import reader_of
from tests.support.factories import json_values, tamper, valid

GOV = "governance"


def fill(log: AuditLog, n: int = 10, category: str = GOV) -> None:
    log.record_many([valid(category=category, details={"i": i}) for i in range(n)])


def problem(engine: Engine) -> Problem:
    report = verify_database(reader_of(engine))
    assert not report.ok
    assert len(report.problems) == 1
    return report.problems[0]


def test_untouched_log_verifies(log: AuditLog) -> None:
    fill(log)
    fill(log, 3, "user_activity")
    report = verify_database(reader_of(log.engine))
    assert report.ok
    assert report.rows == 13
    assert report.chains[GOV].checkpoints >= 1


def test_one_changed_byte_is_named_at_its_seq(log: AuditLog, admin_engine: Engine) -> None:
    fill(log)
    tamper(
        admin_engine,
        "UPDATE events SET details = '{\"i\": 7}' WHERE category = 'governance' AND seq = 6",
    )
    p = problem(log.engine)
    assert (p.category, p.seq, p.kind) == (GOV, 6, "content changed")


def test_changed_hash_of_a_row_breaks_the_link_of_the_next(
    log: AuditLog, admin_engine: Engine
) -> None:
    fill(log)
    tamper(
        admin_engine,
        "UPDATE events SET outcome = 'failure' WHERE seq = 4 AND category = 'governance'",
    )
    p = problem(log.engine)
    assert (p.seq, p.kind) == (4, "content changed")


def test_deleted_middle_row_is_named_as_missing(log: AuditLog, admin_engine: Engine) -> None:
    fill(log)
    tamper(admin_engine, "DELETE FROM events WHERE category = 'governance' AND seq = 5")
    p = problem(log.engine)
    assert (p.seq, p.kind) == (5, "row missing")


def test_deleted_last_rows_after_a_checkpoint_are_named_as_cut(
    log: AuditLog, admin_engine: Engine
) -> None:
    fill(log, 10)
    log.checkpoint()
    tamper(admin_engine, "DELETE FROM events WHERE category = 'governance' AND seq > 7")
    p = problem(log.engine)
    assert (p.seq, p.kind) == (8, "chain cut")
    assert "8..10" in p.message


def test_swapped_rows_are_named_as_reordered(log: AuditLog, admin_engine: Engine) -> None:
    fill(log)
    tamper(
        admin_engine,
        "UPDATE events SET seq = 1003 WHERE category = 'governance' AND seq = 3",
        "UPDATE events SET seq = 3 WHERE category = 'governance' AND seq = 4",
        "UPDATE events SET seq = 4 WHERE category = 'governance' AND seq = 1003",
    )
    p = problem(log.engine)
    assert (p.seq, p.kind) == (3, "rows reordered")
    assert "written at seq 4" in p.message


def test_rehashed_forgery_breaks_the_link_to_the_next_row(
    log: AuditLog, admin_engine: Engine
) -> None:
    """An attacker who recomputes a row's hash still breaks seq+1's prev_hash."""
    fill(log)
    with admin_engine.connect() as conn:
        row = (
            conn.exec_driver_sql("SELECT * FROM events WHERE category = 'governance' AND seq = 5")
            .mappings()
            .one()
        )
    record = row_to_record(row)
    record["outcome"] = "denied"
    text = record_bytes(record)
    forged = chain_hash(bytes(row["prev_hash"]), text)
    with admin_engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE events DISABLE TRIGGER events_no_update_delete")
        conn.execute(
            sa.text(
                "UPDATE events SET outcome = 'denied', entry_hash = :h, record = :r "
                "WHERE category = 'governance' AND seq = 5"
            ),
            {"h": forged, "r": text.decode()},
        )
    p = problem(log.engine)
    assert (p.seq, p.kind) == (6, "link broken")


def test_changed_record_bytes_are_named_even_when_columns_are_untouched(
    log: AuditLog, admin_engine: Engine
) -> None:
    fill(log)
    tamper(
        admin_engine,
        "UPDATE events SET record = replace(record, '\"i\":3', '\"i\":4') "
        "WHERE category = 'governance' AND seq = 4",
    )
    p = problem(log.engine)
    assert (p.seq, p.kind) == (4, "content changed")


def test_changed_column_is_named_with_the_column(log: AuditLog, admin_engine: Engine) -> None:
    fill(log)
    tamper(
        admin_engine,
        "UPDATE events SET source_ip = '10.9.9.9', "
        "actor = jsonb_set(actor, '{upn}', '\"mallory@contoso.com\"') "
        "WHERE category = 'governance' AND seq = 8",
    )
    p = problem(log.engine)
    assert (p.seq, p.kind) == (8, "content changed")
    assert "actor" in p.message
    assert "source_ip" in p.message


def test_forged_checkpoint_signature_is_named(log: AuditLog, admin_engine: Engine) -> None:
    fill(log, 3)
    with admin_engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE checkpoints DISABLE TRIGGER checkpoints_no_update_delete")
        conn.exec_driver_sql("UPDATE checkpoints SET signature = '\\x" + "00" * 64 + "'")
    p = problem(log.engine)
    assert p.kind == "bad signature"


def test_checkpoint_from_an_untrusted_key_is_refused(log: AuditLog) -> None:
    fill(log, 3)
    stranger = Signer.generate()
    report = verify_database(reader_of(log.engine), {stranger.key_id: stranger.public})
    assert [p.kind for p in report.problems] == ["bad signature"]
    assert "unknown key" in report.problems[0].message


def test_verify_cli_exits_1_and_names_first_bad_row(
    log: AuditLog, admin_engine: Engine, settings: Settings
) -> None:
    from typer.testing import CliRunner

    from auditlog.cli.app import app

    fill(log)
    tamper(admin_engine, "DELETE FROM events WHERE category = 'governance' AND seq = 2")
    env = {
        "AUDITLOG_DATABASE_URL": str(settings.store.database_url),
        "AUDITLOG_HOME": str(settings.store.home),
    }
    result = CliRunner().invoke(app, ["verify"], env=env)
    assert result.exit_code == 1
    assert "governance seq 2: row missing" in result.output


# --- canonical JSON: byte-identical to the rfc8785 package -----------------------------


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_fast_canonicaliser_is_byte_identical_to_rfc8785(value: Any) -> None:
    try:
        expected = rfc8785.dumps(value)
    except rfc8785.CanonicalizationError:
        return  # e.g. lone surrogates: refused at validation, never hashed
    assert jcs(value) == expected


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(HASHED_FIELDS), json_values))
def test_record_bytes_equal_jcs_of_the_whole_record(partial: dict[str, object]) -> None:
    record = dict.fromkeys(HASHED_FIELDS, None) | partial
    # the rule: an optional field (source) is a member only when it is not null
    members = {k: v for k, v in record.items() if not (k in OPTIONAL_FIELDS and v is None)}
    try:
        expected = rfc8785.dumps(members)
    except rfc8785.CanonicalizationError:
        return
    assert record_bytes(record) == expected


def test_checkpoint_message_is_jcs_of_its_fields() -> None:
    msg = checkpoint_message("governance", 3, b"\x01" * 32, "2026-11-28T09:00:00.000000Z", "k")
    assert json.loads(msg) == {
        "category": "governance",
        "seq": 3,
        "entry_hash": "01" * 32,
        "signed_at": "2026-11-28T09:00:00.000000Z",
        "key_id": "k",
    }
    assert msg == rfc8785.dumps(json.loads(msg))


def test_reader_role_can_verify(reader_engine: Engine, log: AuditLog) -> None:
    fill(log, 2)
    assert verify_database(reader_engine).ok
    with reader_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT session_user")).scalar_one() == "auditlog_dashboard"


def test_an_independent_implementation_of_docs_integrity_agrees(log: AuditLog) -> None:
    """Re-derive every entry_hash from raw columns by docs/integrity.md alone."""
    import hashlib
    import ipaddress

    log.record_many(
        [
            valid(source_ip="2001:db8::7", details={"ratio": 0.25, "note": "Zoë ✓"}),
            valid(category="governance", source_ip=None, before=None, correlation_id="c-1"),
        ]
    )

    def ts(value: datetime) -> str:
        return str(value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))

    def ip(value: object) -> str | None:
        if value is None:
            return None
        addr = ipaddress.ip_address(str(value))
        return str(addr) if addr.version == 4 else addr.exploded

    with log.engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT category, seq, event_id::text, action, outcome, occurred_at, occurred_offset,"
            " recorded_at, clock_skew, actor, target, before, after, host(source_ip),"
            " user_agent, correlation_id, details, prev_hash, entry_hash FROM events"
        ).all()
    for r in rows:
        record = {
            "category": r[0],
            "seq": r[1],
            "event_id": r[2],
            "action": r[3],
            "outcome": r[4],
            "occurred_at": ts(r[5]),
            "occurred_offset": r[6],
            "recorded_at": ts(r[7]),
            "clock_skew": r[8],
            "actor": r[9],
            "target": r[10],
            "before": r[11],
            "after": r[12],
            "source_ip": ip(r[13]),
            "user_agent": r[14],
            "correlation_id": r[15],
            "details": r[16],
        }
        digest = hashlib.sha256(bytes(r[17]) + rfc8785.dumps(record)).digest()
        assert digest == bytes(r[18])
