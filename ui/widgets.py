"""Widgets shared by the pages: time zone, timeline filters, event tables, links, pager."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

import polars as pl
import streamlit as st

from auditlog import access
from auditlog.model import Category, Outcome
from auditlog.query.filters import Filters
from auditlog.query.timeline import format_times
from auditlog.selfaudit import view_key

TZ_KEY = "tz"
PRESETS = {"all": "All time", "15m": "Last 15 minutes", "1h": "Last hour",
           "24h": "Last 24 hours", "7d": "Last 7 days", "30d": "Last 30 days",
           "90d": "Last 90 days", "1y": "Last year", "custom": "Custom range"}  # fmt: skip
TABLE_COLUMNS = [
    "time",
    "category",
    "action",
    "outcome",
    "actor",
    "target",
    "source ip",
    "correlation id",
    "event id",
]


def offset_text(tz: str, at: datetime | None = None) -> str:
    """``UTC+01:00``: the offset of ``tz`` at ``at`` (now)."""
    off = (at or datetime.now(UTC)).astimezone(ZoneInfo(tz)).strftime("%z")
    return f"UTC{off[:3]}:{off[3:]}"


def timezone_picker() -> str:
    """Sidebar choice of the display time zone; the browser's zone is the default."""
    browser = st.context.timezone or "UTC"
    zones = list(dict.fromkeys([browser, "UTC", *sorted(available_timezones())]))
    with st.sidebar:
        tz = st.selectbox("Time zone", zones, key=TZ_KEY, help="Defaults to your browser's.")
        st.caption(f"Times are shown in {tz} ({offset_text(tz)} now).")
    return str(tz)


def current_tz() -> str:
    return str(st.session_state.get(TZ_KEY) or st.context.timezone or "UTC")


def local_time(value: datetime | None, tz: str) -> str:
    """A time in ``tz`` with its offset: ``2026-11-28 10:15:02 +01:00``."""
    if value is None:
        return "—"
    try:
        local = value.astimezone(ZoneInfo(tz))
    except OverflowError:  # year 1 or 9999 in UTC is year 0 or 10000 here: show it in UTC
        local = value.astimezone(UTC)
    text = local.strftime("%Y-%m-%d %H:%M:%S %z")
    return f"{text[:-2]}:{text[-2:]}"


def _naive_local(value: datetime | None, tz: str) -> datetime | None:
    if value is None:
        return None
    try:
        return value.astimezone(ZoneInfo(tz)).replace(tzinfo=None)
    except OverflowError:  # a filter at year 1 or 9999: the widget shows it in UTC
        return value.astimezone(UTC).replace(tzinfo=None)


def _aware(value: datetime | None, tz: str) -> datetime | None:
    return None if value is None else value.replace(tzinfo=ZoneInfo(tz))


def _time_widgets(f: Filters, tz: str, cols: list[Any]) -> dict[str, Any]:
    preset = f.last or ("custom" if f.time_from or f.time_to else "all")
    choice = cols[0].selectbox(
        "Time range",
        list(PRESETS),
        index=list(PRESETS).index(preset),
        format_func=PRESETS.__getitem__,
    )
    start = cols[1].datetime_input(
        "From",
        _naive_local(f.time_from, tz),
        format="YYYY-MM-DD",
        help=f"With 'Custom range': {tz} time, inclusive.",
    )
    end = cols[2].datetime_input(
        "To",
        _naive_local(f.time_to, tz),
        format="YYYY-MM-DD",
        help=f"With 'Custom range': {tz} time, exclusive.",
    )
    if choice == "custom":
        return {"time_from": _aware(start, tz), "time_to": _aware(end, tz)}
    return {"last": None if choice == "all" else choice}


def _choice_widgets(f: Filters, actions: pl.DataFrame, cols: list[Any]) -> dict[str, Any]:
    counts = dict(actions.iter_rows())
    options = list(dict.fromkeys([*counts, *f.actions]))
    cats = cols[0].multiselect("Category", [x.value for x in Category], default=f.categories)
    outs = cols[1].multiselect("Outcome", [x.value for x in Outcome], default=f.outcomes)
    acts = cols[2].multiselect(
        "Action", options, default=f.actions, format_func=lambda x: f"{x} ({counts.get(x, 0):,})"
    )
    return {"categories": tuple(cats), "actions": tuple(acts), "outcomes": tuple(outs)}


def _text_widgets(f: Filters, cols: list[Any]) -> dict[str, Any]:
    a, b, c, d, e, g, h = cols
    return {
        "actor": a.text_input("Actor", f.actor or "", help="UPN, display name or object id"),
        "target_type": b.text_input("Target type", f.target_type or ""),
        "target_id": c.text_input("Target id", f.target_id or ""),
        "target_name": d.text_input("Target name contains", f.target_name or ""),
        "ip": e.text_input("Source IP or CIDR", f.ip or "", placeholder="10.0.0.0/8"),
        "correlation_id": g.text_input("Correlation ID", f.correlation_id or ""),
        "text": h.text_input("Text in before / after / details", f.text or ""),
    }


def filter_form(f: Filters, actions: pl.DataFrame, tz: str) -> Filters | None:
    """The timeline's filters, initialised from ``f``; the new Filters when applied.

    The form is keyed by the current filters, so it always shows what the URL says.
    Raises InvalidFilter (naming the field) for a bad value.
    """
    key = view_key("timeline", f.to_query_params())[:12]
    with st.form(f"filters-{key}", border=True):
        row1 = st.columns([2, 2, 2, 3, 3])
        row2 = st.columns([5, 3, 2, 2])
        row3 = st.columns([3, 2, 3, 4])
        values = {**_time_widgets(f, tz, row1[:3]),
                  **_choice_widgets(f, actions, [*row1[3:], row2[0]]),
                  **_text_widgets(f, [*row2[1:], *row3])}  # fmt: skip
        applied = st.form_submit_button("Apply filters", type="primary")
    return Filters(**values) if applied else None


def events_table(rows: pl.DataFrame, tz: str, key: str) -> dict[str, Any] | None:
    """Events as a table (times in ``tz``); the selected row's event, if one is selected."""
    shown = format_times(rows, tz).select(
        pl.col("occurred_at_local").alias("time"),
        "category",
        "action",
        "outcome",
        pl.coalesce("actor_upn", "actor_name", "actor_id", "actor_oid").alias("actor"),
        pl.concat_str("target_type", pl.coalesce("target_name", "target_id"), separator=": ").alias(
            "target"
        ),
        pl.col("source_ip").alias("source ip"),
        pl.col("correlation_id").alias("correlation id"),
        pl.col("event_id").alias("event id"),
    )
    picked = st.dataframe(
        shown,
        key=key,
        hide_index=True,
        on_select="rerun",
        selection_mode="single-row",
        width="stretch",
    )
    selected = picked.selection.rows if picked is not None else []
    return rows.row(selected[0], named=True) if selected else None


def event_links(role: access.Role | None, event: dict[str, Any], here: str = "") -> None:
    """Links from one event to its diff and its correlation drilldown (as the role allows)."""
    cols = st.columns(2)
    if here != "diff" and access.allowed(role, "diff"):
        cols[0].page_link(
            "pages/diff.py",
            label="Open its before/after diff",
            icon=":material/difference:",
            query_params={"event": event["event_id"]},
        )
    cid = event.get("correlation_id")
    if cid and here != "correlation" and access.allowed(role, "correlation"):
        cols[1].page_link(
            "pages/correlation.py",
            label=f"Open correlation {cid}",
            icon=":material/hub:",
            query_params={"correlation_id": cid},
        )


def pager(state_key: str, next_cursor: str | None, shown: int, total: int, size: int) -> None:
    """Newer/Older buttons over a stack of keyset cursors kept in session state."""
    stack: list[str] = st.session_state.setdefault(state_key, [])
    first = len(stack) * size + 1 if shown else 0
    a, b, c = st.columns([1, 1, 4])
    if a.button("← Newer", disabled=not stack, key=f"{state_key}-newer"):
        stack.pop()
        st.rerun()
    if b.button("Older →", disabled=next_cursor is None, key=f"{state_key}-older") and next_cursor:
        stack.append(next_cursor)
        st.rerun()
    last = first + shown - 1 if shown else 0
    c.caption(f"Events {first:,}-{last:,} of {total:,}, newest first")
