"""Every row of a bundle carries its inclusion proof in a signed tree; both verifiers (the
package's and the stand-alone script) check each proof, and a forged one is named."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from auditlog.evidence.bundle import manifest_message, write_bundle
from auditlog.evidence.verify import verify_bundle
from auditlog.integrity.keys import Signer, public_pem
from auditlog.query.filters import Filters
from auditlog.settings import ExportSettings, Settings
from auditlog.store import AuditLog
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


def run_script(bundle: Path, signer: Signer, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    pem = tmp_path / "log.pem"
    pem.write_text(public_pem(signer.public))
    cmd = [sys.executable, "-I", str(SCRIPT), str(bundle), "--public-key", str(pem)]
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path
    )


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
    done = run_script(path, signer, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"membership: {result.rows} of {result.rows} rows proven" in done.stdout


def forge_proofs(path: Path, signer: Signer, edit) -> Path:  # type: ignore[no-untyped-def]
    """Change proofs.ndjson and re-seal the manifest with the log's own key (an insider with
    the key): only the proof check itself can find it."""
    out = path.with_name("forged.zip")
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
        proofs = edit(zin.read("proofs.ndjson"))
        m = json.loads(zin.read("manifest.json"))
        m["files"]["proofs.ndjson"]["sha256"] = hashlib.sha256(proofs).hexdigest()
        m["files"]["proofs.ndjson"]["bytes"] = len(proofs)
        body = json.dumps(m).encode()
        digest = hashlib.sha256(body).hexdigest()
        sig = signer.sign(manifest_message(digest, signer.key_id)).hex()
        seal = {"key_id": signer.key_id, "manifest_sha256": digest, "signature": sig}
        for item in zin.infolist():
            data = {"proofs.ndjson": proofs, "manifest.json": body,
                    "manifest.sig.json": json.dumps(seal).encode()}.get(item.filename)  # fmt: skip
            zout.writestr(item.filename, data if data is not None else zin.read(item.filename))
    return out


def flip_first_hash(data: bytes) -> bytes:
    lines = data.splitlines()
    first = json.loads(lines[0])
    h = first["proof"][0]
    first["proof"][0] = ("0" if h[0] != "0" else "1") + h[1:]
    return b"\n".join([json.dumps(first).encode(), *lines[1:]]) + b"\n"


def test_a_forged_proof_is_named_by_both_verifiers(
    log: AuditLog, reader_engine: Engine, tmp_path: Path, signer: Signer
) -> None:
    fill(log, 300)
    path = tmp_path / "b.zip"
    write_bundle(reader_engine, path, log=log, actor=ACTOR, limits=LIMITS)
    forged = forge_proofs(path, signer, flip_first_hash)
    kinds = [
        (p.kind, p.file, p.row)
        for p in verify_bundle(forged, {signer.key_id: signer.public}).problems
    ]
    assert kinds == [("proof fails", "proofs.ndjson", 1)]
    done = run_script(forged, signer, tmp_path)
    assert done.returncode == 1
    assert "proofs.ndjson row 1" in done.stdout + done.stderr
    assert "proof fails" in done.stdout + done.stderr


def test_the_only_entry_of_a_chain_is_proven_by_an_empty_path(
    log: AuditLog, reader_engine: Engine, tmp_path: Path, signer: Signer
) -> None:
    log.record(valid(category="configuration"))
    path = tmp_path / "one.zip"
    only = Filters(categories=("configuration",))
    write_bundle(reader_engine, path, only, log=log, actor=ACTOR, limits=LIMITS)
    with zipfile.ZipFile(path) as z:
        line = json.loads(z.read("proofs.ndjson"))
    assert (line["seq"], line["size"], line["proof"]) == (1, 1, [])
    report = verify_bundle(path, {signer.key_id: signer.public})
    assert report.ok, report.problems
    assert report.proven == {"configuration": 1}
