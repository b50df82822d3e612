"""What every retention change shares: who may make it, its audit event, the category lock.

A change is authorised first (a refusal is itself logged, outcome ``denied``), then made under
the category's advisory lock, with its audit event written in the same transaction.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from auditlog import access
from auditlog.access import Identity, Role
from auditlog.errors import PermissionDenied
from auditlog.model import OutcomeName, new_event
from auditlog.retention.records import Policy, current_policies
from auditlog.settings import RetentionSettings
from auditlog.store import AuditLog

_LOCK = sa.text("SELECT pg_advisory_xact_lock(hashtext(:lock_key))")


class AuditedChanges:
    """The base of :class:`~auditlog.retention.policies.Retention`: the log, the settings and
    the steps every change takes."""

    def __init__(self, log: AuditLog, settings: RetentionSettings) -> None:
        self.log = log
        self.engine = log.engine
        self.settings = settings

    def _event(
        self,
        who: Identity,
        action: str,
        target: dict[str, str],
        outcome: OutcomeName = "success",
        before: dict[str, Any] | None = None,
        after: dict[str, Any] | None = None,
        **details: Any,
    ) -> dict[str, Any]:
        # A detail given as None is one that does not apply here (e.g. approved_by of a change
        # that needed no approval): left out rather than stored as null.
        present = {k: v for k, v in details.items() if v is not None}
        return new_event(
            action=action,
            outcome=outcome,
            actor=who.actor(),
            target=target,
            before=before,
            after=after,
            details=present,
        )

    def _deny(
        self, who: Identity, action: str, target: dict[str, str], message: str, **details: Any
    ) -> PermissionDenied:
        """Log a refused attempt (outcome denied) and return the error to raise."""
        self.log.record(self._event(who, action, target, "denied", refused=message, **details))
        return PermissionDenied(message)

    def _authorize(
        self,
        who: Identity,
        role: Role | None,
        permission: str,
        action: str,
        target: dict[str, str],
        **details: Any,
    ) -> None:
        try:
            access.require(role, permission)
        except PermissionDenied as exc:
            raise self._deny(who, action, target, str(exc), role=role, **details) from None

    def _locked(self, conn: Connection, category: str) -> Policy | None:
        """Take the category's retention lock; return its policy in force."""
        conn.execute(_LOCK, {"lock_key": f"auditlog:retention:{category}"})
        return current_policies(conn)[category]
