"""The Export page's auditor sample under AppTest, against a real (test) database."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
import streamlit as st
from sqlalchemy.engine import Engine
from streamlit.testing.v1 import AppTest

from auditlog.evidence.sample import rank
from auditlog.evidence.verify import verify_bundle
from auditlog.settings import Settings
from auditlog.store import AuditLog
from tests.support.factories import valid
from tests.support.pages import app

AUDITOR = "auditor@contoso.com"


@pytest.fixture
def auditor(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, tmp_path: Path, log: AuditLog
) -> Iterator[None]:
    """The app on this test's database (30 events), signed in as an auditor."""
    config = tmp_path / "auditlog.toml"
    config.write_text(f'[roles.users]\n"{AUDITOR}" = "auditor"\n', "utf-8")
    for name, value in {
        "DATABASE_URL": str(settings.store.database_url),
        "CONFIG": str(config),
        "HOME": str(settings.store.home),
        "USER": AUDITOR,
    }.items():
        monkeypatch.setenv(f"AUDITLOG_{name}", value)
    cats = ("configuration", "governance", "user_activity")
    log.record_many([valid(category=cats[n % 3], details={"n": n}) for n in range(30)])
    yield
    st.cache_data.clear()
    st.cache_resource.clear()


def export_page(**query: str) -> AppTest:
    at = app().run()
    at.query_params = query
    return at.switch_page("pages/export_siem.py").run()


def draw(at: AppTest, size: int, seed: str) -> AppTest:
    next(n for n in at.number_input if n.label == "Sample size").set_value(size)
    next(t for t in at.text_input if t.label.startswith("Seed")).set_value(seed)
    return next(b for b in at.button if b.label == "Draw a sample").click().run()


def test_drawing_a_sample_offers_a_bundle_of_the_view_that_verifies(
    auditor: None, engine: Engine, admin_engine: Engine
) -> None:
    at = draw(export_page(category="governance"), 4, "page-seed")
    assert not at.exception
    assert not at.error, [e.value for e in at.error]
    assert at.success[0].value == "Sampled 4 of 10 events, seed `page-seed`"
    assert any("does not prove that no other row matches" in c.value for c in at.caption)
    labels = [str(b.proto.label) for b in at.get("download_button")]
    assert "Download the sample (ZIP)" in labels
    zip_bytes, section = at.session_state["export.sample"][1:]
    report = verify_bundle(io.BytesIO(zip_bytes))
    assert report.ok, report.problems
    assert report.rows == 4
    with admin_engine.connect() as conn:
        stmt = "SELECT event_id::text FROM events WHERE category = 'governance'"
        ids = list(conn.scalars(sa.text(stmt)))
        expected = sorted(ids, key=lambda e: rank("page-seed", e))[:4]
    assert section["event_ids"] == expected
    with engine.connect() as conn:
        stmt = "SELECT details FROM events WHERE action = 'export.downloaded'"
        [details] = conn.scalars(sa.text(stmt)).all()
    assert details["format"] == "sample"
    assert details["sha256"] == hashlib.sha256(zip_bytes).hexdigest()
    assert details["sample"]["population"] == 10


def test_a_seed_nobody_can_retype_is_refused_on_the_page(auditor: None, engine: Engine) -> None:
    at = draw(export_page(), 3, " leading space")
    assert not at.exception
    assert "sample seed" in at.error[0].value
    assert not at.success
    with engine.connect() as conn:
        stmt = "SELECT count(*) FROM events WHERE action = 'export.downloaded'"
        assert conn.scalar(sa.text(stmt)) == 0
