"""Retention's building blocks: errors, guard-rail settings, engines, records, queries.

    RetentionSettings (auditlog.settings)         floor, ceiling, approval, archive directory
    validate_policy(settings, days, archive_days) bounds of a policy
    retention_engine(url), connect_retention(s)   engines acting as auditlog_retention
    Policy, Proposal, Hold, Change                what the tables hold
    current_policies(conn), active_holds(conn)    the state in force

Changes go through :mod:`auditlog.retention.policies` and :mod:`auditlog.retention.holds`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine

from auditlog.db.server import connect, make_engine
from auditlog.errors import InvalidPolicy
from auditlog.model import CATEGORIES
from auditlog.settings import RetentionSettings

RETENTION_ROLE = "auditlog_retention"


# --- settings ----------------------------------------------------------------------------


def validate_policy(s: RetentionSettings, days: Any, archive_days: Any) -> None:
    """Raise :class:`InvalidPolicy` naming the field unless both are within ``s``'s bounds."""
    for name, value in (("days", days), ("archive_days", archive_days)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidPolicy(name, f"{value!r} is not a whole number of days")
    if days < s.min_days:
        raise InvalidPolicy(
            "days",
            f"{days} days is below the floor of {s.min_days} days: "
            f"events must be kept at least {s.min_days} days (the floor is "
            "retention.min_days in auditlog.toml)",
        )
    if days > s.max_days:
        raise InvalidPolicy(
            "days",
            f"{days} days is above the ceiling of {s.max_days} days "
            "(retention.max_days in auditlog.toml)",
        )
    if not 0 <= archive_days <= s.max_archive_days:
        raise InvalidPolicy(
            "archive_days",
            f"{archive_days} is outside 0..{s.max_archive_days}"
            " days (retention.max_archive_days in auditlog.toml)",
        )


@dataclass(frozen=True)
class DatabaseRules:
    """The rules the database itself enforces (table ``retention_rules``, changed only by the
    database owner or a superuser): the floor and whether every change needs a second person."""

    floor_days: int
    require_approval: bool


def database_rules(conn: Connection) -> DatabaseRules:
    row = conn.execute(sa.text("SELECT floor_days, require_approval FROM retention_rules")).one()
    return DatabaseRules(int(row[0]), bool(row[1]))


# --- engines -----------------------------------------------------------------------------


def retention_engine(url: URL | str) -> Engine:
    """An engine whose connections act as ``auditlog_retention`` (the URL's user must be a
    member: auditlog_retention_admin is, on the embedded server)."""
    return make_engine(url, "retention")


def connect_retention(settings: Any) -> Engine:
    """The retention engine for ``settings`` (migrating the database on first start)."""
    return connect(settings, "retention")


# --- records -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    """A policy in force: keep ``days`` in the table, then ``archive_days`` more as archives."""

    category: str
    days: int
    archive_days: int
    effective_at: datetime
    change_id: str
    proposed_by: str
    approved_by: str | None
    reason: str

    def state(self) -> dict[str, int]:
        return {"days": self.days, "archive_days": self.archive_days}


@dataclass(frozen=True)
class Proposal:
    """A change waiting for a second compliance lead."""

    change_id: str
    category: str
    days: int
    archive_days: int
    reason: str
    proposed_by: str
    proposed_at: datetime


@dataclass(frozen=True)
class Hold:
    """An active legal hold: nothing of ``category`` is purged while it stands."""

    id: int
    category: str
    case_name: str
    reason: str
    placed_by: str
    placed_at: datetime


@dataclass(frozen=True)
class Change:
    """What :meth:`Retention.set_policy` did: applied now, or proposed for approval."""

    applied: bool
    policy: Policy | None = None
    proposal: Proposal | None = None


_POLICIES = sa.text(
    "SELECT DISTINCT ON (category) category, days, archive_days, effective_at, "
    "change_id::text, proposed_by, approved_by, reason FROM retention_policies "
    "ORDER BY category, id DESC"
)
_PENDING = sa.text(
    "SELECT p.change_id::text, p.category, p.days, p.archive_days, p.reason, p.proposed_by, "
    "p.proposed_at FROM retention_proposals p LEFT JOIN retention_decisions d "
    "USING (change_id) WHERE d.change_id IS NULL ORDER BY p.proposed_at"
)
_HOLDS = sa.text(
    "SELECT id, category, case_name, reason, placed_by, placed_at FROM active_legal_holds "
    "ORDER BY category, placed_at"
)


def required_text(value: str | None, field: str, what: str) -> str:
    text = (value or "").strip()
    if not text:
        raise InvalidPolicy(field, f"a {what} is required")
    if "\x00" in text or len(text) > 2000:
        raise InvalidPolicy(field, f"the {what} must be plain text of at most 2000 characters")
    return text


def check_category(value: str) -> str:
    if value not in CATEGORIES:
        raise InvalidPolicy(
            "category", f"{value!r} is not a category; use one of {', '.join(CATEGORIES)}"
        )
    return value


def pending_proposals(conn: Connection) -> list[Proposal]:
    return [Proposal(*r) for r in conn.execute(_PENDING)]


def current_policies(conn: Connection) -> dict[str, Policy | None]:
    found = {r[0]: Policy(*r) for r in conn.execute(_POLICIES)}
    return {cat: found.get(cat) for cat in CATEGORIES}


def active_holds(conn: Connection) -> list[Hold]:
    return [Hold(*r) for r in conn.execute(_HOLDS)]
