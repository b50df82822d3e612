"""`auditlog witness submit|status` and `auditlog verify --witness-key`, with real witnesses
on loopback; and the attack the witnesses exist for: a database superuser who also holds
the log's signing key rewrites a chain and re-signs it, and only the witness notices."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from auditlog.integrity.checkpoints import Checkpoint
from auditlog.integrity.database import db_checkpoints
from auditlog.integrity.kept import bind_note_keys, load_kept
from auditlog.integrity.keys import Signer, public_pem
from auditlog.integrity.rule import chain_hash, record_bytes, row_to_record
from auditlog.settings import Settings
from auditlog.store import AuditLog
from tests.support.cli import make_cli
from tests.support.factories import valid
from tests.support.witness import Witnesses, WitnessProcess, log_vkeys

GOV = "governance"
ORIGIN = f"auditlog.local/{GOV}"


@pytest.fixture
def witnesses(tmp_path: Path, signer: Signer) -> Iterator[Witnesses]:
    made = Witnesses(tmp_path / "witnesses", log_vkeys("auditlog.local", signer))
    made.tmp.mkdir()
    yield made
    made.stop_all()


@pytest.fixture
def cli(settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    monkeypatch.setenv("AUDITLOG_CHECKPOINT_EVERY", "5")
    return make_cli(settings, monkeypatch, tmp_path)


@pytest.fixture
def pin(tmp_path: Path, signer: Signer) -> Path:
    path = tmp_path / "pinned.pem"
    path.write_text(public_pem(signer.public), "ascii")
    return path


def new_log(engine: Engine, settings: Settings, signer: Signer) -> AuditLog:
    """The application, (re)started: checkpoints every 5 entries."""
    return AuditLog(engine, settings.replace(store={"checkpoint_every": 5}), signer=signer)


def fill(log: AuditLog, batches: int, tag: str = "a") -> None:
    for b in range(batches):
        log.record_many([valid(category=GOV, details={"t": tag, "b": b, "i": i}) for i in range(5)])


def configure(monkeypatch: pytest.MonkeyPatch, *ws: WitnessProcess, quorum: int = 0) -> None:
    monkeypatch.setenv("AUDITLOG_WITNESS_SERVERS", ",".join(w.entry() for w in ws))
    monkeypatch.setenv("AUDITLOG_WITNESS_QUORUM", str(quorum))


# --- the attacker: database superuser and the log's signing key ------------------------------


def rewrite_from(admin: Engine, first: int) -> None:
    """Change the entry at seq ``first`` and recompute every later hash, so the chain links."""
    with admin.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE events DISABLE TRIGGER events_no_update_delete")
        rows = conn.execute(
            sa.text("SELECT * FROM events WHERE category = :c AND seq >= :s ORDER BY seq"),
            {"c": GOV, "s": first},
        ).mappings()
        prev = None
        for row in list(rows):
            prev = bytes(row["prev_hash"]) if prev is None else prev
            record = row_to_record(row)
            if row["seq"] == first:
                record["outcome"] = "denied"
            record["prev_hash"] = prev.hex()
            text = record_bytes(record)
            entry = chain_hash(prev, text)
            conn.execute(
                sa.text(
                    "UPDATE events SET outcome = :o, prev_hash = :p, entry_hash = :h, record = :r"
                    " WHERE category = :c AND seq = :s"
                ),
                {"o": record["outcome"], "p": prev, "h": entry, "r": text.decode(), "c": GOV,
                 "s": row["seq"]},
            )  # fmt: skip
            prev = entry
        conn.exec_driver_sql("ALTER TABLE events ENABLE ALWAYS TRIGGER events_no_update_delete")


def delete_checkpoints_and_cosignatures(admin: Engine) -> None:
    guards = [("witness_cosignatures", "witness_cosignatures"), ("checkpoints", "checkpoints")]
    with admin.begin() as conn:
        for table, prefix in guards:
            conn.exec_driver_sql(f"ALTER TABLE {table} DISABLE TRIGGER {prefix}_no_update_delete")
        conn.exec_driver_sql("DELETE FROM witness_state")
        conn.exec_driver_sql("DELETE FROM witness_cosignatures")
        conn.exec_driver_sql("DELETE FROM checkpoints")
        for table, prefix in guards:
            conn.exec_driver_sql(
                f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {prefix}_no_update_delete"
            )


def test_a_rewritten_and_re_signed_chain_is_refused_by_the_witness_and_named_by_since(
    cli: Any,
    engine: Engine,
    admin_engine: Engine,
    settings: Settings,
    signer: Signer,
    witnesses: Witnesses,
    monkeypatch: pytest.MonkeyPatch,
    pin: Path,
    tmp_path: Path,
) -> None:
    w = witnesses.make("witness.example/w1")
    configure(monkeypatch, w)
    log = new_log(engine, settings, signer)
    fill(log, 1)
    assert cli("witness", "submit", "--once").exit_code == 0
    kept = tmp_path / "witnessed.note"
    kept.write_text(w.latest(ORIGIN), "utf-8")  # a monitor keeps each note the witness cosigns
    fill(log, 1)
    assert cli("witness", "submit", "--once").exit_code == 0
    with kept.open("a", encoding="utf-8") as fh:
        fh.write("\n" + w.latest(ORIGIN))
    witnessed = cli("verify", "--public-key", str(pin), "--witness-key", w.vkey)
    assert witnessed.exit_code == 0, witnessed.output
    assert f"ok   witnessed {GOV} (1 of 1): newest cosigned checkpoint {GOV} seq 10" in (
        witnessed.output
    )

    rewrite_from(admin_engine, 7)
    delete_checkpoints_and_cosignatures(admin_engine)
    fill(new_log(engine, settings, signer), 1, tag="b")  # re-signed: a checkpoint at seq 15
    assert cli("verify", "--public-key", str(pin)).exit_code == 0  # the database alone agrees

    submitted = cli("witness", "submit", "--once")
    assert submitted.exit_code == 1
    assert "refused the checkpoint (422)" in submitted.output
    assert any("422" in line for line in w.refusals())
    status = cli("witness", "status")
    assert f"{w.name} {GOV}: newest checkpoint seq 15" in status.output
    assert "cosigned seq 0" in status.output
    assert "last error" in status.output
    assert "consistency proof from size 10 to 15 does not verify" in status.output

    since = cli("verify", "--public-key", str(pin), "--since", str(kept))
    assert since.exit_code == 1
    # the kept checkpoint at seq 5 was deleted from the log, but its head is still held
    assert f"{GOV} seq 5: checkpoint replaced: kept checkpoint {GOV} seq 5" in since.output
    assert f"{GOV} seq 10: head replaced: kept checkpoint {GOV} seq 10 count 2" in since.output
    assert "rewritten from there or before" in since.output
    assert f"{GOV}: the first rewritten row is seq 6..10" in since.output
    refused = cli("verify", "--public-key", str(pin), "--witness-key", w.vkey)
    assert refused.exit_code == 1
    assert f"{GOV} seq 15: not witnessed: checkpoint {GOV} seq 15 count 1" in refused.output


# --- the commands ------------------------------------------------------------------------


def test_verify_needs_a_quorum_of_the_given_keys_and_says_which_it_has(
    cli: Any,
    engine: Engine,
    settings: Settings,
    signer: Signer,
    witnesses: Witnesses,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    w1, w2 = witnesses.make("w.example/1"), witnesses.make("w.example/2")
    w3 = witnesses.make("w.example/3", start=False)
    configure(monkeypatch, w1, w2, w3, quorum=2)
    fill(new_log(engine, settings, signer), 1)
    submitted = cli("witness", "submit", "--once")
    assert submitted.exit_code == 1  # w3 is down
    assert f"FAIL {w3.name} {GOV}:" in submitted.output
    keys = [a for w in (w1, w2, w3) for a in ("--witness-key", w.vkey)]
    assert cli("verify", *keys).exit_code == 0  # the configured quorum: 2 of 3
    three = cli("verify", *keys, "--quorum", "3")
    assert three.exit_code == 1
    assert "carries 2 valid cosignature(s) (from w.example/1, w.example/2)" in three.output
    assert "of the 3 witness key(s) given; 3 needed" in three.output


def test_verify_refuses_a_bad_witness_key_or_quorum_in_one_line(cli: Any, signer: Signer) -> None:
    log_key = log_vkeys("auditlog.local", signer)[0]
    for args, says in [
        (["--witness-key", "nonsense"], "--witness-key 1"),
        (["--witness-key", log_key], "is not a witness cosignature key"),
    ]:
        result = cli("verify", *args)
        assert result.exit_code == 1
        assert says in result.output
        assert "Traceback" not in result.output


def test_verify_refuses_a_quorum_above_the_keys_given(
    cli: Any, witnesses: Witnesses, tmp_path: Path
) -> None:
    w = witnesses.make("w.example/1", start=False)
    result = cli("verify", "--witness-key", w.vkey, "--quorum", "2")
    assert result.exit_code == 1
    assert "--quorum 2: needs between 1 and the 1 witness key(s) given" in result.output


def test_submit_and_status_say_when_no_witness_is_configured(cli: Any) -> None:
    for command in ("submit", "status"):
        result = cli("witness", command, *(["--once"] if command == "submit" else []))
        assert result.exit_code == 1
        assert "no witness is configured: set [witness] servers" in result.output


# --- kept notes -----------------------------------------------------------------------------


def newest_checkpoint(admin: Engine) -> Checkpoint:
    with admin.connect() as conn:
        return db_checkpoints(conn.connection.driver_connection, GOV)[-1]


def test_a_kept_note_reads_as_the_checkpoint_it_signs(
    engine: Engine, admin_engine: Engine, settings: Settings, signer: Signer, tmp_path: Path
) -> None:
    fill(new_log(engine, settings, signer), 2)
    cp = newest_checkpoint(admin_engine)
    path = tmp_path / "cp.note"
    path.write_text(cp.note(signer.public), "utf-8")
    [read] = bind_note_keys(load_kept(path), {signer.key_id: signer.public})
    assert read == cp


def test_a_note_of_another_key_is_untrusted_and_a_malformed_one_is_one_line(
    cli: Any,
    engine: Engine,
    admin_engine: Engine,
    settings: Settings,
    signer: Signer,
    pin: Path,
    tmp_path: Path,
) -> None:
    fill(new_log(engine, settings, signer), 1)
    cp = newest_checkpoint(admin_engine)
    other = tmp_path / "other.note"
    other.write_text(cp.note(Signer.generate().public), "utf-8")  # a key ID of no trusted key
    result = cli("verify", "--public-key", str(pin), "--since", str(other))
    assert result.exit_code == 1
    assert "untrusted checkpoint" in result.output
    lines = cp.note(signer.public).split("\n")
    bad = tmp_path / "bad.note"
    bad.write_text("\n".join(lines[:3] + lines[4:]), "utf-8")  # the head line is gone
    result = cli("verify", "--since", str(bad))
    assert result.exit_code == 1
    assert f"error: {bad} line 1, column note: is not an auditlog checkpoint" in result.output
    assert "Traceback" not in result.output
