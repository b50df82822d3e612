"""auditlog.columns is the one definition; the hand-tuned paths and every format agree with it."""

from __future__ import annotations

import json

import polars as pl
import pyarrow as pa
import rfc8785

from auditlog import store
from auditlog.archive.export import _EXPORT_SCHEMA
from auditlog.archive.files import SCHEMA
from auditlog.columns import (
    ARCHIVE_COLUMNS,
    CHAIN_FIELDS,
    COPY_COLUMNS,
    CSV_COLUMNS,
    CSV_KINDS,
    EVENT_COLUMNS,
    HASHED_FIELDS,
    OPTIONAL_FIELDS,
    arrow_type,
    polars_type,
)
from auditlog.db.tables import events
from auditlog.evidence.export import CSV_SELECT
from auditlog.integrity.database import _COLUMN_CHECKS
from auditlog.integrity.rule import record_bytes
from auditlog.settings import Settings
from tests.support.factories import valid

RECORDED = "2026-11-28T08:15:03.000001Z"


def test_hashed_fields_are_every_stored_field_but_the_hashes_and_the_record() -> None:
    assert set(HASHED_FIELDS) == set(COPY_COLUMNS) - {*CHAIN_FIELDS, "record"}


def test_hashed_fields_are_in_the_order_rfc8785_sorts_them() -> None:
    keys = json.loads(rfc8785.dumps(dict.fromkeys(HASHED_FIELDS, 0)), object_pairs_hook=list)
    assert tuple(k for k, _ in keys) == HASHED_FIELDS


def test_fast_record_text_holds_the_hashed_fields_in_order(settings: Settings) -> None:
    p = store.prepare(valid(user_agent="ua", correlation_id="c-1"), settings)
    text = p.record_text(True, RECORDED, 7)
    pairs = json.loads(text, object_pairs_hook=list)
    # no source: no such member, exactly as records were before the field existed
    assert tuple(k for k, _ in pairs) == tuple(k for k in HASHED_FIELDS if k not in OPTIONAL_FIELDS)
    assert record_bytes(json.loads(text)) == text.encode()


def test_fast_record_text_with_a_source_holds_every_hashed_field_in_order(
    settings: Settings,
) -> None:
    key = {"type": "api_key", "id": "k-1", "name": "Billing"}
    p = store.prepare(valid(user_agent="ua"), settings, source=key)
    text = p.record_text(False, RECORDED, 7)
    pairs = json.loads(text, object_pairs_hook=list)
    assert tuple(k for k, _ in pairs) == HASHED_FIELDS
    assert record_bytes(json.loads(text)) == text.encode() == rfc8785.dumps(json.loads(text))


def test_copy_columns_are_the_events_table_in_order() -> None:
    assert COPY_COLUMNS == tuple(events.c.keys()) == tuple(c.name for c in EVENT_COLUMNS)
    # the writer sends the record and its links; the database derives the rest from it
    assert store.COPY_SQL == "COPY events (record, prev_hash, entry_hash) FROM STDIN"


def test_verify_checks_every_hashed_column_against_the_record() -> None:
    assert set(_COLUMN_CHECKS) == set(HASHED_FIELDS)
    nullable_json = {c.name for c in EVENT_COLUMNS if c.record == "json" and c.nullable}
    assert {n for n, sql in _COLUMN_CHECKS.items() if "nullif" in sql} == nullable_json


def test_csv_holds_every_column_but_the_record_with_a_kind_each() -> None:
    assert set(CSV_COLUMNS) == set(COPY_COLUMNS) - {"record"}
    assert tuple(CSV_SELECT) == CSV_COLUMNS == tuple(CSV_KINDS)


def test_archive_schema_types_come_from_the_definition() -> None:
    assert [(f.name, f.type) for f in SCHEMA] == [(n, arrow_type(n)) for n in ARCHIVE_COLUMNS]


def test_polars_types_are_how_polars_reads_the_arrow_types() -> None:
    for col in EVENT_COLUMNS:
        read = pl.Series(pa.array([], type=arrow_type(col.name)))
        assert polars_type(col.name) == read.dtype, col.name
    assert polars_type("occurred_at") == pl.Datetime("us", "UTC")


def test_archive_export_types_numbers_and_flags_and_keeps_the_rest_as_text() -> None:
    typed = {n: t for n, t in _EXPORT_SCHEMA.items() if t != pl.String}
    assert typed == {"seq": pl.Int64, "occurred_offset": pl.Int16, "clock_skew": pl.Boolean}
