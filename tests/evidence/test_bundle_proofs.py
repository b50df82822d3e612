"""Every row of a bundle carries its inclusion proof in a signed tree; both verifiers (the
package's and the stand-alone script) check each proof, and a forged one is named."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from auditlog.evidence.bundle import write_bundle
from auditlog.evidence.verify import verify_bundle
from auditlog.integrity.keys import Signer
from auditlog.query.filters import Filters
from auditlog.settings import ExportSettings, Settings
from auditlog.store import AuditLog
from tests.support.bundles import dump_lines, failed_seqs, forge_proofs, read_lines, run_script
from tests.support.factories import ACTOR, valid

LIMITS = ExportSettings(max_export_rows=100_000, export_chunk_bytes=4096)
SCRIPT = Path(__file__).parents[2] / "src" / "auditlog" / "evidence" / "verify_bundle.py"


@pytest.fixture
def log(engine: Engine, settings: Settings, signer: Signer) -> AuditLog:
    return AuditLog(engine, settings.replace(store={"checkpoint_every": 100}), signer=signer)


def fill(log: AuditLog, n: int = 700) -> None:
    cats = ("governance", "configuration")
    events = [valid(category=cats[i % 2], details={"i": i}) for i in range(n)]
    for k in range(0, n, 150):
        log.record_many(events[k : k + 150])


def test_every_row_of_a_filtered_bundle_is_proven_by_both_verifiers(
    log: AuditLog, reader_engine: Engine, tmp_path: Path, signer: Signer
) -> None:
    fill(log)
    path = tmp_path / "b.zip"
    only = Filters(categories=("governance",), text='"i": 1')  # a scatter of rows
    result = write_bundle(reader_engine, path, only, log=log, actor=ACTOR, limits=LIMITS)
    manifest = result.manifest
    assert manifest["proofs"]["rows"] == result.rows > 10
    assert manifest["proofs"]["by_category"]["governance"]["rows_unproven"] == 0
    assert any(line.startswith("Membership:") for line in manifest["proven"])
    assert any("Not proven: that no other row matches" in line for line in manifest["proven"])
    report = verify_bundle(path, {signer.key_id: signer.public})
    assert report.ok, report.problems
    assert report.proven == {"governance": result.rows}
    done = run_script(path, [signer], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"membership: {result.rows} of {result.rows} rows proven" in done.stdout
    with zipfile.ZipFile(path) as z:
        lines = read_lines(z.read("proofs.ndjson"))
    assert lines[0] == {"format": "auditlog-proofs/2"} == {"format": manifest["proofs"]["format"]}
    (listed,) = [x for x in lines if "rows" in x]
    assert sum(b - a + 1 for a, b in listed["rows"]) == result.rows
    assert listed["rows"] == manifest["chains"]["governance"]["runs"]


def flip_first_node(data: bytes) -> bytes:
    lines = read_lines(data)
    item = next(x for x in lines if "level" in x)
    h = item["hashes"]
    item["hashes"] = ("0" if h[0] != "0" else "1") + h[1:]
    return dump_lines(lines)


def test_a_forged_proof_is_named_by_both_verifiers(
    log: AuditLog, reader_engine: Engine, tmp_path: Path, signer: Signer
) -> None:
    fill(log, 300)
    path = tmp_path / "b.zip"
    write_bundle(reader_engine, path, log=log, actor=ACTOR, limits=LIMITS)
    forged = forge_proofs(path, signer, flip_first_node)  # node (0, 0): leaf 0, seq 1's
    problems = verify_bundle(forged, {signer.key_id: signer.public}).problems
    kinds = [(p.kind, p.file, p.row, p.category, p.seq) for p in problems]
    assert kinds == [("proof fails", "proofs.ndjson", 2, "configuration", 2)]
    done = run_script(forged, [signer], tmp_path)
    assert done.returncode == 1
    assert failed_seqs(done.stdout) == {("configuration", 2)}
    assert "proofs.ndjson row 2 (configuration seq 2): proof fails" in done.stdout


def test_the_only_entry_of_a_chain_is_proven_by_an_empty_path(
    log: AuditLog, reader_engine: Engine, tmp_path: Path, signer: Signer
) -> None:
    log.record(valid(category="configuration"))
    path = tmp_path / "one.zip"
    only = Filters(categories=("configuration",))
    write_bundle(reader_engine, path, only, log=log, actor=ACTOR, limits=LIMITS)
    with zipfile.ZipFile(path) as z:
        lines = read_lines(z.read("proofs.ndjson"))
    assert lines[1:] == [{"category": "configuration", "size": 1, "rows": [[1, 1]]}]
    report = verify_bundle(path, {signer.key_id: signer.public})
    assert report.ok, report.problems
    assert report.proven == {"configuration": 1}
