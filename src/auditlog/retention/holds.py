"""Legal holds: while a category is held, nothing of it is purged; placing and lifting are
logged (``retention.legal_hold_placed`` / ``_lifted``) and need ``legal_hold.change``."""

from __future__ import annotations

import sqlalchemy as sa

from auditlog.access import Identity, Role
from auditlog.db import tables
from auditlog.errors import NotFound, RetentionRefused
from auditlog.retention.audited import AuditedChanges
from auditlog.retention.records import Hold, active_holds, check_category, required_text


class Holds(AuditedChanges):
    """Placing, lifting and listing legal holds."""

    def holds(self) -> list[Hold]:
        """Active legal holds."""
        with self.engine.connect() as conn:
            return active_holds(conn)

    def _authorize_hold(
        self,
        who: Identity,
        role: Role | None,
        action: str,
        category: str,
        case_name: str,
        reason: str,
    ) -> dict[str, str]:
        """The hold's target, once ``who`` may change legal holds (a refusal is logged)."""
        target = _hold_target(check_category(category), case_name)
        self._authorize(
            who,
            role,
            "legal_hold.change",
            action,
            target,
            category=category,
            case_name=case_name,
            reason=reason,
        )
        return target

    def place_hold(
        self, who: Identity, role: Role | None, category: str, case_name: str, reason: str
    ) -> Hold:
        """Place a legal hold: nothing of ``category`` is purged until it is lifted."""
        action = "retention.legal_hold_placed"
        target = self._authorize_hold(who, role, action, category, case_name, reason)
        case = required_text(case_name, "case_name", "case name")
        reason = required_text(reason, "reason", "reason for the hold")
        with self.engine.begin() as conn:
            self._locked(conn, category)
            if any(h.case_name == case for h in active_holds(conn) if h.category == category):
                raise RetentionRefused(f"{category} is already on legal hold for case {case!r}")
            hold = {
                "category": category,
                "case_name": case,
                "reason": reason,
                "placed_by": who.user,
            }
            holds = tables.legal_holds
            hold_id = conn.execute(sa.insert(holds).values(hold).returning(holds.c.id)).scalar_one()
            self.log.record(
                self._event(
                    who,
                    action,
                    target,
                    before={"held": False},
                    after={"held": True},
                    category=category,
                    case_name=case,
                    reason=reason,
                    hold_id=hold_id,
                )
            )
        return next(h for h in self.holds() if h.id == hold_id)

    def lift_hold(
        self, who: Identity, role: Role | None, category: str, case_name: str, reason: str
    ) -> Hold:
        """Lift the active hold of ``category`` for ``case_name``; logged."""
        action = "retention.legal_hold_lifted"
        target = self._authorize_hold(who, role, action, category, case_name, reason)
        reason = required_text(reason, "reason", "reason for lifting the hold")
        with self.engine.begin() as conn:
            self._locked(conn, category)
            held = [
                h for h in active_holds(conn) if (h.category, h.case_name) == (category, case_name)
            ]
            if not held:
                raise NotFound(f"{category} has no active legal hold for case {case_name!r}")
            release = {"hold_id": held[0].id, "reason": reason, "released_by": who.user}
            conn.execute(sa.insert(tables.legal_hold_releases).values(release))
            self.log.record(
                self._event(
                    who,
                    action,
                    target,
                    before={"held": True},
                    after={"held": False},
                    category=category,
                    case_name=case_name,
                    reason=reason,
                    hold_id=held[0].id,
                )
            )
        return held[0]


def _hold_target(category: str, case_name: str) -> dict[str, str]:
    return {"type": "legal_hold", "id": f"{category}/{case_name}", "name": str(case_name)}
