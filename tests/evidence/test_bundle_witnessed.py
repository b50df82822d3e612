"""Cosignatures travel in bundles; the stand-alone verifier checks them against the witness
keys an auditor gives it, with a quorum."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import URL, Engine

from auditlog.db.server import make_engine
from auditlog.evidence.bundle import write_bundle
from auditlog.integrity.keys import Signer, public_pem
from auditlog.proofs.submit import Submitter, Target
from auditlog.query.filters import Filters
from auditlog.settings import ExportSettings, Settings, WitnessSettings
from auditlog.store import AuditLog
from tests.support.factories import ACTOR, valid
from tests.support.witness import Witnesses, log_vkeys

SCRIPT = Path(__file__).parents[2] / "src" / "auditlog" / "evidence" / "verify_bundle.py"
GOV = "governance"


@pytest.fixture
def witnesses(tmp_path: Path, signer: Signer) -> Iterator[Witnesses]:
    made = Witnesses(tmp_path / "witnesses", log_vkeys("auditlog.local", signer))
    made.tmp.mkdir()
    yield made
    made.stop_all()


@pytest.fixture
def stream(db_url: URL) -> Iterator[Engine]:
    engine = make_engine(db_url.set(username="auditlog_stream"), "stream")
    yield engine
    engine.dispose()


def run(bundle: Path, tmp: Path, signer: Signer, *args: str) -> subprocess.CompletedProcess[str]:
    pem = tmp / "log.pem"
    pem.write_text(public_pem(signer.public))
    cmd = [sys.executable, "-I", str(SCRIPT), str(bundle), "--public-key", str(pem), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False, cwd=tmp)


def test_a_bundles_newest_tree_is_witnessed_by_the_keys_an_auditor_gives(
    engine: Engine, settings: Settings, signer: Signer, stream: Engine,
    witnesses: Witnesses, reader_engine: Engine, tmp_path: Path,
) -> None:  # fmt: skip
    log = AuditLog(engine, settings.replace(store={"checkpoint_every": 5}), signer=signer)
    w1, w2 = witnesses.make("w1.example"), witnesses.make("w2.example")
    log.record_many([valid(category=GOV) for _ in range(12)])
    targets = [Target(w.name, w.url, w.vkey) for w in (w1, w2)]
    with Submitter(stream, targets, WitnessSettings(timeout_seconds=5)) as submitter:
        submitter.run_pass(force=True)
    path = tmp_path / "b.zip"
    result = write_bundle(reader_engine, path, Filters(categories=(GOV,)), log=log, actor=ACTOR,
                          limits=ExportSettings(max_export_rows=1000))  # fmt: skip
    assert result.manifest["proofs"]["cosignatures"] >= 2
    both = run(path, tmp_path, signer, "--witness-key", w1.vkey, "--witness-key", w2.vkey,
               "--quorum", "2")  # fmt: skip
    assert both.returncode == 0, both.stdout + both.stderr
    assert "cosigned by 2 of the witness keys given" in both.stdout
    stranger = witnesses.make("w3.example", start=False)
    other = run(path, tmp_path, signer, "--witness-key", stranger.vkey, "--quorum", "1")
    assert other.returncode == 1
    assert "not witnessed" in other.stdout + other.stderr
