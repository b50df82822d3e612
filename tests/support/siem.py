"""Events stored through the real log and read back as the SIEM worker reads them."""

from __future__ import annotations

from typing import Any

from auditlog.siem.delivery import fetch_events
from auditlog.siem.formats import Item
from auditlog.store import AuditLog


def stored_items(log: AuditLog, events: list[dict[str, Any]]) -> list[Item]:
    log.record_many(events)
    with log.engine.connect() as conn:
        items = []
        for cat in ("configuration", "governance", "user_activity"):
            items += fetch_events(conn, cat, 0, 100_000)
    return items
