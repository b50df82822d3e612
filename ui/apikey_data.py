"""Glue of the API keys page (beside :mod:`ui.data`): the log that changes keys, the key list as
a table, the allow-list as typed, rotate and revoke as confirmed button callbacks, and the
one-time display of a new key.

A new key's text is never kept: create shows it in the run its form was submitted in (a local
of that run); rotate stores it in :data:`RESULT_KEY` from the button's callback, and the page
pops it while drawing that same run. Either way the next rerun or page change shows it no more.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import polars as pl
import streamlit as st

from auditlog import access
from auditlog.apikeys.admin import (
    ApiKeyInfo,
    CreatedKey,
    get_key,
    list_keys,
    revoke_key,
    rotate_key,
)
from auditlog.db.server import connect
from auditlog.errors import AuditLogError
from auditlog.identity.directory import Directory
from auditlog.integrity.keyadmin import open_registered
from auditlog.settings import Settings
from auditlog.store import AuditLog
from ui import data, widgets
from ui.session import User

RESULT_KEY = "apikeys.result"
Verb = Literal["rotate", "revoke"]
SCHEMA: dict[str, type[pl.DataType]] = {
    "name": pl.String,
    "key id": pl.String,
    "prefix": pl.String,
    "scopes": pl.String,
    "allowed from": pl.String,
    "rate /s": pl.Float64,
    "burst": pl.Int64,
    "status": pl.String,
    "created": pl.String,
    "created by": pl.String,
    "last rotated": pl.String,
    "rotated from": pl.String,
    "revoked": pl.String,
    "revoked by": pl.String,
}


@dataclass(frozen=True)
class Outcome:
    """What a rotate or revoke press did, for the page to show once."""

    level: Literal["success", "warning", "error"]
    message: str
    created: CreatedKey | None = None


def _close(log: AuditLog) -> None:
    log.close()


@st.cache_resource(show_spinner=False, on_release=_close)
def manager(settings: Settings) -> AuditLog:
    """The log that changes keys: the dashboard's login acting as ``auditlog_apikeys``, which
    calls the SECURITY DEFINER functions and appends each change's event on one engine."""
    engine = connect(settings, "apikeys")
    try:
        return open_registered(settings, engine=engine, resolve=Directory(engine).resolver())
    except Exception:
        engine.dispose()
        raise


def keys(settings: Settings, include_revoked: bool) -> list[ApiKeyInfo]:
    """The keys, read on every run: a few rows, and a cached list could offer a key another
    admin has just revoked."""
    return list_keys(data.reader(settings), include_revoked=include_revoked)


def keys_frame(infos: Sequence[ApiKeyInfo], tz: str) -> pl.DataFrame:
    """The keys as the page's table, times in ``tz``: :class:`ApiKeyInfo` holds no secret and
    no hash, so neither can reach the page."""
    return pl.DataFrame([_table_row(i, tz) for i in infos], schema=SCHEMA)


def _table_row(info: ApiKeyInfo, tz: str) -> dict[str, object]:
    created = widgets.local_time(info.created_at, tz)
    return {
        "name": info.name,
        "key id": info.key_id,
        "prefix": f"{info.prefix}…",
        "scopes": ", ".join(info.scopes),
        "allowed from": ", ".join(info.allow) or "any address",
        "rate /s": info.rate,
        "burst": info.burst,
        "status": "active" if info.active else "revoked",
        "created": created,
        "created by": info.created_by,
        "last rotated": created if info.rotated_from else "—",  # a rotation makes a new row
        "rotated from": info.rotated_from or "",
        "revoked": widgets.local_time(info.revoked_at, tz),
        "revoked by": info.revoked_by or "",
    }


def parse_allow(text: str) -> list[str]:
    """The allow-list as typed: addresses or CIDRs, one per line or comma-separated (each is
    checked by :func:`~auditlog.apikeys.admin.create_key`, which names a bad one)."""
    return [part for part in re.split(r"[\s,]+", text) if part]


def change(verb: Verb, s: Settings, user: User, key: ApiKeyInfo, confirm: str) -> None:
    """Callback of the Rotate and Revoke buttons: act on ``key`` (the one the admin saw) once
    its name is typed in the widget ``confirm``; store the :class:`Outcome` for the page."""
    try:
        outcome = _change(verb, s, user, key, str(st.session_state.get(confirm, "")))
    except AuditLogError as exc:
        outcome = Outcome("error", f"{key.name} was not {verb}d: {exc}")
    st.session_state[RESULT_KEY] = outcome


def _change(verb: Verb, s: Settings, user: User, key: ApiKeyInfo, typed: str) -> Outcome:
    access.require(user.role, "api_keys.manage")
    if typed.strip() != key.name:
        return Outcome("error", f"Type the key's name, {key.name}, to confirm: nothing was done.")
    now = get_key(data.reader(s), key.key_id)  # the state now, not as the page showed it
    if not now.active:
        by = f"{widgets.local_time(now.revoked_at, widgets.current_tz())} by {now.revoked_by}"
        return Outcome(
            "warning", f"API key {key.name} ({key.key_id}) is already revoked ({by}): nothing done."
        )
    log = manager(s)
    if verb == "revoke":
        info = revoke_key(log, user.identity, key.name)
        return Outcome("success", f"Revoked API key {info.name} ({info.key_id}).")
    created = rotate_key(log, user.identity, key.name)
    message = (
        f"Rotated API key {key.name}: the new key is {created.info.key_id}; the old one "
        f"({key.key_id}) stopped working."
    )
    return Outcome("success", message, created)


def pop_outcome() -> Outcome | None:
    """The outcome a callback stored for this run, removed as it is read (shown once)."""
    outcome: Outcome | None = st.session_state.pop(RESULT_KEY, None)
    return outcome


def show_outcome(outcome: Outcome) -> None:
    """Show a rotate or revoke outcome (with the new key, when there is one)."""
    getattr(st, outcome.level)(outcome.message)
    if outcome.created is not None:
        show_key(outcome.created)


def show_key(created: CreatedKey) -> None:
    """The key's text in a copyable block, with the warning that it is not shown again."""
    st.code(created.token, language=None)
    st.warning(
        "Store it now: it is not shown again. Only its hash is kept; if it is lost, rotate "
        "the key to get a new one.",
        icon=":material/key:",
    )
