"""The dashboard's own events: user.login and dashboard.viewed, once per distinct view."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from auditlog.access import Identity
from auditlog.identity.directory import Directory, Principal
from auditlog.selfaudit import SelfAudit, login_event, view_event, view_key
from auditlog.store import AuditLog

ALICE = Identity(user="alice@contoso.com", upn="alice@contoso.com", method="oidc")


def test_view_key_ignores_filter_order_and_empty_values() -> None:
    a = view_key("timeline", {"category": ["governance", "configuration"], "actor": ""})
    b = view_key("timeline", {"category": ["configuration", "governance"], "q": None})
    assert a == b


def test_view_key_differs_by_page_and_by_filter_value() -> None:
    keys = {view_key("timeline", {}), view_key("diff", {}), view_key("timeline", {"q": "x"})}
    assert len(keys) == 3


def test_login_event_without_role_is_denied() -> None:
    ev = login_event(ALICE, None)
    assert (ev["category"], ev["action"], ev["outcome"]) == (
        "user_activity",
        "user.login",
        "denied",
    )


def test_view_event_carries_page_and_nonempty_filters() -> None:
    ev = view_event(ALICE, "timeline", "Timeline", {"outcome": "denied", "actor": ""})
    assert ev["action"] == "dashboard.viewed"
    assert ev["target"] == {"type": "dashboard", "id": "auditlog/timeline", "name": "Timeline"}
    assert ev["details"] == {"page": "timeline", "filters": {"outcome": "denied"}}


def _rows(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [
            dict(r)
            for r in conn.execute(
                sa.text(
                    "SELECT action, actor, details, correlation_id, source_ip::text AS ip "
                    "FROM events ORDER BY seq"
                )
            ).mappings()
        ]


def test_same_view_is_recorded_once_per_session(log: AuditLog) -> None:
    audit = SelfAudit(log, ALICE)
    for _ in range(3):
        audit.viewed("timeline", "Timeline", {"outcome": "denied"})
    audit.viewed("timeline", "Timeline", {"outcome": "failure"})
    audit.viewed("diff", "Diff", {"event": "x"})
    assert [r["details"]["filters"] for r in _rows(log.engine)] == [
        {"outcome": "denied"},
        {"outcome": "failure"},
        {"event": "x"},
    ]


def test_login_is_recorded_once_and_shares_the_session_correlation(log: AuditLog) -> None:
    audit = SelfAudit(log, ALICE, source_ip="10.1.2.3", user_agent="pytest")
    audit.login("auditor")
    audit.login("auditor")
    audit.viewed("timeline", "Timeline", {})
    rows = _rows(log.engine)
    assert [r["action"] for r in rows] == ["user.login", "dashboard.viewed"]
    assert {r["correlation_id"] for r in rows} == {f"dashboard-{audit.session_id}"}
    assert rows[0]["ip"] == "10.1.2.3/32"


def test_actor_is_resolved_against_the_directory(log: AuditLog) -> None:
    oid = "2d7a3b9c-8f1e-4c2b-a1d0-5e6f7a8b9c0d"
    directory = Directory(log.engine)
    directory.upsert(
        [
            Principal(
                object_id=oid,
                type="user",
                upn="alice@contoso.com",
                display_name="Alice Andersen",
                source="csv",
            )
        ]
    )
    log.resolve = directory.resolver()
    SelfAudit(log, ALICE).login("auditor")
    actor = _rows(log.engine)[0]["actor"]
    assert (actor["entra_object_id"], actor["display_name"], actor["resolved"]) == (
        oid,
        "Alice Andersen",
        True,
    )
