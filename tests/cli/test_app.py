"""The `auditlog` command line against a real database."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from auditlog.cli.app import app
from auditlog.settings import Settings
from tests.support.cli import register_host_key
from tests.support.factories import valid


@pytest.fixture
def run(settings: Settings, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("AUDITLOG_DATABASE_URL", settings.store.database_url or "")
    monkeypatch.setenv("AUDITLOG_HOME", str(settings.store.home))
    register_host_key(settings)

    def invoke(*args: str, stdin: str | None = None) -> Any:
        return CliRunner().invoke(app, list(args), input=stdin, catch_exceptions=False)

    return invoke


def count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.exec_driver_sql("SELECT count(*) FROM events").scalar_one())


def write_ndjson(path: Path, lines: list[Any]) -> Path:
    path.write_text(
        "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines), "utf-8"
    )
    return path


def test_ingest_stores_valid_lines_and_reports_each_invalid_one(
    run: Any, tmp_path: Path, admin_engine: Engine
) -> None:
    src = write_ndjson(
        tmp_path / "in.ndjson",
        [
            valid(),
            valid(source_ip="1.2.3"),
            "{not json",
            valid(),
            valid(occurred_at="now"),
        ],
    )
    result = run("ingest", str(src))
    assert result.exit_code == 1
    assert "line 2: source_ip:" in result.output
    assert "line 3: event: not valid JSON" in result.output
    assert "line 5: occurred_at:" in result.output
    assert "stored 2, already present 0, rejected 3" in result.output
    lines = (tmp_path / "in.ndjson.rejects.ndjson").read_text("utf-8").splitlines()
    rejects = [json.loads(x) for x in lines]
    assert [r["line"] for r in rejects] == [2, 3, 5]
    assert rejects[1]["raw"] == "{not json"
    assert rejects[1]["reason"].startswith("event: not valid JSON")
    assert rejects[0]["reason"].startswith("source_ip:")
    assert json.loads(rejects[2]["raw"])["occurred_at"] == "now"
    assert count(admin_engine) == 2


def test_strict_ingest_stores_nothing_when_one_line_is_invalid(
    run: Any, tmp_path: Path, admin_engine: Engine
) -> None:
    src = write_ndjson(tmp_path / "in.ndjson", [valid(), valid(outcome="meh"), valid()])
    result = run("ingest", "--strict", str(src))
    assert result.exit_code == 1
    assert "line 2: outcome:" in result.output
    assert count(admin_engine) == 0


def test_reingest_of_the_same_file_stores_nothing_new(
    run: Any, tmp_path: Path, admin_engine: Engine
) -> None:
    src = tmp_path / "demo.ndjson"
    assert run("demo", "--events", "300", "--out", str(src)).exit_code == 0
    first = run("ingest", str(src))
    assert first.exit_code == 0, first.output
    second = run("ingest", str(src))
    assert second.exit_code == 0
    assert "stored 0, already present 300, rejected 0" in second.output
    assert count(admin_engine) == 300
    assert run("verify").exit_code == 0


def test_reused_event_id_with_other_content_is_rejected_by_line(
    run: Any, tmp_path: Path, admin_engine: Engine
) -> None:
    eid = "0b6f8f5e-5a8b-4f8e-9b1e-7f0c2f3d4a5b"
    src = write_ndjson(tmp_path / "a.ndjson", [valid(event_id=eid), valid()])
    run("ingest", str(src))
    clash = write_ndjson(tmp_path / "b.ndjson", [valid(), valid(event_id=eid, outcome="denied")])
    result = run("ingest", str(clash))
    assert result.exit_code == 1
    assert "line 2: event_id" in result.output
    assert count(admin_engine) == 3


def test_ingest_reads_standard_input(run: Any, admin_engine: Engine, tmp_path: Path) -> None:
    lines = "".join(json.dumps(valid()) + "\n" for _ in range(3))
    result = run("ingest", "-", "--reject-file", str(tmp_path / "r.ndjson"), stdin=lines)
    assert result.exit_code == 0, result.output
    assert count(admin_engine) == 3


def test_oversized_line_is_rejected_before_parsing_and_kept_truncated_in_the_reject_file(
    run: Any, tmp_path: Path, admin_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUDITLOG_MAX_LINE_BYTES", "2000")
    big = json.dumps(valid(details={"x": "y" * 200_000}))
    src = write_ndjson(tmp_path / "in.ndjson", [valid(), big, valid()])
    result = run("ingest", str(src))
    assert f"line 2: event: line exceeds 2000 bytes (it has {len(big)})" in result.output
    assert count(admin_engine) == 2
    lines = (tmp_path / "in.ndjson.rejects.ndjson").read_text("utf-8").splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["line"] == 2
    assert record["truncated"] is True
    assert record["bytes"] == len(big)
    assert record["reason"] == f"event: line exceeds 2000 bytes (it has {len(big)})"
    assert big.startswith(record["raw"])
    assert 0 < len(record["raw"]) <= 1024


def test_reject_file_carries_each_reason_and_keeps_undecodable_bytes_exactly(
    run: Any, tmp_path: Path, admin_engine: Engine
) -> None:
    two_problems = json.dumps(valid(outcome="meh", source_ip="1.2.3")).encode()
    not_utf8 = b'{"category": "configuration", "action": "caf\xe9"}'
    src = tmp_path / "in.ndjson"
    src.write_bytes(b"\n".join([two_problems, not_utf8, json.dumps(valid()).encode()]) + b"\n")
    result = run("ingest", str(src))
    assert result.exit_code == 1
    text = (tmp_path / "in.ndjson.rejects.ndjson").read_text("utf-8")
    records = [json.loads(x) for x in text.splitlines()]
    assert [r["line"] for r in records] == [1, 2]
    for r in records:  # the reason in the file is the one the command printed for that line
        assert f"line {r['line']}: {r['reason']}\n" in result.output
    assert json.loads(records[0]["raw"]) == json.loads(two_problems)
    assert base64.b64decode(records[1]["raw_base64"]) == not_utf8
    assert count(admin_engine) == 1


def test_demo_builds_all_categories_and_correlated_stories(run: Any, admin_engine: Engine) -> None:
    assert run("demo", "--events", "400").exit_code == 0
    with admin_engine.connect() as conn:
        cats = conn.exec_driver_sql("SELECT count(DISTINCT category) FROM events").scalar_one()
        stories = conn.exec_driver_sql(
            "SELECT count(*) FROM (SELECT correlation_id FROM events WHERE correlation_id IS NOT "
            "NULL GROUP BY 1 HAVING count(DISTINCT category) > 1) s"
        ).scalar_one()
        v6 = conn.exec_driver_sql("SELECT count(*) FROM events WHERE family(source_ip) = 6")
        resolved = conn.exec_driver_sql(
            "SELECT count(*) FROM events WHERE (actor->>'resolved')::boolean"
        ).scalar_one()
        nested = conn.exec_driver_sql(
            "SELECT count(*) FROM events WHERE before->'conditions' IS DISTINCT FROM "
            "after->'conditions' OR before->'grant' IS DISTINCT FROM after->'grant'"
        ).scalar_one()
    assert cats == 3
    assert stories > 0
    assert v6.scalar_one() > 0
    assert resolved > 0
    assert nested > 0
    again = run("demo", "--events", "10", "--if-empty")
    assert "demo skipped" in again.output


def test_checkpoint_and_public_key_export(run: Any, admin_engine: Engine) -> None:
    run("demo", "--events", "50")
    result = run("keys", "export-public")
    assert result.output.startswith("-----BEGIN PUBLIC KEY-----")
    assert run("checkpoint").exit_code == 0
    assert run("verify").exit_code == 0


def test_db_upgrade_is_idempotent(run: Any) -> None:
    result = run("db", "upgrade")
    assert result.exit_code == 0
    assert "applied: none" in result.output
