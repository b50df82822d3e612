"""Archives keep the submitting source: the record holds it, the archive verifies, its CSV
export has the source column and verifies from the file alone, and a changed source is found."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
from sqlalchemy.engine import Engine

from auditlog.archive.export import write_csv
from auditlog.archive.files import SCHEMA, Span, verify_archive, write_archive
from auditlog.columns import CSV_COLUMNS
from auditlog.evidence.verify import csv_record
from auditlog.integrity.rule import chain_hash, record_bytes
from auditlog.store import AuditLog, prepare_many
from tests.support.factories import valid

KEY = {"type": "api_key", "id": "k-7f3a", "name": "Billing service"}


def archive_of(log: AuditLog, admin_engine: Engine, tmp_path: Path) -> Path:
    """configuration seq 1..3 (2 submitted by KEY) written to an archive, rows kept."""
    log.record(valid())
    good, _ = prepare_many([valid()], log.settings, source=KEY)
    log.append_prepared(good)
    log.record(valid())
    now = datetime.now(UTC)
    span = Span("configuration", date(now.year, now.month, 1), 1, 0)
    with admin_engine.connect() as conn:
        raw: Any = conn.connection.driver_connection
        end = datetime(9999, 1, 1, tzinfo=UTC)
        return write_archive(raw, tmp_path, span, end, log.signer, now).path


def test_an_archive_with_a_source_verifies_and_its_csv_carries_it(
    log: AuditLog, admin_engine: Engine, tmp_path: Path
) -> None:
    path = archive_of(log, admin_engine, tmp_path)
    check = verify_archive(path, {log.signer.key_id: log.signer.public})
    assert check.ok, check.problem
    assert check.rows == 3
    out = io.StringIO()
    write_csv(path, out)
    rows = list(csv.reader(io.StringIO(out.getvalue(), newline="")))
    assert rows[0] == list(CSV_COLUMNS)
    recs = [csv_record(r) for r in rows[1:]]
    assert [r.get("source") for r in recs] == [None, KEY, None]
    for rec in recs:
        entry = chain_hash(bytes.fromhex(rec["prev_hash"]), record_bytes(rec))
        assert entry.hex() == rec["entry_hash"]


def test_a_source_changed_in_an_archive_is_named(
    log: AuditLog, admin_engine: Engine, tmp_path: Path
) -> None:
    path = archive_of(log, admin_engine, tmp_path)
    frame = pl.from_arrow(pq.read_table(path))
    assert isinstance(frame, pl.DataFrame)
    frame = frame.with_columns(pl.col("record").str.replace("Billing service", "Payroll"))
    pq.write_table(frame.to_arrow().cast(SCHEMA), path)
    check = verify_archive(path, {log.signer.key_id: log.signer.public})
    assert check.problem is not None
    assert (check.problem.seq, check.problem.kind) == (2, "content changed")
    assert json.loads(frame["record"][1])["source"]["name"] == "Payroll"
