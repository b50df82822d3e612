"""Exports of an archive's events: CSV or Parquet, one column per stored field.

The CSV is the evidence CSV of :mod:`auditlog.export` (same columns, :data:`EXPORT_COLUMNS`,
same encoding, documented in docs/evidence.md), so the same readers and verifiers apply:
JSON fields as JSON text (``null`` when null), nullable text empty when null, and a cell that
is empty text or starts with ``= + - @``, tab, CR or ``'`` gets a leading ``'`` (OWASP).
prev_hash and entry_hash are included, so a contiguous export verifies from the file alone.
The Parquet export has the same columns, typed (no escaping).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import polars as pl
import pyarrow.parquet as pq

from auditlog.archive.files import BATCH
from auditlog.canonical import jcs_text
from auditlog.columns import BY_NAME, CSV_COLUMNS, CSV_KINDS, polars_type
from auditlog.evidence.export import FORMULA_TRIGGERS

EXPORT_COLUMNS = CSV_COLUMNS
_JSON_FIELDS = {name for name, kind in CSV_KINDS.items() if kind == "json"}


def records(path: Path) -> Iterator[dict[str, Any]]:
    """The events of an archive in seq order, each in record form plus its chain hashes."""
    columns = ["record", "prev_hash", "entry_hash"]
    for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH, columns=columns):
        cols = batch.to_pydict()
        for rec, prev, entry in zip(
            cols["record"], cols["prev_hash"], cols["entry_hash"], strict=True
        ):
            value = json.loads(rec)
            value["prev_hash"], value["entry_hash"] = prev.hex(), entry.hex()
            yield value


def export_row(record: Mapping[str, Any]) -> dict[str, Any]:
    """One exported row: JSON fields as canonical JSON text, the rest as stored."""
    out = {}
    for name in EXPORT_COLUMNS:
        value = record.get(name)
        out[name] = jcs_text(value) if name in _JSON_FIELDS and value is not None else value
    return out


def escaped(text: str) -> str:
    """The formula escape: a leading ``'`` on empty text or text starting with a trigger."""
    return "'" + text if text == "" or text[0] in FORMULA_TRIGGERS else text


def csv_cell(kind: str, value: Any) -> str:
    """A CSV cell of a column of ``kind`` (see ``auditlog.columns.CSV_KINDS``)."""
    if value is None:
        return "null" if kind == "json" else ""
    if kind == "bool":
        return "true" if value else "false"
    if kind in ("json", "hex"):
        return str(value)
    return escaped(str(value))


def write_csv(path: Path, out: IO[str]) -> int:
    """Write an archive's events as RFC 4180 CSV (UTF-8, CRLF); return the row count."""
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(EXPORT_COLUMNS)
    n = 0
    for record in records(path):
        row = export_row(record)
        writer.writerow([csv_cell(kind, row[c]) for c, kind in CSV_KINDS.items()])
        n += 1
    return n


# Numbers and flags typed; timestamps, JSON, addresses and hashes as the CSV's text.
_EXPORT_SCHEMA = {
    name: polars_type(name) if BY_NAME[name].record in ("int", "bool") else pl.String()
    for name in EXPORT_COLUMNS
}


def write_parquet(path: Path, out: Path) -> int:
    """Write an archive's events with one column per field (Parquet, zstd); return rows."""
    n = 0
    schema = pl.DataFrame(schema=_EXPORT_SCHEMA).to_arrow().schema
    with pq.ParquetWriter(out, schema, compression="zstd") as writer:
        batch: list[dict[str, Any]] = []
        for record in records(path):
            batch.append(export_row(record))
            if len(batch) >= BATCH:
                writer.write_table(pl.DataFrame(batch, schema=_EXPORT_SCHEMA).to_arrow())
                n, batch = n + len(batch), []
        if batch or not n:
            writer.write_table(pl.DataFrame(batch, schema=_EXPORT_SCHEMA).to_arrow())
            n += len(batch)
    return n
