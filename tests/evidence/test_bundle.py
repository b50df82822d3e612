"""Evidence bundles: what they hold, that they verify from the bundle alone, and that every
kind of tampering is named at the right row; an auditor's own verifier agrees with ours."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from sqlalchemy.engine import Engine

from auditlog.columns import CSV_COLUMNS
from auditlog.evidence.bundle import CONTROLS, manifest_message, write_bundle
from auditlog.evidence.verify import BundleReport, csv_record, verify_bundle
from auditlog.integrity.checkpoints import Checkpoint
from auditlog.integrity.keys import Signer, load_signer, public_pem
from auditlog.integrity.rule import chain_hash, record_bytes
from auditlog.query.filters import Filters
from auditlog.settings import ExportSettings, Settings
from auditlog.store import AuditLog
from tests.support.cli import make_cli
from tests.support.factories import ACTOR, valid
from tests.support.hostile import HOSTILE, hostile_events

LIMITS = ExportSettings(max_export_rows=10_000, export_chunk_bytes=2048)
CSV, ND, MANIFEST, SIG = "events.csv", "events.ndjson", "manifest.json", "manifest.sig.json"
# Rows: configuration seq 1..12 (rows 1-12), governance 1..12 (13-24), user_activity 1..6.
LAYOUT = {"configuration": 12, "governance": 12, "user_activity": 6}


@pytest.fixture
def log(engine: Engine, settings: Settings, signer: Signer) -> AuditLog:
    """A log that signs a checkpoint every 5 entries, so a bundle holds several."""
    return AuditLog(engine, settings.replace(store={"checkpoint_every": 5}), signer=signer)


def fill(log: AuditLog) -> None:
    events = [valid(category=cat, details={"n": n}) for cat, k in LAYOUT.items() for n in range(k)]
    for i in range(0, len(events), 4):  # small batches: a checkpoint lands inside the ranges
        log.record_many(events[i : i + 4])


@pytest.fixture
def cli(settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    return make_cli(settings, monkeypatch, tmp_path)


@pytest.fixture
def bundle(log: AuditLog, reader_engine: Engine, tmp_path: Path) -> Path:
    fill(log)
    path = tmp_path / "evidence.zip"
    write_bundle(reader_engine, path, Filters(), log=log, actor=ACTOR, limits=LIMITS)
    return path


# --- editing a bundle the way an attacker would -------------------------------------------------


def rewrite(src: Path, edits: dict[str, Callable[[bytes], bytes]], name: str = "t.zip") -> Path:
    dst = src.with_name(name)
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            edit = edits.get(item.filename)
            zout.writestr(item.filename, edit(data) if edit else data)
    return dst


def csv_rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode(), newline="")))


def csv_bytes(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue().encode()


def on_rows(fn: Callable[[list[Any]], list[Any]]) -> dict[str, Callable[[bytes], bytes]]:
    """The same edit of the data rows in both files (the CSV header stays)."""
    return {
        CSV: lambda b: csv_bytes([csv_rows(b)[0], *fn(csv_rows(b)[1:])]),
        ND: lambda b: b"".join(fn(b.splitlines(keepends=True))),
    }


def problems(path: Path, keys: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
    """(kind, file, row, category, seq) of every problem, without the file-level hash ones."""
    report = verify_bundle(path, keys)
    assert not report.ok
    return [
        (p.kind, p.file, p.row, p.category, p.seq)
        for p in report.problems
        if p.kind != "file changed"
    ]


# --- what a bundle is ---------------------------------------------------------------------------


def test_bundle_holds_csv_ndjson_and_a_manifest_of_what_it_proves(bundle: Path) -> None:
    with zipfile.ZipFile(bundle) as z:
        names = [CSV, ND, MANIFEST, SIG, "verify_bundle.py", "proofs.ndjson"]
        assert sorted(z.namelist()) == sorted(names)
        m = json.loads(z.read(MANIFEST))
        data = {name: z.read(name) for name in (CSV, ND)}
    assert m["exported_by"] == ACTOR
    assert m["rows"] == 30
    for name, blob in data.items():
        assert m["files"][name]["sha256"] == hashlib.sha256(blob).hexdigest()
        assert m["files"][name]["rows"] == 30
    assert {c: v["runs"] for c, v in m["chains"].items()} == {
        c: [[1, k]] for c, k in LAYOUT.items()
    }
    assert (
        {c["id"] for c in m["controls"]}
        == {"CC7.2", "A.12.4", "A.8.15"}
        == {c["id"] for c in CONTROLS}
    )
    assert {cp["category"] for cp in m["checkpoints"]} == set(LAYOUT)
    assert m["manifest_key_id"] in m["public_keys"]


def test_untouched_bundle_verifies_and_checkpoints_vouch_for_every_row(
    bundle: Path, signer: Signer
) -> None:
    report = verify_bundle(bundle, {signer.key_id: signer.public})
    assert report.ok, [str(p) for p in report.problems]
    assert report.rows == 30
    assert report.key_pinned
    assert {c: (s.rows, s.covered) for c, s in report.chains.items()} == {
        c: (k, k) for c, k in LAYOUT.items()
    }


def test_export_of_a_bundle_is_recorded_with_the_zips_sha256(
    bundle: Path, reader_engine: Engine
) -> None:
    with reader_engine.connect() as conn:
        target, details = conn.exec_driver_sql(
            "SELECT target, details FROM events WHERE action = 'export.downloaded'"
        ).one()
    assert target["id"] == hashlib.sha256(bundle.read_bytes()).hexdigest()
    assert (details["format"], details["rows"]) == ("bundle", 30)


def test_hostile_values_survive_a_bundle_and_verify(
    log: AuditLog, reader_engine: Engine, tmp_path: Path
) -> None:
    log.record_many(hostile_events())
    path = tmp_path / "hostile.zip"
    write_bundle(reader_engine, path, log=log, actor=ACTOR, limits=LIMITS)
    assert verify_bundle(path).ok
    with zipfile.ZipFile(path) as z:
        notes = [csv_record(r)["details"]["note"] for r in csv_rows(z.read(CSV))[1:]]
    assert sorted(notes) == sorted(HOSTILE)


def test_filtered_bundle_verifies_its_runs_and_names_a_deleted_row(
    log: AuditLog, reader_engine: Engine, tmp_path: Path
) -> None:
    fill(log)
    path = tmp_path / "odd.zip"
    only = Filters(categories=("governance",), text='"n": 1')  # n = 1, 10, 11: seq 2, 11, 12
    write_bundle(reader_engine, path, only, log=log, actor=ACTOR, limits=LIMITS)
    assert verify_bundle(path).ok
    assert verify_bundle(path).chains["governance"].runs == [[2, 2, 1], [11, 12, 2]]
    cut = rewrite(path, on_rows(lambda rows: rows[:1] + rows[2:]))
    assert problems(cut) == [("row deleted", CSV, 2, "governance", 11)]


# --- tampering, each named at its row -----------------------------------------------------------


def test_changed_byte_is_named_at_its_row(bundle: Path) -> None:
    edit = {CSV: lambda b: b.replace(b'{""n"": 7}', b'{""n"": 8}', 1)}  # configuration seq 8
    assert problems(rewrite(bundle, edit)) == [("content changed", CSV, 8, "configuration", 8)]


def test_deleted_row_is_named(bundle: Path) -> None:
    cut = rewrite(bundle, on_rows(lambda rows: rows[:15] + rows[16:]))  # governance seq 4
    assert problems(cut) == [("row deleted", CSV, 16, "governance", 4)]


def test_inserted_row_with_valid_hashes_is_named(bundle: Path) -> None:
    def forge(rows: list[Any]) -> list[Any]:
        if isinstance(rows[0], bytes):  # NDJSON: the same forged entry as a line
            rec = forged
            line = (
                record_bytes(rec)[:-1]
                + (
                    f',"prev_hash":"{rec["prev_hash"]}","entry_hash":"{rec["entry_hash"]}"}}\n'
                ).encode()
            )
            return [*rows[:24], line, *rows[24:]]
        return [*rows[:24], forged_cells, *rows[24:]]

    with zipfile.ZipFile(bundle) as z:
        cells = csv_rows(z.read(CSV))[24]  # governance seq 12, the last of its chain
    forged_cells = list(cells)
    col = {name: i for i, name in enumerate(CSV_COLUMNS)}
    forged_cells[col["seq"]], forged_cells[col["event_id"]] = "13", str(uuid.uuid4())
    forged_cells[col["prev_hash"]] = cells[col["entry_hash"]]
    forged = csv_record(forged_cells)
    forged["entry_hash"] = chain_hash(
        bytes.fromhex(forged["prev_hash"]), record_bytes(forged)
    ).hex()
    forged_cells[col["entry_hash"]] = forged["entry_hash"]
    assert problems(rewrite(bundle, on_rows(forge))) == [
        ("row inserted", CSV, 25, "governance", 13)
    ]


def test_reordered_rows_are_named(bundle: Path) -> None:
    swapped = rewrite(bundle, on_rows(lambda r: [*r[:3], r[4], r[3], *r[5:]]))
    assert problems(swapped) == [("rows reordered", CSV, 5, "configuration", 4)]


def test_truncated_rows_are_named(bundle: Path) -> None:
    cut = rewrite(bundle, on_rows(lambda rows: rows[:-2]))  # user_activity seq 5, 6
    assert problems(cut) == [("rows truncated", CSV, 28, "user_activity", 5)]


def test_forged_manifest_is_named(bundle: Path) -> None:
    def edit(b: bytes) -> bytes:
        m = json.loads(b)
        m["exported_by"] = {"type": "user", "id": "someone-else"}
        return json.dumps(m).encode()

    assert problems(rewrite(bundle, {MANIFEST: edit})) == [
        ("forged manifest", MANIFEST, None, None, None)
    ]


def test_changed_ndjson_line_is_named_in_that_file(bundle: Path) -> None:
    edit = {ND: lambda b: b.replace(b'{"n":3}', b'{"n":4}', 1)}  # configuration seq 4
    assert problems(rewrite(bundle, edit)) == [("content changed", ND, 4, None, 4)]


def test_quoting_only_change_is_a_file_change_with_every_value_intact(bundle: Path) -> None:
    edit = {CSV: lambda b: b.replace(b"\r\nconfiguration,1,", b'\r\n"configuration",1,', 1)}
    report = verify_bundle(rewrite(bundle, edit))
    assert [(p.kind, p.file) for p in report.problems] == [("file changed", CSV)]
    assert "every row's values still verify" in report.problems[0].message


def test_unexpected_file_is_named(bundle: Path) -> None:
    with zipfile.ZipFile(bundle, "a") as z:
        z.writestr("readme.txt", "trust me")
    assert problems(bundle) == [("unexpected file", "readme.txt", None, None, None)]


def test_bundle_re_signed_with_another_key_fails_against_the_pinned_key(
    bundle: Path, signer: Signer
) -> None:
    mallory = Signer.generate()

    def resign(b: bytes) -> bytes:  # every row rewritten, every signature redone by mallory
        m = json.loads(b)
        for cp in m["checkpoints"]:
            c = Checkpoint.from_json({**cp, "key_id": mallory.key_id})
            cp["key_id"], cp["signature"] = mallory.key_id, mallory.sign(c.message()).hex()
        m["public_keys"] = {mallory.key_id: public_pem(mallory.public)}
        m["manifest_key_id"] = mallory.key_id
        return json.dumps(m).encode()

    body = resign(zipfile.ZipFile(bundle).read(MANIFEST))
    digest = hashlib.sha256(body).hexdigest()
    seal = {
        "key_id": mallory.key_id,
        "manifest_sha256": digest,
        "signature": mallory.sign(manifest_message(digest, mallory.key_id)).hex(),
    }
    forged = rewrite(bundle, {MANIFEST: lambda _: body, SIG: lambda _: json.dumps(seal).encode()})
    assert verify_bundle(forged).ok  # self-consistent: only a pinned key can tell
    kinds = {p.kind for p in verify_bundle(forged, {signer.key_id: signer.public}).problems}
    assert kinds == {"forged manifest", "bad signature"}


def test_not_a_zip_is_named(tmp_path: Path) -> None:
    path = tmp_path / "x.zip"
    path.write_bytes(b"PK not really")
    assert [p.kind for p in verify_bundle(path).problems] == ["not a bundle"]


# --- an auditor's own verifier, from docs/evidence.md alone ---------------------------------


NULLABLE = ("source_ip", "user_agent", "correlation_id")
JSON_CELLS = ("actor", "target", "before", "after", "details", "source")


def auditor_value(name: str, cell: str) -> Any:
    if name in NULLABLE and cell == "":
        return None
    text = cell[1:] if cell.startswith("'") else cell  # undo the formula escape
    if name in JSON_CELLS:  # JCS numbers are doubles: an integer past 2**53 was a float
        return json.loads(text, parse_int=lambda s: int(s) if abs(int(s)) < 2**53 else float(s))
    if name in ("seq", "occurred_offset"):
        return int(text)
    return text == "true" if name == "clock_skew" else text


# The members a checkpoint signs, by its version (docs/integrity.md, section 3).
SIGNED = {
    1: ("category", "seq", "entry_hash", "signed_at", "key_id"),
    2: ("category", "count", "entry_hash", "key_id", "prev_hash", "seq", "signed_at", "version"),
}


def signed_text(cp: dict[str, Any]) -> bytes:
    """What a checkpoint's signature covers: JCS of fields (versions 1, 2) or the note text
    (version 3, docs/integrity.md section 9)."""
    version = cp.get("version", 1)
    if version in SIGNED:
        return rfc8785.dumps({k: cp[k] for k in SIGNED[version]})
    root = base64.b64encode(bytes.fromhex(cp["root"])).decode()
    return (
        f"{cp['origin']}\n{cp['seq']}\n{root}\nhead {cp['entry_hash']}\n"
        f"prev {cp['prev_hash']}\ncount {cp['count']}\ntime {cp['signed_at']}\n"
    ).encode()


def auditor_verify(path: Path, public_pem: bytes) -> list[str]:
    """Written from docs/evidence.md with hashlib, csv, json, rfc8785 and cryptography only."""
    key: Any = serialization.load_pem_public_key(public_pem)
    z, bad = zipfile.ZipFile(path), []
    body, seal = z.read("manifest.json"), json.loads(z.read("manifest.sig.json"))
    m, digest = json.loads(body), hashlib.sha256(body).hexdigest()
    signed = {
        "purpose": "auditlog evidence manifest",
        "manifest_sha256": digest,
        "key_id": seal["key_id"],
    }
    for what, sig, msg in [("manifest", seal["signature"], rfc8785.dumps(signed))] + [
        (f"checkpoint {cp['category']} {cp['seq']}", cp["signature"], signed_text(cp))
        for cp in m["checkpoints"]
    ]:
        try:
            key.verify(bytes.fromhex(sig), msg)
        except InvalidSignature:
            bad.append(f"{what}: bad signature")
    for name in ("events.csv", "events.ndjson"):
        if hashlib.sha256(z.read(name)).hexdigest() != m["files"][name]["sha256"]:
            bad.append(f"{name} hash")
    hashes: dict[tuple[str, int], str] = {}
    text = io.StringIO(z.read("events.csv").decode(), newline="")
    for n, row in enumerate(csv.DictReader(text), start=1):
        rec = {k: auditor_value(k, v) for k, v in row.items()}
        if rec.get("source", "") is None:  # evidence.md: a null source is no record member
            del rec["source"]
        prev, entry = rec.pop("prev_hash"), rec.pop("entry_hash")
        if hashlib.sha256(bytes.fromhex(prev) + rfc8785.dumps(rec)).hexdigest() != entry:
            bad.append(f"row {n}: content changed")
        if hashes.get((rec["category"], rec["seq"] - 1), prev) != prev:
            bad.append(f"row {n}: link broken")
        hashes[(rec["category"], rec["seq"])] = entry
    for cp in m["checkpoints"]:
        if hashes.get((cp["category"], cp["seq"]), cp["entry_hash"]) != cp["entry_hash"]:
            bad.append(f"checkpoint {cp['category']} {cp['seq']}: mismatch")
    for cat, chain in m["chains"].items():
        want = {(cat, s) for a, b in chain["runs"] for s in range(a, b + 1)}
        if want != {k for k in hashes if k[0] == cat}:
            bad.append(f"{cat}: rows differ from the manifest's ranges")
    return bad


def our_rows(report: BundleReport) -> list[str]:
    return [f"row {p.row}: {p.kind}" for p in report.problems if p.file == CSV and p.row]


def test_an_auditors_own_verifier_agrees_with_ours(
    log: AuditLog, reader_engine: Engine, tmp_path: Path, signer: Signer
) -> None:
    log.record_many(hostile_events())
    fill(log)
    path = tmp_path / "b.zip"
    write_bundle(reader_engine, path, log=log, actor=ACTOR, limits=LIMITS)
    pem = public_pem(signer.public).encode()
    assert auditor_verify(path, pem) == []
    assert verify_bundle(path).ok
    bad = rewrite(path, {CSV: lambda b: b.replace(b'{""n"": 7}', b'{""n"": 70}', 1)})
    theirs = auditor_verify(bad, pem)
    assert theirs[0] == "events.csv hash"
    # rows run by category then seq: the configuration hostile events, then fill's n = 0..7
    row = sum(e["category"] == "configuration" for e in hostile_events()) + 8
    assert theirs[1] == our_rows(verify_bundle(bad))[0] == f"row {row}: content changed"


def test_cli_verifies_a_bundle_and_exits_1_naming_the_row(cli: Any, bundle: Path) -> None:
    ok = cli("verify", "--bundle", str(bundle))
    assert ok.exit_code == 0
    assert "verified: bundle intact" in ok.output
    assert "pin the key you obtained out of band" in ok.output
    bad = rewrite(bundle, on_rows(lambda rows: rows[:15] + rows[16:]))
    failed = cli("verify", "--bundle", str(bad))
    assert failed.exit_code == 1
    assert "FAIL events.csv row 16 (governance seq 4): row deleted" in failed.output


def test_cli_exports_a_bundle_that_verifies_against_the_pinned_key(
    cli: Any, log: AuditLog, tmp_path: Path, settings: Settings
) -> None:
    fill(log)
    assert cli("export", "--format", "bundle", "-o", "ev.zip").exit_code == 0
    pins = []  # the installation's key, and the test log's (it signed earlier checkpoints)
    for n, public in enumerate([load_signer(settings).public, log.signer.public]):
        pins += ["--public-key", str(tmp_path / f"key{n}.pem")]
        (tmp_path / f"key{n}.pem").write_text(public_pem(public))
    result = cli("verify", "--bundle", "ev.zip", *pins)
    assert result.exit_code == 0, result.output


def test_export_that_matches_nothing_is_an_empty_bundle_that_verifies(
    log: AuditLog, reader_engine: Engine, tmp_path: Path
) -> None:
    fill(log)
    path = tmp_path / "none.zip"
    nothing = Filters(correlation_id="no-such-change")
    assert write_bundle(reader_engine, path, nothing, log=log, actor=ACTOR, limits=LIMITS).rows == 0
    report = verify_bundle(path)
    assert report.ok
    assert report.rows == 0
    with zipfile.ZipFile(path) as z:
        assert csv_rows(z.read(CSV)) == [list(CSV_COLUMNS)]
        assert z.read(ND) == b""
