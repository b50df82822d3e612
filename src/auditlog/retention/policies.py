"""Retention policies (with history and two-person approval) and legal holds.

    Retention(log, settings)                        what the CLI and the Retention page call
        .policies() .pending() .holds() .validate()
        .set_policy() .approve() .reject() .place_hold() .lift_hold()

Settings, engines and records live in :mod:`auditlog.retention.records` and are re-exported
here.

Errors (in :mod:`auditlog.errors`)::

    InvalidPolicy       a policy value is out of bounds or malformed (field, reason)   422
    RetentionRefused    the change conflicts with the current state                    409
    PermissionDenied    the caller's role may not do this; the attempt is logged       403

Every change is an audit event in the ``configuration`` chain, written before the change
commits (so no change is ever unlogged): ``retention.policy_changed`` (before, after, actor,
reason), ``retention.policy_change_proposed`` / ``_approved`` / ``_rejected``,
``retention.legal_hold_placed`` / ``_lifted``. A refused attempt is the same action with
outcome ``denied``. A category with no policy is kept forever.
"""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from auditlog import access
from auditlog.access import Identity, Role
from auditlog.db import tables
from auditlog.errors import NotFound, PermissionDenied, RetentionRefused
from auditlog.model import OutcomeName, new_event
from auditlog.retention.records import (
    Change,
    Hold,
    Policy,
    Proposal,
    active_holds,
    check_category,
    current_policies,
    pending_proposals,
    required_text,
    validate_policy,
)
from auditlog.settings import RetentionSettings
from auditlog.store import AuditLog

_LOCK = sa.text("SELECT pg_advisory_xact_lock(hashtext(:lock_key))")


class Retention:
    """Policies, approvals and legal holds, each change logged.

    Parameters
    ----------
    log
        An :class:`AuditLog` whose engine acts as ``auditlog_retention``
        (:func:`retention_engine`); the events go through it.
    settings
        Floor, ceiling and whether changes need approval.
    """

    def __init__(self, log: AuditLog, settings: RetentionSettings) -> None:
        self.log = log
        self.engine = log.engine
        self.settings = settings

    # -- reading --------------------------------------------------------------------------

    def policies(self) -> dict[str, Policy | None]:
        """The policy in force per category (None: no policy, kept forever)."""
        with self.engine.connect() as conn:
            return current_policies(conn)

    def pending(self) -> list[Proposal]:
        """Proposals waiting for approval, oldest first."""
        with self.engine.connect() as conn:
            return pending_proposals(conn)

    def holds(self) -> list[Hold]:
        """Active legal holds."""
        with self.engine.connect() as conn:
            return active_holds(conn)

    # -- validation -----------------------------------------------------------------------

    def validate(self, days: Any, archive_days: Any) -> None:
        """Raise :class:`InvalidPolicy` naming the field unless both are within bounds."""
        validate_policy(self.settings, days, archive_days)

    # -- events ---------------------------------------------------------------------------

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

    # -- policies -------------------------------------------------------------------------

    def set_policy(
        self,
        who: Identity,
        role: Role | None,
        category: str,
        days: int,
        archive_days: int,
        reason: str,
    ) -> Change:
        """Change a category's policy (or propose it, when changes need approval).

        Raises
        ------
        PermissionDenied
            The role may not change retention (logged as ``denied``).
        InvalidPolicy
            Below the floor, above a ceiling, no reason, unknown category.
        RetentionRefused
            A proposal for the category is already pending.
        """
        target = _policy_target(check_category(category))
        attempt = {"days": days, "archive_days": archive_days}
        self._authorize(
            who,
            role,
            "retention.change",
            "retention.policy_changed",
            target,
            category=category,
            attempted=attempt,
            reason=reason,
        )
        self.validate(days, archive_days)
        reason = required_text(reason, "reason", "reason for the change")
        change_id = str(uuid.uuid4())
        if self.settings.require_approval:
            return Change(False, proposal=self._propose(who, change_id, category, attempt, reason))
        with self.engine.begin() as conn:
            before = self._locked(conn, category)
            self._write_policy(conn, who, change_id, category, before, attempt, reason, who.user)
        return Change(True, policy=self.policies()[category])

    def _locked(self, conn: Connection, category: str) -> Policy | None:
        """Take the category's retention lock; return its policy in force."""
        conn.execute(_LOCK, {"lock_key": f"auditlog:retention:{category}"})
        return current_policies(conn)[category]

    def _write_policy(
        self,
        conn: Connection,
        who: Identity,
        change_id: str,
        category: str,
        before: Policy | None,
        after: dict[str, int],
        reason: str,
        proposed_by: str,
        approved: dict[str, Any] | None = None,
    ) -> None:
        conn.execute(
            sa.insert(tables.retention_policies).values(
                category=category,
                days=after["days"],
                archive_days=after["archive_days"],
                change_id=change_id,
                proposed_by=proposed_by,
                approved_by=who.user if approved else None,
                reason=reason,
            )
        )
        events = [] if approved is None else [approved]
        events.append(
            self._event(
                who,
                "retention.policy_changed",
                _policy_target(category),
                before=before.state() if before else None,
                after=after,
                category=category,
                reason=reason,
                change_id=change_id,
                proposed_by=proposed_by,
                approved_by=who.user if approved else None,
            )
        )
        # Logged before the change commits: if logging fails, the change is rolled back.
        self.log.record_many(events)

    def _propose(
        self, who: Identity, change_id: str, category: str, after: dict[str, int], reason: str
    ) -> Proposal:
        with self.engine.begin() as conn:
            before = self._locked(conn, category)
            waiting = [p for p in self.pending() if p.category == category]
            if waiting:
                raise RetentionRefused(
                    f"a change of the {category} policy is already waiting for approval "
                    f"(change {waiting[0].change_id} by {waiting[0].proposed_by}); approve or "
                    "reject it first"
                )
            conn.execute(
                sa.insert(tables.retention_proposals).values(
                    change_id=change_id,
                    category=category,
                    days=after["days"],
                    archive_days=after["archive_days"],
                    reason=reason,
                    proposed_by=who.user,
                )
            )
            self.log.record(
                self._event(
                    who,
                    "retention.policy_change_proposed",
                    _policy_target(category),
                    before=before.state() if before else None,
                    after=after,
                    category=category,
                    reason=reason,
                    change_id=change_id,
                )
            )
        return next(p for p in self.pending() if p.change_id == change_id)

    def _proposal(self, change_id: str) -> Proposal:
        found = [p for p in self.pending() if p.change_id == change_id]
        if not found:
            raise NotFound(
                f"no pending retention change {change_id!r}; list them with "
                "`auditlog retention list`"
            )
        return found[0]

    def approve(self, who: Identity, role: Role | None, change_id: str, note: str = "") -> Policy:
        """Approve a pending change; it takes effect now. The approver must be another person.

        Raises
        ------
        PermissionDenied
            The role may not change retention, or ``who`` proposed it (logged as ``denied``).
        NotFound
            No such pending change.
        """
        p = self._proposal(change_id)
        target, action = _policy_target(p.category), "retention.policy_change_approved"
        self._authorize(who, role, "retention.change", action, target, change_id=change_id)
        if who.user.casefold() == p.proposed_by.casefold():
            raise self._deny(
                who,
                action,
                target,
                f"{who.user} proposed change {change_id}; "
                "a different compliance lead must approve it",
                change_id=change_id,
            )
        self.validate(p.days, p.archive_days)
        after = {"days": p.days, "archive_days": p.archive_days}
        approved = self._event(
            who,
            action,
            target,
            after=after,
            category=p.category,
            change_id=change_id,
            proposed_by=p.proposed_by,
            note=note.strip() or None,
        )
        with self.engine.begin() as conn:
            before = self._locked(conn, p.category)
            self._decide(conn, who, change_id, "approved", note)
            self._write_policy(
                conn, who, change_id, p.category, before, after, p.reason, p.proposed_by, approved
            )
        return self.policies()[p.category]  # type: ignore[return-value]

    def reject(self, who: Identity, role: Role | None, change_id: str, reason: str) -> Proposal:
        """Reject a pending change (its proposer may withdraw it this way); logged."""
        p = self._proposal(change_id)
        target, action = _policy_target(p.category), "retention.policy_change_rejected"
        self._authorize(who, role, "retention.change", action, target, change_id=change_id)
        reason = required_text(reason, "reason", "reason for the rejection")
        with self.engine.begin() as conn:
            self._locked(conn, p.category)
            self._decide(conn, who, change_id, "rejected", reason)
            self.log.record(
                self._event(
                    who,
                    action,
                    target,
                    after={"days": p.days, "archive_days": p.archive_days},
                    category=p.category,
                    change_id=change_id,
                    proposed_by=p.proposed_by,
                    reason=reason,
                )
            )
        return p

    def _decide(
        self, conn: Connection, who: Identity, change_id: str, decision: str, reason: str
    ) -> None:
        try:
            with conn.begin_nested():
                decided = {"decision": decision, "decided_by": who.user, "reason": reason or None}
                conn.execute(
                    sa.insert(tables.retention_decisions).values(change_id=change_id, **decided)
                )
        except sa.exc.IntegrityError:
            raise RetentionRefused(f"change {change_id} was decided meanwhile") from None

    # -- legal holds ----------------------------------------------------------------------

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


def _policy_target(category: str) -> dict[str, str]:
    return {"type": "retention_policy", "id": category, "name": f"{category} retention"}


def _hold_target(category: str, case_name: str) -> dict[str, str]:
    return {"type": "legal_hold", "id": f"{category}/{case_name}", "name": str(case_name)}
