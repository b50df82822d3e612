"""The bundle verifier against deep JSON (issue 10): a deep but genuine row verifies, and a
hostile bundle nesting JSON 10,000 deep gets a finding naming the file and row, never a
traceback."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from auditlog.canonical import jcs, needs_slow_path
from auditlog.columns import CSV_COLUMNS
from auditlog.evidence.bundle import write_bundle
from auditlog.evidence.verify import MAX_DEPTH, verify_bundle
from auditlog.integrity.keys import Signer
from auditlog.query.filters import Filters
from auditlog.settings import Settings
from auditlog.store import AuditLog
from tests.support.factories import ACTOR, valid

DEEP = 10_000
CSV, MANIFEST = "events.csv", "manifest.json"


def _nested(depth: int) -> dict[str, Any]:
    root: dict[str, Any] = {}
    node = root
    for _ in range(depth - 1):
        node["k"] = {}
        node = node["k"]
    return root


@pytest.fixture
def deep_log(engine: Engine, settings: Settings, signer: Signer) -> AuditLog:
    return AuditLog(engine, settings.replace(store={"max_json_depth": 256}), signer=signer)


def _bundle(log: AuditLog, reader: Engine, path: Path, details: dict[str, Any]) -> Path:
    log.record_many([valid(details={"n": 1}), valid(details=details), valid(details={"n": 3})])
    write_bundle(reader, path, Filters(categories=("configuration",)), log=log, actor=ACTOR)
    return path


def _rewrite(src: Path, name: str, edit: Callable[[bytes], bytes]) -> Path:
    dst = src.with_name("hostile.zip")
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            zout.writestr(item.filename, edit(data) if item.filename == name else data)
    return dst


def _with_deep_details(data: bytes) -> bytes:
    rows = list(csv.reader(io.StringIO(data.decode(), newline="")))
    rows[2][CSV_COLUMNS.index("details")] = "[" * DEEP + "]" * DEEP
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue().encode()


def test_a_genuine_row_nested_255_deep_verifies_from_the_bundle(
    deep_log: AuditLog, reader_engine: Engine, tmp_path: Path
) -> None:
    path = _bundle(deep_log, reader_engine, tmp_path / "b.zip", {"deep": _nested(254)})
    report = verify_bundle(path)
    assert report.ok, report.problems
    assert report.rows == 3


def test_a_csv_cell_nested_ten_thousand_deep_is_a_malformed_row_finding(
    log: AuditLog, reader_engine: Engine, tmp_path: Path
) -> None:
    path = _bundle(log, reader_engine, tmp_path / "b.zip", {"n": 2})
    report = verify_bundle(_rewrite(path, CSV, _with_deep_details))
    found = [(p.kind, p.file, p.row) for p in report.problems]
    assert ("malformed row", CSV, 2) in found
    message = next(p.message for p in report.problems if p.kind == "malformed row")
    assert f"column details: nests deeper than {MAX_DEPTH} levels" in message


def test_a_manifest_nested_ten_thousand_deep_is_a_forged_manifest_finding(
    log: AuditLog, reader_engine: Engine, tmp_path: Path
) -> None:
    path = _bundle(log, reader_engine, tmp_path / "b.zip", {"n": 2})
    hostile = _rewrite(path, MANIFEST, lambda _: ("[" * DEEP + "]" * DEEP).encode())
    report = verify_bundle(hostile)
    assert [(p.kind, p.file) for p in report.problems] == [("forged manifest", MANIFEST)]


def test_canonical_json_of_a_value_deeper_than_the_recursion_limit_needs_no_recursion() -> None:
    deep = _nested(5000)
    assert needs_slow_path(deep) is False
    deep_float: list[Any] = [1.5]
    for _ in range(5000):
        deep_float = [deep_float]
    assert needs_slow_path(deep_float) is True
    assert json.loads(jcs(_nested(900))) == _nested(900)
