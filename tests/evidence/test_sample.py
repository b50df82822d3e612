"""Auditor sampling: a reproducible sample of the filtered population, written as a bundle
that verifies like any other; an auditor's own re-implementation of the rule agrees."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from auditlog.errors import FieldError
from auditlog.evidence.bundle import BundleResult, write_bundle
from auditlog.evidence.export import snapshot
from auditlog.evidence.sample import MAX_SAMPLE_SIZE, SAMPLE_RULE, Sampling, rank
from auditlog.evidence.verify import verify_bundle
from auditlog.integrity.keys import Signer, public_pem
from auditlog.query.filters import Filters
from auditlog.settings import ExportSettings
from auditlog.store import AuditLog
from tests.support.factories import ACTOR, valid

LIMITS = ExportSettings(max_export_rows=10_000, export_chunk_bytes=2048)
# 3 categories x 3 outcomes x 8 = 72 events; 24 governance, 8 of them denied.
OUTCOMES = ("success", "failure", "denied")
CATEGORIES = ("configuration", "governance", "user_activity")
PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable


def fill(log: AuditLog) -> None:
    events = [
        valid(category=cat, outcome=out, details={"n": n})
        for n in range(8)
        for cat in CATEGORIES
        for out in OUTCOMES
    ]
    for i in range(0, len(events), 9):
        log.record_many(events[i : i + 9])


@pytest.fixture
def filled(log: AuditLog) -> AuditLog:
    fill(log)
    return log


def sample(
    log: AuditLog, reader: Engine, path: Path, filters: Filters, size: int, seed: str | None
) -> BundleResult:
    return write_bundle(
        reader, path, filters, log=log, actor=ACTOR, limits=LIMITS, sample=Sampling(size, seed)
    )


def manifest_of(path: Path) -> dict[str, Any]:
    with zipfile.ZipFile(path) as zf:
        return dict(json.loads(zf.read("manifest.json")))


def ndjson_rows(path: Path) -> list[dict[str, Any]]:
    with zipfile.ZipFile(path) as zf:
        return [json.loads(line) for line in zf.read("events.ndjson").splitlines()]


def population(admin: Engine, where: str = "TRUE") -> list[tuple[str, str, str]]:
    """(event_id, category, outcome) of every row matching ``where``, read as a superuser."""
    sql = f"SELECT event_id::text, category, outcome FROM events WHERE {where}"
    with admin.connect() as conn:
        return [(str(e), str(c), str(o)) for e, c, o in conn.exec_driver_sql(sql)]


def auditor_redraw(seed: str, event_ids: list[str], size: int) -> list[str]:
    """The rule, re-implemented from docs/evidence.md with nothing but hashlib."""

    def key(event_id: str) -> str:
        return hashlib.sha256(seed.encode("utf-8") + b"\x00" + event_id.encode("ascii")).hexdigest()

    return sorted(event_ids, key=key)[:size]


def test_same_seed_draws_the_same_rows_and_another_seed_other_rows(
    filled: AuditLog, reader_engine: Engine, tmp_path: Path
) -> None:
    # Not user_activity: each sample's own export.downloaded event joins that population.
    filters = Filters(categories=("configuration", "governance"))

    def ids(name: str, seed: str) -> list[str]:
        path = tmp_path / name
        sample(filled, reader_engine, path, filters, 10, seed)
        return sorted(r["event_id"] for r in ndjson_rows(path))

    first, again, other = ids("a.zip", "Q3-2026"), ids("b.zip", "Q3-2026"), ids("c.zip", "Q4")
    assert len(first) == 10
    assert first == again
    assert first != other


def test_an_auditors_own_redraw_agrees_with_the_manifest_and_the_rows(
    filled: AuditLog, reader_engine: Engine, admin_engine: Engine, tmp_path: Path
) -> None:
    seed = "élan ü 🙂 audit-2026"  # non-ASCII: the seed is hashed as its UTF-8 bytes
    path = tmp_path / "s.zip"
    res = sample(filled, reader_engine, path, Filters(categories=("governance",)), 7, seed)
    section = res.manifest["sample"]
    everyone = [e for e, cat, _ in population(admin_engine) if cat == "governance"]
    expected = auditor_redraw(seed, everyone, 7)
    assert section["event_ids"] == expected  # in rank order
    assert sorted(r["event_id"] for r in ndjson_rows(path)) == sorted(expected)
    assert section["last_rank"] == rank(seed, expected[-1])
    assert section["rule"] == SAMPLE_RULE
    assert (section["seed"], section["size"], section["population"]) == (seed, 7, 24)


def test_a_sample_bundle_verifies_like_any_bundle_and_signs_its_sample_section(
    filled: AuditLog, reader_engine: Engine, signer: Signer, tmp_path: Path
) -> None:
    path = tmp_path / "s.zip"
    sample(filled, reader_engine, path, Filters(), 25, "seed-1")
    report = verify_bundle(path)
    assert report.ok, report.problems
    assert report.rows == 25
    assert report.manifest is not None
    assert report.manifest["sample"]["population"] == 72
    # The verifier the bundle carries, as an auditor runs it: isolated, away from the project.
    away = tmp_path / "auditor"
    away.mkdir()
    with zipfile.ZipFile(path) as zf:
        (away / "verify_bundle.py").write_bytes(zf.read("verify_bundle.py"))
    (away / "key.pem").write_text(public_pem(signer.public), "ascii")
    cmd = [PYTHON, "-I", "verify_bundle.py", str(path), "--public-key", "key.pem", "--pure"]
    done = subprocess.run(cmd, cwd=away, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_forged_sample_section_breaks_the_manifest_signature(
    filled: AuditLog, reader_engine: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "s.zip"
    sample(filled, reader_engine, path, Filters(), 5, "honest")
    forged = tmp_path / "forged.zip"
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(forged, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "manifest.json":
                manifest = json.loads(data)
                manifest["sample"]["seed"] = "cherry-picked"  # claim another draw
                manifest["sample"]["population"] = 5
                data = json.dumps(manifest, indent=2, sort_keys=True).encode()
            zout.writestr(item.filename, data)
    report = verify_bundle(forged)
    assert not report.ok
    assert "forged manifest" in {p.kind for p in report.problems}


def test_a_cherry_picked_sample_is_found_by_redrawing(
    filled: AuditLog, reader_engine: Engine, admin_engine: Engine, tmp_path: Path
) -> None:
    """A bundle of chosen rows that claims to be a sample: the redraw names the difference."""
    path = tmp_path / "s.zip"
    res = sample(filled, reader_engine, path, Filters(), 5, "fair")
    claimed = res.manifest["sample"]["event_ids"]
    # the population as it stood: rows up to the recorded heads (the sample's own export
    # event, appended since, is not part of it)
    heads = res.manifest["sample"]["heads"]
    where = " OR ".join(f"(category = '{c}' AND seq <= {int(h)})" for c, h in heads.items())
    everyone = [e for e, _, _ in population(admin_engine, where or "FALSE")]
    assert auditor_redraw("fair", everyone, 5) == claimed
    picked = sorted(set(everyone) - set(claimed))[:5]
    assert auditor_redraw("fair", everyone, 5) != picked


def test_a_population_that_grew_is_redrawn_from_the_recorded_heads(
    filled: AuditLog, reader_engine: Engine, admin_engine: Engine, tmp_path: Path
) -> None:
    """Later rows (here the sample's own export event, and more) join the filters' matches;
    the rows up to the manifest's heads are still exactly the population drawn from."""
    res = sample(filled, reader_engine, tmp_path / "s.zip", Filters(), 10, "grown")
    filled.record_many([valid(category=c, details={"late": c}) for c in CATEGORIES])
    section = res.manifest["sample"]
    heads = section["heads"]
    with admin_engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT event_id::text, category, seq FROM events").all()
    now = [str(e) for e, _, _ in rows]
    then = [str(e) for e, cat, seq in rows if seq <= heads[cat]]
    assert len(now) > len(then) == section["population"] == 72
    assert auditor_redraw("grown", then, 10) == section["event_ids"]


def test_size_larger_than_the_population_takes_all_and_says_so(
    filled: AuditLog, reader_engine: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "s.zip"
    filters = Filters(categories=("governance",), outcomes=("denied",))
    res = sample(filled, reader_engine, path, filters, 500, "all")
    section = res.manifest["sample"]
    assert (section["size_requested"], section["size"], section["population"]) == (500, 8, 8)
    assert section["all_taken"] is True
    assert "all 8 rows are taken" in section["statement"]
    assert len(ndjson_rows(path)) == 8
    assert verify_bundle(path).ok


def test_no_sampled_row_lies_outside_the_filters(
    filled: AuditLog, reader_engine: Engine, admin_engine: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "s.zip"
    filters = Filters(categories=("governance", "user_activity"), outcomes=("denied", "failure"))
    res = sample(filled, reader_engine, path, filters, 12, "f")
    rows = ndjson_rows(path)
    assert len(rows) == 12
    assert {r["category"] for r in rows} <= {"governance", "user_activity"}
    assert {r["outcome"] for r in rows} <= {"denied", "failure"}
    matching = population(
        admin_engine,
        "category IN ('governance', 'user_activity') AND outcome IN ('denied', 'failure')",
    )
    assert res.manifest["sample"]["population"] == len(matching) == 32
    assert res.manifest["sample"]["population_filters"] == filters.to_query_params()


def test_the_statement_says_what_is_proven_and_what_is_not(
    filled: AuditLog, reader_engine: Engine, tmp_path: Path
) -> None:
    res = sample(filled, reader_engine, tmp_path / "s.zip", Filters(), 25, "words")
    section = res.manifest["sample"]
    text = section["statement"]
    assert text.startswith("These 25 rows are a sample of a population of 72 rows")
    assert "'words'" in text
    assert SAMPLE_RULE in text
    assert section["snapshot_at"] in text
    assert "does not prove that no other row matches the filters" in text
    assert section["heads"] == {"configuration": 24, "governance": 24, "user_activity": 24}


def test_an_omitted_seed_is_drawn_recorded_and_redraws_the_same_rows(
    filled: AuditLog, reader_engine: Engine, tmp_path: Path
) -> None:
    governance = Filters(categories=("governance",))
    first = sample(filled, reader_engine, tmp_path / "a.zip", governance, 6, None)
    seed = first.manifest["sample"]["seed"]
    assert first.manifest["sample"]["seed_drawn"] is True
    assert len(seed) == 32
    assert int(seed, 16) >= 0
    again = sample(filled, reader_engine, tmp_path / "b.zip", governance, 6, seed)
    assert again.manifest["sample"]["seed_drawn"] is False
    assert again.manifest["sample"]["event_ids"] == first.manifest["sample"]["event_ids"]
    assert Sampling(6).seed != Sampling(6).seed


def test_the_sample_is_recorded_as_an_export_event(
    filled: AuditLog, reader_engine: Engine, engine: Engine, tmp_path: Path
) -> None:
    res = sample(filled, reader_engine, tmp_path / "s.zip", Filters(), 4, "ev")
    stmt = sa.text(
        "SELECT outcome, details FROM events WHERE action = 'export.downloaded' ORDER BY seq"
    )
    with engine.connect() as conn:
        [(outcome, details)] = conn.execute(stmt).all()
    assert outcome == "success"
    assert details["format"] == "sample"
    assert details["sha256"] == res.sha256
    assert details["sample"]["seed"] == "ev"
    assert (details["sample"]["size"], details["sample"]["population"]) == (4, 72)


def test_population_and_selection_come_from_one_snapshot(
    filled: AuditLog, reader_engine: Engine
) -> None:
    """Rows appended between two draws in the same snapshot change neither draw."""
    draw = Sampling(5, "snap")
    with snapshot(reader_engine, LIMITS) as conn:
        before = draw.draw(conn, Filters(), datetime.now(UTC))
        filled.record_many([valid(category="governance", details={"late": i}) for i in range(40)])
        after = draw.draw(conn, Filters(), datetime.now(UTC))
    assert before == after
    assert before.population == 72
    with snapshot(reader_engine, LIMITS) as conn:
        assert draw.draw(conn, Filters(), datetime.now(UTC)).population == 112


def test_an_empty_population_gives_an_empty_bundle_that_verifies(
    filled: AuditLog, reader_engine: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "s.zip"
    res = sample(filled, reader_engine, path, Filters(target_id="no-such-target"), 5, "x")
    assert (res.rows, res.manifest["sample"]["population"]) == (0, 0)
    assert res.manifest["sample"]["all_taken"] is True
    assert verify_bundle(path).ok


@pytest.mark.parametrize(
    ("size", "seed", "field"),
    [
        (0, "s", "sample size"),
        (-3, "s", "sample size"),
        (MAX_SAMPLE_SIZE + 1, "s", "sample size"),
        (True, "s", "sample size"),
        (5, "", "sample seed"),
        (5, "x" * 257, "sample seed"),
        (5, "tab\there", "sample seed"),
        (5, " padded", "sample seed"),
        (5, "nul\x00", "sample seed"),
        (5, "lone \ud800", "sample seed"),
    ],
)
def test_a_bad_size_or_seed_is_refused_naming_it(size: Any, seed: str, field: str) -> None:
    with pytest.raises(FieldError) as caught:
        Sampling(size, seed)
    assert caught.value.field == field
    assert "\n" not in str(caught.value)
