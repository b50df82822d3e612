"""What the Retention page shows and hands out: impact totals, holds, archives to download."""

from __future__ import annotations

import hashlib
import io
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from sqlalchemy.engine import Engine

from auditlog.archive.files import SCHEMA
from auditlog.errors import IntegrityFailure, NotFound
from auditlog.retention.policies import Retention
from auditlog.retention.view import (
    archives_frame,
    download_archive,
    downloadable,
    impact,
    impact_frame,
    impact_totals,
    is_held,
)
from auditlog.settings import Settings
from tests.support.retention import LEAD, events, fill, policy, run


@pytest.fixture
def root(ret: Retention, settings: Settings) -> Path:
    """The archive root after a pass over Jan-Mar 2022 (each month archived and purged)."""
    fill(ret.log, per_month=5)
    policy(ret)
    run(ret, settings)
    return ret.settings.archive_root(settings.store.home)


def test_impact_totals_sum_each_fate_over_the_months() -> None:
    counts = pl.DataFrame(
        {
            "month": [date(2020, 1, 1), date(2020, 2, 1), date(2026, 1, 1)],
            "place": ["table", "archive", "table"],
            "events": [4, 6, 5],
            "last_recorded_at": [
                datetime(2020, 1, 31, tzinfo=UTC),
                datetime(2020, 2, 28, tzinfo=UTC),
                datetime(2026, 1, 31, tzinfo=UTC),
            ],
        }
    )
    now = datetime(2026, 2, 1, tzinfo=UTC)
    frame = impact_frame(counts, now, 365, 365 * 10)
    assert impact_totals(frame) == {
        "kept in the table": 5,
        "moved to an archive": 4,
        "kept in an archive": 6,
    }
    gone = impact_frame(counts, now, 365, 0)
    assert impact_totals(gone) == {"kept in the table": 5, "deleted for good": 10}
    held = impact_totals(impact_frame(counts, now, 365, 0, held=True))
    assert list(held.items()) == [("kept in the table", 9), ("kept in an archive", 6)]


def test_is_held_only_for_a_category_with_a_hold(ret: Retention) -> None:
    ret.place_hold(LEAD, "compliance_lead", "governance", "case-9", "litigation")
    holds = ret.holds()
    assert is_held(holds, "governance")
    assert not is_held(holds, "user_activity")


def test_downloadable_leaves_out_archives_whose_file_was_deleted() -> None:
    frame = pl.DataFrame({"path": ["a", "b", "c"], "state": ["purged", "deleted", "archived"]})
    assert downloadable(frame)["path"].to_list() == ["a", "c"]


def test_download_archive_hands_out_the_verified_export_and_logs_it(
    ret: Retention, root: Path
) -> None:
    blob, name = download_archive(ret.log, root, LEAD, "user_activity", "2022-01", "parquet")
    assert name == "user_activity-2022-01.parquet"
    frame = pl.read_parquet(io.BytesIO(blob))
    assert frame["seq"].to_list() == [1, 2, 3, 4, 5]
    (logged,) = events(ret.engine, "export.downloaded")
    assert logged["actor"]["id"] == LEAD.user
    assert logged["details"]["sha256"] == hashlib.sha256(blob).hexdigest()
    assert (logged["details"]["format"], logged["details"]["rows"]) == ("parquet", 5)
    text, _ = download_archive(ret.log, root, LEAD, "user_activity", "2022-01", "csv")
    assert text.decode("utf-8").count("\n") == 6  # header + 5 rows


def test_download_archive_refuses_a_tampered_archive_and_logs_nothing(
    ret: Retention, root: Path
) -> None:
    (row,) = archives_frame(ret.engine, "user_activity").filter(month="2022-02").to_dicts()
    path = root / row["path"]
    frame = pl.from_arrow(pq.read_table(path))
    assert isinstance(frame, pl.DataFrame)
    changed = frame.with_columns(
        record=pl.when(pl.col("seq") == 8)
        .then(pl.col("record").str.replace('"i":', '"i": 1, "x":'))
        .otherwise(pl.col("record"))
    )
    pq.write_table(changed.to_arrow().cast(SCHEMA), path)
    with pytest.raises(IntegrityFailure, match="seq 8"):
        download_archive(ret.log, root, LEAD, "user_activity", "2022-02", "parquet")
    with pytest.raises(NotFound, match="no archive of user_activity for 2021-12"):
        download_archive(ret.log, root, LEAD, "user_activity", "2021-12", "parquet")
    assert events(ret.engine, "export.downloaded") == []


def test_impact_preview_counts_what_a_setting_would_do(
    ret: Retention, reader_engine: Engine
) -> None:
    fill(ret.log)
    frame = impact(reader_engine, "user_activity", 365, 3650)
    moved = frame.filter(pl.col("fate") == "moved to an archive")
    assert moved["events"].to_list() == [20, 20, 20]
    kept = frame.filter(pl.col("fate") == "kept in the table")["events"].sum()
    assert kept == 3
    held = impact(reader_engine, "user_activity", 365, 0, held=True)
    assert held["fate"].unique().to_list() == ["kept in the table"]


# --- the purge function and the deletion boundary ------------------------------------------
