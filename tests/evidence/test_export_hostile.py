"""The evidence CSV over the hostile matrix (every free-text field x every hostile value, stored
through a real log): no value forges a row boundary, no cell starts a formula, and every cell
read back with Python's csv module and the documented reversal equals the stored value."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.engine import URL

from auditlog.columns import CSV_COLUMNS
from auditlog.evidence.export import write_export
from auditlog.evidence.verify import csv_record
from auditlog.settings import ExportSettings
from tests.support.factories import ACTOR
from tests.support.hostile import field_cases, field_value
from tests.support.hostile_store import HostileStore, hostile_store

CASES = field_cases()
TEXT_CELLS = ("user_agent", "correlation_id")  # the free-text fields that are cells of their own
TRIGGERS = ("=", "+", "-", "@", "\t", "\r")  # OWASP: what makes a spreadsheet evaluate a cell


@pytest.fixture(scope="module")
def exported(
    pg_server_url: URL, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[HostileStore, list[list[str]]]]:
    home = tmp_path_factory.mktemp("home")
    with hostile_store(pg_server_url, template_db, home) as store:
        out = io.BytesIO()
        limits = ExportSettings(max_export_rows=0, export_chunk_bytes=1 << 14)
        write_export(store.reader, out, None, "csv", log=store.log, actor=ACTOR, limits=limits)
        text = out.getvalue().decode("utf-8")
        yield store, list(csv.reader(io.StringIO(text, newline=""), strict=True))


@pytest.fixture(scope="module")
def rows(exported: tuple[HostileStore, list[list[str]]]) -> dict[str, dict[str, str]]:
    """The data rows by event_id, each as {column: cell}."""
    return {r[2]: dict(zip(CSV_COLUMNS, r, strict=True)) for r in exported[1][1:]}


def test_one_row_per_event_and_no_value_forged_a_row(
    exported: tuple[HostileStore, list[list[str]]],
) -> None:
    store, parsed = exported
    assert parsed[0] == list(CSV_COLUMNS)
    assert all(len(r) == len(CSV_COLUMNS) for r in parsed)
    assert sorted(r[2] for r in parsed[1:]) == sorted(i.key for i in store.items.values())


@pytest.mark.parametrize(("field", "value"), CASES)
def test_a_csv_cell_reads_back_the_stored_value(
    exported: tuple[HostileStore, list[list[str]]],
    rows: dict[str, dict[str, str]],
    field: str,
    value: str,
) -> None:
    item = exported[0].item(field, value)
    row = rows[item.key]
    assert not [c for c in row.values() if c.startswith(TRIGGERS)]
    record: dict[str, Any] = csv_record(list(row.values()))
    assert record == item.data
    assert field_value(record, field) == value
    if field in TEXT_CELLS:  # the documented reversal: drop one leading ' if there is one
        cell = row[field]
        assert (cell[1:] if cell.startswith("'") else cell) == value
        assert cell.startswith("'") == (value == "" or value.startswith((*TRIGGERS, "'")))
