"""The audit log dashboard: sign-in, role gate, navigation. Run: ``streamlit run app.py``."""

from __future__ import annotations

import streamlit as st

from auditlog import access
from ui import data, nav, session, widgets

st.set_page_config(page_title="Audit log", page_icon=":material/policy:", layout="wide")

settings = data.settings()  # read once per run, passed on
providers = session.auth_providers()
identity = session.identify(providers, settings)
if identity is None:
    st.navigation([st.Page(lambda: session.login_screen(providers or []), title="Sign in")]).run()
    st.stop()

user = session.sign_in(identity, settings)
if user.role is None:
    st.navigation([st.Page(lambda: session.no_role(user.identity), title="No access")]).run()
    st.stop()

sections, specs = nav.build(user.role)
page = st.navigation(sections)
session.sidebar(user)
widgets.timezone_picker()
spec = specs[page.url_path]
if not access.allowed(user.role, spec.key):
    session.refuse(user, spec.key, spec.title)
page.run()
