"""Sign-in, roles and self-audit for one browser session.

With an ``[auth]`` section in ``.streamlit/secrets.toml`` users sign in with ``st.login``
(OIDC, e.g. Entra ID); without one the dashboard runs as the local operator
(``AUDITLOG_USER``, default the OS user). Roles come from the settings' ``roles`` section (see
:mod:`auditlog.access`). Every sign-in and each distinct view is recorded
(:mod:`auditlog.selfaudit`); when that fails the dashboard shows nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import streamlit as st
from streamlit.errors import StreamlitSecretNotFoundError

from auditlog import access
from auditlog.access import Identity, Role
from auditlog.errors import AuditLogError
from auditlog.selfaudit import FilterValue, SelfAudit
from auditlog.settings import Settings
from ui import data

USER_KEY = "auditlog.user"
AUDIT_KEY = "auditlog.selfaudit"
T = TypeVar("T")


@dataclass(frozen=True)
class User:
    """Who is looking, with which role, and the session's self-audit."""

    identity: Identity
    role: Role | None
    audit: SelfAudit


def auth_providers() -> list[str] | None:
    """None without an ``[auth]`` secrets section, else its named providers ([] = default)."""
    try:
        section = st.secrets.get("auth")
    except (FileNotFoundError, StreamlitSecretNotFoundError):
        return None
    if not isinstance(section, Mapping):
        return None
    return [name for name, value in section.items() if isinstance(value, Mapping)]


def stop_with_error(message: str) -> NoReturn:
    """Show ``message`` as the page's error and end this run (``st.stop`` raises)."""
    st.error(message, icon=":material/block:")
    st.stop()


def recorded(action: Callable[[], T]) -> T:
    """Run a self-audit write; fail closed (show why, render nothing) when it fails."""
    try:
        return action()
    except AuditLogError as exc:
        stop_with_error(
            "The dashboard could not record this access in the audit log, so it shows "
            f"nothing (every sign-in and view is audited). Cause: {exc}"
        )


def login_screen(providers: list[str]) -> None:
    """The page shown before an OIDC sign-in."""
    st.title("Audit log")
    st.write("Sign in with your organisation account to search the audit log.")
    for name in providers or [""]:
        label = f"Sign in with {name.title()}" if name else "Sign in"
        if st.button(label, type="primary", key=f"login-{name}"):
            st.login(name or None)


def identify(providers: list[str] | None, settings: Settings) -> Identity | None:
    """The identity of this session, or None when an OIDC user has not signed in yet."""
    if providers is None:
        return access.local_identity(settings.dashboard.user)
    if not st.user.get("is_logged_in"):
        return None
    try:
        return access.oidc_identity(st.user.to_dict())
    except AuditLogError as exc:
        stop_with_error(str(exc))


def _self_audit(identity: Identity, settings: Settings) -> SelfAudit:
    audit: SelfAudit | None = st.session_state.get(AUDIT_KEY)
    if audit is None or audit.identity != identity:
        ip, agent = st.context.ip_address, st.context.headers.get("User-Agent")
        ip = ip if isinstance(ip, str) and ip else None  # None in tests and some proxies
        log = recorded(lambda: data.writer(settings))
        audit = SelfAudit(log, identity, source_ip=ip, user_agent=agent)
        st.session_state[AUDIT_KEY] = audit
    return audit


def sign_in(identity: Identity, settings: Settings) -> User:
    """Give ``identity`` its role and record the sign-in (once per session)."""
    try:
        role = access.roles_config(settings.roles).role_of(identity)
    except AuditLogError as exc:
        stop_with_error(f"Roles could not be loaded: {exc}")
    audit = _self_audit(identity, settings)
    recorded(lambda: audit.login(role))
    user = User(identity, role, audit)
    st.session_state[USER_KEY] = user
    return user


def current() -> User:
    """The signed-in user of this run (set by ``app.py`` before a page runs)."""
    user: User | None = st.session_state.get(USER_KEY)
    if user is None:
        stop_with_error("Open the dashboard through app.py (streamlit run app.py).")
    return user


def no_role(identity: Identity) -> None:
    """What a user with no role sees: nothing but this message."""
    st.title("No access")
    st.error(
        f"You are signed in as **{identity.user}**, but no role is assigned to you, so the "
        "audit log shows you nothing. Ask an administrator to add your user name or one of "
        "your Entra groups under `[roles.users]` or `[roles.groups]` in `auditlog.toml`.",
        icon=":material/lock:",
    )


def refuse(user: User, key: str, title: str) -> NoReturn:
    """Refuse a page the role may not use: record the attempt, say why, show nothing else."""
    recorded(lambda: user.audit.viewed(key, title, {}, outcome="denied"))
    who = f"the {user.role} role" if user.role else "no role"
    need = ", ".join(r for r in access.ROLES if r in access.PERMISSIONS[key])
    stop_with_error(f"{title} is not available to {who}; it needs one of: {need}.")


def guard(key: str, title: str) -> User:
    """First call of every page: the current user, refused unless their role allows ``key``."""
    user = current()
    if not access.allowed(user.role, key):
        refuse(user, key, title)
    return user


def viewed(user: User, key: str, title: str, filters: Mapping[str, FilterValue]) -> None:
    """Record this view (once per distinct page and filters in the session)."""
    recorded(lambda: user.audit.viewed(key, title, filters))


def sidebar(user: User) -> None:
    """Who is signed in, with which role; sign-out for OIDC users."""
    with st.sidebar:
        name = user.identity.display_name or user.identity.user
        st.caption(f"Signed in as **{name}** · role: **{user.role or 'none'}**")
        if user.identity.method == "oidc" and st.button("Sign out", key="logout"):
            st.session_state.pop(AUDIT_KEY, None)
            st.logout()


def query_params() -> dict[str, Any]:
    """The page's URL query params, each key with all its values."""
    return {k: st.query_params.get_all(k) for k in st.query_params}
