"""``auditlog keys register|retire`` and ``auditlog db rules``: the key administrator's and the
database owner's duties, each a logged event, refused to credentials that do not hold them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from auditlog.errors import SigningKeyRefused
from auditlog.integrity.keys import Signer, load_signer, public_pem
from auditlog.settings import Settings
from auditlog.store import AuditLog
from tests.support.cli import make_cli


@pytest.fixture
def cli(settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """The CLI on a database that does not know this host's key yet."""
    return make_cli(settings, monkeypatch, tmp_path, register_key=False)


def events_of(admin: Engine, action: str) -> list[dict[str, Any]]:
    with admin.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT record FROM events WHERE action = :a ORDER BY seq"), {"a": action}
        ).scalars()
        return [json.loads(r) for r in rows]


def test_keys_register_registers_this_hosts_key_once_and_logs_it(
    cli: Any, settings: Settings, admin_engine: Engine
) -> None:
    key_id = load_signer(settings).key_id
    first = cli("keys", "register")
    assert first.exit_code == 0, first.output
    assert f"registered: signing key {key_id}" in first.output
    again = cli("keys", "register")
    assert f"already registered: signing key {key_id}" in again.output
    (event,) = events_of(admin_engine, "keys.registered")
    assert event["target"]["id"] == key_id
    assert event["actor"]["id"] == "cli-auditor"


def test_a_retired_key_can_no_longer_write(
    cli: Any, settings: Settings, admin_engine: Engine, tmp_path: Path, engine: Engine
) -> None:
    assert cli("keys", "register").exit_code == 0  # the key admin's own host first
    other = Signer.generate()
    pem = tmp_path / "other.pem"
    pem.write_text(public_pem(other.public))
    assert cli("keys", "register", "--public-key", str(pem)).exit_code == 0
    AuditLog(engine, settings, signer=other)  # registered: accepted
    no_reason = cli("keys", "retire", other.key_id, "--reason", " ")
    assert no_reason.exit_code == 1
    assert "reason is required" in no_reason.output
    done = cli("keys", "retire", other.key_id, "--reason", "host decommissioned")
    assert done.exit_code == 0, done.output
    with pytest.raises(SigningKeyRefused, match="retired"):
        AuditLog(engine, settings, signer=other)
    (event,) = events_of(admin_engine, "keys.retired")
    assert event["details"]["reason"] == "host decommissioned"
    again = cli("keys", "register", "--public-key", str(pem))
    assert again.exit_code == 1
    assert "was retired" in again.output


def test_keys_commands_are_refused_to_the_ingest_credential(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: URL
) -> None:
    ingest_url = db_url.set(username="auditlog_ingest").render_as_string(hide_password=False)
    ingest = settings.replace(store={"database_url": ingest_url})
    cli = make_cli(ingest, monkeypatch, tmp_path, register_key=False)
    out = cli("keys", "register")
    assert out.exit_code == 1
    assert "not registered" in out.output or "permission denied" in out.output
    assert "Traceback" not in out.output


def test_db_rules_shows_and_changes_the_floor_and_logs_the_change(
    cli: Any, admin_engine: Engine
) -> None:
    shown = cli("db", "rules")
    assert shown.exit_code == 0, shown.output
    assert "retention floor 365 days; second approver not required" in shown.output
    changed = cli("db", "rules", "--floor-days", "730", "--require-approval")
    assert "retention floor 730 days; second approver required" in changed.output
    (event,) = events_of(admin_engine, "retention.rules_changed")
    assert event["before"] == {"floor_days": 365, "require_approval": False}
    assert event["after"] == {"floor_days": 730, "require_approval": True}


def test_db_rules_cannot_be_changed_by_an_application_login(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: URL
) -> None:
    for login in ("auditlog_retention_admin", "auditlog_ingest"):
        url = db_url.set(username=login).render_as_string(hide_password=False)
        login_settings = settings.replace(store={"database_url": url})
        cli = make_cli(login_settings, monkeypatch, tmp_path, register_key=False)
        out = cli("db", "rules", "--floor-days", "1")
        assert out.exit_code == 1, out.output
        assert "owner or a superuser" in out.output
