"""verify_bundle.py, the verifier with no dependencies: run as an auditor would (``python3 -I``,
outside the project's venv and tree) it agrees with auditlog.evidence.verify.verify_bundle on an
intact bundle and on every kind of tampering; its Ed25519 (RFC 8032), JCS (RFC 8785) and Merkle
(RFC 9162) code agree with the test vectors, ``rfc8785`` and auditlog.proofs.merkle."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from auditlog.evidence import verify_bundle as vb
from auditlog.evidence.bundle import VERIFIER_PATH, manifest_message, write_bundle
from auditlog.evidence.verify import csv_record, verify_bundle
from auditlog.integrity.checkpoints import Checkpoint
from auditlog.integrity.keys import Signer, public_pem
from auditlog.integrity.rule import chain_hash, record_bytes
from auditlog.proofs import merkle
from auditlog.query.filters import Filters
from auditlog.settings import ExportSettings, Settings
from auditlog.store import AuditLog
from tests.support.factories import ACTOR, json_values, valid
from tests.support.hostile import hostile_events

LIMITS = ExportSettings(max_export_rows=10_000, export_chunk_bytes=2048)
CSV, ND, MANIFEST, SIG = "events.csv", "events.ndjson", "manifest.json", "manifest.sig.json"
LAYOUT = {"configuration": 12, "governance": 12, "user_activity": 6}  # rows 1-12, 13-24, 25-30
# An auditor's interpreter: the system's, not the venv's (sys.executable where there is none).
PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
ONLY_STANDALONE = {"checkpoint chain broken", "checkpoints reordered", "not witnessed"}
Where = tuple[str, str | None, int | None, str | None, int | None]

# --- building and editing bundles ---------------------------------------------------------------


@pytest.fixture
def log(engine: Engine, settings: Settings, signer: Signer) -> AuditLog:
    """A log that signs a checkpoint every 5 entries, so a bundle holds several."""
    return AuditLog(engine, settings.replace(store={"checkpoint_every": 5}), signer=signer)


def fill(log: AuditLog) -> None:
    events = [valid(category=cat, details={"n": n}) for cat, k in LAYOUT.items() for n in range(k)]
    for i in range(0, len(events), 4):  # small batches: checkpoints land inside the ranges
        log.record_many(events[i : i + 4])


@pytest.fixture
def bundle(log: AuditLog, reader_engine: Engine, tmp_path: Path) -> Path:
    fill(log)
    path = tmp_path / "evidence.zip"
    write_bundle(reader_engine, path, Filters(), log=log, actor=ACTOR, limits=LIMITS)
    return path


@pytest.fixture
def key_pem(signer: Signer, tmp_path: Path) -> Path:
    path = tmp_path / "log-key.pem"
    path.write_text(public_pem(signer.public))
    return path


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


def resealed(path: Path, signer: Signer, edit: Callable[[dict[str, Any]], None]) -> Path:
    """The manifest edited and signed again, as an attacker holding ``signer``'s key would."""
    m = json.loads(zipfile.ZipFile(path).read(MANIFEST))
    edit(m)
    body = json.dumps(m).encode()
    digest = hashlib.sha256(body).hexdigest()
    sig = signer.sign(manifest_message(digest, signer.key_id)).hex()
    seal = {"key_id": signer.key_id, "manifest_sha256": digest, "signature": sig}
    return rewrite(path, {MANIFEST: lambda _: body, SIG: lambda _: json.dumps(seal).encode()})


def resign(cp: dict[str, Any], signer: Signer, **changes: Any) -> None:
    cp.update(changes, key_id=signer.key_id)
    cp["signature"] = signer.sign(Checkpoint.from_json(cp).message()).hex()


# --- running the script as an auditor would -----------------------------------------------------


def run(path: Path | None, *args: str, cwd: Path, script: Path = VERIFIER_PATH) -> tuple[int, str]:
    """Exit status and output of ``python3 -I verify_bundle.py`` run from ``cwd``."""
    here = cwd / "verify_bundle.py"
    if not here.exists():
        shutil.copy(script, here)
    cmd = [PYTHON, "-I", str(here), *([str(path)] if path else []), *args]
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
    return done.returncode, done.stdout + done.stderr


_FAIL = re.compile(
    r"^FAIL (?P<file>\S+)(?: row (?P<row>\d+))?(?: \((?P<cat>[a-z_]+)?(?: ?seq (?P<seq>\d+))?\))?: "
    r"(?P<kind>[a-z -]+?): ",
    re.M,
)


def script_problems(output: str) -> list[Where]:
    return [
        (
            m["kind"],
            None if m["file"] == "bundle" else m["file"],
            int(m["row"]) if m["row"] else None,
            m["cat"],
            int(m["seq"]) if m["seq"] else None,
        )
        for m in _FAIL.finditer(output)
    ]


def our_problems(path: Path, keys: dict[str, Any] | None) -> list[Where]:
    report = verify_bundle(path, keys)
    return [(p.kind, p.file, p.row, p.category, p.seq) for p in report.problems]


def outside(tmp_path: Path) -> Path:
    """A working directory outside the repository, for the auditor's run."""
    cwd = tmp_path / "auditor"
    cwd.mkdir(exist_ok=True)
    return cwd


# --- agreement with auditlog's own verifier -----------------------------------------------------


def test_intact_bundle_verifies_with_both_signature_paths(
    bundle: Path, key_pem: Path, signer: Signer, tmp_path: Path
) -> None:
    assert verify_bundle(bundle, {signer.key_id: signer.public}).ok
    for flags in ((), ("--pure",)):
        code, out = run(bundle, "--public-key", str(key_pem), *flags, cwd=outside(tmp_path))
        assert code == 0, out
        assert "integrity: OK" in out
        assert "completeness: OK" in out
        assert "no cosignatures are present in this bundle" in out
        assert "result: OK" in out
        for cat, k in LAYOUT.items():
            assert f"{cat}: seq 1..{k}: {k} rows, {k} vouched for" in out
    assert "Ed25519 by pure Python" in out


def test_unpinned_run_says_the_key_is_not_pinned(bundle: Path, tmp_path: Path) -> None:
    code, out = run(bundle, "--pure", cwd=outside(tmp_path))
    assert code == 0, out
    assert "NONE PINNED" in out
    assert "pin the key you obtained out of band" in out


def _changed_cell(b: Path, s: Signer) -> Path:  # configuration seq 8
    return rewrite(b, {CSV: lambda d: d.replace(b'{""n"": 7}', b'{""n"": 8}', 1)})


def _changed_record(b: Path, s: Signer) -> Path:  # the NDJSON line of configuration seq 4
    return rewrite(b, {ND: lambda d: d.replace(b'{"n":3}', b'{"n":4}', 1)})


def _removed_row(b: Path, s: Signer) -> Path:  # governance seq 4
    return rewrite(b, on_rows(lambda rows: rows[:15] + rows[16:]))


def _reordered_rows(b: Path, s: Signer) -> Path:
    return rewrite(b, on_rows(lambda r: [*r[:3], r[4], r[3], *r[5:]]))


def _truncated_rows(b: Path, s: Signer) -> Path:
    return rewrite(b, on_rows(lambda rows: rows[:-2]))


def _inserted_row(b: Path, s: Signer) -> Path:
    """A forged governance seq 13 with valid hashes, in both files."""
    cells = csv_rows(zipfile.ZipFile(b).read(CSV))[24]
    col = {name: i for i, name in enumerate(vb.CSV_COLUMNS)}
    cells[col["seq"]], cells[col["event_id"]] = "13", str(uuid.uuid4())
    cells[col["prev_hash"]] = cells[col["entry_hash"]]
    rec = csv_record(cells)
    rec["entry_hash"] = chain_hash(bytes.fromhex(rec["prev_hash"]), record_bytes(rec)).hex()
    cells[col["entry_hash"]] = rec["entry_hash"]
    tail = f',"prev_hash":"{rec["prev_hash"]}","entry_hash":"{rec["entry_hash"]}"}}\n'
    line = record_bytes(rec)[:-1] + tail.encode()

    def forge(rows: list[Any]) -> list[Any]:
        return [*rows[:24], line if isinstance(rows[0], bytes) else cells, *rows[24:]]

    return rewrite(b, on_rows(forge))


def _rehashed_row(b: Path, s: Signer) -> Path:
    """Configuration seq 8 changed and its entry_hash recomputed: the link to seq 9 breaks."""
    cells = csv_rows(zipfile.ZipFile(b).read(CSV))[8]
    col = {name: i for i, name in enumerate(vb.CSV_COLUMNS)}
    cells[col["details"]] = '{"n": 700}'
    rec = csv_record(cells)
    rec["entry_hash"] = chain_hash(bytes.fromhex(rec["prev_hash"]), record_bytes(rec)).hex()
    cells[col["entry_hash"]] = rec["entry_hash"]
    tail = f',"prev_hash":"{rec["prev_hash"]}","entry_hash":"{rec["entry_hash"]}"}}\n'
    line = record_bytes(rec)[:-1] + tail.encode()

    def forge(rows: list[Any]) -> list[Any]:
        return [*rows[:7], line if isinstance(rows[0], bytes) else cells, *rows[8:]]

    return rewrite(b, on_rows(forge))


def _replaced_checkpoint(b: Path, s: Signer) -> Path:
    """The first configuration checkpoint re-signed over another row's hash (key holder)."""

    def edit(m: dict[str, Any]) -> None:
        cp = next(c for c in m["checkpoints"] if c["category"] == "configuration")
        resign(cp, s, entry_hash=hashlib.sha256(b"another row").hexdigest())

    return resealed(b, s, edit)


def _unsigned_checkpoint(b: Path, s: Signer) -> Path:
    """A checkpoint's entry_hash replaced, nothing re-signed (the attacker has no key)."""

    def edit(data: bytes) -> bytes:
        m = json.loads(data)
        m["checkpoints"][0]["entry_hash"] = "ab" * 32
        return json.dumps(m).encode()

    return rewrite(b, {MANIFEST: edit})


def _changed_manifest(b: Path, s: Signer) -> Path:
    def edit(data: bytes) -> bytes:
        m = json.loads(data)
        m["exported_by"] = {"type": "user", "id": "someone-else"}
        return json.dumps(m).encode()

    return rewrite(b, {MANIFEST: edit})


def _changed_member_file(b: Path, s: Signer) -> Path:  # quoting only: every value intact
    return rewrite(
        b, {CSV: lambda d: d.replace(b"\r\nconfiguration,1,", b'\r\n"configuration",1,')}
    )


def _extra_member(b: Path, s: Signer) -> Path:
    with zipfile.ZipFile(b, "a") as z:
        z.writestr("readme.txt", "trust me")
    return b


def _resigned_by_mallory(b: Path, s: Signer) -> Path:
    """Every signature redone with another key: only the pinned key tells."""
    mallory = Signer.generate()

    def edit(m: dict[str, Any]) -> None:
        for cp in m["checkpoints"]:
            resign(cp, mallory)
        m["public_keys"] = {mallory.key_id: public_pem(mallory.public)}
        m["manifest_key_id"] = mallory.key_id

    return resealed(b, mallory, edit)


TAMPERING: dict[str, Callable[[Path, Signer], Path]] = {
    "changed cell": _changed_cell,
    "changed record": _changed_record,
    "removed row": _removed_row,
    "reordered rows": _reordered_rows,
    "truncated rows": _truncated_rows,
    "inserted row": _inserted_row,
    "replaced row with its hash redone": _rehashed_row,
    "replaced checkpoint": _replaced_checkpoint,
    "checkpoint changed without its key": _unsigned_checkpoint,
    "changed manifest": _changed_manifest,
    "changed member file": _changed_member_file,
    "unexpected member": _extra_member,
    "wrong key": _resigned_by_mallory,
}


@pytest.mark.parametrize("case", TAMPERING)
def test_the_script_names_each_tampering_as_auditlog_verify_does(
    case: str, bundle: Path, key_pem: Path, signer: Signer, tmp_path: Path
) -> None:
    bad = TAMPERING[case](bundle, signer)
    ours = our_problems(bad, {signer.key_id: signer.public})
    code, out = run(bad, "--public-key", str(key_pem), "--pure", cwd=outside(tmp_path))
    assert ours, "the tampering went unnoticed by auditlog itself"
    assert code == 1, out
    theirs = script_problems(out)
    assert [p for p in theirs if p[0] not in ONLY_STANDALONE] == ours, out
    assert "result: FAILED" in out
    first = next((p for p in ours if p[2]), None)
    if first is not None:  # names the first bad row: file, row, category, seq, what failed
        assert re.search(rf"^first bad row: {re.escape(first[1] or '')} row {first[2]}", out, re.M)


def test_a_replaced_checkpoint_also_breaks_the_checkpoint_chain(
    bundle: Path, key_pem: Path, signer: Signer, tmp_path: Path
) -> None:
    code, out = run(_replaced_checkpoint(bundle, signer), "--public-key", str(key_pem),
                    cwd=outside(tmp_path))  # fmt: skip
    kinds = [p[0] for p in script_problems(out)]
    assert code == 1
    assert kinds[:2] == ["checkpoint mismatch", "checkpoint chain broken"], out


def test_a_checkpoint_re_signed_off_its_chain_is_found_by_the_script_alone(
    bundle: Path, key_pem: Path, signer: Signer, tmp_path: Path
) -> None:
    """Same seq and entry_hash, another prev_hash: only the checkpoint chain shows it."""

    def edit(m: dict[str, Any]) -> None:
        gov = [c for c in m["checkpoints"] if c["category"] == "governance"]
        resign(gov[1], signer, prev_hash="00" * 31 + "01")

    forged = resealed(bundle, signer, edit)
    assert verify_bundle(forged, {signer.key_id: signer.public}).ok  # not one of its checks
    code, out = run(forged, "--public-key", str(key_pem), "--pure", cwd=outside(tmp_path))
    assert code == 1
    (kind, file, _, cat, _), *_ = script_problems(out)
    assert (kind, file, cat) == ("checkpoint chain broken", MANIFEST, "governance")


def test_checkpoints_out_of_count_order_are_named(
    bundle: Path, key_pem: Path, signer: Signer, tmp_path: Path
) -> None:
    def edit(m: dict[str, Any]) -> None:
        gov = [c for c in m["checkpoints"] if c["category"] == "governance"]
        resign(gov[0], signer, count=gov[1]["count"] + 5)

    code, out = run(resealed(bundle, signer, edit), "--public-key", str(key_pem),
                    cwd=outside(tmp_path))  # fmt: skip
    assert code == 1
    assert ("checkpoints reordered", MANIFEST) in [p[:2] for p in script_problems(out)], out


def test_hostile_values_verify_alike(
    log: AuditLog, reader_engine: Engine, tmp_path: Path, key_pem: Path
) -> None:
    log.record_many(hostile_events())
    log.record_many([valid(details={"f": 0.1, "big": 1e300, "é": [1.5e-7], "\ue000": 2**53 - 1})])
    path = tmp_path / "hostile.zip"
    write_bundle(reader_engine, path, log=log, actor=ACTOR, limits=LIMITS)
    assert verify_bundle(path).ok
    code, out = run(path, "--public-key", str(key_pem), "--pure", cwd=outside(tmp_path))
    assert code == 0, out
    bad = rewrite(path, {CSV: lambda d: d.replace(b"0.1", b"0.10000000000000002", 1)})
    code, out = run(bad, "--public-key", str(key_pem), cwd=outside(tmp_path))
    assert code == 1
    assert [p for p in script_problems(out) if p[0] not in ONLY_STANDALONE] == our_problems(
        bad, None
    )


def test_filtered_bundle_verifies_and_a_deleted_row_is_named(
    log: AuditLog, reader_engine: Engine, tmp_path: Path, key_pem: Path
) -> None:
    fill(log)
    path = tmp_path / "odd.zip"
    only = Filters(categories=("governance",), text='"n": 1')  # seq 2, 11, 12
    write_bundle(reader_engine, path, only, log=log, actor=ACTOR, limits=LIMITS)
    code, out = run(path, "--public-key", str(key_pem), cwd=outside(tmp_path))
    assert code == 0, out
    assert "governance: seq 2, 11..12: 3 rows" in out
    cut = rewrite(path, on_rows(lambda rows: rows[:1] + rows[2:]))
    code, out = run(cut, "--public-key", str(key_pem), cwd=outside(tmp_path))
    assert code == 1
    assert ("row deleted", CSV, 2, "governance", 11) in script_problems(out)
    assert "completeness: FAILED" in out


# --- the script inside the bundle ---------------------------------------------------------------


@pytest.fixture
def bundle_with_script(log: AuditLog, reader_engine: Engine, tmp_path: Path) -> Path:
    fill(log)
    path = tmp_path / "with-script.zip"
    kw: dict[str, Any] = {"log": log, "actor": ACTOR, "limits": LIMITS}
    write_bundle(reader_engine, path, Filters(), include_verifier=True, **kw)
    return path


def test_a_bundle_carries_the_script_hashed_in_its_manifest(bundle_with_script: Path) -> None:
    with zipfile.ZipFile(bundle_with_script) as z:
        script = z.read("verify_bundle.py")
        m = json.loads(z.read(MANIFEST))
    assert script == VERIFIER_PATH.read_bytes()
    assert m["files"]["verify_bundle.py"]["sha256"] == hashlib.sha256(script).hexdigest()


def test_the_script_runs_from_inside_the_unpacked_bundle(
    bundle_with_script: Path, key_pem: Path, tmp_path: Path
) -> None:
    unpacked = tmp_path / "unpacked"
    zipfile.ZipFile(bundle_with_script).extractall(unpacked)
    code, out = run(None, "--public-key", str(key_pem), "--pure", cwd=unpacked)
    assert code == 0, out
    assert f"bundle: {unpacked}" in out
    csv_file = unpacked / CSV
    csv_file.write_bytes(csv_file.read_bytes().replace(b'{""n"": 7}', b'{""n"": 8}', 1))
    code, out = run(None, "--public-key", str(key_pem), cwd=unpacked)
    assert code == 1
    assert ("content changed", CSV, 8, "configuration", 8) in script_problems(out)


def test_a_changed_script_in_the_bundle_is_a_changed_file(
    bundle_with_script: Path, key_pem: Path, tmp_path: Path
) -> None:
    bad = rewrite(bundle_with_script, {"verify_bundle.py": lambda d: d + b"\n# ok\n"})
    code, out = run(bad, "--public-key", str(key_pem), cwd=outside(tmp_path))
    assert code == 1
    assert script_problems(out) == [("file changed", "verify_bundle.py", None, None, None)]


# --- the command line ---------------------------------------------------------------------------


def test_usage_errors_exit_2_naming_the_argument(
    bundle: Path, key_pem: Path, tmp_path: Path
) -> None:
    cwd = outside(tmp_path)
    (cwd / "junk.pem").write_text("not a key")
    x25519 = tmp_path / "x25519.pem"  # a well-formed PEM key, of another algorithm (X25519)
    ed = Ed25519PrivateKey.generate().public_key()
    der = ed.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    x25519.write_text(pem_of(der.replace(bytes.fromhex("2b6570"), bytes.fromhex("2b656e"))))
    cases = [
        ((str(tmp_path / "nope.zip"),), "BUNDLE"),
        ((str(bundle), "--public-key", str(cwd / "junk.pem")), "--public-key"),
        ((str(bundle), "--public-key", str(x25519)), "not an Ed25519 public key"),
        ((str(bundle), "--public-key", str(tmp_path / "missing.pem")), "cannot be read"),
        ((str(bundle), "--quorum", "1"), "--quorum 1"),
        ((str(bundle), "--witness-key", "w+0000+AAAA"), "--witness-key"),
        ((str(bundle), "--no-such-flag"), "unrecognized arguments"),
    ]
    for args, named in cases:
        code, out = run(None, *args, cwd=cwd)
        assert code == 2, (args, out)
        assert named in out, (args, out)
        assert "Traceback" not in out


def pem_of(der: bytes) -> str:
    body = base64.b64encode(der).decode()
    return "-----BEGIN PUBLIC KEY-----\n" + body + "\n-----END PUBLIC KEY-----\n"


def test_a_required_witness_quorum_fails_while_bundles_carry_no_cosignatures(
    bundle: Path, key_pem: Path, tmp_path: Path
) -> None:
    witness = tmp_path / "witness.pem"
    witness.write_text(public_pem(Signer.generate().public))
    code, out = run(bundle, "--public-key", str(key_pem), "--witness-key", str(witness),
                    cwd=outside(tmp_path))  # fmt: skip
    assert code == 1
    assert "integrity: OK" in out
    assert "no cosignatures are present in this bundle" in out
    found = script_problems(out)
    assert found
    assert {w[0] for w in found} == {"not witnessed"}  # one per chain's newest signed tree


def test_a_verifier_key_for_a_witness_is_read_and_checked() -> None:
    raw = bytes(range(32))
    raw = Ed25519PrivateKey.from_private_bytes(raw).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )  # fmt: skip
    blob = b"\x01" + raw
    key_hash = hashlib.sha256(b"witness.example\n" + blob).digest()[:4].hex()
    good = f"witness.example+{key_hash}+{base64.b64encode(blob).decode()}"
    assert vb.vkey_public_key(good) == ("witness.example", raw)
    with pytest.raises(ValueError, match="key hash"):
        vb.vkey_public_key(good.replace(key_hash, "00000000"))


def test_not_a_zip_is_a_finding(tmp_path: Path) -> None:
    path = tmp_path / "x.zip"
    path.write_bytes(b"PK not really")
    code, out = run(path, "--pure", cwd=outside(tmp_path))
    assert code == 1
    assert [p[0] for p in script_problems(out)] == ["not a bundle"]


# --- Ed25519: RFC 8032 section 7.1 ----------------------------------------------------------------

_MSG_1024 = (
    "08b8b2b733424243760fe426a4b54908632110a66c2f6591eabd3345e3e4eb98fa6e264bf09efe12ee50f8f54e9f77b1"
    "e355f6c50544e23fb1433ddf73be84d879de7c0046dc4996d9e773f4bc9efe5738829adb26c81b37c93a1b270b20329d"
    "658675fc6ea534e0810a4432826bf58c941efb65d57a338bbd2e26640f89ffbc1a858efcb8550ee3a5e1998bd177e93a"
    "7363c344fe6b199ee5d02e82d522c4feba15452f80288a821a579116ec6dad2b3b310da903401aa62100ab5d1a36553e"
    "06203b33890cc9b832f79ef80560ccb9a39ce767967ed628c6ad573cb116dbefefd75499da96bd68a8a97b928a8bbc10"
    "3b6621fcde2beca1231d206be6cd9ec7aff6f6c94fcd7204ed3455c68c83f4a41da4af2b74ef5c53f1d8ac70bdcb7ed1"
    "85ce81bd84359d44254d95629e9855a94a7c1958d1f8ada5d0532ed8a5aa3fb2d17ba70eb6248e594e1a2297acbbb39d"
    "502f1a8c6eb6f1ce22b3de1a1f40cc24554119a831a9aad6079cad88425de6bde1a9187ebb6092cf67bf2b13fd65f270"
    "88d78b7e883c8759d2c4f5c65adb7553878ad575f9fad878e80a0c9ba63bcbcc2732e69485bbc9c90bfbd62481d9089b"
    "eccf80cfe2df16a2cf65bd92dd597b0707e0917af48bbb75fed413d238f5555a7a569d80c3414a8d0859dc65a46128ba"
    "b27af87a71314f318c782b23ebfe808b82b0ce26401d2e22f04d83d1255dc51addd3b75a2b1ae0784504df543af8969b"
    "e3ea7082ff7fc9888c144da2af58429ec96031dbcad3dad9af0dcbaaaf268cb8fcffead94f3c7ca495e056a9b47acdb7"
    "51fb73e666c6c655ade8297297d07ad1ba5e43f1bca32301651339e22904cc8c42f58c30c04aafdb038dda0847dd988d"
    "cda6f3bfd15c4b4c4525004aa06eeff8ca61783aacec57fb3d1f92b0fe2fd1a85f6724517b65e614ad6808d6f6ee34df"
    "f7310fdc82aebfd904b01e1dc54b2927094b2db68d6f903b68401adebf5a7e08d78ff4ef5d63653a65040cf9bfd4aca7"
    "984a74d37145986780fc0b16ac451649de6188a7dbdf191f64b5fc5e2ab47b57f7f7276cd419c17a3ca8e1b939ae49e4"
    "88acba6b965610b5480109c8b17b80e1b7b750dfc7598d5d5011fd2dcc5600a32ef5b52a1ecc820e308aa342721aac09"
    "43bf6686b64b2579376504ccc493d97e6aed3fb0f9cd71a43dd497f01f17c0e2cb3797aa2a2f256656168e6c496afc5f"
    "b93246f6b1116398a346f1a641f3b041e989f7914f90cc2c7fff357876e506b50d334ba77c225bc307ba537152f3f161"
    "0e4eafe595f6d9d90d11faa933a15ef1369546868a7f3a45a96768d40fd9d03412c091c6315cf4fde7cb68606937380d"
    "b2eaaa707b4c4185c32eddcdd306705e4dc1ffc872eeee475a64dfac86aba41c0618983f8741c5ef68d3a101e8a3b8ca"
    "c60c905c15fc910840b94c00a0b9d0"
)
# (TEST, secret key, public key, message, signature), all hex, from RFC 8032 section 7.1.
RFC8032 = [
    ("TEST 1", "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e3970"
     "1cf9b46bd25bf5f0595bbe24655141438e7a100b"),
    ("TEST 2", "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613"
     "d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
    ("TEST 3", "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
     "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760"
     "984dc6594a7c15e9716ed28dc027beceea1ec40a"),
    ("TEST 1024", "f5e5767cf153319517630f226876b86c8160cc583bc013744c6bf255f5cc0ee5",
     "278117fc144c72340f67d0f2316e8386ceffbf2b2428c9c51fef7c597f1d426e", _MSG_1024,
     "0aab4c900501b3e24d7cdf4663326a3a87df5e4843b2cbdb67cbf6e460fec350aa5371b1508f9f4528ecea23"
     "c436d94b5e8fcd4f681e30a6ac00a9704a188a03"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "secret", "public", "msg", "sig"), RFC8032)
def test_pure_ed25519_verifies_the_rfc_8032_vectors_and_refuses_any_change(
    name: str, secret: str, public: str, msg: str, sig: str
) -> None:
    pk, m, s = bytes.fromhex(public), bytes.fromhex(msg), bytes.fromhex(sig)
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(secret))  # the vector is the RFC's
    assert key.sign(m) == s
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert raw == pk
    assert vb.ed25519_verify_pure(pk, s, m)
    assert vb.ed25519_verify(pk, s, m)
    assert not vb.ed25519_verify_pure(pk, s, m + b"\x00")
    for bit in (0, 100, 255, 256, 300, 511):  # R, and S (bit 511 makes S >= L)
        bad = bytearray(s)
        bad[bit // 8] ^= 1 << (bit % 8)
        assert not vb.ed25519_verify_pure(pk, bytes(bad), m)
        assert not vb.ed25519_verify(pk, bytes(bad), m)
    other = next(bytes.fromhex(v[2]) for v in RFC8032 if v[0] != name)
    assert not vb.ed25519_verify_pure(other, s, m)


def test_pure_ed25519_refuses_s_not_below_l_and_non_canonical_keys() -> None:
    _, _, public, _, sig = RFC8032[0]
    pk, s = bytes.fromhex(public), bytes.fromhex(sig)
    s_plus_l = int.from_bytes(s[32:], "little") + vb._L
    assert not vb.ed25519_verify_pure(pk, s[:32] + s_plus_l.to_bytes(32, "little"), b"")
    y_is_p = (2**255 - 19).to_bytes(32, "little")  # y = p: non-canonical encoding of y = 0
    minus_zero = (1 | 1 << 255).to_bytes(32, "little")  # the identity with the sign bit set
    for bad_key in (y_is_p, minus_zero, b"\x02" + bytes(31), pk[:31]):
        assert vb.decode_point(bad_key) is None
        assert not vb.ed25519_verify(bad_key, s, b"")


@given(st.binary(max_size=200), st.binary(min_size=32, max_size=32))
def test_pure_and_cryptography_give_one_verdict(message: bytes, seed: bytes) -> None:
    key = Ed25519PrivateKey.from_private_bytes(seed)
    pk = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    sig = key.sign(message)
    assert vb.ed25519_verify_pure(pk, sig, message)
    forged = sig[:32] + bytes(a ^ b for a, b in zip(sig[32:], seed, strict=True))
    assert vb.ed25519_verify_pure(pk, forged, message) == vb.ed25519_verify(pk, forged, message)


def test_pem_keys_read_as_cryptography_writes_them(signer: Signer) -> None:
    raw = vb.pem_public_key(public_pem(signer.public))
    assert vb.key_id_of(raw) == signer.key_id
    with pytest.raises(ValueError, match="no PEM public key"):
        vb.pem_public_key("-----BEGIN CERTIFICATE-----\n")


# --- JCS: RFC 8785 -------------------------------------------------------------------------------


@given(json_values)
def test_jcs_equals_rfc8785(value: Any) -> None:
    assert vb.jcs(value) == rfc8785.dumps(value)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_numbers_print_as_ecmascript_does(x: float) -> None:
    assert vb.es_number(x) == rfc8785.dumps(x).decode()


def test_numbers_and_keys_of_rfc_8785_examples() -> None:
    cases = {
        1e21: "1e+21",
        1e-7: "1e-7",
        0.000001: "0.000001",
        -0.0: "0",
        5e-324: "5e-324",
        333333333.3333333: "333333333.3333333",
        1.7976931348623157e308: "1.7976931348623157e+308",
        4.5: "4.5",
        2e-3: "0.002",
        1e23: "1e+23",
        295147905179352830000.0: "295147905179352830000",
    }
    assert {x: vb.es_number(x) for x in cases} == cases
    # UTF-16 code units: U+10000 (D800 DC00) sorts before U+E000, unlike code points
    keys = {"\ue000": 1, "\U00010000": 2, "a": 3, "\u20ac": 4, "\r": 5, "1": 6, "\x80": 7, "ö": 8}
    assert vb.jcs(keys) == rfc8785.dumps(keys)
    assert vb.jcs(keys).decode().index("\U00010000") < vb.jcs(keys).decode().index("\ue000")


@given(json_values)
def test_the_fast_path_is_jcs_where_the_screen_lets_it_run(value: Any) -> None:
    cell = json.dumps(value, ensure_ascii=False)
    screen = vb._Screen()
    decoded = screen.json(cell)
    if screen.plain:
        assert vb.jcs_plain(decoded) == vb.jcs(decoded) == rfc8785.dumps(decoded)


# --- Merkle: RFC 9162, as auditlog.proofs.merkle ------------------------------------------------


def _tree(size: int) -> tuple[list[bytes], Callable[[int, int], bytes]]:
    leaves = [merkle.leaf_hash(hashlib.sha256(str(i).encode()).digest()) for i in range(size)]

    def node(level: int, index: int) -> bytes:
        return merkle.root_of(leaves[index << level : (index + 1) << level])

    return leaves, node


@given(st.integers(1, 70), st.data())
def test_inclusion_verification_agrees_with_the_package(size: int, data: st.DataObject) -> None:
    leaves, node = _tree(size)
    root, index = merkle.root_of(leaves), data.draw(st.integers(0, size - 1))
    proof = merkle.inclusion_proof(index, size, node)
    assert vb.leaf_hash(b"x" * 32) == merkle.leaf_hash(b"x" * 32)
    assert vb.node_hash(root, leaves[0]) == merkle.node_hash(root, leaves[0])
    assert vb.verify_inclusion(index, size, leaves[index], proof, root)
    bad_index = data.draw(st.integers(-2, size + 2))
    cut = proof[: data.draw(st.integers(0, len(proof)))]
    for args in (
        (bad_index, size, leaves[index], proof, root),
        (index, size, leaves[index], cut, root),
        (index, size + 1, leaves[index], proof, root),
        (index, size, root, proof, root),
    ):
        assert vb.verify_inclusion(*args) == merkle.verify_inclusion(*args)


@given(st.integers(0, 70), st.integers(0, 70), st.data())
def test_consistency_verification_agrees_with_the_package(
    a: int, b: int, data: st.DataObject
) -> None:
    old, new = min(a, b), max(a, b)
    leaves, node = _tree(new)
    old_root, new_root = merkle.root_of(leaves[:old]), merkle.root_of(leaves)
    proof = merkle.consistency_proof(old, new, node)
    assert vb.verify_consistency(old, new, old_root, new_root, proof)
    other = data.draw(st.integers(0, 72))
    cut = proof[: data.draw(st.integers(0, len(proof)))]
    for args in (
        (other, new, old_root, new_root, proof),
        (old, other, old_root, new_root, proof),
        (old, new, old_root, new_root, cut),
        (old, new, new_root, old_root, proof),
    ):
        assert vb.verify_consistency(*args) == merkle.verify_consistency(*args)


# --- hostile manifests: a finding, never a crash ------------------------------------------------

HOSTILE_MANIFESTS: dict[str, Callable[[dict[str, Any]], None]] = {
    "runs not pairs": lambda m: m["chains"]["governance"].update(runs=[[1], "x", [2, None]]),
    "chains a list": lambda m: m.update(chains=[1, 2]),
    "checkpoints of the wrong types": lambda m: m.update(
        checkpoints=[None, 7, {"seq": "1"}, {"category": [], "seq": 1, "version": "x"}]
    ),
    "checkpoint hex that is not hex": lambda m: m["checkpoints"][0].update(signature="zz" * 64),
    "public keys a list": lambda m: m.update(public_keys=["-----BEGIN PUBLIC KEY-----"]),
    "public key not a key": lambda m: m["public_keys"].update(
        {m["manifest_key_id"]: "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"}
    ),
    "files a list": lambda m: m.update(files=[CSV, ND]),
    "manifest not an object": lambda m: m.clear(),
}


@pytest.mark.parametrize("case", HOSTILE_MANIFESTS)
def test_a_hostile_manifest_signed_by_its_key_is_a_finding_not_a_crash(
    case: str, bundle: Path, signer: Signer, key_pem: Path, tmp_path: Path
) -> None:
    forged = resealed(bundle, signer, HOSTILE_MANIFESTS[case])
    pinned = {signer.key_id: vb.pem_public_key(key_pem.read_text())}
    # the bundle's own keys are ignored once keys are pinned: then they cannot do harm
    for keys in (None,) if case.startswith("public key") else (None, pinned):
        assert not vb.verify(forged, vb.Options(keys, pure=True)).ok
        pins = ("--public-key", str(key_pem)) if keys else ()
        code, out = run(forged, *pins, cwd=outside(tmp_path))
        assert code == 1, out
        assert "Traceback" not in out


@pytest.mark.parametrize("garbage", [b"[]", b'"x"', b'{"key_id": [], "signature": "00"}'])
def test_a_garbage_signature_file_is_a_forged_manifest(
    garbage: bytes, bundle: Path, key_pem: Path
) -> None:
    raw = vb.pem_public_key(key_pem.read_text())
    report = vb.verify(
        rewrite(bundle, {SIG: lambda _: garbage}), vb.Options({vb.key_id_of(raw): raw})
    )
    assert [p.kind for p in report.problems] == ["forged manifest"]
