"""CSV / NDJSON export against a real database: exact round trip, no formula injection,
no silent truncation, constant memory, and every export recorded as an audit event."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from auditlog.columns import COPY_COLUMNS, CSV_COLUMNS
from auditlog.errors import ConfigError, ExportTooLarge
from auditlog.evidence.export import (
    csv_chunks,
    matching_rows,
    write_export,
)
from auditlog.evidence.verify import csv_record
from auditlog.integrity.rule import chain_hash, record_bytes, row_to_record
from auditlog.query.filters import Filters
from auditlog.settings import ExportSettings, Settings, load_settings
from auditlog.store import AuditLog
from tests.support.cli import make_cli
from tests.support.factories import ACTOR, valid
from tests.support.hostile import hostile_events

LIMITS = ExportSettings(max_export_rows=1000, export_chunk_bytes=4096)


def stored(engine: Engine, filters_sql: str = "") -> list[dict[str, Any]]:
    """Every stored row in record form, in (category, seq) order, read straight from the table."""
    cols = ", ".join(COPY_COLUMNS)
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(f"SELECT {cols} FROM events {filters_sql} ORDER BY 1, 2")
        return [row_to_record(dict(r._mapping)) for r in rows]


def export_bytes(engine: Engine, log: AuditLog, fmt: str = "csv", **kwargs: Any) -> bytes:
    out = io.BytesIO()
    kwargs.setdefault("limits", LIMITS)
    write_export(engine, out, kwargs.pop("filters", None), fmt, log=log, actor=ACTOR, **kwargs)  # type: ignore[arg-type]
    return out.getvalue()


def parse(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline=""), strict=True))


def test_csv_round_trips_hostile_values_to_the_stored_values(
    log: AuditLog, reader_engine: Engine
) -> None:
    log.record_many(hostile_events())
    expected = stored(reader_engine)  # before the export records its own event
    rows = parse(export_bytes(reader_engine, log))
    assert rows[0] == list(CSV_COLUMNS)
    records = [csv_record(r) for r in rows[1:]]
    assert records == expected
    for rec in records:  # and what the CSV holds hashes to the stored entry_hash
        prev = bytes.fromhex(rec["prev_hash"])
        assert chain_hash(prev, record_bytes(rec)).hex() == rec["entry_hash"]


def test_no_cell_starts_with_a_formula_trigger_and_escaped_cells_are_marked(
    log: AuditLog, reader_engine: Engine
) -> None:
    log.record_many(hostile_events())
    cells = [c for row in parse(export_bytes(reader_engine, log)) for c in row]
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]
    assert "'=SUM(A1:A9)" in cells
    assert "''already quoted" in cells
    assert "'-300" in cells  # occurred_offset of -05:00, a number that starts with '-'


def test_null_and_empty_text_are_told_apart(log: AuditLog, reader_engine: Engine) -> None:
    log.record_many([valid(user_agent="", correlation_id=None)])
    row = dict(zip(CSV_COLUMNS, parse(export_bytes(reader_engine, log))[1], strict=True))
    assert (row["user_agent"], row["correlation_id"]) == ("'", "")
    rec = csv_record(list(row.values()))
    assert (rec["user_agent"], rec["correlation_id"]) == ("", None)


def test_rows_end_in_crlf_and_a_line_break_inside_a_value_stays_in_its_row(
    log: AuditLog, reader_engine: Engine
) -> None:
    log.record_many([valid(user_agent="two\r\nlines", details={"i": i}) for i in range(3)])
    data = export_bytes(reader_engine, log)
    assert data.endswith(b"\r\n")
    assert data.count(b"\r\n") == 1 + 3 + 3  # header, 3 rows, 3 line breaks inside values
    assert [r[CSV_COLUMNS.index("user_agent")] for r in parse(data)[1:]] == ["two\r\nlines"] * 3


def test_ndjson_lines_are_the_stored_records_with_their_hashes(
    log: AuditLog, reader_engine: Engine
) -> None:
    log.record_many(hostile_events())
    with reader_engine.connect() as conn:
        records = conn.exec_driver_sql("SELECT record FROM events ORDER BY category, seq")
        want = [r[0].encode() for r in records]
    lines = export_bytes(reader_engine, log, "ndjson").splitlines()
    assert [line[:-160] + b"}" for line in lines] == want
    for line in lines:
        obj = json.loads(line)
        record = line[:-160] + b"}"
        assert (
            hashlib.sha256(bytes.fromhex(obj["prev_hash"]) + record).hexdigest()
            == (obj["entry_hash"])
        )


def last_event(engine: Engine) -> dict[str, Any]:
    return stored(engine, "WHERE category = 'user_activity'")[-1]


def test_export_is_recorded_with_filters_rows_and_the_files_sha256(
    log: AuditLog, reader_engine: Engine
) -> None:
    log.record_many([valid(category="governance", details={"i": i}) for i in range(4)])
    data = export_bytes(reader_engine, log, filters=Filters(categories=("governance",)))
    event = last_event(reader_engine)
    sha = hashlib.sha256(data).hexdigest()
    assert (event["action"], event["outcome"], event["actor"]["id"]) == (
        "export.downloaded",
        "success",
        "auditor-1",
    )
    assert event["target"] == {"type": "export", "id": sha, "name": event["details"]["file"]}
    assert event["details"]["rows"] == 4
    assert event["details"]["sha256"] == sha
    assert event["details"]["format"] == "csv"
    assert event["details"]["filters"] == {"category": ["governance"]}


def test_export_over_the_cap_is_refused_with_a_message_and_recorded_as_denied(
    log: AuditLog, reader_engine: Engine
) -> None:
    log.record_many([valid(details={"i": i}) for i in range(5)])
    out = io.BytesIO()
    with pytest.raises(ExportTooLarge, match=r"5 events match .* at most 3 .*max_export_rows"):
        write_export(
            reader_engine,
            out,
            None,
            "csv",
            log=log,
            actor=ACTOR,
            limits=ExportSettings(max_export_rows=3),
        )
    assert out.getvalue() == b""  # refused before a byte: never a silently short file
    event = last_event(reader_engine)
    assert event["outcome"] == "denied"
    assert (event["details"]["rows_matching"], event["details"]["max_export_rows"]) == (5, 3)
    with pytest.raises(ExportTooLarge):
        matching_rows(reader_engine, Filters(), ExportSettings(max_export_rows=3))


def test_filters_select_the_rows_and_order_is_category_then_seq(
    log: AuditLog, reader_engine: Engine
) -> None:
    log.record_many(
        [
            valid(category=c, correlation_id="chg-1" if i % 2 else "other", details={"i": i})
            for i in range(6)
            for c in ("user_activity", "configuration")
        ]
    )
    rows = parse(export_bytes(reader_engine, log, filters=Filters(correlation_id="chg-1")))[1:]
    keys = [(r[0], int(r[1])) for r in rows]
    assert keys == sorted(keys)
    assert len(keys) == 6
    assert {r[CSV_COLUMNS.index("correlation_id")] for r in rows} == {"chg-1"}


def test_chunks_add_up_to_the_file_and_breaking_off_is_recorded_as_failure(
    log: AuditLog, reader_engine: Engine
) -> None:
    log.record_many([valid(details={"pad": "x" * 500, "i": i}) for i in range(40)])
    chunks = list(csv_chunks(reader_engine, Filters(), log=log, actor=ACTOR, limits=LIMITS))
    assert len(chunks) > 3
    assert parse(b"".join(chunks))[1:] == parse(export_bytes(reader_engine, log))[1:41]
    stream = csv_chunks(reader_engine, Filters(), log=log, actor=ACTOR, limits=LIMITS)
    next(stream)
    stream.close()  # type: ignore[attr-defined]  # the browser went away (a generator)
    event = last_event(reader_engine)
    assert (event["outcome"], event["details"]["error"]) == ("failure", "export broken off")


def test_csv_export_runs_in_constant_memory(log: AuditLog, reader_engine: Engine) -> None:
    for start in range(0, 20_000, 5_000):
        log.record_many(
            [
                valid(event_id=str(uuid.uuid4()), details={"i": i, "pad": "p" * 300})
                for i in range(start, start + 5_000)
            ]
        )

    class Sink:
        size = 0

        def write(self, blob: bytes) -> None:
            self.size += len(blob)

    sink = Sink()
    limits = ExportSettings(max_export_rows=0, export_chunk_bytes=1 << 16)
    tracemalloc.start()
    write_export(reader_engine, sink, None, "csv", log=log, actor=ACTOR, limits=limits)  # type: ignore[arg-type]
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert sink.size > 10_000_000  # the whole result, materialised, would be this big
    assert peak < 2_000_000, f"peak {peak:,} bytes while exporting {sink.size:,} bytes"


def test_limits_come_from_the_environment_and_bad_values_are_named() -> None:
    assert load_settings({"AUDITLOG_MAX_EXPORT_ROWS": "10"}).export.max_export_rows == 10
    with pytest.raises(
        ConfigError,
        match=r"max_export_rows \(AUDITLOG_MAX_EXPORT_ROWS\): .many. is not a whole number",
    ):
        load_settings({"AUDITLOG_MAX_EXPORT_ROWS": "many"})


@pytest.fixture
def cli(settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    return make_cli(settings, monkeypatch, tmp_path)


def test_cli_exports_a_filtered_csv_and_reports_rows_and_hash(
    cli: Any, log: AuditLog, reader_engine: Engine, tmp_path: Path
) -> None:
    log.record_many([valid(category=c) for c in ("governance", "configuration", "governance")])
    result = cli("export", "--category", "governance", "-o", "gov.csv")
    assert result.exit_code == 0, result.output
    data = (tmp_path / "gov.csv").read_bytes()
    assert f"exported 2 rows to gov.csv; sha256 {hashlib.sha256(data).hexdigest()}" in (
        result.output
    )
    assert last_event(reader_engine)["actor"]["id"] == "cli-auditor"


def test_cli_refuses_an_export_over_the_cap_and_leaves_no_file(
    cli: Any, log: AuditLog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log.record_many([valid(details={"i": i}) for i in range(3)])
    monkeypatch.setenv("AUDITLOG_MAX_EXPORT_ROWS", "2")
    with pytest.raises(ExportTooLarge, match="3 events match"):
        cli("export", "-o", "all.csv")
    assert not (tmp_path / "all.csv").exists()
