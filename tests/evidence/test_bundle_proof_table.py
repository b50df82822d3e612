"""The bundle's node table (proofs.ndjson format 2) as an attacker holding the signing key
edits it: a forged shared node breaks exactly the rows whose path holds it, a missing,
doubled or extra node is named, and both verifiers (the package's and ``python3 -I
verify_bundle.py``) agree row for row. Bundles of the earlier format (one path a line) still
verify, and a forged line in one is still named."""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from auditlog.errors import IntegrityFailure
from auditlog.evidence.bundle import write_bundle
from auditlog.evidence.verify import BundleReport, verify_bundle
from auditlog.integrity.keys import Signer, load_public_key
from auditlog.query.filters import Filters
from auditlog.settings import ExportSettings, Settings
from auditlog.store import AuditLog
from tests.support.bundles import (
    Lines,
    dump_lines,
    failed_seqs,
    forge_proofs,
    node_line,
    read_lines,
    run_script,
)
from tests.support.factories import ACTOR, valid

LIMITS = ExportSettings(max_export_rows=100_000, export_chunk_bytes=4096)
DATA = Path(__file__).parent / "data"
GOV = "governance"
SCATTER = Filters(categories=(GOV,), text='"i": 1')  # i = 1, 10..19, 100..199, 1000..: runs


@pytest.fixture
def log(engine: Engine, settings: Settings, signer: Signer) -> AuditLog:
    return AuditLog(engine, settings.replace(store={"checkpoint_every": 100}), signer=signer)


def fill(log: AuditLog, n: int) -> None:
    events = [valid(category=GOV, details={"i": i}) for i in range(n)]
    for k in range(0, n, 200):
        log.record_many(events[k : k + 200])


def bundle(log: AuditLog, reader: Engine, path: Path, only: Filters | None = None) -> Lines:
    write_bundle(reader, path, only or Filters(categories=(GOV,)), log=log, actor=ACTOR,
                 limits=LIMITS)  # fmt: skip
    with zipfile.ZipFile(path) as z:
        return read_lines(z.read("proofs.ndjson"))


def listed(lines: Lines) -> tuple[int, list[int]]:
    (item,) = [x for x in lines if "rows" in x]
    return item["size"], [s for a, b in item["rows"] for s in range(a, b + 1)]


def under(seqs: list[int], level: int, index: int) -> set[tuple[str, int]]:
    """The rows whose audit path holds node (level, index): those under its sibling."""
    return {(GOV, s) for s in seqs if ((s - 1) >> level) ^ 1 == index}


def lib_failed(report: BundleReport) -> set[tuple[str, int]]:
    return {(p.category or "", p.seq or 0) for p in report.problems if p.kind == "proof fails"}


def both(path: Path, signer: Signer, tmp_path: Path) -> tuple[BundleReport, str]:
    report = verify_bundle(path, {signer.key_id: signer.public})
    done = run_script(path, [signer], tmp_path)
    assert done.returncode == (0 if report.ok else 1), done.stdout + done.stderr
    return report, done.stdout


def edit_node(level: int, index: int, new: bytes | None) -> Callable[[bytes], bytes]:
    """An edit of proofs.ndjson: node (level, index) gets ``new``, or goes when None."""

    def edit(data: bytes) -> bytes:
        lines = read_lines(data)
        item, k = node_line(lines, level, index)
        if new is None:
            del item["index"][k]
            item["hashes"] = item["hashes"][: 64 * k] + item["hashes"][64 * k + 64 :]
        else:
            item["hashes"] = item["hashes"][: 64 * k] + new.hex() + item["hashes"][64 * k + 64 :]
        return dump_lines(lines)

    return edit


@pytest.mark.parametrize(("only", "level"), [(None, 2), (None, 5), (SCATTER, 1), (SCATTER, 4)])
def test_a_forged_shared_node_breaks_exactly_the_rows_under_it_named_by_both(
    log: AuditLog, reader_engine: Engine, tmp_path: Path, signer: Signer,
    only: Filters | None, level: int,
) -> None:  # fmt: skip
    fill(log, 700)
    path = tmp_path / "b.zip"
    lines = bundle(log, reader_engine, path, only)
    _, seqs = listed(lines)
    table = next(x for x in lines if x.get("level") == level)
    # the node whose path-sharing rows are most numerous: a shared node, not a leaf's own
    index = max(table["index"], key=lambda i: len(under(seqs, level, i)))
    expected = under(seqs, level, index)
    assert len(expected) > 1
    forged = forge_proofs(path, signer, edit_node(level, index, hashlib.sha256(b"x").digest()))
    report, out = both(forged, signer, tmp_path)
    assert lib_failed(report) == failed_seqs(out) == expected
    assert {p.kind for p in report.problems} == {"proof fails"}
    assert report.proven == {GOV: len(seqs) - len(expected)}
    assert f"membership: {len(seqs) - len(expected)} of {len(seqs)} rows proven" in out


def test_a_node_missing_from_the_table_fails_the_rows_that_need_it_by_name(
    log: AuditLog, reader_engine: Engine, tmp_path: Path, signer: Signer
) -> None:
    fill(log, 300)
    path = tmp_path / "b.zip"
    _, seqs = listed(bundle(log, reader_engine, path, SCATTER))
    forged = forge_proofs(path, signer, edit_node(3, 1, None))  # leaves 8..15: seqs 9..16
    report, out = both(forged, signer, tmp_path)
    expected = under(seqs, 3, 1)
    assert expected == {(GOV, 2)}  # seq 2 (i = 1) is the only listed row under node (3, 0)
    assert lib_failed(report) == failed_seqs(out) == expected
    why = "node (level 3, index 1) is not in the node table"
    assert all(why in p.message for p in report.problems)
    assert why in out


def test_an_extra_or_doubled_node_in_the_table_is_named_by_both(
    log: AuditLog, reader_engine: Engine, tmp_path: Path, signer: Signer
) -> None:
    fill(log, 300)
    path = tmp_path / "b.zip"
    size, seqs = listed(bundle(log, reader_engine, path, SCATTER))

    def extra(data: bytes) -> bytes:  # leaf 40 (seq 41, i = 40) is on no listed row's path
        lines = read_lines(data)
        lines.append({"category": GOV, "size": size, "level": 0, "index": [40],
                      "hashes": "ab" * 32})  # fmt: skip
        return dump_lines(lines)

    report, out = both(forge_proofs(path, signer, extra), signer, tmp_path)
    assert [(p.kind, p.category, p.seq) for p in report.problems] == [("proof fails", GOV, None)]
    assert "lists 1 node(s) on no listed row's path, the first (level 0, index 40)" in out
    assert report.proven == {GOV: len(seqs)}

    def doubled(data: bytes) -> bytes:  # node (1, 6), leaves 12, 13: on seq 15's and 16's paths
        lines = read_lines(data)
        item, k = node_line(lines, 1, 6)
        lines.append({**item, "index": [6], "hashes": item["hashes"][64 * k : 64 * k + 64]})
        return dump_lines(lines)

    report, out = both(forge_proofs(path, signer, doubled), signer, tmp_path)
    assert lib_failed(report) - {(GOV, 0)} == failed_seqs(out) == under(seqs, 1, 6)
    assert under(seqs, 1, 6) == {(GOV, 15), (GOV, 16)}
    assert "lists node (1, 6) twice" in out
    assert any("lists node (1, 6) twice" in p.message for p in report.problems)


def test_an_unreadable_line_of_the_table_is_named_not_a_crash(
    log: AuditLog, reader_engine: Engine, tmp_path: Path, signer: Signer
) -> None:
    fill(log, 40)
    path = tmp_path / "b.zip"
    bundle(log, reader_engine, path)
    for junk in (b"[1, 2]", b'{"category": "governance", "size": 40, "rows": [[5, 3]]}',
                 b'{"category": "governance", "size": 40, "level": 0, "index": [1],'
                 b' "hashes": "zz"}', b"\xff"):  # fmt: skip
        forged = forge_proofs(path, signer, appending(junk))
        report, out = both(forged, signer, tmp_path)
        (problem,) = report.problems
        assert (problem.kind, problem.file) == ("proof fails", "proofs.ndjson")
        assert "not a proof line" in problem.message
        assert "not a proof line" in out


def appending(junk: bytes) -> Callable[[bytes], bytes]:
    def edit(data: bytes) -> bytes:
        return data + junk + b"\n"

    return edit


def test_the_writer_refuses_proofs_that_do_not_lead_to_the_signed_root(
    log: AuditLog, reader_engine: Engine, admin_engine: Engine, tmp_path: Path
) -> None:
    events = [valid(category=GOV, details={"part": "a" if i < 300 else "b"}) for i in range(600)]
    log.record_many(events)
    log.checkpoint()
    with admin_engine.begin() as conn:  # the superuser, past the table's own guard
        conn.exec_driver_sql("ALTER TABLE merkle_nodes DISABLE TRIGGER ALL")
        conn.execute(sa.text("UPDATE merkle_nodes SET hash = sha256(hash) WHERE level = 8"
                             " AND idx = 0 AND category = 'governance'"))  # fmt: skip
        for trigger in ("merkle_nodes_no_update_delete", "merkle_nodes_no_truncate"):
            conn.exec_driver_sql(f"ALTER TABLE merkle_nodes ENABLE ALWAYS TRIGGER {trigger}")
    # seqs 301..600: their paths take node (8, 0), leaves 0..255, from the store
    only = Filters(categories=(GOV,), text='"part": "b"')
    with pytest.raises(IntegrityFailure, match="does not prove the governance rows"):
        write_bundle(reader_engine, tmp_path / "b.zip", only, log=log, actor=ACTOR, limits=LIMITS)
    # all rows: every node of their paths is computed from their own entries
    assert bundle(log, reader_engine, tmp_path / "all.zip")[0] == {"format": "auditlog-proofs/2"}


# --- bundles of the earlier format (one audit path a line), as the log wrote them before ---


def old_bundle(tmp_path: Path) -> tuple[Path, str]:
    """A bundle written by write_bundle before format 2 (commit 0e45a6b), and its key."""
    path = tmp_path / "old.zip"
    path.write_bytes((DATA / "v1-proofs-bundle.zip").read_bytes())
    return path, (DATA / "v1-proofs-bundle.pem").read_text()


def test_a_bundle_of_the_earlier_format_still_verifies_in_both(tmp_path: Path) -> None:
    path, pem = old_bundle(tmp_path)
    with zipfile.ZipFile(path) as z:
        first = read_lines(z.read("proofs.ndjson"))[0]
    assert set(first) == {"category", "seq", "size", "proof"}  # one row's path a line
    key = load_public_key(pem.encode())
    report = verify_bundle(path, {_key_id(pem): key})
    assert report.ok, report.problems
    assert report.proven == {"configuration": 56, "governance": 55}
    done = run_script(path, [pem], tmp_path)
    assert done.returncode == 0, done.stdout
    assert "membership: 111 of 111 rows proven" in done.stdout


def test_a_forged_path_in_a_bundle_of_the_earlier_format_is_named_by_both(
    tmp_path: Path, signer: Signer
) -> None:
    path, pem = old_bundle(tmp_path)

    def flip(data: bytes) -> bytes:
        lines = read_lines(data)
        h = lines[2]["proof"][1]
        lines[2]["proof"][1] = ("0" if h[0] != "0" else "1") + h[1:]
        return dump_lines(lines)

    forged = forge_proofs(path, signer, flip)  # re-sealed by another insider key: pin both
    keys = {_key_id(pem): load_public_key(pem.encode()), signer.key_id: signer.public}
    report = verify_bundle(forged, keys)
    where = [(p.kind, p.file, p.row, p.category, p.seq) for p in report.problems]
    assert where == [("proof fails", "proofs.ndjson", 3, "configuration", 7)]
    done = run_script(forged, [pem, signer], tmp_path)
    assert done.returncode == 1
    assert failed_seqs(done.stdout) == {("configuration", 7)}
    assert "proofs.ndjson row 3 (configuration seq 7): proof fails" in done.stdout


def _key_id(pem: str) -> str:
    from auditlog.integrity.keys import key_id_of

    return key_id_of(load_public_key(pem.encode()))


def test_the_proofs_take_the_exported_entries_and_the_signed_root_checks_them(
    log: AuditLog, reader_engine: Engine
) -> None:
    """The writer reads each row's entry_hash off its NDJSON line (not the database again);
    an entry that is not the stored one cannot lead to the signed root, so it is refused."""
    from auditlog.evidence.bundle import Runs
    from auditlog.evidence.export import snapshot
    from auditlog.evidence.proofs import EntryTap, write_proofs

    fill(log, 300)
    log.checkpoint()
    with reader_engine.connect() as conn:
        stored = [bytes(h) for h in conn.execute(sa.text(
            "SELECT entry_hash FROM events WHERE category = 'governance' ORDER BY seq"
        )).scalars()]  # fmt: skip
    lines = [b'{"seq":%d,"entry_hash":"%s"}\n' % (s, h.hex().encode()) for s, h in
             enumerate(stored, start=1)]  # fmt: skip
    for forged in (None, 120):
        tap = EntryTap(Runs())
        for seq in range(1, 301):
            tap.row(GOV, seq)
        blobs = [b"".join(lines[k : k + 7]) for k in range(0, 300, 7)]  # lines across blobs
        if forged is not None:
            blobs[forged // 7] = blobs[forged // 7].replace(stored[forged].hex().encode(),
                                                            b"00" * 32)  # fmt: skip
        assert b"".join(tap.tap(blobs)) == b"".join(blobs)
        entries = tap.entries(GOV, list(range(1, 301)))
        assert len(entries) == 300
        assert (entries[forged] != stored[forged]) if forged else entries == dict(enumerate(stored))
        with snapshot(reader_engine, LIMITS) as conn, zipfile.ZipFile(io.BytesIO(), "w") as zf:
            if forged is None:
                assert write_proofs(zf, conn, tap.runs, tap)[0].rows == 300
            else:
                with pytest.raises(IntegrityFailure, match="does not prove the governance rows"):
                    write_proofs(zf, conn, tap.runs, tap)


def test_a_tap_whose_lines_do_not_add_up_leaves_the_entries_to_the_database() -> None:
    from auditlog.evidence.bundle import Runs
    from auditlog.evidence.proofs import EntryTap

    tap = EntryTap(Runs())
    for seq in (1, 2, 3):
        tap.row(GOV, seq)
    list(tap.tap([b'{"entry_hash":"' + b"ab" * 32 + b'"}\n']))  # one line for three rows
    assert tap.entries(GOV, [1, 2, 3]) == {}
