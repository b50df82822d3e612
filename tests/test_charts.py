"""Plotly figures as pure functions: checked on the figure object, no browser."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import plotly.graph_objects as go
import polars as pl

from auditlog.charts import (
    CATEGORY_COLOURS,
    OUTCOME_SYMBOLS,
    correlation_timeline_figure,
    histogram_figure,
)
from auditlog.query.table import ROW_SCHEMA

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def hist_frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "bucket": [T0, T0, T0 + HOUR, T0 + 2 * HOUR],
            "category": ["governance", "configuration", "governance", "user_activity"],
            "n": [3, 1, 2, 5],
        },
        schema={"bucket": pl.Datetime("us", "UTC"), "category": pl.String, "n": pl.Int64},
    )


def corr_frame() -> pl.DataFrame:
    rows = [
        ("e1", T0, "configuration", "policy.updated", "success", "alice@contoso.com", None),
        ("e2", T0 + HOUR, "governance", "approval.decided", "denied", None, "Bob Bauer"),
        ("e3", T0 + 2 * HOUR, "governance", "automation.executed", "failure", None, "Bot"),
    ]
    base = {k: None for k in ROW_SCHEMA}
    data = [
        base
        | dict(
            zip(
                [
                    "event_id",
                    "occurred_at",
                    "category",
                    "action",
                    "outcome",
                    "actor_upn",
                    "actor_name",
                ],
                r,
                strict=True,
            )
        )
        | {"target_id": "t"}
        for r in rows
    ]
    return pl.DataFrame(data, schema=ROW_SCHEMA)


def test_histogram_stacks_one_bar_trace_per_category_in_fixed_colours() -> None:
    fig = histogram_figure(hist_frame(), bucket=HOUR)
    assert isinstance(fig, go.Figure)
    assert fig.layout.barmode == "stack"
    assert [t.name for t in fig.data] == ["configuration", "governance", "user_activity"]
    assert [t.marker.color for t in fig.data] == list(CATEGORY_COLOURS.values())
    governance = fig.data[1]
    assert list(governance.y) == [3, 2]
    assert governance.width == HOUR.total_seconds() * 1000 * 0.95


def test_histogram_bars_are_centred_in_their_bucket_in_the_viewers_zone() -> None:
    fig = histogram_figure(hist_frame(), tz="Asia/Kolkata", bucket=HOUR)
    first = fig.data[0]
    # 10:00 UTC is 15:30 in Kolkata; the bar's centre is half a bucket later.
    assert first.x[0] == datetime(2026, 3, 1, 16, 0)
    assert first.customdata[0] == "2026-03-01 15:30:00 +05:30"
    assert fig.layout.xaxis.title.text == "time (Asia/Kolkata, UTC+05:30)"
    assert fig.layout.yaxis.title.text == "events per hour"


def test_histogram_infers_bucket_width_from_the_data() -> None:
    fig = histogram_figure(hist_frame())
    assert fig.data[0].width == HOUR.total_seconds() * 1000 * 0.95


def test_histogram_axis_shows_both_offsets_across_a_dst_change() -> None:
    frame = pl.DataFrame(
        {
            "bucket": [datetime(2026, 3, 20, tzinfo=UTC), datetime(2026, 4, 2, tzinfo=UTC)],
            "category": ["governance"] * 2,
            "n": [1, 1],
        }
    )
    fig = histogram_figure(frame, tz="Europe/Oslo", bucket=timedelta(days=1))
    assert fig.layout.xaxis.title.text == "time (Europe/Oslo, UTC+01:00 / UTC+02:00)"


def test_empty_histogram_says_so() -> None:
    frame = hist_frame().clear()
    fig = histogram_figure(frame)
    assert fig.data == ()
    assert fig.layout.annotations[0].text == "no events match"


def test_correlation_timeline_marks_failures_and_denials_with_their_own_symbols() -> None:
    fig = correlation_timeline_figure(corr_frame())
    assert [t.name for t in fig.data] == ["configuration", "governance"]
    configuration, governance = fig.data
    assert list(configuration.marker.symbol) == [OUTCOME_SYMBOLS["success"]]
    assert list(governance.marker.symbol) == ["diamond", "x"]
    assert governance.marker.color == CATEGORY_COLOURS["governance"]


def test_correlation_timeline_plots_time_against_actor_labelled_by_action() -> None:
    fig = correlation_timeline_figure(corr_frame(), tz="UTC")
    configuration, governance = fig.data
    assert list(configuration.y) == ["alice@contoso.com"]
    assert list(governance.y) == ["Bob Bauer", "Bot"]
    assert list(governance.text) == ["approval.decided", "automation.executed"]
    assert governance.x[0] == datetime(2026, 3, 1, 11, 0)


def test_correlation_points_carry_their_event_id_for_selection() -> None:
    fig = correlation_timeline_figure(corr_frame())
    ids = [point[0] for trace in fig.data for point in trace.customdata]
    assert sorted(ids) == ["e1", "e2", "e3"]


def test_empty_correlation_says_so() -> None:
    fig = correlation_timeline_figure(corr_frame().clear())
    assert fig.layout.annotations[0].text == "no events match"


def test_figures_serialise_to_json() -> None:
    for fig in (histogram_figure(hist_frame()), correlation_timeline_figure(corr_frame())):
        assert fig.to_json().startswith("{")
