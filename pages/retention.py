"""Retention: policies and legal holds, a change's impact before it is made, pending approvals,
the policy history as the audit log records it, and the archives (each downloadable once it
verifies, exactly as ``auditlog archive export`` hands it out).

Compliance leads change policies and holds (each change is logged with its reason); other
roles see the page read-only.
"""

from __future__ import annotations

import streamlit as st

from auditlog import access
from auditlog.errors import AuditLogError, IntegrityFailure
from auditlog.model import CATEGORIES
from auditlog.retention.view import (
    EXPORT_FORMATS,
    download_archive,
    downloadable,
    holds_frame,
    impact_figure,
    impact_totals,
    is_held,
    policies_frame,
    proposals_frame,
)
from ui import data, session
from ui import retention_data as rd

user = session.guard("retention", "Retention")
s = data.settings()
st.title("Retention")
session.viewed(user, "retention", "Retention", {})
editor = access.allowed(user.role, "retention.change")
try:
    ret = rd.retention(s)
    policies, holds, pending = ret.policies(), ret.holds(), ret.pending()
except AuditLogError as exc:
    session.stop_with_error(str(exc))
bounds = ret.settings
rules = ret.rules()  # the floor and approval rule the database itself enforces
floor = max(bounds.min_days, rules.floor_days)
approval = bounds.require_approval or rules.require_approval
if not editor:
    st.info(f"Read-only: the {user.role} role may view retention but not change it.")


def act(action: object) -> None:
    """Run a change; show why it was refused, or show the new state."""
    try:
        action()  # type: ignore[operator]
    except AuditLogError as exc:
        st.error(str(exc))
        return
    rd.clear()
    st.rerun()


st.subheader("Policies in force")
st.dataframe(policies_frame(policies), hide_index=True, width="stretch")
st.caption(
    f"A category without a policy is kept forever. Bounds: {floor}.."
    f"{bounds.max_days} days (the database refuses policies below {rules.floor_days} days); "
    f"approval by a second compliance lead is {'required' if approval else 'not required'}."
)

st.subheader("Legal holds")
st.dataframe(holds_frame(holds), hide_index=True, width="stretch")
if editor:
    with st.form("hold"):
        a, b = st.columns(2)
        cat, case = a.selectbox("Category", CATEGORIES), b.text_input("Case name")
        why = st.text_input("Reason")
        place, lift = st.columns(2)
        if place.form_submit_button("Place hold"):
            act(lambda: ret.place_hold(user.identity, user.role, cat, case, why))
        if lift.form_submit_button("Lift hold"):
            act(lambda: ret.lift_hold(user.identity, user.role, cat, case, why))

st.subheader("Change a policy")
category = st.selectbox("Category", CATEGORIES, key="policy.category")
now = policies[category]
a, b = st.columns(2)
days = int(
    a.number_input(
        "Keep in the table (days)",
        min_value=1,
        max_value=bounds.max_days,
        value=now.days if now else floor,
    )
)
archive_days = int(
    b.number_input(
        "Then keep archives (days)",
        min_value=0,
        max_value=bounds.max_archive_days,
        value=now.archive_days if now else 365,
    )
)
held = is_held(holds, category)
preview = rd.impact_preview(s, category, days, archive_days, held)
st.caption(
    f"Impact of {days} + {archive_days} days on {category}: "
    + ", ".join(f"{n:,} {fate}" for fate, n in impact_totals(preview).items())
    + (" (legal hold: nothing is purged)" if held else "")
)
st.plotly_chart(impact_figure(preview), width="stretch")
if editor:
    reason = st.text_area("Reason for the change (recorded in the audit log)")
    label = "Propose for approval" if approval else "Apply"
    if st.button(label, type="primary"):
        act(lambda: ret.set_policy(user.identity, user.role, category, days, archive_days, reason))

st.subheader("Pending approvals")
st.dataframe(proposals_frame(pending), hide_index=True, width="stretch")
if editor and pending:
    with st.form("decide"):
        change = st.selectbox("Change", [p.change_id for p in pending])
        note = st.text_input("Note or reason (a rejection needs one)")
        yes, no = st.columns(2)
        if yes.form_submit_button("Approve"):
            act(lambda: ret.approve(user.identity, user.role, change, note))
        if no.form_submit_button("Reject"):
            act(lambda: ret.reject(user.identity, user.role, change, note))

st.subheader("Policy history (from the audit log)")
st.dataframe(rd.history(s), hide_index=True, width="stretch")

st.subheader("Archives")
archives = rd.archives(s)
st.dataframe(archives, hide_index=True, width="stretch")
kept = downloadable(archives)
MIME = {"parquet": "application/vnd.apache.parquet", "csv": "text/csv"}
if kept.height:
    a, b = st.columns([3, 1])
    choice = a.selectbox("Download an archive", kept["path"].to_list())
    fmt = str(b.radio("Format", EXPORT_FORMATS, index=1, horizontal=True))
    # Verified on request (it reads every row), never on each rerun of the page.
    if st.button("Verify and prepare the download", icon=":material/verified:"):
        row = kept.row(kept["path"].to_list().index(choice), named=True)
        try:
            blob, name = download_archive(
                ret.log,
                bounds.archive_root(s.store.home),
                user.identity,
                row["category"],
                row["month"],
                fmt,
            )
        except IntegrityFailure as exc:
            st.error(f"This archive does not verify, so it is not handed out: {exc}")
        except AuditLogError as exc:
            st.error(str(exc))
        else:
            st.success(f"Verified: {name} (recorded as export.downloaded)")
            st.download_button(
                f"Download {name}",
                blob,
                file_name=name,
                mime=MIME[fmt],
                on_click="ignore",
                icon=":material/download:",
            )
