"""Timeline search: filter the log, see events over time, page through them newest first.

The filters live in the URL query string (bookmark or share the view). A view is a snapshot
as of the moment it was opened; Refresh takes a new one.
"""

from __future__ import annotations

from datetime import UTC, datetime

import streamlit as st

from auditlog import charts
from auditlog.errors import AuditLogError
from auditlog.query.filters import Filters
from auditlog.selfaudit import view_key
from ui import data, session, widgets

user = session.guard("timeline", "Timeline")
tz, s = widgets.current_tz(), data.settings()
st.title("Timeline")
try:
    filters = Filters.from_query_params(session.query_params())
except AuditLogError as exc:
    st.error(f"This link's filters are not usable ({exc}); showing all events instead.")
    filters = Filters()
params = filters.to_query_params()
session.viewed(user, "timeline", "Timeline", params)

vk = view_key("timeline", params)
if st.session_state.get("timeline.view", ("",))[0] != vk:
    st.session_state["timeline.view"] = (vk, datetime.now(UTC))
now: datetime = st.session_state["timeline.view"][1]
frozen = data.freeze(params)

try:
    new = widgets.filter_form(filters, data.action_counts(s, frozen, now), tz)
    if new is not None and new != filters:
        st.query_params.from_dict(new.to_query_params())
        st.rerun()
    stack_key = f"timeline.pages.{vk}.{now.timestamp()}"
    stack: list[str] = st.session_state.get(stack_key, [])
    result = data.timeline(s, frozen, tz, now)
    page = data.search(s, frozen, stack[-1], now) if stack else result.page
except AuditLogError as exc:  # QueryTimeout says which filter to narrow or setting to raise
    session.stop_with_error(str(exc))

head, refresh = st.columns([5, 1])
head.markdown(f"**{result.count:,}** events match · as of {widgets.local_time(now, tz)}")
if refresh.button("Refresh", icon=":material/refresh:"):
    st.session_state.pop("timeline.view", None)
    st.rerun()
if result.count <= data.max_download_rows(s):
    st.download_button(
        "Download CSV",
        lambda: data.csv_download(s, frozen, now, user.identity.actor()),
        file_name=f"auditlog-{now:%Y%m%dT%H%M%SZ}.csv",
        mime="text/csv",
        icon=":material/download:",
        on_click="ignore",
        help="Every matching event with its chain fields; recorded as export.downloaded",
    )
else:
    st.info(
        f"{result.count:,} events are more than a browser download holds "
        f"({data.max_download_rows(s):,}): narrow the filters or use `auditlog export`."
    )
st.page_link(
    "pages/export_siem.py",
    label="NDJSON or evidence bundle of this view",
    icon=":material/inventory:",
    query_params=params,
)
st.plotly_chart(charts.histogram_figure(result.histogram, tz, result.bucket), width="stretch")

selected = widgets.events_table(page.rows, tz, key=f"rows-{vk}-{len(stack)}")
widgets.pager(stack_key, page.next_cursor, page.rows.height, result.count, page.page_size)
if selected is None:
    st.caption("Select a row to open its diff or its correlation drilldown.")
else:
    st.subheader(f"{selected['action']} · {selected['outcome']}")
    st.caption(f"event {selected['event_id']} · {widgets.local_time(selected['occurred_at'], tz)}")
    widgets.event_links(user.role, selected)
