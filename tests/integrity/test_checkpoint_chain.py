"""Checkpoints form their own chain, added only through the database's checking function;
verify names a removed, reordered or replaced checkpoint and an unsigned span."""

from __future__ import annotations

import base64
import hashlib
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
import rfc8785
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from auditlog.integrity.checkpoints import (
    Checkpoint,
    checkpoint_message,
    checkpoint_message_v2,
    sign_checkpoint,
)
from auditlog.integrity.database import db_checkpoints, verify_database
from auditlog.integrity.keys import Signer
from auditlog.integrity.rule import ZERO_HASH
from auditlog.integrity.verifier import ChainVerifier, SpanPolicy
from auditlog.model import utc_text
from auditlog.settings import Settings
from auditlog.store import AuditLog
from tests.support.database import reader_of
from tests.support.factories import valid

GOV = "governance"


def fill(log: AuditLog, n: int, category: str = GOV) -> None:
    log.record_many([valid(category=category, details={"i": i}) for i in range(n)])


def checkpoints(engine: Engine, category: str = GOV) -> list[Checkpoint]:
    """The stored checkpoints, read as an auditor (the writer may not read them)."""
    with reader_of(engine).connect() as conn:
        return db_checkpoints(conn.connection.driver_connection, category)


def drop_checkpoints(admin: Engine, where: str) -> None:
    """As a superuser: switch the guard trigger off, delete checkpoints, switch it back on."""
    with admin.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE checkpoints DISABLE TRIGGER checkpoints_no_update_delete")
        conn.exec_driver_sql(f"DELETE FROM checkpoints WHERE {where}")
        conn.exec_driver_sql(
            "ALTER TABLE checkpoints ENABLE ALWAYS TRIGGER checkpoints_no_update_delete"
        )


@pytest.fixture
def every5(engine: Engine, settings: Settings, signer: Signer) -> AuditLog:
    """A log that signs a checkpoint every 5 entries."""
    return AuditLog(engine, settings.replace(store={"checkpoint_every": 5}), signer=signer)


def fill_in_fives(log: AuditLog, batches: int) -> None:
    for _ in range(batches):
        fill(log, 5)


# --- the chain as written -----------------------------------------------------------------


def test_each_checkpoint_signs_the_previous_ones_hash_and_a_running_count(
    every5: AuditLog, signer: Signer
) -> None:
    fill_in_fives(every5, 3)
    cps = checkpoints(every5.engine)
    assert [(c.seq, c.count, c.version) for c in cps] == [(5, 1, 3), (10, 2, 3), (15, 3, 3)]
    assert cps[0].prev_hash == ZERO_HASH
    assert [c.prev_hash for c in cps[1:]] == [c.hash() for c in cps[:-1]]
    signer.public.verify(cps[2].signature, cps[2].message())  # raises if it does not verify
    assert verify_database(reader_of(every5.engine)).ok


def test_the_stored_message_and_hash_are_the_signed_note_text_and_its_sha256(
    every5: AuditLog, reader_engine: Engine
) -> None:
    fill_in_fives(every5, 2)
    with reader_engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT message, hash FROM checkpoints ORDER BY seq")).all()
    for (message, digest), cp in zip(rows, checkpoints(every5.engine), strict=True):
        assert message.encode() == cp.message() == note_text(cp)
        assert bytes(digest) == hashlib.sha256(message.encode()).digest()


def note_text(cp: Checkpoint) -> bytes:
    """docs/integrity.md section 9, written out."""
    root = base64.b64encode(cp.root or b"").decode()
    return (
        f"auditlog.local/{cp.category}\n{cp.seq}\n{root}\nhead {cp.entry_hash.hex()}\n"
        f"prev {(cp.prev_hash or b'').hex()}\ncount {cp.count}\ntime {cp.signed_at}\n"
    ).encode()


def test_a_version_2_checkpoint_still_signs_the_jcs_of_its_fields() -> None:
    signer = Signer.generate()
    at = datetime(2026, 1, 1, tzinfo=UTC)
    cp = sign_checkpoint(signer, GOV, 7, bytes(32), at, ZERO_HASH, 1)
    assert cp.version == 2
    assert cp.message() == rfc8785.dumps(cp_fields(cp))


def cp_fields(cp: Checkpoint) -> dict[str, Any]:
    return {
        "category": cp.category,
        "count": cp.count,
        "entry_hash": cp.entry_hash.hex(),
        "key_id": cp.key_id,
        "prev_hash": (cp.prev_hash or b"").hex(),
        "seq": cp.seq,
        "signed_at": cp.signed_at,
        "version": 2,
    }


def test_the_first_chained_checkpoint_links_to_the_last_legacy_one(
    log: AuditLog, admin_engine: Engine, signer: Signer
) -> None:
    """A database from before migration 006 holds version-1 checkpoints: the chain starts
    from SHA-256 of the last one's message, counting them."""
    fill(log, 3)  # signs seq 3 (version 2): replace it with two legacy ones, as before 006
    drop_checkpoints(admin_engine, "true")
    with admin_engine.begin() as conn:
        for seq in (2, 3):
            at = datetime(2026, 1, 1, 12, seq, 0, 123456, tzinfo=UTC)
            entry = conn.execute(
                sa.text("SELECT entry_hash FROM events WHERE category = :c AND seq = :s"),
                {"c": GOV, "s": seq},
            ).scalar_one()
            sig = signer.sign(checkpoint_message(GOV, seq, bytes(entry), at, signer.key_id))
            conn.execute(
                sa.text(
                    "INSERT INTO checkpoints (category, seq, entry_hash, signed_at, key_id, "
                    "signature) VALUES (:c, :s, :h, :t, :k, :sig)"
                ),
                {"c": GOV, "s": seq, "h": entry, "t": at, "k": signer.key_id, "sig": sig},
            )
    fill(log, 1)
    log.checkpoint()
    legacy, last, new = checkpoints(log.engine)
    assert (legacy.version, last.version, new.version) == (1, 1, 3)
    assert new.count == 3
    assert new.prev_hash == hashlib.sha256(last.message()).digest()
    assert verify_database(reader_of(log.engine)).ok


# --- what verify names ----------------------------------------------------------------------


def test_a_deleted_middle_checkpoint_breaks_the_checkpoint_chain(
    every5: AuditLog, admin_engine: Engine
) -> None:
    fill_in_fives(every5, 4)
    assert verify_database(reader_of(every5.engine)).ok
    drop_checkpoints(admin_engine, "seq = 10")
    report = verify_database(reader_of(every5.engine))
    (p,) = report.problems
    assert (p.category, p.seq, p.kind) == (GOV, 15, "checkpoint missing")
    assert f"checkpoint {GOV} seq 15 count 3" in p.message
    assert "checkpoint count 2 of the chain was removed" in p.message


def test_checkpoints_out_of_their_signed_order_are_named(signer: Signer) -> None:
    """Pure: two checkpoints whose counts run against their seqs (only the key could make
    them; verify must still not take them in any order)."""
    now = datetime.now(UTC)
    first = sign_checkpoint(signer, GOV, 4, b"\x04" * 32, now, ZERO_HASH, 1)
    second = sign_checkpoint(signer, GOV, 2, b"\x02" * 32, now, first.hash(), 2)
    v = chain_of(4)
    v.check_checkpoints([first, second], {signer.key_id: signer.public})
    assert v.result.problem is not None
    assert (v.result.problem.seq, v.result.problem.kind) == (4, "checkpoints reordered")


def test_a_replaced_checkpoint_is_named_by_the_next_ones_prev_hash(signer: Signer) -> None:
    now = datetime.now(UTC)
    first = sign_checkpoint(signer, GOV, 1, b"\x01" * 32, now, ZERO_HASH, 1)
    other = sign_checkpoint(signer, GOV, 1, b"\x01" * 32, now + timedelta(seconds=1))
    second = sign_checkpoint(signer, GOV, 3, b"\x03" * 32, now, first.hash(), 2)
    v = chain_of(3)
    v.check_checkpoints([other, second], {signer.key_id: signer.public})
    assert v.result.problem is not None
    assert (v.result.problem.seq, v.result.problem.kind) == (3, "checkpoint chain broken")


def test_a_legacy_checkpoint_after_the_chain_began_is_named(signer: Signer) -> None:
    now = datetime.now(UTC)
    first = sign_checkpoint(signer, GOV, 1, b"\x01" * 32, now, ZERO_HASH, 1)
    when = utc_text(now)
    msg = checkpoint_message(GOV, 2, b"\x02" * 32, when, signer.key_id)
    legacy = Checkpoint(GOV, 2, b"\x02" * 32, when, signer.key_id, signer.sign(msg))
    v = chain_of(2)
    v.check_checkpoints([first, legacy], {signer.key_id: signer.public})
    assert v.result.problem is not None
    assert (v.result.problem.seq, v.result.problem.kind) == (2, "checkpoint chain broken")
    assert "version-1" in v.result.problem.message


def chain_of(n: int) -> ChainVerifier:
    """A verifier that has accepted seq 1..n (hashes not checked at checkpoints)."""
    v = ChainVerifier(GOV)
    for seq in range(1, n + 1):
        v._accept(seq, bytes([seq]) * 32)
    return v


def test_a_chain_with_no_checkpoints_beyond_checkpoint_every_is_an_unsigned_span(
    every5: AuditLog, admin_engine: Engine
) -> None:
    fill_in_fives(every5, 3)
    drop_checkpoints(admin_engine, "true")
    report = verify_database(reader_of(every5.engine), span=SpanPolicy(every=5))
    (p,) = report.problems
    assert (p.category, p.seq, p.kind) == (GOV, 1, "unsigned span")
    assert "seq 1..15 are signed by no checkpoint (there is no checkpoint; 15 rows" in p.message
    assert verify_database(reader_of(every5.engine), span=SpanPolicy(every=15)).ok  # at the limit


def test_rows_unsigned_for_longer_than_checkpoint_seconds_plus_slack_are_an_unsigned_span(
    log: AuditLog,
) -> None:
    fill(log, 3)  # the first batch is signed at once
    fill(log, 2)  # seq 4..5: not due yet (1000 entries or 60 s)
    assert verify_database(reader_of(log.engine)).ok
    time.sleep(1.1)
    report = verify_database(reader_of(log.engine), span=SpanPolicy(seconds=0, slack=1))
    (p,) = report.problems
    assert (p.seq, p.kind) == (4, "unsigned span")
    assert "the last checkpoint is at seq 3; unsigned for" in p.message
    log.checkpoint()
    assert verify_database(reader_of(log.engine), span=SpanPolicy(seconds=0, slack=1)).ok


# --- the database refuses a checkpoint that does not sign the log as it is ------------------


@pytest.fixture
def headed(log: AuditLog) -> tuple[AuditLog, Checkpoint, bytes]:
    """A log whose governance chain is signed at seq 3 and has grown to seq 5: the next
    checkpoint is (seq 5, count 2); and the head's entry_hash."""
    fill(log, 3)
    fill(log, 2)
    (last,) = checkpoints(log.engine)
    with log.engine.connect() as conn:
        head = conn.execute(
            sa.text("SELECT entry_hash FROM events WHERE category = :c AND seq = 5"), {"c": GOV}
        ).scalar_one()
    return log, last, bytes(head)


def attempt(
    headed: tuple[AuditLog, Checkpoint, bytes], args: dict[str, Any] | None = None, **kw: Any
) -> None:
    """As the writer: sign the next checkpoint (with the fields in ``kw`` changed; signed_at
    from this transaction's clock unless given) and add it, with ``args`` passed instead."""
    log, last, head = headed
    with log.engine.begin() as conn:
        now = conn.execute(sa.text("SELECT clock_timestamp()")).scalar_one()
        f: dict[str, Any] = {
            "seq": 5, "entry_hash": head, "prev_hash": last.hash(), "count": 2,
            "signed_at": now, "signer": log.signer,
        } | kw  # fmt: skip
        cp = sign_checkpoint(
            f["signer"], GOV, f["seq"], f["entry_hash"], f["signed_at"], f["prev_hash"], f["count"]
        )
        given = {
            "category": GOV, "seq": cp.seq, "entry_hash": cp.entry_hash,
            "signed_at": f["signed_at"], "key_id": cp.key_id, "signature": cp.signature,
            "prev_hash": cp.prev_hash, "count": cp.count, "message": cp.message().decode(),
        } | (args or {})  # fmt: skip
        conn.execute(
            sa.text(
                "SELECT auditlog_add_checkpoint(:category, :seq, :entry_hash, :signed_at, "
                ":key_id, :signature, :prev_hash, :count, :message)"
            ),
            given,
        )


def refused(
    headed: tuple[AuditLog, Checkpoint, bytes],
    match: str,
    args: dict[str, Any] | None = None,
    **kw: Any,
) -> None:
    with pytest.raises(sa.exc.DBAPIError, match=match) as info:
        attempt(headed, args, **kw)
    assert isinstance(info.value.orig, psycopg.errors.IntegrityError), info.value
    assert len(checkpoints(headed[0].engine)) == 1


# Each: fields of the checkpoint that differ from the one the database expects -> its refusal.
WRONG: dict[str, tuple[dict[str, Any], str]] = {
    "prev_hash": ({"prev_hash": b"\x07" * 32}, "prev_hash is not the hash of the last"),
    "count": ({"count": 3}, "count 3 given, the next checkpoint of governance is count 2"),
    "entry_hash": ({"entry_hash": b"\x07" * 32}, "entry_hash is not that of governance seq 5"),
    "seq beyond the head": ({"seq": 6}, "governance has no entry at seq 6"),
    "signed_at in the past": (
        {"signed_at": datetime(2020, 1, 1, tzinfo=UTC)},
        "is not the server clock of this transaction",
    ),
    "signed_at in the future": (
        {"signed_at": datetime.now(UTC) + timedelta(hours=1)},
        "is not the server clock of this transaction",
    ),
}


@pytest.mark.parametrize("wrong", sorted(WRONG))
def test_the_database_refuses_a_checkpoint_that_does_not_extend_the_log(
    headed: tuple[AuditLog, Checkpoint, bytes], wrong: str
) -> None:
    fields, match = WRONG[wrong]
    refused(headed, match, **fields)


def test_the_database_refuses_a_seq_already_signed(
    headed: tuple[AuditLog, Checkpoint, bytes],
) -> None:
    last = headed[1]
    refused(headed, "does not extend the last checkpoint", seq=3, entry_hash=last.entry_hash)


def test_the_database_refuses_a_checkpoint_from_an_unregistered_key(
    headed: tuple[AuditLog, Checkpoint, bytes],
) -> None:
    stranger = Signer.generate()
    refused(headed, f"key_id {stranger.key_id} is not a registered signing key", signer=stranger)


def test_the_database_refuses_a_message_that_is_not_the_jcs_of_the_fields(
    headed: tuple[AuditLog, Checkpoint, bytes],
) -> None:
    log, last, head = headed
    spaced = checkpoint_message_v2(GOV, 5, head, "x", log.signer.key_id, last.hash(), 2)
    refused(headed, "message is not the JCS", {"message": spaced.decode().replace(",", ", ")})
    refused(headed, "signature is 3 bytes", {"signature": b"abc"})


def test_the_database_accepts_the_checkpoint_that_extends_the_log(
    headed: tuple[AuditLog, Checkpoint, bytes],
) -> None:
    attempt(headed)
    assert [c.count for c in checkpoints(headed[0].engine)] == [1, 2]
    assert verify_database(reader_of(headed[0].engine)).ok


def test_the_writer_cannot_insert_a_checkpoint_directly(
    headed: tuple[AuditLog, Checkpoint, bytes],
) -> None:
    log, _, head = headed
    with (
        pytest.raises(sa.exc.ProgrammingError, match="permission denied"),
        log.engine.begin() as conn,
    ):
        conn.execute(
            sa.text(
                "INSERT INTO checkpoints (category, seq, entry_hash, signed_at, key_id, "
                "signature) VALUES (:c, 5, :h, now(), :k, :s)"
            ),
            {"c": GOV, "h": head, "k": log.signer.key_id, "s": b"\x00" * 64},
        )
