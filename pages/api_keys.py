"""API keys of the HTTP ingestion service (docs/api.md): list, create, rotate, revoke.

Admins only. Each change is an audit event with the signed-in admin as its actor (recorded by
:mod:`auditlog.apikeys.admin`). A new key is shown once: see :mod:`ui.apikey_data`.
"""

from __future__ import annotations

import streamlit as st

from auditlog import access
from auditlog.apikeys.admin import create_key
from auditlog.apikeys.keys import SCOPES
from auditlog.errors import AuditLogError
from ui import apikey_data as kd
from ui import data, session, widgets

user = session.guard("api_keys", "API keys")
s, tz = data.settings(), widgets.current_tz()
st.title("API keys")
session.viewed(user, "api_keys", "API keys", {})
st.caption(
    "Keys with which the platform's services call the ingestion API (`Authorization: Bearer "
    "KEY`). Only a hash of each key is stored; a key is shown once, when it is made."
)
listing = st.container()  # drawn last, so it shows this run's change
manage = access.allowed(user.role, "api_keys.manage")

if manage:
    st.subheader("Create a key")
    with st.form("apikey.create"):
        name = st.text_input("Name", help="the service using it: 1-64 letters, digits, . _ -")
        scopes = st.multiselect("Scopes", SCOPES, help="write per category, write:* or read")
        allow = st.text_area(
            "Allowed source addresses",
            help="IPv4/IPv6 addresses or CIDRs, one per line or comma-separated; empty: any",
        )
        a, b = st.columns(2)
        rate = a.number_input("Rate (events/s)", min_value=0.01, value=s.api.default_rate)
        burst = b.number_input("Burst (events)", min_value=1, value=s.api.default_burst)
        if st.form_submit_button("Create key", type="primary"):
            try:
                created = create_key(
                    kd.manager(s), user.identity, name, scopes, kd.parse_allow(allow),
                    float(rate), int(burst),
                )  # fmt: skip
            except AuditLogError as exc:
                st.error(f"The key was not created: {exc}")
            else:
                st.success(f"Created API key {created.info.name} ({created.info.key_id}).")
                kd.show_key(created)

with listing:
    revoked = st.toggle("Show revoked keys", key="apikey.revoked")
    try:
        infos = kd.keys(s, include_revoked=revoked)
    except AuditLogError as exc:
        session.stop_with_error(f"The keys could not be read: {exc}")
    st.dataframe(kd.keys_frame(infos, tz), hide_index=True, width="stretch")

if manage:
    st.subheader("Rotate or revoke a key")
    outcome = kd.pop_outcome()
    if outcome is not None:
        kd.show_outcome(outcome)
    active = {k.name: k for k in infos if k.active}
    if not active:
        st.caption("No active keys.")
    else:
        key = active[str(st.selectbox("Key", list(active), key="apikey.target"))]
        # Widgets keyed by the key id: after a change the next key's are new (and empty), and
        # a repeated press of this key's button (a double click) finds no widget to trigger.
        confirm = f"apikey.confirm.{key.key_id}"
        st.text_input(f"Type {key.name} to confirm", key=confirm)
        a, b = st.columns(2)
        for col, verb in ((a, "rotate"), (b, "revoke")):
            col.button(
                verb.title(),
                key=f"apikey.{verb}.{key.key_id}",
                on_click=kd.change,
                args=(verb, s, user, key, confirm),
            )
        st.caption("Rotate gives the key a new secret; the old one stops working at once.")
