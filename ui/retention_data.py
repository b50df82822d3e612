"""Cached resources and queries of the Retention page (beside :mod:`ui.data`)."""

from __future__ import annotations

import polars as pl
import streamlit as st

from auditlog.identity.directory import Directory
from auditlog.integrity.keyadmin import open_registered
from auditlog.retention.policies import Retention
from auditlog.retention.records import connect_retention
from auditlog.retention.view import archives_frame, impact, policy_history
from auditlog.settings import Settings
from ui import data

TTL = 30  # seconds: policies and archives change rarely, but a change should show soon


def _dispose(ret: Retention) -> None:
    ret.engine.dispose()


@st.cache_resource(show_spinner=False, on_release=_dispose)
def retention(settings: Settings) -> Retention:
    """Policies and holds, acting as auditlog_retention; changes are logged through it."""
    engine = connect_retention(settings)
    try:
        log = open_registered(settings, engine=engine, resolve=Directory(engine).resolver())
        return Retention(log, settings.retention)
    except Exception:
        engine.dispose()
        raise


@st.cache_data(ttl=TTL, max_entries=64, show_spinner=False)
def impact_preview(
    s: Settings, category: str, days: int, archive_days: int, held: bool
) -> pl.DataFrame:
    return impact(data.reader(s), category, days, archive_days, held)


@st.cache_data(ttl=TTL, max_entries=8, show_spinner=False)
def history(s: Settings) -> pl.DataFrame:
    return policy_history(data.reader(s), limit=s.dashboard.max_returned_rows)


@st.cache_data(ttl=TTL, max_entries=8, show_spinner=False)
def archives(s: Settings) -> pl.DataFrame:
    return archives_frame(data.reader(s))


def clear() -> None:
    """Forget cached views after a change, so the page shows it at once."""
    impact_preview.clear()
    history.clear()
    archives.clear()
