"""Correlation drilldown: every event sharing one correlation ID, across categories, in order."""

from __future__ import annotations

import polars as pl
import streamlit as st

from auditlog import charts
from auditlog.query.drilldown import correlation_summary
from auditlog.query.timeline import format_times
from ui import data, session, widgets

user = session.guard("correlation", "Correlation")
tz, s = widgets.current_tz(), data.settings()
st.title("Correlation drilldown")

given = st.query_params.get("correlation_id", "")
typed = st.text_input("Correlation ID", given, placeholder="e.g. chg-1a2b3c4d")
cid = typed.strip()
if cid != given:
    st.query_params.from_dict({"correlation_id": cid} if cid else {})
    st.rerun()
if not cid:
    st.info("Type a correlation ID, or select an event on the Timeline and open its correlation.")
    st.stop()
session.viewed(user, "correlation", "Correlation", {"correlation_id": cid})

frame = data.correlation(s, cid)
if frame.is_empty():
    session.stop_with_error(f"No events carry correlation ID {cid!r}.")
summary = correlation_summary(frame)

a, b, c, d = st.columns(4)
a.metric("Events", f"{summary.events:,}")
b.metric("Actors", len(summary.actors))
c.metric("Targets", len(summary.targets))
d.metric("Span", str(summary.span).split(".")[0])
first, last = widgets.local_time(summary.first, tz), widgets.local_time(summary.last, tz)
st.markdown(
    f"**From** {first} **to** {last}"
    f"  \n**Outcomes:** {', '.join(f'{k} {v}' for k, v in summary.outcomes.items())}"
    f"  \n**Categories:** {', '.join(f'{k} {v}' for k, v in summary.categories.items())}"
    f"  \n**Actors:** {', '.join(summary.actors)}  \n**Targets:** {', '.join(summary.targets)}"
)
st.plotly_chart(charts.correlation_timeline_figure(frame, tz), width="stretch")

st.subheader("Events, oldest first")
links = frame.with_columns(("diff?event=" + pl.col("event_id")).alias("diff"))
shown = format_times(links, tz).select(
    pl.col("occurred_at_local").alias("time"),
    "diff",
    "category",
    "action",
    "outcome",
    pl.coalesce("actor_upn", "actor_name", "actor_id", "actor_oid").alias("actor"),
    pl.concat_str("target_type", pl.coalesce("target_name", "target_id"), separator=": ").alias(
        "target"
    ),
)
link = st.column_config.LinkColumn("diff", display_text="open diff")
picked = st.dataframe(
    shown,
    hide_index=True,
    width="stretch",
    column_config={"diff": link},
    on_select="rerun",
    selection_mode="single-row",
    key=f"corr-{cid}",
)
rows = picked.selection.rows if picked is not None else []
if rows:
    widgets.event_links(user.role, frame.row(rows[0], named=True), here="correlation")
