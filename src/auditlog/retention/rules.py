"""The retention rules the database enforces itself: the floor and two-person approval.

Held in ``retention_rules`` (migration 007), which only the database owner or a superuser may
change: no application login can, the retention administrator included. Each change is
logged as ``retention.rules_changed``.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from auditlog.access import Identity
from auditlog.errors import PermissionDenied
from auditlog.model import new_event
from auditlog.retention.records import DatabaseRules, database_rules


def change_database_rules(
    owner: Engine,
    who: Identity,
    floor_days: int | None = None,
    require_approval: bool | None = None,
) -> tuple[DatabaseRules, DatabaseRules, dict[str, Any] | None]:
    """Set the floor and/or the approval rule through ``owner`` (the database owner's or a
    superuser's engine). Returns (before, after, the event to log, or None if nothing
    changed): the caller records it, through its writer."""
    asked = {"floor_days": floor_days, "require_approval": require_approval}
    try:
        with owner.begin() as conn:
            before = database_rules(conn)
            changes = {k: v for k, v in asked.items() if v is not None and v != getattr(before, k)}
            if changes:
                sets = ", ".join(f"{k} = :{k}" for k in changes)
                conn.execute(sa.text(f"UPDATE retention_rules SET {sets}"), changes)
            after = database_rules(conn)
    except sa.exc.DBAPIError as exc:
        first = str(exc.orig).splitlines()[0]
        raise PermissionDenied(
            f"changing the database's retention rules needs its owner or a superuser: {first}"
        ) from None
    if not changes:
        return before, after, None
    event = new_event(
        action="retention.rules_changed",
        actor=who.actor(),
        target={"type": "retention_rules", "id": "database"},
        before={k: getattr(before, k) for k in changes},
        after=changes,
    )
    return before, after, event
