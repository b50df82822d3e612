"""Integrity: verify every hash chain and its signed checkpoints; the public key to check them.

Verification reads the whole log, so it runs on request; its result is kept for this view
until the next press. The public key lets anyone check checkpoints and evidence bundles
offline (``auditlog verify --bundle FILE``).
"""

from __future__ import annotations

from datetime import UTC, datetime

import streamlit as st

from auditlog.errors import AuditLogError
from auditlog.integrity.status import chains_frame, problems_frame
from auditlog.query.table import local_times
from ui import data, session, widgets
from ui import export_data as xd

KEY = "integrity.report"
user = session.guard("integrity", "Integrity")
tz, s = widgets.current_tz(), data.settings()
st.title("Integrity")
session.viewed(user, "integrity", "Integrity", {})

if st.button("Verify the whole log now", type="primary", icon=":material/verified_user:"):
    try:
        with st.spinner("Verifying every chain and checkpoint..."):
            st.session_state[KEY] = (datetime.now(UTC), xd.verify(s, user))
    except AuditLogError as exc:
        session.stop_with_error(f"Verification could not run: {exc}")
if KEY not in st.session_state:
    st.caption("Press the button to recompute every entry hash and check every signature.")
else:
    at, report = st.session_state[KEY]
    when = widgets.local_time(at, tz)
    if report.ok:
        chains = len(report.chains)
        st.success(
            f"Intact: {report.rows:,} entries in {chains} chains verified (hashes, "
            f"links, signed checkpoints) at {when}.",
            icon=":material/check:",
        )
    else:
        for p in report.problems:
            where = f"{p.category} seq {p.seq}" if p.seq is not None else p.category
            st.error(
                f"**Tampering or damage in {where}** ({p.kind}): {p.message}",
                icon=":material/gpp_bad:",
            )
        st.dataframe(problems_frame(report), hide_index=True, width="stretch")
        st.caption(f"Verified at {when}.")
    st.dataframe(chains_frame(report), hide_index=True, width="stretch")

st.subheader("Latest signed checkpoint per category")
try:
    checkpoints, keys, chain_tiers = xd.latest_checkpoints(s), xd.public_keys(s), xd.chain_tiers(s)
except AuditLogError as exc:
    session.stop_with_error(str(exc))
st.dataframe(local_times(checkpoints, tz), hide_index=True, width="stretch")

st.subheader("What vouches for each chain")
st.caption(
    "Tamper-detecting: signed by this log's own key only (whoever holds the database and the "
    "key could rewrite what no outside copy saw). Witnessed: independent witnesses cosigned "
    "it. Timestamped: a time-stamp authority vouches it existed by then. `auditlog verify "
    "--witness-key ... --tsa-anchor ...` checks the signatures themselves."
)
for tier in chain_tiers:
    st.markdown(f"**{tier.category}**: " + "; ".join(tier.tiers))
    if tier.note is not None:
        st.download_button(
            f"Download the {tier.category} checkpoint note",
            tier.note,
            file_name=f"auditlog-{tier.category}-checkpoint.txt",
            mime="text/plain",
            on_click="ignore",
            icon=":material/download:",
            key=f"note-{tier.category}",
        )

st.subheader("Public key")
if not keys:
    st.info("No signing key is registered yet; one is created with the first checkpoint.")
for key_id, pem, current in keys:
    st.markdown(f"Key `{key_id}`" + (" (signs new checkpoints)" if current else " (older)"))
    st.code(pem, language="text")
    st.download_button(
        f"Download public key {key_id}",
        pem,
        file_name=f"auditlog-{key_id}.pem",
        mime="application/x-pem-file",
        on_click="ignore",
        icon=":material/key:",
        key=f"pem-{key_id}",
    )
