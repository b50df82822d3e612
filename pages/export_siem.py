"""Export & SIEM: download the timeline's view as evidence; see and manage SIEM delivery.

The view's filters come in the URL (the timeline's query string). Every download is recorded
as ``export.downloaded``; every destination change as a ``configuration`` event (admins only;
secrets are entered here once and never shown or logged).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import streamlit as st

from auditlog import access
from auditlog.errors import AuditLogError
from auditlog.evidence.export import export_filename
from auditlog.query.filters import Filters
from auditlog.query.table import local_times
from auditlog.selfaudit import view_key
from ui import data, session, widgets
from ui import export_data as xd

user = session.guard("export", "Export & SIEM")
tz, s = widgets.current_tz(), data.settings()
st.title("Export & SIEM")
try:
    filters = Filters.from_query_params(session.query_params())
except AuditLogError as exc:
    session.stop_with_error(f"This link's filters are not usable: {exc}")
params = filters.to_query_params()
session.viewed(user, "export", "Export & SIEM", params)
vk = view_key("export", params)
if st.session_state.get("export.view", ("",))[0] != vk:
    st.session_state["export.view"] = (vk, datetime.now(UTC))
now: datetime = st.session_state["export.view"][1]
frozen = data.freeze(params)


def act(action: Callable[[], object], done: str) -> None:
    """Run an admin action; show why it failed, or show the new state."""
    try:
        result = action()
    except AuditLogError as exc:
        st.error(str(exc))
        return
    xd.clear()
    st.session_state["siem.done"] = result if isinstance(result, str) else done
    st.rerun()


st.subheader("Evidence")
shown = ", ".join(f"{k}={v}" for k, v in params.items()) or "none (every event)"
st.markdown(f"Filters from the timeline: **{shown}**")
st.page_link(
    "pages/timeline.py",
    label="Change them on the timeline",
    query_params=params,
    icon=":material/timeline:",
)
try:
    rows = xd.matching(s, frozen, now)
except AuditLogError as exc:
    session.stop_with_error(str(exc))
if rows > data.max_download_rows(s):
    st.info(
        f"{rows:,} events are more than a browser download holds "
        f"({data.max_download_rows(s):,}): narrow the filters or use `auditlog export`."
    )
elif access.allowed(user.role, "export.download"):
    actor = user.identity.actor()
    a, b = st.columns(2)
    a.download_button(
        f"Download NDJSON ({rows:,} events)",
        lambda: xd.ndjson_download(s, frozen, now, actor),
        file_name=export_filename("ndjson", now),
        on_click="ignore",
        mime="application/x-ndjson",
        icon=":material/download:",
    )
    b.download_button(
        "Download evidence bundle (ZIP)",
        lambda: xd.bundle_download(s, frozen, now, actor),
        file_name=export_filename("bundle", now),
        on_click="ignore",
        mime="application/zip",
        icon=":material/verified:",
        help="CSV + NDJSON + manifest signed with the checkpoint key",
    )
if access.allowed(user.role, "export.download"):
    xd.sample_panel(s, frozen, now, user.identity.actor(), vk)

st.subheader("SIEM destinations")
if done := st.session_state.pop("siem.done", None):
    st.success(done)
try:
    status, dead, dests = xd.siem_status(s), xd.dead_letters(s), xd.destinations(s)
except AuditLogError as exc:
    session.stop_with_error(f"SIEM status could not be read: {exc}")
st.dataframe(dests, hide_index=True, width="stretch", key="siem-destinations")
st.caption("Delivery per destination and category (lag, last delivered seq and time, errors)")
st.dataframe(local_times(status, tz), hide_index=True, width="stretch", key="siem-status")
st.caption(f"Dead letters: items a receiver rejected permanently ({dead.height:,})")
st.dataframe(local_times(dead, tz), hide_index=True, width="stretch", key="siem-dead")

if not access.allowed(user.role, "siem.configure"):
    st.info(f"Read-only: the {user.role} role may view SIEM delivery but not configure it.")
    st.stop()
if not dead.is_empty():
    st.subheader("Re-drive dead letters")
    st.caption("Once the receiver is fixed: each re-drive is recorded in the audit log.")
    redriven = xd.redrive_form(dead)
    if redriven is not None:
        chosen, why = redriven
        act(lambda: xd.redrive(s, user, chosen, why), "")
st.subheader("Add a destination")
added = xd.add_form()
if added is not None:
    dest, start, reason = added
    act(lambda: xd.add(s, user, dest, start, reason), f"Added {dest.name}")
names = dests["name"].to_list()
if names:
    st.subheader("Change, test or remove a destination")
    managed = xd.manage_form(names)
    if managed is not None:
        what, name, changes, reason = managed
        run: dict[str, Callable[[], object]] = {
            "change": lambda: xd.change(s, user, name, reason, **changes),
            "test": lambda: xd.send_test_message(s, user, name),
            "remove": lambda: xd.remove(s, user, name, reason),
        }
        act(run[what], f"{what.title()}d {name}" if what != "test" else "")
