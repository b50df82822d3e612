"""Realistic demo data: governance stories that share a correlation ID, in all three categories.

A story is request -> approval -> automation run -> configuration change (with nested
before/after states), surrounded by user activity (logins, dashboard views, exports) and
RBAC edits. Deterministic for a seed, so re-running the demo is idempotent (event_ids repeat).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

DEMO_NAMESPACE = uuid.UUID("6f1c1c52-8f0b-4d1e-9d4e-2f1a7f6d0a11")
TENANT = "7b0f3c6e-2d4a-4c1b-9e8f-1a2b3c4d5e6f"
FIRST = [
    "Alice",
    "Bjørn",
    "Chen",
    "Daniela",
    "Émile",
    "Fatima",
    "Grace",
    "Hiro",
    "Ingrid",
    "José",
    "Kwame",
    "Lena",
    "Mateo",
    "Nadia",
    "Oskar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sven",
    "Zoë",
]
LAST = [
    "Andersen",
    "Bauer",
    "Costa",
    "Dubois",
    "Evans",
    "Fischer",
    "García",
    "Haddad",
    "Ito",
    "Jensen",
    "Kowalski",
    "Müller",
    "Nakamura",
    "O'Brien",
    "Patel",
]
SERVICES = ["Policy Engine", "Remediation Bot", "Access Review Runner", "Config Sync"]
OFFSETS = [0, 60, -300, 330, 540, -480, 120]
POLICIES = ["mfa-required", "data-retention", "byod-access", "privileged-access", "geo-block"]
ROLES = ["Reader", "Contributor", "Owner", "Approver", "Auditor"]
DASHBOARDS = ["risk-overview", "access-reviews", "policy-drift", "automation-health"]


def _uid(seed: int, *parts: object) -> str:
    return str(uuid.uuid5(DEMO_NAMESPACE, f"{seed}:" + ":".join(map(str, parts))))


def demo_actors(seed: int = 7, users: int = 24) -> list[dict[str, Any]]:
    """Directory-shaped actors: users with UPNs and object ids, plus service principals."""
    rnd = random.Random(seed)
    out = []
    for i in range(users):
        first, last = rnd.choice(FIRST), rnd.choice(LAST)
        login = f"{first}.{last}".lower().replace("'", "").encode("ascii", "ignore").decode()
        out.append(
            {
                "type": "user",
                "id": f"{login}{i}@contoso.com",
                "upn": f"{login}{i}@contoso.com",
                "display_name": f"{first} {last}",
                "entra_object_id": _uid(seed, "user", i),
                "tenant_id": TENANT,
            }
        )
    for i, name in enumerate(SERVICES):
        out.append(
            {
                "type": "service",
                "id": _uid(seed, "sp", i),
                "display_name": name,
                "entra_object_id": _uid(seed, "sp", i),
                "tenant_id": TENANT,
            }
        )
    return out


def _ts(base: datetime, offset_min: int) -> str:
    local = base.astimezone(timezone(timedelta(minutes=offset_min)))
    return local.isoformat(timespec="microseconds")


def _ip(rnd: random.Random) -> str:
    if rnd.random() < 0.3:
        return f"2001:db8:{rnd.randrange(1, 0xFFFF):x}::{rnd.randrange(1, 0xFFFF):x}"
    return f"10.{rnd.randrange(256)}.{rnd.randrange(256)}.{rnd.randrange(1, 255)}"


def _actor_ref(a: dict[str, Any], rnd: random.Random) -> dict[str, Any]:
    """How a producer names an actor: by UPN, object id or id, not all fields."""
    if a["type"] == "user":
        return (
            {"type": "user", "upn": a["upn"]}
            if rnd.random() < 0.7
            else {"type": "user", "entra_object_id": a["entra_object_id"]}
        )
    return {"type": "service", "id": a["id"], "display_name": a["display_name"]}


def _policy_state(rnd: random.Random, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "enabled": rnd.random() < 0.8,
        "mode": rnd.choice(["enforce", "report-only"]),
        "conditions": {
            "users": {
                "include": rnd.sample(["all", "admins", "guests", "finance"], 2),
                "exclude": ["break-glass"],
            },
            "locations": rnd.sample(["EU", "US", "APAC", "trusted-ips"], 2),
            "risk_levels": rnd.sample(["low", "medium", "high"], rnd.randint(1, 3)),
        },
        "grant": {"mfa": True, "compliant_device": rnd.random() < 0.5},
        "version": rnd.randint(1, 40),
    }


def _mutate(rnd: random.Random, state: dict[str, Any]) -> dict[str, Any]:
    after = {**state, "conditions": {**state["conditions"]}, "grant": {**state["grant"]}}
    after["version"] = state["version"] + 1
    choice = rnd.randrange(4)
    if choice == 0:
        after["enabled"] = not state["enabled"]
    elif choice == 1:
        after["conditions"]["locations"] = [*state["conditions"]["locations"], "LATAM"]
    elif choice == 2:
        after["grant"]["compliant_device"] = not state["grant"]["compliant_device"]
    else:
        after["mode"] = "enforce" if state["mode"] == "report-only" else "report-only"
    return after


class _Gen:
    def __init__(self, seed: int, start: datetime, end: datetime) -> None:
        self.rnd = random.Random(seed)
        self.seed, self.start, self.span = seed, start, (end - start).total_seconds()
        # The same seed and end give the same event_ids, so re-loading a demo file is a no-op;
        # a demo generated at another time gets new ids (its content differs).
        self.key = f"{seed}/{end.isoformat()}"
        actors = demo_actors(seed)
        self.users = [a for a in actors if a["type"] == "user"]
        self.services = [a for a in actors if a["type"] == "service"]
        self.n = 0

    def event(
        self,
        category: str,
        action: str,
        at: datetime,
        actor: dict[str, Any],
        target: dict[str, Any],
        **extra: Any,
    ) -> dict[str, Any]:
        rnd, self.n = self.rnd, self.n + 1
        ev = {
            "event_id": _uid(self.seed, self.key, self.n),
            "category": category,
            "action": action,
            "outcome": extra.pop("outcome", "success"),
            "occurred_at": _ts(at, rnd.choice(OFFSETS)),
            "actor": _actor_ref(actor, rnd),
            "target": target,
            "details": extra.pop("details", {}),
        }
        if actor["type"] == "user":
            ev["source_ip"] = _ip(rnd)
            ev["user_agent"] = rnd.choice(
                [
                    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Edge/131",
                    "Mozilla/5.0 (Macintosh) Safari/17.5",
                ]
            )
        ev.update(extra)
        return ev

    def story(self) -> list[dict[str, Any]]:
        rnd = self.rnd
        # a story spans up to ~31 hours: start it early enough to end before `end`
        t = self.start + timedelta(seconds=rnd.random() * max(self.span - 32 * 3600, 0))
        corr = f"chg-{_uid(self.seed, 'corr', self.n)[:8]}"
        requester, approver = rnd.sample(self.users, 2)
        bot = rnd.choice(self.services)
        name = rnd.choice(POLICIES)
        before = _policy_state(rnd, name)
        after = _mutate(rnd, before)
        req = {
            "type": "change_request",
            "id": f"CR-{rnd.randrange(10000, 99999)}",
            "name": f"Update {name}",
        }
        decision = rnd.choices(["approved", "rejected"], [0.85, 0.15])[0]
        evs = [
            self.event(
                "governance",
                "approval.requested",
                t,
                requester,
                req,
                correlation_id=corr,
                details={"justification": "quarterly review"},
            ),
            self.event(
                "governance",
                "approval.decided",
                t + timedelta(minutes=rnd.randint(5, 600)),
                approver,
                req,
                correlation_id=corr,
                outcome="success" if decision == "approved" else "denied",
                details={"decision": decision},
            ),
        ]
        if decision == "approved":
            t2 = t + timedelta(hours=rnd.randint(11, 30))
            run = {
                "type": "automation",
                "id": f"run-{_uid(self.seed, 'run', self.n)[:8]}",
                "name": f"apply {name}",
            }
            ok = rnd.random() > 0.07
            evs.append(
                self.event(
                    "governance",
                    "automation.executed",
                    t2,
                    bot,
                    run,
                    correlation_id=corr,
                    outcome="success" if ok else "failure",
                    details={"steps": rnd.randint(2, 9), "dry_run": False},
                )
            )
            if ok:
                evs.append(
                    self.event(
                        "configuration",
                        "policy.updated",
                        t2 + timedelta(seconds=4),
                        bot,
                        {"type": "policy", "id": name, "name": name},
                        correlation_id=corr,
                        before=before,
                        after=after,
                    )
                )
        return evs

    def activity(self) -> dict[str, Any]:
        rnd = self.rnd
        t = self.start + timedelta(seconds=rnd.random() * self.span)
        user = rnd.choice(self.users)
        kind = rnd.random()
        if kind < 0.45:
            ok = rnd.random() > 0.08
            return self.event(
                "user_activity",
                "user.login",
                t,
                user,
                {"type": "application", "id": "governance-portal"},
                outcome="success" if ok else "failure",
                details={"method": rnd.choice(["password+mfa", "passkey"])},
            )
        if kind < 0.8:
            dash = rnd.choice(DASHBOARDS)
            return self.event(
                "user_activity",
                "dashboard.viewed",
                t,
                user,
                {"type": "dashboard", "id": dash, "name": dash.replace("-", " ")},
            )
        if kind < 0.9:
            return self.event(
                "user_activity",
                "export.downloaded",
                t,
                user,
                {"type": "report", "id": rnd.choice(DASHBOARDS)},
                details={"rows": rnd.randint(10, 50000), "format": "csv"},
            )
        grantee = rnd.choice(self.users)
        role = rnd.choice(ROLES)
        return self.event(
            "configuration",
            "rbac.role_assigned",
            t,
            user,
            {"type": "user", "id": grantee["upn"], "name": grantee["display_name"]},
            before={"roles": ["Reader"]},
            after={"roles": ["Reader", role]},
            outcome=rnd.choices(["success", "denied"], [0.9, 0.1])[0],
        )


def demo_events(
    n: int, seed: int = 7, days: int = 90, end: datetime | None = None
) -> Iterator[dict[str, Any]]:
    """``n`` demo events spread over the ``days`` before ``end`` (default: now), in time order
    within each generated block of 5,000."""
    end = end or datetime.now(UTC)
    gen = _Gen(seed, end - timedelta(days=days), end)
    made = 0
    while made < n:
        block: list[dict[str, Any]] = []
        while len(block) < min(5000, n - made):
            block.extend(gen.story() if gen.rnd.random() < 0.25 else [gen.activity()])
        block = block[: n - made]
        block.sort(key=lambda e: datetime.fromisoformat(e["occurred_at"]))
        made += len(block)
        yield from block
