"""Retention policies (with history and two-person approval) and legal holds.

    Retention(log, settings)                        what the CLI and the Retention page call
        .policies() .pending() .holds() .validate()
        .set_policy() .approve() .reject() .place_hold() .lift_hold()

Settings live in :mod:`auditlog.settings`, records and queries in
:mod:`auditlog.retention.records`, the legal holds in :mod:`auditlog.retention.holds` and what
every change shares (authorisation, its audit event, the category lock) in
:mod:`auditlog.retention.audited`.

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

from auditlog.access import Identity, Role
from auditlog.db import tables
from auditlog.errors import InvalidPolicy, NotFound, RetentionRefused
from auditlog.retention.holds import Holds
from auditlog.retention.records import (
    Change,
    DatabaseRules,
    Policy,
    Proposal,
    check_category,
    current_policies,
    database_rules,
    pending_proposals,
    required_text,
    validate_policy,
)


class Retention(Holds):
    """Policies, approvals and legal holds (:class:`Holds`), each change logged.

    Parameters
    ----------
    log
        An :class:`AuditLog` whose engine acts as ``auditlog_retention``
        (:func:`retention_engine`); the events go through it.
    settings
        Floor, ceiling and whether changes need approval.
    """

    # -- reading --------------------------------------------------------------------------

    def policies(self) -> dict[str, Policy | None]:
        """The policy in force per category (None: no policy, kept forever)."""
        with self.engine.connect() as conn:
            return current_policies(conn)

    def pending(self) -> list[Proposal]:
        """Proposals waiting for approval, oldest first."""
        with self.engine.connect() as conn:
            return pending_proposals(conn)

    # -- validation -----------------------------------------------------------------------

    def validate(self, days: Any, archive_days: Any) -> None:
        """Raise :class:`InvalidPolicy` naming the field unless both are within bounds: the
        settings' and the database's own floor."""
        validate_policy(self.settings, days, archive_days)
        floor = self.rules().floor_days
        if days < floor:
            raise InvalidPolicy(
                "days",
                f"{days} days is below the database's retention floor of {floor} days "
                "(retention_rules, changed only by the database owner or a superuser)",
            )

    def rules(self) -> DatabaseRules:
        """The floor and approval rule the database enforces."""
        with self.engine.connect() as conn:
            return database_rules(conn)

    def require_approval(self) -> bool:
        """Whether changes need a second person: by the settings or by the database."""
        return self.settings.require_approval or self.rules().require_approval

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
        if self.require_approval():
            return Change(False, proposal=self._propose(who, change_id, category, attempt, reason))
        with self.engine.begin() as conn:
            before = self._locked(conn, category)
            self._write_policy(conn, who, change_id, category, before, attempt, reason, who.user)
        return Change(True, policy=self.policies()[category])

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


def _policy_target(category: str) -> dict[str, str]:
    return {"type": "retention_policy", "id": category, "name": f"{category} retention"}
