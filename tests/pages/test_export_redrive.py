"""The Export & SIEM page's re-drive button under AppTest: an admin sends dead letters again
to a real (fixed) HTTPS receiver, and the re-drive is an audit event."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import streamlit as st
from sqlalchemy.engine import URL, Engine

from auditlog.db.server import make_engine
from auditlog.settings import Settings
from auditlog.siem.status import dead_letters
from auditlog.siem.worker import drain_all
from auditlog.store import AuditLog
from tests.support.factories import valid
from tests.support.http_receiver import Receiver, Request
from tests.support.pages import app
from tests.support.rsyslog import make_tls_files
from tests.support.siem import add_as_admin

ADMIN = "ops@contoso.com"


@pytest.fixture
def dashboard(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, tmp_path: Path
) -> Iterator[None]:
    config = tmp_path / "auditlog.toml"
    config.write_text(f'[roles.users]\n"{ADMIN}" = "admin"\n', "utf-8")
    for name, value in {
        "DATABASE_URL": str(settings.store.database_url),
        "CONFIG": str(config),
        "HOME": str(settings.store.home),
        "USER": ADMIN,
    }.items():
        monkeypatch.setenv(f"AUDITLOG_{name}", value)
    yield
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.fixture
def stream_engine(db_url: URL) -> Iterator[Engine]:
    """The SIEM worker's login (the ingest login may not read checkpoints)."""
    engine = make_engine(db_url.set(username="auditlog_stream"), "stream")
    yield engine
    engine.dispose()


def test_admin_redrives_dead_letters_from_the_page(
    dashboard: None, log: AuditLog, engine: Engine, stream_engine: Engine, tmp_path: Path
) -> None:
    tls = make_tls_files(tmp_path / "tls")
    picky = {"on": True}
    accepted: list[dict[str, Any]] = []

    def respond(req: Request) -> tuple[int, dict[str, str]]:
        batch = req.hec_events()
        if picky["on"] and any(e["event"].get("details", {}).get("poison") for e in batch):
            return 400, {}
        accepted.extend(batch)
        return 200, {}

    with Receiver(tls, respond) as receiver:
        log.record_many([valid(), valid(details={"poison": True}), valid()])
        add_as_admin(
            log, "splunk", "hec", receiver.url, "json", "tok-0123456789", ca_pem=tls.ca_pem
        )
        assert drain_all(stream_engine)
        assert dead_letters(log.engine).height == 1
        picky["on"] = False

        at = app().run().switch_page("pages/export_siem.py").run()
        assert not at.exception
        (pick,) = [m for m in at.multiselect if m.label == "Dead letters to send again"]
        assert len(pick.value) == 1
        assert "splunk" in pick.value[0]
        next(
            t
            for t in at.text_input
            if t.label.startswith("Reason") and t.key == "siem-redrive-reason"
        ).set_value("receiver fixed")
        next(b for b in at.button if b.label == "Re-drive").click().run()
        assert not at.exception
        assert not at.error, [e.value for e in at.error]
        assert any("1 delivered, 0 failed" in s.value for s in at.success)
    assert [
        e["event"]["details"] for e in accepted if "poison" in e["event"].get("details", {})
    ] == [{"poison": True}]
    with engine.connect() as conn:
        (event,) = conn.execute(
            sa.text(
                "SELECT outcome, actor, details FROM events "
                "WHERE action = 'siem.dead_letters_redriven'"
            )
        ).mappings()
    assert event["outcome"] == "success"
    assert event["actor"]["id"] == ADMIN
    assert event["details"]["reason"] == "receiver fixed"
    assert dead_letters(engine)["redriven_at"].null_count() == 0
