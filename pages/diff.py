"""Before/after diff of one event, then the change story of the same target."""

from __future__ import annotations

import polars as pl
import streamlit as st

from auditlog import diff
from auditlog.errors import AuditLogError
from auditlog.query.timeline import format_times
from ui import data, session, widgets

user = session.guard("diff", "Before/after diff")
tz, s = widgets.current_tz(), data.settings()
st.title("Before/after diff")

given = st.query_params.get("event", "")
typed = st.text_input("Event ID", given, placeholder="an event_id (UUID)").strip()
if typed != given:
    st.query_params.from_dict({"event": typed} if typed else {})
    st.rerun()
if not typed:
    st.info("Type an event ID, or select an event on the Timeline and open its diff.")
    st.stop()
try:
    event = data.event(s, typed)
except AuditLogError as exc:
    session.stop_with_error(str(exc))
session.viewed(user, "diff", "Before/after diff", {"event": event["event_id"]})

actor = event["actor"]
who = actor.get("upn") or actor.get("display_name") or actor.get("id")
target = event["target"]
st.markdown(
    f"**{event['action']}** · {event['outcome']} · {event['category']} #{event['seq']}  \n"
    f"**When** {widgets.local_time(event['occurred_at'], tz)} · **Who** {who}  \n"
    f"**Target** {target['type']}: {target.get('name') or target['id']} (`{target['id']}`)"
)
widgets.event_links(user.role, event, here="diff")

before, after = event["before"], event["after"]
kind = diff.change_kind(before, after)
changes = diff.diff(before, after)
if kind == "none":
    st.info("This event recorded no before or after state.")
elif kind == "created":
    st.success("Creation: there was no before state; everything after is new.")
elif kind == "deleted":
    st.warning("Deletion: there is no after state; everything before was removed.")
else:
    st.markdown(f"**{diff.summary(changes)}**")
if kind != "none":
    st.dataframe(diff.changes_frame(changes), hide_index=True, width="stretch")
    left, right = st.columns(2)
    old, new = diff.highlighted(before, after)
    left.markdown("**Before**")
    left.html(diff.lines_html(old) if old else "<em>no before state (created)</em>")
    right.markdown("**After**")
    right.html(diff.lines_html(new) if new else "<em>no after state (deleted)</em>")

st.subheader(f"Change story of {target['type']} {target.get('name') or target['id']}")
story = data.target_history(s, target["type"], target["id"])
shown = format_times(story, tz).select(
    pl.col("occurred_at_local").alias("time"),
    "action",
    "outcome",
    pl.coalesce("actor_upn", "actor_name", "actor_id", "actor_oid").alias("actor"),
    pl.col("summary").alias("change"),
    ("?event=" + pl.col("event_id")).alias("diff"),
    (pl.col("event_id") == event["event_id"]).alias("this event"),
)
link = st.column_config.LinkColumn("diff", display_text="open diff")
st.dataframe(shown, hide_index=True, width="stretch", column_config={"diff": link})
