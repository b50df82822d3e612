"""Plotly figures for the dashboard: pure functions ``frame -> go.Figure``.

Times are drawn as wall-clock times in the viewer's zone ``tz`` (Plotly has no time zones),
and every hover label and axis title shows the UTC offset, so a time is never ambiguous.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import plotly.graph_objects as go
import polars as pl

CATEGORY_COLOURS: dict[str, str] = {
    "configuration": "#1f77b4",
    "governance": "#ff7f0e",
    "user_activity": "#2ca02c",
}
OTHER_COLOUR = "#7f7f7f"
OUTCOME_SYMBOLS: dict[str, str] = {"success": "circle", "failure": "x", "denied": "diamond"}
_STAMP = "%Y-%m-%d %H:%M:%S %:z"


def _drawable(x: pl.Expr) -> pl.Expr:
    """Naive times clamped to what Python's datetime holds (years 1..9999): a stored time
    near either end may be in year 0 or 10000 on a viewer's wall clock, or after half a
    bucket is added. The point is drawn at the edge; its label (``_when``) stays exact."""
    return x.clip(datetime.min, datetime.max)


def _local(frame: pl.DataFrame, column: str, tz: str) -> pl.DataFrame:
    """Add ``_x`` (naive wall-clock time in ``tz``, drawable) and ``_when`` (text with
    offset)."""
    local = pl.col(column).dt.convert_time_zone(tz)
    return frame.with_columns(
        _drawable(local.dt.replace_time_zone(None)).alias("_x"),
        local.dt.strftime(_STAMP).alias("_when"),
    )


def _axis_title(frame: pl.DataFrame, tz: str) -> str:
    """``time (Europe/Oslo, UTC+01:00)``; both offsets when the range crosses a DST change."""
    offsets = list(dict.fromkeys(w[-6:] for w in frame.get_column("_when").to_list()))
    shown = " / ".join(
        f"UTC{o}" for o in (offsets[:1] + offsets[-1:] if len(offsets) > 1 else offsets)
    )
    return f"time ({tz}, {shown})" if shown else f"time ({tz})"


def _categories(frame: pl.DataFrame) -> list[str]:
    present = set(frame.get_column("category").unique().to_list())
    return [c for c in CATEGORY_COLOURS if c in present] + sorted(present - set(CATEGORY_COLOURS))


def _empty(title: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text="no events match", showarrow=False, xref="paper", yref="paper")
    fig.update_layout(title=title, xaxis_visible=False, yaxis_visible=False, height=260)
    return fig


def _bucket_of(frame: pl.DataFrame) -> timedelta:
    steps = frame.get_column("bucket").unique().sort().diff().drop_nulls()
    return steps.min() if len(steps) else timedelta(hours=1)  # type: ignore[return-value]


def histogram_figure(
    frame: pl.DataFrame, tz: str = "UTC", bucket: timedelta | None = None
) -> go.Figure:
    """Stacked bars of events over time by category, from :func:`auditlog.query.histogram`
    (columns bucket, category, n). Each bar spans its bucket (``bucket``, or the smallest gap
    between buckets); times are in ``tz`` with the offset in the axis title and hover."""
    title = "Events over time"
    if frame.is_empty():
        return _empty(title)
    bucket = bucket or _bucket_of(frame)
    data = _local(frame, "bucket", tz).with_columns(
        _drawable(pl.col("_x") + bucket / 2).alias("_mid")
    )
    fig = go.Figure()
    for category in _categories(data):
        part = data.filter(pl.col("category") == category)
        fig.add_bar(
            x=part.get_column("_mid").to_list(),
            y=part.get_column("n").to_list(),
            width=bucket.total_seconds() * 1000 * 0.95,
            name=category,
            marker_color=CATEGORY_COLOURS.get(category, OTHER_COLOUR),
            customdata=part.get_column("_when").to_list(),
            hovertemplate=f"%{{customdata}}<br>{category}: %{{y}}<extra></extra>",
        )
    fig.update_layout(
        title=title,
        barmode="stack",
        xaxis_title=_axis_title(data, tz),
        yaxis_title=f"events per {_span_text(bucket)}",
        legend_title="category",
        height=320,
        margin={"t": 40, "b": 40},
    )
    return fig


def _span_text(step: timedelta) -> str:
    minutes = int(step.total_seconds() // 60)
    for unit, size in (("week", 10080), ("day", 1440), ("hour", 60)):
        if minutes % size == 0:
            n = minutes // size
            return unit if n == 1 else f"{n} {unit}s"
    return "minute" if minutes == 1 else f"{minutes} minutes"


def _actor_label() -> pl.Expr:
    return pl.coalesce("actor_upn", "actor_name", "actor_id", "actor_oid", pl.lit("?"))


def correlation_timeline_figure(frame: pl.DataFrame, tz: str = "UTC") -> go.Figure:
    """Time vs actor for a :func:`auditlog.query.correlation` frame, each marker labelled with
    its action: colour by category, symbol by outcome (success circle, failure x, denied
    diamond, drawn larger). Each point's ``customdata[0]`` is its event_id (for selection)."""
    title = "Correlated events"
    if frame.is_empty():
        return _empty(title)
    data = _local(frame, "occurred_at", tz).with_columns(_actor_label().alias("_actor"))
    fig = go.Figure()
    for category in _categories(data):
        part = data.filter(pl.col("category") == category)
        outcomes = part.get_column("outcome").to_list()
        fig.add_scatter(
            x=part.get_column("_x").to_list(),
            y=part.get_column("_actor").to_list(),
            mode="markers+text",
            text=part.get_column("action").to_list(),
            textposition="top center",
            name=category,
            marker={
                "color": CATEGORY_COLOURS.get(category, OTHER_COLOUR),
                "symbol": [OUTCOME_SYMBOLS.get(o, "circle") for o in outcomes],
                "size": [11 if o == "success" else 15 for o in outcomes],
                "line": {"width": 1, "color": "#333"},
            },
            customdata=part.select("event_id", "_when", "outcome", "target_id").rows(),
            hovertemplate=(
                "%{customdata[1]}<br>%{y}<br>%{text} → %{customdata[3]}"
                "<br>outcome: %{customdata[2]}<extra>%{fullData.name}</extra>"
            ),
        )
    fig.update_layout(
        title=title,
        xaxis_title=_axis_title(data, tz),
        yaxis_title="actor",
        legend_title="category (x = failure, ◆ = denied)",
        height=max(260, 80 + 40 * data.get_column("_actor").n_unique()),
        margin={"t": 40, "b": 40},
    )
    return fig
