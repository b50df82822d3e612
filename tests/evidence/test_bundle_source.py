"""Evidence of which key wrote each entry: the bundle carries ``source`` (a CSV column, the
NDJSON record member) and verifies with auditlog's verifier and with ``python3 -I
verify_bundle.py``; a changed source is named by both; bundles from before the column keep
verifying."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from auditlog.columns import CSV_COLUMNS, LEGACY_CSV_COLUMNS
from auditlog.evidence.bundle import VERIFIER_PATH, manifest_message, write_bundle
from auditlog.evidence.verify import verify_bundle
from auditlog.integrity.keys import Signer, public_pem
from auditlog.query.filters import Filters
from auditlog.settings import ExportSettings
from auditlog.store import AuditLog, prepare_many
from tests.support.factories import ACTOR, tamper, valid

KEY = {"type": "api_key", "id": "k-7f3a", "name": "Billing service"}
LIMITS = ExportSettings(max_export_rows=10_000, export_chunk_bytes=2048)
CSV, ND, MANIFEST, SIG = "events.csv", "events.ndjson", "manifest.json", "manifest.sig.json"
PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable


def fill(log: AuditLog, source: dict[str, str] | None = KEY) -> None:
    """configuration seq 1..4: 1 and 4 in-process, 2 and 3 submitted by ``source``."""
    log.record(valid(details={"n": 1}))
    good, _ = prepare_many([valid(details={"n": n}) for n in (2, 3)], log.settings, source=source)
    log.append_prepared(good)
    log.record(valid(details={"n": 4}))


def bundle_of(log: AuditLog, reader: Engine, path: Path) -> Path:
    write_bundle(reader, path, Filters(), log=log, actor=ACTOR, limits=LIMITS)
    return path


def script(path: Path, cwd: Path, key: Path) -> tuple[int, str]:
    """``python3 -I verify_bundle.py BUNDLE --public-key KEY`` from outside the project."""
    cwd.mkdir(exist_ok=True)
    shutil.copy(VERIFIER_PATH, cwd / "verify_bundle.py")
    cmd = [PYTHON, "-I", str(cwd / "verify_bundle.py"), str(path), "--public-key", str(key)]
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
    return done.returncode, done.stdout + done.stderr


@pytest.fixture
def key_pem(signer: Signer, tmp_path: Path) -> Path:
    path = tmp_path / "log-key.pem"
    path.write_text(public_pem(signer.public))
    return path


def rows_of(path: Path) -> list[dict[str, str]]:
    text = zipfile.ZipFile(path).read(CSV).decode()
    return list(csv.DictReader(io.StringIO(text, newline="")))


def rewrite(src: Path, edits: dict[str, Callable[[bytes], bytes]], name: str) -> Path:
    dst = src.with_name(name)
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            edit = edits.get(item.filename)
            zout.writestr(item.filename, edit(data) if edit else data)
    return dst


def test_a_bundle_with_sources_carries_them_and_verifies_with_both_verifiers(
    log: AuditLog, reader_engine: Engine, tmp_path: Path, key_pem: Path
) -> None:
    fill(log)
    path = bundle_of(log, reader_engine, tmp_path / "b.zip")
    rows = rows_of(path)
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert [json.loads(r["source"]) for r in rows] == [None, KEY, KEY, None]
    lines = zipfile.ZipFile(path).read(ND).splitlines()
    assert [json.loads(line).get("source") for line in lines] == [None, KEY, KEY, None]
    report = verify_bundle(path)
    assert report.ok, [str(p) for p in report.problems]
    assert report.rows == 4
    code, out = script(path, tmp_path / "auditor", key_pem)
    assert code == 0, out


def test_a_source_changed_in_the_database_is_named_by_both_verifiers(
    log: AuditLog,
    reader_engine: Engine,
    admin_engine: Engine,
    tmp_path: Path,
    key_pem: Path,
) -> None:
    """The superuser gives seq 2 to another key (column only): the CSV (from the columns)
    no longer hashes to the entry; the NDJSON (the record) does, and differs from it."""
    fill(log)
    forged = json.dumps({**KEY, "name": "Payroll"})
    tamper(admin_engine, f"UPDATE events SET source = '{forged}' WHERE seq = 2")
    path = bundle_of(log, reader_engine, tmp_path / "b.zip")
    ours = [(p.kind, p.file, p.row, p.seq) for p in verify_bundle(path).problems]
    assert ("content changed", CSV, 2, 2) in ours
    code, out = script(path, tmp_path / "auditor", key_pem)
    assert code == 1
    assert "FAIL events.csv row 2 (configuration seq 2): content changed" in out


@pytest.mark.parametrize(
    "edit",
    [
        lambda cell: cell.replace("Billing service", "Payroll"),  # another key named
        lambda cell: "null",  # the source hidden
    ],
    ids=["renamed", "removed"],
)
def test_a_source_edited_in_the_csv_is_named_by_both_verifiers(
    log: AuditLog,
    reader_engine: Engine,
    signer: Signer,
    tmp_path: Path,
    key_pem: Path,
    edit: Callable[[str], str],
) -> None:
    fill(log)
    path = bundle_of(log, reader_engine, tmp_path / "b.zip")
    at = CSV_COLUMNS.index("source")

    def change(data: bytes) -> bytes:
        rows = list(csv.reader(io.StringIO(data.decode(), newline="")))
        rows[3][at] = edit(rows[3][at])  # data row 3 = seq 3
        out = io.StringIO()
        csv.writer(out, lineterminator="\r\n").writerows(rows)
        return out.getvalue().encode()

    bad = resealed(rewrite(path, {CSV: change}, "bad.zip"), signer)
    ours = [(p.kind, p.file, p.row) for p in verify_bundle(bad).problems]
    assert ours[0] == ("content changed", CSV, 3)
    code, out = script(bad, tmp_path / "auditor", key_pem)
    assert code == 1
    assert "FAIL events.csv row 3 (configuration seq 3): content changed" in out


def test_a_malformed_source_cell_is_a_malformed_row_for_the_script(
    log: AuditLog, reader_engine: Engine, signer: Signer, tmp_path: Path, key_pem: Path
) -> None:
    fill(log)
    path = bundle_of(log, reader_engine, tmp_path / "b.zip")
    at = CSV_COLUMNS.index("source")

    def change(data: bytes) -> bytes:
        rows = list(csv.reader(io.StringIO(data.decode(), newline="")))
        rows[2][at] = json.dumps({**KEY, "scope": "all"})
        out = io.StringIO()
        csv.writer(out, lineterminator="\r\n").writerows(rows)
        return out.getvalue().encode()

    bad = resealed(rewrite(path, {CSV: change}, "bad.zip"), signer)
    code, out = script(bad, tmp_path / "auditor", key_pem)
    assert code == 1
    assert "FAIL events.csv row 2: malformed row: column source: is neither null nor" in out


def resealed(
    path: Path, signer: Signer, edit: Callable[[dict[str, Any]], None] = lambda m: None
) -> Path:
    """The manifest's file hashes brought up to date (and ``edit``) and signed again, as by
    the log's own key: what is left to find is in the rows."""
    z = zipfile.ZipFile(path)
    m = json.loads(z.read(MANIFEST))
    for name in (CSV, ND):
        data = z.read(name)
        m["files"][name].update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    edit(m)
    body = json.dumps(m).encode()
    digest = hashlib.sha256(body).hexdigest()
    sig = signer.sign(manifest_message(digest, signer.key_id)).hex()
    seal = {"key_id": signer.key_id, "manifest_sha256": digest, "signature": sig}
    return rewrite(
        path, {MANIFEST: lambda _: body, SIG: lambda _: json.dumps(seal).encode()}, "sealed.zip"
    )


def test_a_bundle_from_before_the_source_column_keeps_verifying(
    log: AuditLog, reader_engine: Engine, signer: Signer, tmp_path: Path, key_pem: Path
) -> None:
    """A bundle written before sources existed: no source column, rows without a source."""
    log.record_many([valid(details={"n": n}) for n in range(4)])
    path = bundle_of(log, reader_engine, tmp_path / "b.zip")
    at = CSV_COLUMNS.index("source")

    def drop_column(data: bytes) -> bytes:
        rows = list(csv.reader(io.StringIO(data.decode(), newline="")))
        out = io.StringIO()
        csv.writer(out, lineterminator="\r\n").writerows([r[:at] + r[at + 1 :] for r in rows])
        return out.getvalue().encode()

    old = resealed(
        rewrite(path, {CSV: drop_column}, "old.zip"),
        signer,
        lambda m: m.update(csv_columns=list(LEGACY_CSV_COLUMNS)),
    )
    assert list(rows_of(old)[0]) == list(LEGACY_CSV_COLUMNS)
    report = verify_bundle(old)
    assert report.ok, [str(p) for p in report.problems]
    code, out = script(old, tmp_path / "auditor", key_pem)
    assert code == 0, out
