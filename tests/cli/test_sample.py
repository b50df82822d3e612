"""`auditlog sample` against a real database: where the bundle went, the population and the
size, and one-line errors for a size it cannot draw."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from auditlog.evidence.sample import MAX_SAMPLE_SIZE
from auditlog.evidence.verify import verify_bundle
from auditlog.settings import Settings
from auditlog.store import AuditLog
from tests.support.cli import make_cli
from tests.support.factories import valid


@pytest.fixture
def cli(settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, log: AuditLog) -> Any:
    events = [
        valid(category=cat, outcome=out, details={"n": n})
        for n in range(5)
        for cat in ("configuration", "governance")
        for out in ("success", "denied")
    ]
    log.record_many(events)  # 20 events: 5 per (category, outcome)
    return make_cli(settings, monkeypatch, tmp_path)


def manifest_of(path: Path) -> dict[str, Any]:
    with zipfile.ZipFile(path) as zf:
        return dict(json.loads(zf.read("manifest.json")))


def test_sample_writes_a_bundle_and_says_where_and_how_many(cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "s.zip"
    args = ("--size", "3", "--seed", "Q3", "--category", "governance", "-o", str(out))
    result = cli("sample", *args)
    assert result.exit_code == 0, result.output
    assert f"sampled 3 of 10 rows (seed 'Q3', rule sha256-rank/1) to {out}" in result.output
    assert "recorded as export.downloaded" in result.output
    section = manifest_of(out)["sample"]
    assert (section["size"], section["population"], section["seed"]) == (3, 10, "Q3")
    assert manifest_of(out)["filters"] == {"category": ["governance"]}
    assert verify_bundle(out).ok


def test_the_same_command_twice_draws_the_same_rows(cli: Any, tmp_path: Path) -> None:
    args = ("sample", "-n", "4", "--seed", "again", "--outcome", "denied")
    assert cli(*args, "-o", str(tmp_path / "a.zip")).exit_code == 0
    assert cli(*args, "-o", str(tmp_path / "b.zip")).exit_code == 0
    first, second = manifest_of(tmp_path / "a.zip"), manifest_of(tmp_path / "b.zip")
    assert first["sample"]["event_ids"] == second["sample"]["event_ids"]
    assert len(first["sample"]["event_ids"]) == 4


def test_a_size_over_the_population_takes_every_row_and_says_so(cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "s.zip"
    result = cli("sample", "--size", "50", "--outcome", "denied", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "sampled 10 of 10 rows" in result.output
    assert "not larger than --size 50: every row is taken" in result.output


def test_without_a_seed_one_is_drawn_and_printed(cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "s.zip"
    result = cli("sample", "--size", "2", "-o", str(out))
    assert result.exit_code == 0, result.output
    seed = manifest_of(out)["sample"]["seed"]
    assert f"(seed {seed!r}," in result.output
    assert manifest_of(out)["sample"]["seed_drawn"] is True


@pytest.mark.parametrize("size", ["0", "-1", str(MAX_SAMPLE_SIZE + 1)])
def test_an_invalid_size_is_one_line_of_error_and_no_file(
    cli: Any, tmp_path: Path, engine: Engine, size: str
) -> None:
    out = tmp_path / "s.zip"
    result = cli("sample", "--size", size, "--seed", "x", "-o", str(out))
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: sample size: ")
    assert "give 1 to 10,000 rows" in lines[0]
    assert not out.exists()
    with engine.connect() as conn:
        stmt = "SELECT count(*) FROM events WHERE action = 'export.downloaded'"
        assert conn.scalar(sa.text(stmt)) == 0


def test_a_bad_filter_is_one_line_of_error(cli: Any, tmp_path: Path) -> None:
    result = cli("sample", "--last", "2w", "-o", str(tmp_path / "s.zip"))
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "error: filter last: '2w' is not one of 15m, 1h, 24h, 7d, 30d, 90d, 1y"
    ]
