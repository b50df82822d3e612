"""The Export & SIEM and Integrity pages under AppTest, against a real (test) database."""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import streamlit as st
from sqlalchemy.engine import Engine
from streamlit.testing.v1 import AppTest

from auditlog import access
from auditlog.demo import demo_events
from auditlog.errors import PermissionDenied
from auditlog.settings import Settings
from auditlog.siem import destinations as dst
from auditlog.store import AuditLog
from tests.support.factories import tamper
from tests.support.pages import app

SECRET = "hmac-key-that-must-never-be-logged"
USERS = {
    "auditor": "auditor@contoso.com",
    "compliance_lead": "lead@contoso.com",
    "admin": "ops@contoso.com",
}


@pytest.fixture
def as_role(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, tmp_path: Path, log: AuditLog
) -> Iterator[Any]:
    """Point the app at this test's database (60 demo events); call it to pick the role."""
    config = tmp_path / "auditlog.toml"
    lines = "\n".join(f'"{user}" = "{role}"' for role, user in USERS.items())
    config.write_text(f"[roles.users]\n{lines}\n", "utf-8")
    for name, value in {
        "DATABASE_URL": str(settings.store.database_url),
        "CONFIG": str(config),
        "HOME": str(settings.store.home),
    }.items():
        monkeypatch.setenv(f"AUDITLOG_{name}", value)
    log.record_many(list(demo_events(60, seed=11, days=10)))

    def pick(role: str) -> None:
        monkeypatch.setenv("AUDITLOG_USER", USERS[role])

    yield pick
    st.cache_data.clear()
    st.cache_resource.clear()


def page(path: str, **query: str) -> AppTest:
    at = app().run()
    at.query_params = query
    return at.switch_page(path).run()


def _input(at: AppTest, label: str) -> Any:
    return next(w for w in [*at.text_input, *at.text_area] if w.label.startswith(label))


def _button(at: AppTest, label: str) -> Any:
    return next(b for b in at.button if b.label == label)


def test_both_pages_render_for_every_role(as_role: Any) -> None:
    for role in access.ROLES:
        as_role(role)
        for path in ("pages/export_siem.py", "pages/integrity.py"):
            at = page(path, category="governance")
            assert not at.exception, (role, path, at.exception)
            assert not at.error, (role, path, [e.value for e in at.error])


def test_auditor_sees_delivery_status_but_no_destination_forms(as_role: Any) -> None:
    as_role("auditor")
    at = page("pages/export_siem.py")
    assert [t.value for t in at.title] == ["Export & SIEM"]
    assert not [b for b in at.button if b.label in ("Add destination", "Remove")]
    assert not [w for w in at.text_input if w.label.startswith("Secret")]
    assert any("Read-only" in i.value for i in at.info)
    labels = [str(b.proto.label) for b in at.get("download_button")]
    assert any("NDJSON" in x for x in labels)
    assert any("bundle" in x for x in labels)


def test_changing_a_destination_is_refused_server_side_for_non_admins(
    as_role: Any, settings: Settings
) -> None:
    from ui import export_data as xd
    from ui.session import User

    user = User(access.Identity("auditor@contoso.com"), "auditor", audit=None)  # type: ignore[arg-type]
    dest = dst.Destination("x", "syslog-tcp", "127.0.0.1:514")
    with pytest.raises(PermissionDenied, match=r"siem\.configure"):
        xd.add(settings, user, dest, "now", "")


def test_admin_adds_a_destination_logged_without_its_secret(as_role: Any, engine: Engine) -> None:
    as_role("admin")
    at = page("pages/export_siem.py")
    _input(at, "Name").set_value("soc-webhook")
    next(s for s in at.selectbox if s.label == "Transport").set_value("webhook")
    _input(at, "Endpoint").set_value("http://127.0.0.1:9/hook")
    _input(at, "Secret").set_value(SECRET)
    _input(at, "Reason").set_value("ticket SEC-42")
    _button(at, "Add destination").click().run()
    assert not at.exception
    assert not at.error, [e.value for e in at.error]
    assert "soc-webhook" in list(at.dataframe[0].value["name"])
    assert SECRET not in str(at.dataframe[0].value.to_dict())
    stmt = sa.text(
        "SELECT category, actor, before, after, details FROM events "
        "WHERE action = 'siem.destination_added'"
    )
    with engine.connect() as conn:
        [event] = [dict(r) for r in conn.execute(stmt).mappings()]
    assert event["category"] == "configuration"
    assert event["actor"]["id"] == USERS["admin"]
    assert event["after"]["endpoint"] == "http://127.0.0.1:9/hook"
    assert event["after"]["secret"] == dst.REDACTED
    assert event["details"]["reason"] == "ticket SEC-42"
    assert SECRET not in json.dumps(event, default=str)


def test_integrity_page_says_intact_then_names_a_tampered_row(
    as_role: Any, admin_engine: Engine
) -> None:
    as_role("auditor")
    at = page("pages/integrity.py")
    _button(at, "Verify the whole log now").click().run()
    assert at.success[0].value.startswith("Intact")
    assert not at.error
    with admin_engine.connect() as conn:
        seq = conn.scalar(sa.text("SELECT max(seq) FROM events WHERE category = 'governance'"))
    tamper(
        admin_engine,
        "UPDATE events SET details = '{\"i\": 7}' "
        f"WHERE category = 'governance' AND seq = {int(seq) - 1}",
    )
    _button(at, "Verify the whole log now").click().run()
    assert not at.success
    assert f"governance seq {int(seq) - 1}" in at.error[0].value
    assert "content changed" in at.error[0].value


def test_integrity_page_shows_latest_checkpoints_and_the_public_key(
    as_role: Any, log: AuditLog
) -> None:
    log.checkpoint()
    as_role("auditor")
    at = page("pages/integrity.py")
    table = at.dataframe[0].value
    assert set(table["category"]) >= {"governance"}
    assert all(len(h) == 64 for h in table["entry_hash"])
    assert any("BEGIN PUBLIC KEY" in c.value for c in at.code)
    assert at.get("download_button")


def test_admin_tests_pauses_and_removes_a_destination(
    as_role: Any, log: AuditLog, engine: Engine
) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []

    def receive() -> None:
        conn, _ = server.accept()
        with conn:
            received.append(conn.recv(65536))
            time.sleep(0.5)  # stay connected while the sender checks the connection

    thread = threading.Thread(target=receive, daemon=True)
    thread.start()
    endpoint = f"127.0.0.1:{server.getsockname()[1]}"
    dest = dst.Destination("soc-syslog", "syslog-tcp", endpoint)
    dst.add_destination(log, dest, access.Identity("t"), "admin")
    as_role("admin")
    at = page("pages/export_siem.py")
    _button(at, "Send test message").click().run()
    thread.join(5)
    server.close()
    assert b"TEST" in received[0]
    assert "test message sent to soc-syslog" in at.success[0].value
    next(r for r in at.radio if r.label == "Delivery").set_value("pause")
    _input(at, "Reason").set_value("maintenance")
    _button(at, "Save changes").click().run()
    assert list(at.dataframe[0].value["enabled"]) == [False]
    _button(at, "Remove").click().run()
    assert not at.exception
    assert not at.error
    assert list(at.dataframe[0].value["name"]) == []
    stmt = sa.text(
        "SELECT action FROM events WHERE category = 'configuration' "
        "AND target->>'id' = 'soc-syslog' ORDER BY seq"
    )
    with engine.connect() as conn:
        actions = list(conn.scalars(stmt))
    assert actions == [
        "siem.destination_added",
        "siem.destination_changed",
        "siem.destination_removed",
    ]


def test_downloads_hold_the_view_and_are_recorded(as_role: Any, engine: Engine) -> None:
    from auditlog.evidence.verify import verify_bundle
    from ui import data
    from ui import export_data as xd

    s, now = data.settings(), datetime.now(UTC)
    params = data.freeze({"category": "governance"})
    actor = access.Identity("auditor@contoso.com").actor()
    lines = xd.ndjson_download(s, params, now, actor).splitlines()
    assert len(lines) == xd.matching(s, params, now) > 0
    assert {json.loads(x)["category"] for x in lines} == {"governance"}
    report = verify_bundle(io.BytesIO(xd.bundle_download(s, params, now, actor)))
    assert report.ok, report.problems
    assert report.rows == len(lines)
    stmt = sa.text(
        "SELECT details->>'format' FROM events WHERE action = 'export.downloaded' "
        "AND actor->>'id' = 'auditor@contoso.com' ORDER BY seq"
    )
    with engine.connect() as conn:
        assert list(conn.scalars(stmt)) == ["ndjson", "bundle"]
