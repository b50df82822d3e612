"""Proofs that leave the building: checkpoint notes an auditor keeps, inclusion and
consistency proofs printed by the CLI and checked with nothing but the notes and RFC 9162,
and the signed roots checked against the entries."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from sqlalchemy.engine import Engine

from auditlog.integrity.checkpoints import checkpoint_message_v3
from auditlog.integrity.database import verify_database
from auditlog.integrity.keys import Signer, public_pem
from auditlog.integrity.rule import ZERO_HASH
from auditlog.model import CATEGORIES
from auditlog.proofs.merkle import leaf_hash, verify_consistency, verify_inclusion
from auditlog.proofs.note import (
    note_signed_by,
    parse_checkpoint,
    parse_consistency,
    parse_inclusion,
    parse_note,
)
from auditlog.settings import Settings
from auditlog.store import AuditLog
from tests.support.cli import make_cli
from tests.support.database import reader_of
from tests.support.factories import valid

GOV = "governance"


@pytest.fixture
def cli(settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    return make_cli(settings, monkeypatch, tmp_path)


@pytest.fixture
def every300(engine: Engine, settings: Settings, signer: Signer) -> AuditLog:
    return AuditLog(engine, settings.replace(store={"checkpoint_every": 300}), signer=signer)


@pytest.fixture
def pin(tmp_path: Path, signer: Signer) -> Path:
    path = tmp_path / "pinned.pem"
    path.write_text(public_pem(signer.public), "ascii")
    return path


def raw(signer: Signer) -> bytes:
    return signer.public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def fill(log: AuditLog, n: int, category: str = GOV) -> list[str]:
    events = [valid(category=category, details={"i": i}) for i in range(n)]
    return [r.event_id for r in log.record_many(events)]


def notes_of(text: str) -> list[str]:
    """The signed notes of an export: each ends with its signature lines, then a blank line."""
    return [n + "\n" for n in re.split(r"\n\n(?=[!-~]+/[a-z_]+\n)", text.rstrip("\n"))]


def test_export_prints_each_chains_newest_checkpoint_as_a_signed_note(
    cli: Any, every300: AuditLog, signer: Signer
) -> None:
    fill(every300, 700)
    fill(every300, 3, "user_activity")
    result = cli("checkpoint", "export")
    assert result.exit_code == 0, result.output
    vkeys = cli("keys", "vkeys").output.split()
    assert [v.split("+")[0] for v in vkeys] == [f"auditlog.local/{c}" for c in CATEGORIES]
    bodies = {}
    for text in notes_of(result.output):
        note = parse_note(text)
        body = parse_checkpoint(note.text)
        assert note_signed_by(note, body.origin, raw(signer))
        bodies[body.origin] = body
    assert set(bodies) == {"auditlog.local/governance", "auditlog.local/user_activity"}
    assert bodies["auditlog.local/governance"].size == 700  # the batch's head, signed


def test_since_a_kept_note_passes_while_the_log_extends_it(
    cli: Any, every300: AuditLog, tmp_path: Path, pin: Path
) -> None:
    fill(every300, 400)
    kept = tmp_path / "kept.notes"
    assert cli("checkpoint", "export", "--out", str(kept)).exit_code == 0
    fill(every300, 500)
    result = cli("verify", "--public-key", str(pin), "--since", str(kept))
    assert result.exit_code == 0, result.output
    assert f"checkpoint {GOV} seq 400" in result.output


def test_since_fails_by_the_consistency_proof_when_the_stored_tree_was_rewritten(
    cli: Any, every300: AuditLog, admin_engine: Engine, tmp_path: Path, pin: Path
) -> None:
    fill(every300, 600)
    kept = tmp_path / "kept.notes"
    cli("checkpoint", "export", "--out", str(kept))
    fill(every300, 300)
    with admin_engine.begin() as conn:  # a superuser rewrites a stored subtree
        conn.exec_driver_sql(
            "ALTER TABLE merkle_nodes DISABLE TRIGGER merkle_nodes_no_update_delete"
        )
        conn.exec_driver_sql("UPDATE merkle_nodes SET hash = sha256(hash) WHERE idx = 0")
        conn.exec_driver_sql(
            "ALTER TABLE merkle_nodes ENABLE ALWAYS TRIGGER merkle_nodes_no_update_delete"
        )
    result = cli("verify", "--public-key", str(pin), "--since", str(kept))
    assert result.exit_code == 1
    assert "tree rewritten" in result.output
    assert "does not extend the kept tree of 600 entries" in result.output


def test_an_inclusion_proof_checks_against_its_signed_note_alone(
    cli: Any, every300: AuditLog, reader_engine: Engine, signer: Signer
) -> None:
    ids = fill(every300, 777)
    for event_id in (ids[0], ids[300], ids[-1]):
        result = cli("proof", "inclusion", event_id)
        assert result.exit_code == 0, result.output
        proof = parse_inclusion(result.output)
        body = parse_checkpoint(proof.note.text)
        assert note_signed_by(proof.note, body.origin, raw(signer))
        assert proof.extra is not None
        with reader_engine.connect() as conn:
            entry = conn.scalar(
                sa.text("SELECT entry_hash FROM events WHERE event_id = :e"), {"e": event_id}
            )
        assert proof.extra == bytes(entry)
        leaf = leaf_hash(proof.extra)
        assert verify_inclusion(proof.index, body.size, leaf, list(proof.proof), body.root)
        assert not verify_inclusion(
            proof.index, body.size, leaf_hash(ZERO_HASH), list(proof.proof), body.root
        )


def test_proof_of_an_unknown_or_unsigned_event_is_one_line(
    cli: Any, log: AuditLog, settings: Settings
) -> None:
    unknown = cli("proof", "inclusion", "6e1f6f3a-2b7f-4a35-9d55-28c1d1f0a001")
    assert unknown.exit_code == 1
    assert "is not in the log" in unknown.output
    assert "Traceback" not in unknown.output


def test_a_consistency_proof_from_a_kept_note_to_the_latest_checks(
    cli: Any, every300: AuditLog, tmp_path: Path
) -> None:
    fill(every300, 450)
    kept = tmp_path / "kept.notes"
    cli("checkpoint", "export", "--out", str(kept))
    old = parse_checkpoint(parse_note(kept.read_text()).text)
    fill(every300, 1000)
    result = cli("proof", "consistency", "--from", str(kept))
    assert result.exit_code == 0, result.output
    proof = parse_consistency(result.output)
    new = parse_checkpoint(proof.note.text)
    assert proof.old_size == old.size == 450
    assert verify_consistency(old.size, new.size, old.root, new.root, list(proof.proof))
    by_seq = cli("proof", "consistency", "--from", f"{GOV}:450", "--to", f"{GOV}:latest")
    assert by_seq.output == result.output


def forge_v3(engine: Engine, signer: Signer, origin: str, text: str | None = None) -> None:
    """As the writer holding the signing key: add a version-3 checkpoint of governance's head
    with an all-zero root (``text`` replaces the note text)."""
    with engine.begin() as conn:
        raw_conn: Any = conn.connection.driver_connection
        cur = raw_conn.cursor()
        cur.execute("SELECT hash, count FROM auditlog_last_checkpoint(%s)", (GOV,))
        last_hash, count = cur.fetchone()
        cur.execute("SELECT seq, entry_hash FROM auditlog_chain_head(%s)", (GOV,))
        seq, head = cur.fetchone()
        cur.execute("SELECT clock_timestamp()")
        (now,) = cur.fetchone()
        root, prev, head = bytes(32), bytes(last_hash), bytes(head)
        msg = text or checkpoint_message_v3(origin, seq, root, head, prev, count + 1, now).decode()
        args = (GOV, seq, head, now, signer.key_id, signer.sign(msg.encode()), prev, count + 1,
                msg, origin, root)  # fmt: skip
        cur.execute(
            "SELECT auditlog_add_checkpoint_v3(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", args
        )


def test_verify_finds_a_signed_root_that_is_not_the_entries_root(
    log: AuditLog, engine: Engine, signer: Signer
) -> None:
    fill(log, 20)  # signed at seq 20
    fill(log, 1)  # not yet signed
    forge_v3(engine, signer, f"auditlog.local/{GOV}")
    problem = verify_database(reader_of(engine)).chains[GOV].problem
    assert problem is not None
    assert problem.kind == "checkpoint root wrong"


@pytest.mark.parametrize(
    ("origin", "text"),
    [("auditlog.local/configuration", None), ("governance", None), ("a b/governance", None),
     (f"auditlog.local/{GOV}", "x\n")],
)  # fmt: skip
def test_the_database_refuses_a_checkpoint_note_of_the_wrong_form(
    log: AuditLog, engine: Engine, signer: Signer, origin: str, text: str | None
) -> None:
    fill(log, 3)
    fill(log, 1)
    with pytest.raises(psycopg.errors.IntegrityError, match="checkpoint refused"):
        forge_v3(engine, signer, origin, text)
