"""Factories the tests share: valid events, superuser tampering, random JSON values."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st
from sqlalchemy.engine import Engine

# The actor the CLI and export tests act as.
ACTOR = {"type": "user", "id": "auditor-1", "upn": "auditor@contoso.com"}


def valid(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "category": "configuration",
        "action": "policy.updated",
        "outcome": "success",
        "occurred_at": "2026-11-28T09:15:02.123456+01:00",
        "actor": {"type": "user", "upn": "alice@contoso.com"},
        "target": {"type": "policy", "id": "mfa-required"},
        "before": {"enabled": False},
        "after": {"enabled": True},
        "source_ip": "192.0.2.7",
    }
    event.update(changes)
    return event


def tamper(admin: Engine, *statements: str) -> None:
    """As a superuser: switch the guard triggers off, change rows, switch them back on."""
    with admin.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE events DISABLE TRIGGER events_no_update_delete")
        for stmt in statements:
            conn.exec_driver_sql(stmt)
        conn.exec_driver_sql("ALTER TABLE events ENABLE ALWAYS TRIGGER events_no_update_delete")


# Any JSON value I-JSON allows (integers within 2**53), nested a few levels.
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=25,
)
