"""Cached engines and query wrappers for the pages.

Engines are ``st.cache_resource`` (one per database, disposed on release); query results are
``st.cache_data`` keyed by the settings, the filters' query params, the time zone and the
view's pinned ``now`` (so paging and reruns of one view see one consistent snapshot).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import polars as pl
import streamlit as st
from sqlalchemy.engine import Engine

from auditlog.db.server import connect
from auditlog.evidence.export import csv_chunks
from auditlog.identity.directory import Directory
from auditlog.integrity.keyadmin import open_registered
from auditlog.query import drilldown
from auditlog.query import timeline as tl
from auditlog.query.filters import Filters
from auditlog.settings import Settings, load_settings
from auditlog.store import AuditLog

PAGE_SIZE = 50
TTL = 60  # seconds a query result is reused
Params = tuple[tuple[str, tuple[str, ...]], ...]


def settings() -> Settings:
    """The settings for this run (env and ``auditlog.toml``; cheap, read every run)."""
    return load_settings()


def _dispose_log(log: AuditLog) -> None:
    log.close()


@st.cache_resource(show_spinner=False, on_release=Engine.dispose)
def reader(settings: Settings) -> Engine:
    """The dashboard's SELECT-only engine (role auditlog_reader, statement timeout set)."""
    return connect(settings, "reader")


@st.cache_resource(show_spinner=False, on_release=_dispose_log)
def writer(settings: Settings) -> AuditLog:
    """The writer the dashboard records its own events with (its own login,
    auditlog_dashboard, acting as auditlog_writer), resolving actors like ingest."""
    engine = connect(settings, "dashboard")
    try:
        log = open_registered(settings, engine=engine, resolve=Directory(engine).resolver())
    except Exception:
        engine.dispose()
        raise
    # its own views are appended now and then: sign them, so no unsigned span is left
    log.sign_heads_every(settings.store.checkpoint_seconds)
    return log


@st.cache_resource(show_spinner=False, on_release=_dispose_log)
def streamer(settings: Settings) -> AuditLog:
    """The SIEM worker's credential (auditlog_stream), for the page's dead-letter re-drive:
    it reads checkpoints, which the dashboard's own writer may not."""
    return open_registered(settings, role="stream")


def freeze(params: Mapping[str, str | Sequence[str]]) -> Params:
    """Query params as a hashable, ordered cache key."""
    items = ((k, (v,) if isinstance(v, str) else tuple(v)) for k, v in params.items())
    return tuple(sorted(items))


def thaw(params: Params) -> Filters:
    return Filters.from_query_params({k: list(v) for k, v in params})


def page_size(s: Settings) -> int:
    return max(1, min(PAGE_SIZE, s.dashboard.max_returned_rows))


@st.cache_data(ttl=TTL, max_entries=64, show_spinner=False)
def timeline(s: Settings, params: Params, tz: str, now: datetime) -> tl.Timeline:
    """Count, histogram and first page of a timeline view."""
    return tl.timeline(reader(s), thaw(params), page_size(s), None, tz, now)


@st.cache_data(ttl=TTL, max_entries=256, show_spinner=False)
def search(s: Settings, params: Params, after: str, now: datetime) -> tl.Page:
    """A later page of a timeline view (``after`` is the previous page's cursor)."""
    return tl.search(reader(s), thaw(params), page_size(s), after, now)


@st.cache_data(ttl=TTL, max_entries=64, show_spinner=False)
def action_counts(s: Settings, params: Params, now: datetime) -> pl.DataFrame:
    return tl.action_counts(reader(s), thaw(params), now)


@st.cache_data(ttl=TTL, max_entries=64, show_spinner=False)
def correlation(s: Settings, correlation_id: str) -> pl.DataFrame:
    return drilldown.correlation(reader(s), correlation_id)


@st.cache_data(ttl=TTL, max_entries=256, show_spinner=False)
def event(s: Settings, event_id: str) -> dict[str, Any]:
    return drilldown.get_event(reader(s), event_id)


@st.cache_data(ttl=TTL, max_entries=64, show_spinner=False)
def target_history(s: Settings, target_type: str, target_id: str) -> pl.DataFrame:
    return drilldown.target_history(
        reader(s), target_type, target_id, limit=s.dashboard.max_returned_rows
    )


def max_download_rows(s: Settings) -> int:
    """Most rows the browser download holds (``AUDITLOG_MAX_DOWNLOAD_ROWS``, default 200,000,
    about 150 MB): the finished file is held in memory to hand it to the browser."""
    cap = s.export.max_export_rows or 10**12
    return min(s.dashboard.max_download_rows, cap)


def csv_download(s: Settings, params: Params, now: datetime, actor: dict[str, Any]) -> bytes:
    """The CSV export of the view, produced on click (``st.download_button`` wants bytes).

    The rows stream from PostgreSQL's COPY in chunks; only the finished file is held, and the
    export cap (``AUDITLOG_MAX_EXPORT_ROWS``) bounds it: larger exports are refused here with a
    message, and go through ``auditlog export``, which writes to a file in constant memory.
    """
    chunks = csv_chunks(
        reader(s),
        thaw(params),
        log=writer(s),
        actor=actor,
        context={"user_agent": "auditlog-dashboard"},
        now=now,
        limits=s.export,
    )
    return b"".join(chunks)
