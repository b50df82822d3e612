"""`auditlog checkpoint export` and `auditlog verify --since FILE`: a checkpoint the auditor
kept outside the database shows a cut tail or a rewritten chain that the database alone hides;
and `auditlog verify --public-key` fails on an unsigned span."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from auditlog.evidence.bundle import write_bundle
from auditlog.integrity.kept import load_kept
from auditlog.integrity.keys import Signer, public_pem
from auditlog.query.filters import Filters
from auditlog.settings import ExportSettings, Settings
from auditlog.siem.delivery import fetch_checkpoints
from auditlog.siem.formats import Formatter
from auditlog.store import AuditLog
from tests.support.cli import make_cli
from tests.support.factories import ACTOR, tamper, valid

GOV = "governance"


@pytest.fixture
def cli(settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    return make_cli(settings, monkeypatch, tmp_path)


@pytest.fixture
def every5(engine: Engine, settings: Settings, signer: Signer) -> AuditLog:
    return AuditLog(engine, settings.replace(store={"checkpoint_every": 5}), signer=signer)


@pytest.fixture
def pin(tmp_path: Path, signer: Signer) -> Path:
    path = tmp_path / "pinned.pem"
    path.write_text(public_pem(signer.public), "ascii")
    return path


def fill(log: AuditLog, batches: int) -> None:
    for b in range(batches):
        log.record_many([valid(category=GOV, details={"b": b, "i": i}) for i in range(5)])


def superuser(admin: Engine, *statements: str) -> None:
    """Delete events and checkpoints as a superuser, with the guard triggers off."""
    tamper(
        admin,
        "ALTER TABLE checkpoints DISABLE TRIGGER checkpoints_no_update_delete",
        *statements,
        "ALTER TABLE checkpoints ENABLE ALWAYS TRIGGER checkpoints_no_update_delete",
    )


def test_export_holds_the_newest_checkpoint_of_each_chain_with_its_key(
    cli: Any, every5: AuditLog, tmp_path: Path, signer: Signer
) -> None:
    fill(every5, 2)
    every5.record(valid(category="user_activity"))
    out = tmp_path / "kept.json"
    result = cli("checkpoint", "export", "--format", "json", "--out", str(out))
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text("utf-8"))
    assert doc["format"] == "auditlog-checkpoints/1"
    by_cat = {cp["category"]: cp for cp in doc["checkpoints"]}
    assert set(by_cat) == {GOV, "user_activity"}
    assert (by_cat[GOV]["seq"], by_cat[GOV]["count"], by_cat[GOV]["version"]) == (10, 2, 3)
    assert doc["public_keys"] == {signer.key_id: public_pem(signer.public)}
    assert [(c.category, c.seq) for c in load_kept(out)] == [(GOV, 10), ("user_activity", 1)]
    printed = cli("checkpoint", "export", "--format", "json")  # to standard output
    assert json.loads(printed.output)["checkpoints"] == doc["checkpoints"]


def test_since_passes_when_the_log_still_holds_and_extends_the_kept_checkpoint(
    cli: Any, every5: AuditLog, tmp_path: Path, pin: Path
) -> None:
    fill(every5, 2)
    kept = tmp_path / "kept.json"
    cli("checkpoint", "export", "--out", str(kept))
    fill(every5, 2)
    result = cli("verify", "--public-key", str(pin), "--since", str(kept))
    assert result.exit_code == 0, result.output
    assert f"checkpoint {GOV} seq 10 count 2" in result.output
    assert "is held and extended" in result.output


def test_deleting_the_newest_rows_and_their_checkpoints_fails_since_naming_the_kept_one(
    cli: Any, every5: AuditLog, admin_engine: Engine, tmp_path: Path, pin: Path
) -> None:
    fill(every5, 4)  # checkpoints at seq 5, 10, 15, 20
    kept = tmp_path / "kept.json"
    cli("checkpoint", "export", "--out", str(kept))
    superuser(
        admin_engine,
        "DELETE FROM events WHERE category = 'governance' AND seq > 10",
        "DELETE FROM checkpoints WHERE category = 'governance' AND seq > 10",
    )
    plain = cli("verify", "--public-key", str(pin))
    assert plain.exit_code == 0, plain.output  # cut at a checkpoint: the database alone hides it
    result = cli("verify", "--public-key", str(pin), "--since", str(kept))
    assert result.exit_code == 1
    assert (
        f"FAIL since {kept}: {GOV} seq 20: head removed: kept checkpoint {GOV} seq 20 count 4"
        in result.output
    )
    assert "today's log ends at seq 10: entries 11..20 were removed" in result.output
    assert "verification FAILED" in result.output


def test_deleting_only_checkpoints_fails_since(
    cli: Any, every5: AuditLog, admin_engine: Engine, tmp_path: Path, pin: Path
) -> None:
    fill(every5, 2)
    kept = tmp_path / "kept.json"
    cli("checkpoint", "export", "--out", str(kept))
    superuser(admin_engine, "DELETE FROM checkpoints WHERE seq = 10")
    result = cli("verify", "--public-key", str(pin), "--since", str(kept))
    assert result.exit_code == 1
    assert "checkpoint removed" in result.output
    assert "chain, which ends at count 1" in result.output


def test_a_rewritten_chain_with_all_checkpoints_deleted_is_caught_by_since(
    cli: Any, every5: AuditLog, admin_engine: Engine, tmp_path: Path, pin: Path
) -> None:
    fill(every5, 2)
    kept = tmp_path / "kept.json"
    cli("checkpoint", "export", "--out", str(kept))
    superuser(admin_engine, "DELETE FROM events", "DELETE FROM checkpoints")
    fill(every5, 3)  # a new history written through the application, freshly signed
    assert cli("verify", "--public-key", str(pin)).exit_code == 0
    result = cli("verify", "--public-key", str(pin), "--since", str(kept))
    assert result.exit_code == 1
    assert f"{GOV} seq 10: head replaced: kept checkpoint {GOV} seq 10 count 2" in result.output


def test_rows_and_no_checkpoints_beyond_checkpoint_every_fail_verify_as_an_unsigned_span(
    cli: Any, every5: AuditLog, admin_engine: Engine, pin: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(every5, 3)
    superuser(admin_engine, "DELETE FROM checkpoints")
    monkeypatch.setenv("AUDITLOG_CHECKPOINT_EVERY", "10")
    result = cli("verify", "--public-key", str(pin))
    assert result.exit_code == 1
    assert f"FAIL {GOV} seq 1: unsigned span: seq 1..15 are signed by no checkpoint" in (
        result.output
    )
    monkeypatch.setenv("AUDITLOG_CHECKPOINT_EVERY", "15")
    assert cli("verify", "--public-key", str(pin)).exit_code == 0


def test_since_takes_a_bundle_and_the_siem_copies(
    every5: AuditLog, reader_engine: Engine, tmp_path: Path
) -> None:
    fill(every5, 2)
    bundle = tmp_path / "evidence.zip"
    limits = ExportSettings()
    write_bundle(reader_engine, bundle, Filters(), log=every5, actor=ACTOR, limits=limits)
    assert {(c.category, c.seq) for c in load_kept(bundle)} >= {(GOV, 5), (GOV, 10)}
    with reader_engine.connect() as conn:
        items = fetch_checkpoints(conn, 0, {GOV: 10}, 10)
    lines = {
        "syslog.log": [Formatter("rfc5424").syslog(i) for i in items],
        "hec.ndjson": [json.dumps({"event": Formatter("json").payload(i)}) for i in items],
        "ocsf.ndjson": [json.dumps(Formatter("ocsf").payload(i)) for i in items],
    }
    for name, text in lines.items():
        path = tmp_path / name
        path.write_text("\n".join(text) + "\n", "utf-8")
        assert [(c.seq, c.count) for c in load_kept(path)] == [(5, 1), (10, 2)], name


def test_an_unreadable_since_file_is_one_line_naming_it(cli: Any, tmp_path: Path) -> None:
    bad = tmp_path / "kept.json"
    bad.write_text('{"checkpoints": [{"category": "governance", "seq": 1}]}', "utf-8")
    result = cli("verify", "--since", str(bad))
    assert result.exit_code == 1
    assert f"error: {bad} line 1, column checkpoint.entry_hash: is missing" in result.output
    assert "Traceback" not in result.output


def test_a_checkpoint_signed_by_an_untrusted_key_is_refused_by_since(
    cli: Any, every5: AuditLog, tmp_path: Path
) -> None:
    fill(every5, 1)
    kept = tmp_path / "kept.json"
    cli("checkpoint", "export", "--out", str(kept))
    other = tmp_path / "other.pem"
    other.write_text(public_pem(Signer.generate().public), "ascii")
    result = cli("verify", "--public-key", str(other), "--since", str(kept))
    assert result.exit_code == 1
    assert "untrusted checkpoint" in result.output


def test_checkpoint_still_signs_the_uncovered_heads(cli: Any, log: AuditLog) -> None:
    log.record(valid(category=GOV))
    log.record(valid(category=GOV))
    result = cli("checkpoint")
    assert result.exit_code == 0
    assert f"signed {GOV} seq 2 count 2" in result.output
    with log.engine.connect() as conn:
        n = conn.execute(sa.text("SELECT count(*) FROM auditlog_last_checkpoint('governance')"))
        assert n.scalar_one() == 1
