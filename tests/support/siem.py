"""Events stored through the real log and read back as the SIEM worker reads them; adding
destinations as an admin; waiting for a receiver."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from auditlog.access import Identity
from auditlog.siem.delivery import fetch_events
from auditlog.siem.destinations import Destination, add_destination
from auditlog.siem.formats import Item
from auditlog.store import AuditLog

ADMIN = Identity("admin@contoso.com")


def stored_items(log: AuditLog, events: list[dict[str, Any]]) -> list[Item]:
    log.record_many(events)
    with log.engine.connect() as conn:
        items = []
        for cat in ("configuration", "governance", "user_activity"):
            items += fetch_events(conn, cat, 0, 100_000)
    return items


def add_as_admin(
    log: AuditLog,
    name: str,
    transport: str,
    endpoint: str,
    fmt: str = "rfc5424",
    secret: str | None = None,
    **options: Any,
) -> Destination:
    """Add a destination through the library, as an admin (audited like any other)."""
    options.setdefault("hostname", "audit-host")
    dest = Destination(name, transport, endpoint, fmt, options, secret)
    return add_destination(log, dest, ADMIN, "admin")


def wait_until(check: Callable[[], Any], timeout: float = 30.0, every: float = 0.05) -> Any:
    """``check()`` once it is truthy, or its last value after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > end:
            return value
        time.sleep(every)
