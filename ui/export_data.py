"""Glue of the Export & SIEM and Integrity pages (beside :mod:`ui.data`): cached wrappers
of the core's queries, the signed-in user handed to the core, and the SIEM forms.

Downloads are produced on click and recorded as ``export.downloaded``; SIEM changes go through
:mod:`auditlog.siem.destinations`, which checks the role itself (a refusal is logged as
``denied``), so a non-admin who reaches a form is still refused.
"""

from __future__ import annotations

import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
import streamlit as st

from auditlog.errors import AuditLogError
from auditlog.evidence.bundle import write_bundle
from auditlog.evidence.export import Export, export_filename
from auditlog.evidence.sample import MAX_SAMPLE_SIZE, Sampling, sample_filename
from auditlog.integrity import status as integrity
from auditlog.integrity import tiers
from auditlog.integrity.tiers import ChainTier
from auditlog.integrity.verifier import VerifyReport
from auditlog.model import CATEGORIES
from auditlog.query.timeline import count
from auditlog.settings import Settings
from auditlog.siem import delivery, status
from auditlog.siem import destinations as dst
from auditlog.siem.formats import FORMATS
from auditlog.siem.redrive import redrive as redrive_dead_letters
from ui import data
from ui.data import Params
from ui.session import User

TTL = 10  # seconds: delivery status moves while the worker runs
CONTEXT = {"user_agent": "auditlog-dashboard"}


# --- evidence downloads ---------------------------------------------------------------------


@st.cache_data(ttl=data.TTL, max_entries=64, show_spinner=False)
def matching(s: Settings, params: Params, now: datetime) -> int:
    """How many events the view selects (checked against the download cap before offering)."""
    return count(data.reader(s), data.thaw(params), now)


def ndjson_download(s: Settings, params: Params, now: datetime, actor: dict[str, Any]) -> bytes:
    """The NDJSON export of the view (one snapshot, recorded as ``export.downloaded``)."""
    chunks = Export(
        data.reader(s),
        data.thaw(params),
        "ndjson",
        log=data.writer(s),
        actor=actor,
        context=CONTEXT,
        now=now,
        limits=s.export,
    )
    return b"".join(chunks)


def bundle_download(s: Settings, params: Params, now: datetime, actor: dict[str, Any]) -> bytes:
    """The signed evidence bundle (ZIP) of the view, built in a temporary file."""
    with tempfile.TemporaryDirectory(prefix="auditlog-bundle-") as tmp:
        path = Path(tmp) / export_filename("bundle", now)
        write_bundle(
            data.reader(s),
            path,
            data.thaw(params),
            log=data.writer(s),
            actor=actor,
            context=CONTEXT,
            now=now,
            limits=s.export,
        )
        return path.read_bytes()


def sample_download(
    s: Settings, params: Params, now: datetime, actor: dict[str, Any], size: int, seed: str | None
) -> tuple[bytes, dict[str, Any]]:
    """A reproducible sample of the view as a signed bundle (ZIP), and its ``sample`` section."""
    request = Sampling(size, seed)  # refuses a bad size or seed before any work
    with tempfile.TemporaryDirectory(prefix="auditlog-sample-") as tmp:
        path = Path(tmp) / "sample.zip"
        res = write_bundle(
            data.reader(s),
            path,
            data.thaw(params),
            log=data.writer(s),
            actor=actor,
            context=CONTEXT,
            now=now,
            limits=s.export,
            sample=request,
        )
        return path.read_bytes(), res.manifest["sample"]


def sample_panel(
    s: Settings, params: Params, now: datetime, actor: dict[str, Any], view: str
) -> None:
    """The auditor-sample form; once drawn, what was drawn and its download (for ``view``)."""
    st.caption("Auditor sample: a reproducible random draw from these events, as a bundle")
    if (asked := sample_form()) is not None:
        try:
            got = sample_download(s, params, now, actor, *asked)
            st.session_state["export.sample"] = (view, *got)
        except AuditLogError as exc:
            st.error(str(exc))
    kept = st.session_state.get("export.sample")
    if not kept or kept[0] != view:
        return
    zip_bytes, drawn = kept[1], kept[2]
    st.success(
        f"Sampled {drawn['size']:,} of {drawn['population']:,} events, seed `{drawn['seed']}`"
    )
    st.caption(drawn["statement"])
    st.download_button("Download the sample (ZIP)", zip_bytes, sample_filename(now),
                       "application/zip", icon=":material/download:")  # fmt: skip


def sample_form() -> tuple[int, str | None] | None:
    """Size and seed of an auditor sample (seed None: drawn at random) when submitted."""
    with st.form("evidence-sample"):
        a, b = st.columns([1, 2])
        size = a.number_input("Sample size", 1, MAX_SAMPLE_SIZE, 25, step=1)
        seed = b.text_input("Seed (blank: drawn at random and recorded)", max_chars=256)
        if not st.form_submit_button("Draw a sample", icon=":material/casino:"):
            return None
    return int(size), seed or None


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
    return status.destinations_frame(data.reader(s))


def clear() -> None:
    """Forget cached SIEM views after a change, so the page shows it at once."""
    siem_status.clear()
    dead_letters.clear()
    destinations.clear()


def add(s: Settings, user: User, dest: dst.Destination, start: str, reason: str) -> None:
    dst.add_destination(data.writer(s), dest, user.identity, user.role, start, reason or None)


def change(s: Settings, user: User, name: str, reason: str, **changes: Any) -> None:
    dst.change_destination(
        data.writer(s), name, user.identity, user.role, reason or None, **changes
    )


def remove(s: Settings, user: User, name: str, reason: str) -> None:
    dst.remove_destination(data.writer(s), name, user.identity, user.role, reason or None)


def send_test_message(s: Settings, user: User, name: str) -> str:
    """Send a test message to ``name`` (its secret is read with the writer's rights)."""
    return delivery.send_test_message(data.writer(s).engine, name, user.role)


def redrive(s: Settings, user: User, chosen: list[tuple[str, int]], reason: str) -> str:
    """Re-drive the chosen (destination, dead-letter id) pairs; one audit event per
    destination. What happened, as one line per destination."""
    by_dest: dict[str, list[int]] = {}
    for name, dead_id in chosen:
        by_dest.setdefault(name, []).append(dead_id)
    done = [
        redrive_dead_letters(data.streamer(s), name, user.identity, user.role, ids, reason or None)
        for name, ids in by_dest.items()
    ]
    failed = "; ".join(f"{d}: {why}" for r in done for d, why in r.failed.items())
    return "  \n".join([r.summary() for r in done] + ([f"failed: {failed}"] if failed else []))


def redrive_form(dead: pl.DataFrame) -> tuple[list[tuple[str, int]], str] | None:
    """Pick dead letters not yet re-driven; (chosen (destination, id) pairs, reason)."""
    pending = dead.filter(pl.col("redriven_at").is_null())
    if pending.is_empty():
        return None
    options = {
        f"{r['id']} · {r['destination']} · {r['item_key']}": (r["destination"], int(r["id"]))
        for r in pending.iter_rows(named=True)
    }
    with st.form("siem-redrive", clear_on_submit=True):
        picked = st.multiselect("Dead letters to send again", list(options), default=list(options))
        reason = st.text_input("Reason (recorded in the audit log)", key="siem-redrive-reason")
        if not st.form_submit_button("Re-drive"):
            return None
    return [options[p] for p in picked], reason


def add_form() -> tuple[dst.Destination, str, str] | None:
    """The form for a new destination; (destination, start, reason) when submitted."""
    with st.form("siem-add", clear_on_submit=True):
        a, b, c = st.columns([2, 2, 1])
        name = a.text_input("Name", placeholder="splunk-prod")
        transport = b.selectbox("Transport", dst.TRANSPORTS)
        fmt = c.selectbox("Format", FORMATS)
        endpoint = st.text_input("Endpoint", placeholder="siem.example.com:6514 or https://...")
        cats = st.multiselect("Categories", CATEGORIES, default=list(CATEGORIES))
        secret = st.text_input(
            "Secret (HEC token / HMAC key)",
            type="password",
            help="Stored in the database; never shown or logged.",
        )
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
    dest = dst.Destination(
        name.strip(), str(transport), endpoint.strip(), str(fmt), options, secret or None
    )
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
    return integrity.verify_as(data.reader(s), user.role)


@st.cache_data(ttl=TTL, max_entries=8, show_spinner=False)
def latest_checkpoints(s: Settings) -> pl.DataFrame:
    return integrity.latest_checkpoints(data.reader(s))


@st.cache_data(ttl=TTL, max_entries=8, show_spinner=False)
def chain_tiers(s: Settings) -> list[ChainTier]:
    quorum = s.witness.quorum or len(s.witness.servers)
    return tiers.chain_tiers(data.reader(s), quorum, len(s.witness.servers))


def public_keys(s: Settings) -> list[tuple[str, str, bool]]:
    return integrity.public_keys(data.reader(s), s)
