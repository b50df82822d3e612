"""Only an admin configures SIEM destinations, whoever calls; a refusal is logged as denied."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL

from auditlog.access import Identity
from auditlog.errors import InvalidDestination, PermissionDenied
from auditlog.siem.delivery import send_test_message
from auditlog.siem.destinations import (
    REDACTED,
    Destination,
    add_destination,
    change_destination,
    list_destinations,
    remove_destination,
)
from auditlog.siem.status import destinations_frame
from auditlog.store import AuditLog

OPS = Identity("ops@contoso.com")
LEAD = Identity("lead@contoso.com")
SECRET = "webhook-hmac-key-never-logged"
HOOK = Destination("hook", "webhook", "https://hooks.example.com/a", "json", {}, SECRET)


def _siem_events(log: AuditLog) -> list[dict[str, Any]]:
    stmt = sa.text(
        "SELECT action, outcome, actor, target, details, record FROM events "
        "WHERE action LIKE 'siem.%' ORDER BY seq"
    )
    with log.engine.connect() as conn:
        return [dict(r) for r in conn.execute(stmt).mappings()]


def test_a_non_admin_is_refused_every_change_and_each_refusal_is_logged(log: AuditLog) -> None:
    add_destination(log, Destination("soc", "syslog-tcp", "127.0.0.1:514"), OPS, "admin")
    refused = r"compliance_lead role may not use 'siem\.configure'"
    with pytest.raises(PermissionDenied, match=refused):
        add_destination(log, HOOK, LEAD, "compliance_lead", reason="try")
    with pytest.raises(PermissionDenied, match=r"siem\.configure"):
        change_destination(log, "soc", LEAD, "auditor", enabled=False)
    with pytest.raises(PermissionDenied, match="a user with no role"):
        remove_destination(log, "soc", LEAD, None, reason="gone")
    assert [d.name for d in list_destinations(log.engine)] == ["soc"]
    assert list_destinations(log.engine)[0].enabled
    denied = [e for e in _siem_events(log) if e["outcome"] == "denied"]
    assert [e["action"] for e in denied] == [
        "siem.destination_added",
        "siem.destination_changed",
        "siem.destination_removed",
    ]
    assert {e["actor"]["id"] for e in denied} == {LEAD.user}
    assert [e["target"]["id"] for e in denied] == ["hook", "soc", "soc"]
    assert [e["details"]["role"] for e in denied] == ["compliance_lead", "auditor", None]
    assert denied[0]["details"]["attempted"]["endpoint"] == HOOK.endpoint
    assert denied[0]["details"]["reason"] == "try"
    assert denied[1]["details"]["changed"] == ["enabled"]
    assert all("siem.configure" in e["details"]["refused"] for e in denied)
    assert all(SECRET not in e["record"] for e in denied)


def test_an_admin_adds_changes_and_removes_a_destination(log: AuditLog) -> None:
    add_destination(log, HOOK, OPS, "admin", start="now", reason="SEC-1")
    change_destination(log, "hook", OPS, "admin", "pause", enabled=False)
    frame = destinations_frame(log.engine)
    assert frame.to_dicts() == [
        {
            "name": "hook",
            "transport": "webhook",
            "endpoint": HOOK.endpoint,
            "format": "json",
            "enabled": False,
            "secret": REDACTED,
            "options": "{}",
        }
    ]
    remove_destination(log, "hook", OPS, "admin")
    assert destinations_frame(log.engine).is_empty()
    assert [(e["action"], e["outcome"]) for e in _siem_events(log)] == [
        ("siem.destination_added", "success"),
        ("siem.destination_changed", "success"),
        ("siem.destination_removed", "success"),
    ]


def test_a_change_with_nothing_to_change_is_refused_naming_the_field(log: AuditLog) -> None:
    add_destination(log, HOOK, OPS, "admin")
    with pytest.raises(InvalidDestination) as info:
        change_destination(log, "hook", OPS, "admin", "nothing")
    assert info.value.field == "changes"


def test_a_test_message_needs_the_admin_role(log: AuditLog) -> None:
    add_destination(log, Destination("soc", "syslog-tcp", "127.0.0.1:9"), OPS, "admin")
    with pytest.raises(PermissionDenied, match=r"siem\.configure"):
        send_test_message(log.engine, "soc", "auditor")


def test_the_cli_acts_as_its_local_operator_and_is_refused_without_admin(
    log: AuditLog, db_url: URL, tmp_path: Path
) -> None:
    import typer
    from typer.testing import CliRunner

    from auditlog.cli.siem import siem_app

    config = tmp_path / "auditlog.toml"
    config.write_text('[roles.users]\n"lead@contoso.com" = "compliance_lead"\n', "utf-8")
    app = typer.Typer()
    app.add_typer(siem_app, name="siem")
    env = {"AUDITLOG_DATABASE_URL": db_url.render_as_string(hide_password=False),
           "AUDITLOG_HOME": str(tmp_path / "home"), "AUDITLOG_CONFIG": str(config),
           "AUDITLOG_USER": "lead@contoso.com"}  # fmt: skip
    args = ["siem", "add", "soc", "--transport", "syslog-tcp", "--endpoint", "127.0.0.1:514"]
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 1
    assert "may not use 'siem.configure'" in result.output
    assert list_destinations(log.engine) == []
    [refused] = _siem_events(log)
    assert (refused["outcome"], refused["actor"]["id"]) == ("denied", "lead@contoso.com")
