"""Glue of the Export & SIEM and Integrity pages (beside :mod:`ui.data`).

Downloads are produced on click and recorded as ``export.downloaded``; SIEM changes go through
:mod:`auditlog.siem.destinations` (each one a ``configuration`` audit event, secret redacted)
after a server-side role check, so a non-admin who reaches a form is still refused.
"""

from __future__ import annotations

import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
import sqlalchemy as sa
import streamlit as st

from auditlog import access
from auditlog.evidence.bundle import write_bundle
from auditlog.evidence.export import Export, export_filename
from auditlog.integrity.database import verify_database
from auditlog.integrity.keys import key_id_of, load_public_key, load_signer, public_pem
from auditlog.integrity.verifier import VerifyReport
from auditlog.model import CATEGORIES
from auditlog.query.timeline import count
from auditlog.settings import Settings
from auditlog.siem import destinations as dst
from auditlog.siem import status
from auditlog.siem.delivery import send_test
from auditlog.siem.formats import FORMATS
from ui import data
from ui.data import Params
from ui.session import User

TTL = 10  # seconds: delivery status moves while the worker runs
CONTEXT = {"user_agent": "auditlog-dashboard"}
LATEST_CHECKPOINTS = sa.text(
    "SELECT DISTINCT ON (category) category, seq, signed_at, entry_hash, key_id "
    "FROM checkpoints ORDER BY category, seq DESC"
)
KEYS = sa.text("SELECT key_id, public_key, created_at FROM signing_keys ORDER BY created_at")


# --- evidence downloads ---------------------------------------------------------------------


@st.cache_data(ttl=data.TTL, max_entries=64, show_spinner=False)
def matching(s: Settings, params: Params, now: datetime) -> int:
    """How many events the view selects (checked against the download cap before offering)."""
    return count(data.reader(s), data.thaw(params), now)


def ndjson_download(s: Settings, params: Params, now: datetime, actor: dict[str, Any]) -> bytes:
    """The NDJSON export of the view (one snapshot, recorded as ``export.downloaded``)."""
    chunks = Export(data.reader(s), data.thaw(params), "ndjson", log=data.writer(s),
                           actor=actor, context=CONTEXT, now=now, limits=s.export)  # fmt: skip
    return b"".join(chunks)


def bundle_download(s: Settings, params: Params, now: datetime, actor: dict[str, Any]) -> bytes:
    """The signed evidence bundle (ZIP) of the view, built in a temporary file."""
    with tempfile.TemporaryDirectory(prefix="auditlog-bundle-") as tmp:
        path = Path(tmp) / export_filename("bundle", now)
        write_bundle(data.reader(s), path, data.thaw(params), log=data.writer(s),
                            actor=actor, context=CONTEXT, now=now, limits=s.export)  # fmt: skip
        return path.read_bytes()


# --- SIEM -----------------------------------------------------------------------------------


@st.cache_data(ttl=TTL, max_entries=8, show_spinner=False)
def siem_status(s: Settings) -> pl.DataFrame:
    return status.destination_status(data.reader(s))


@st.cache_data(ttl=TTL, max_entries=8, show_spinner=False)
def dead_letters(s: Settings) -> pl.DataFrame:
    return status.dead_letters(data.reader(s), limit=s.dashboard.max_returned_rows)


@st.cache_data(ttl=TTL, max_entries=8, show_spinner=False)
def destinations(s: Settings) -> pl.DataFrame:
    """The current destinations as their audit events show them (never a secret)."""
    rows = [d.redacted() for d in dst.list_destinations(data.reader(s))]
    schema = ["name", "transport", "endpoint", "format", "enabled", "secret", "options"]
    if not rows:
        return pl.DataFrame(schema={k: pl.String for k in schema})
    return pl.DataFrame([{**r, "options": str(r["options"])} for r in rows]).select(schema)


def local(frame: pl.DataFrame, tz: str) -> pl.DataFrame:
    """Every time column of ``frame`` shown in ``tz``."""
    cols = [c for c, t in frame.schema.items() if isinstance(t, pl.Datetime)]
    return frame.with_columns(pl.col(c).dt.convert_time_zone(tz) for c in cols)


def clear() -> None:
    """Forget cached SIEM views after a change, so the page shows it at once."""
    siem_status.clear()
    dead_letters.clear()
    destinations.clear()


def add(s: Settings, user: User, dest: dst.Destination, start: str, reason: str) -> None:
    access.require(user.role, "siem.configure")
    dst.add_destination(data.writer(s), dest, user.identity.actor(), start, reason or None)


def change(s: Settings, user: User, name: str, reason: str, **changes: Any) -> None:
    access.require(user.role, "siem.configure")
    if not changes:
        raise dst.InvalidDestination("changes", "give a new endpoint, secret or delivery state")
    dst.change_destination(data.writer(s), name, user.identity.actor(), reason or None, **changes)


def remove(s: Settings, user: User, name: str, reason: str) -> None:
    access.require(user.role, "siem.configure")
    dst.remove_destination(data.writer(s), name, user.identity.actor(), reason or None)


def send_test_message(s: Settings, user: User, name: str) -> str:
    """Send a test message to ``name`` (its secret is read with the writer's rights)."""
    access.require(user.role, "siem.configure")
    return send_test(dst.get_destination(data.writer(s).engine, name, with_secret=True))


def add_form() -> tuple[dst.Destination, str, str] | None:
    """The form for a new destination; (destination, start, reason) when submitted."""
    with st.form("siem-add", clear_on_submit=True):
        a, b, c = st.columns([2, 2, 1])
        name = a.text_input("Name", placeholder="splunk-prod")
        transport = b.selectbox("Transport", dst.TRANSPORTS)
        fmt = c.selectbox("Format", FORMATS)
        endpoint = st.text_input("Endpoint", placeholder="siem.example.com:6514 or https://...")
        cats = st.multiselect("Categories", CATEGORIES, default=list(CATEGORIES))
        secret = st.text_input("Secret (HEC token / HMAC key)", type="password",
                               help="Stored in the database; never shown or logged.")  # fmt: skip
        ca = st.text_area("CA certificate (PEM, TLS transports; optional)")
        start = st.radio(
            "Deliver",
            ["beginning", "now"],
            horizontal=True,
            format_func={"beginning": "the whole log", "now": "from now on"}.get,
        )
        reason = st.text_input("Reason (recorded in the audit log)")
        if not st.form_submit_button("Add destination", type="primary"):
            return None
    options = {"categories": cats, "ca_pem": ca.strip() or None}
    dest = dst.Destination(name.strip(), str(transport), endpoint.strip(), str(fmt),
                           options, secret or None)  # fmt: skip
    return dest, str(start), reason


def manage_form(names: list[str]) -> tuple[str, str, dict[str, Any], str] | None:
    """Change, test or remove a destination; (what, name, changes, reason) when submitted."""
    with st.form("siem-manage", clear_on_submit=True):
        name = str(st.selectbox("Destination", names))
        endpoint = st.text_input("New endpoint (blank keeps it)")
        secret = st.text_input("New secret (blank keeps it)", type="password")
        enabled = st.radio("Delivery", ["keep", "enable", "pause"], horizontal=True)
        reason = st.text_input("Reason (recorded in the audit log)", key="siem-manage-reason")
        labels = {"change": "Save changes", "test": "Send test message", "remove": "Remove"}
        pressed = [
            c.form_submit_button(labels[w]) for w, c in zip(labels, st.columns(3), strict=True)
        ]
        what = next((w for w, p in zip(labels, pressed, strict=True) if p), None)
    if what is None:
        return None
    changes: dict[str, Any] = {
        "endpoint": endpoint.strip() or None,
        "secret": secret or None,
        "enabled": {"enable": True, "pause": False}.get(str(enabled)),
    }
    return what, name, {k: v for k, v in changes.items() if v is not None}, reason


# --- integrity ------------------------------------------------------------------------------


def verify(s: Settings, user: User) -> VerifyReport:
    access.require(user.role, "integrity.verify")
    return verify_database(data.reader(s))


def chains_frame(report: VerifyReport) -> pl.DataFrame:
    """One row per category: rows, seq range, checkpoints checked, and its problem if any."""
    rows = [{"category": c.category, "rows": c.rows, "first seq": c.first_seq,
             "last seq": c.last_seq, "checkpoints": c.checkpoints,
             "state": "intact" if c.problem is None else f"BROKEN: {c.problem.kind}"}
            for c in report.chains.values()]  # fmt: skip
    return pl.DataFrame(rows)


def problems_frame(report: VerifyReport) -> pl.DataFrame:
    rows = [vars(p) for p in report.problems]
    schema = {"category": pl.String, "seq": pl.Int64, "kind": pl.String, "message": pl.String}
    return pl.DataFrame(rows, schema=schema)


@st.cache_data(ttl=TTL, max_entries=8, show_spinner=False)
def latest_checkpoints(s: Settings) -> pl.DataFrame:
    """The newest signed checkpoint of each category (entry hash as hex)."""
    with data.reader(s).connect() as conn:
        rows = [dict(r) for r in conn.execute(LATEST_CHECKPOINTS).mappings()]
    schema: dict[str, Any] = {"category": pl.String, "seq": pl.Int64,
                              "signed_at": pl.Datetime("us", "UTC"), "entry_hash": pl.String,
                              "key_id": pl.String}  # fmt: skip
    rows = [{**r, "entry_hash": bytes(r["entry_hash"]).hex()} for r in rows]
    return pl.DataFrame(rows, schema=schema, orient="row")


def public_keys(s: Settings) -> list[tuple[str, str, bool]]:
    """(key_id, PEM, is the installation's current signing key), current first.

    The signer's key file is only read, never created here; when it is not readable, the
    keys registered in the database (``signing_keys``) stand in.
    """
    current: str | None = None
    try:
        if s.store.signing_key or s.store.key_path.is_file():
            current = public_pem(load_signer(s).public)
    except (OSError, ValueError):
        current = None
    with data.reader(s).connect() as conn:
        stored = [(k, bytes(pem).decode("ascii")) for k, pem, _ in conn.execute(KEYS)]
    keys = [(k, pem, pem.strip() == (current or "").strip()) for k, pem in stored]
    if current and not any(c for _, _, c in keys):
        key_id = key_id_of(load_public_key(current))
        keys.append((key_id, current, True))
    return sorted(keys, key=lambda k: not k[2])
