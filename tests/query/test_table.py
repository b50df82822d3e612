"""Frames for display: time columns shown in the viewer's zone."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest

from auditlog.errors import InvalidFilter
from auditlog.query.table import local_times


def test_local_times_shows_every_aware_time_column_in_the_zone_and_keeps_the_instant() -> None:
    at = datetime(2026, 1, 15, 12, tzinfo=UTC)
    frame = pl.DataFrame(
        {"n": [1], "created_at": [at], "retry_at": [None]},
        schema={
            "n": pl.Int64,
            "created_at": pl.Datetime("us", "UTC"),
            "retry_at": pl.Datetime("us", "UTC"),
        },
    )
    shown = local_times(frame, "Asia/Kolkata")
    assert shown.schema["created_at"] == pl.Datetime("us", "Asia/Kolkata")
    assert shown.schema["retry_at"] == pl.Datetime("us", "Asia/Kolkata")
    assert shown["created_at"][0] == at
    assert shown["created_at"][0].strftime("%H:%M %z") == "17:30 +0530"
    assert shown["n"].to_list() == [1]


def test_local_times_refuses_an_unknown_zone_naming_it() -> None:
    with pytest.raises(InvalidFilter, match="Mars/Olympus"):
        local_times(pl.DataFrame({"n": [1]}), "Mars/Olympus")
