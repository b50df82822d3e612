"""Re-driving dead letters: send items a receiver once rejected again, after it was fixed.

A dead letter stays as it was (the table is insert-only); each attempt is a row of
``siem_redrives`` (migration 008, insert-only too) and each request one audit event,
``siem.dead_letters_redriven``, naming every dead letter and its outcome. Only an admin
(``siem.configure``) may re-drive; a refusal is logged as ``denied`` like other SIEM changes.
The item is read from the log again (not from the stored payload), formatted as the
destination's format says today, and sent synchronously with the destination's transport.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from auditlog.access import Identity, Role
from auditlog.db.tables import siem_redrives
from auditlog.errors import DeliveryFailed, InvalidDestination, NotFound
from auditlog.model import CATEGORIES, OutcomeName
from auditlog.siem.delivery import fetch_checkpoints, fetch_events, make_transport
from auditlog.siem.destinations import (
    Destination,
    _audit,
    _reason,
    authorize,
    get_destination,
)
from auditlog.siem.formats import Item
from auditlog.store import AuditLog

ACTION = "siem.dead_letters_redriven"
_DEAD = sa.text("""
SELECT x.id, x.stream, x.position, x.item_key,
       EXISTS (SELECT 1 FROM siem_redrives r
               WHERE r.dead_letter_id = x.id AND r.outcome = 'delivered') AS redriven
FROM siem_dead_letters x
WHERE x.destination_id = :d
ORDER BY x.id
""")


@dataclass
class Redriven:
    """What a re-drive did: dead-letter ids delivered, and those that failed with why."""

    destination: str
    delivered: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)
    http_status: dict[int, int | None] = field(default_factory=dict)

    def summary(self) -> str:
        n = len(self.delivered) + len(self.failed)
        return (
            f"re-drove {n} dead letter(s) to {self.destination}: "
            f"{len(self.delivered)} delivered, {len(self.failed)} failed"
        )


def _select(conn: Connection, dest_id: int, ids: list[int] | None) -> list[Any]:
    rows = conn.execute(_DEAD, {"d": dest_id}).all()
    if ids is None:  # all: those no re-drive has delivered yet
        return [r for r in rows if not r.redriven]
    by_id = {int(r.id): r for r in rows}
    unknown = [i for i in ids if i not in by_id]
    if unknown:
        raise NotFound(
            f"no dead letter {', '.join(map(str, unknown))} of this destination; "
            "`auditlog siem dead-letters` lists them"
        )
    return [by_id[i] for i in dict.fromkeys(ids)]


def _item(conn: Connection, stream: str, position: int) -> Item | None:
    """The item at ``position`` of ``stream`` as the worker would send it, None if gone."""
    if stream == "checkpoints":
        found = fetch_checkpoints(conn, position - 1, dict.fromkeys(CATEGORIES, 2**62), 1)
    else:
        found = fetch_events(conn, stream, position - 1, 1)
    return found[0] if found and found[0].position == position else None


def _send(dest: Destination, items: list[tuple[int, Item | None]], out: Redriven) -> None:
    transport = make_transport(dest)
    try:
        for dead_id, item in items:
            if item is None:
                out.failed[dead_id] = "the item is no longer in the log (purged by retention)"
                continue
            try:
                transport.send([item])
                if not transport.acknowledged:  # syslog: a refusing receiver resets at once
                    time.sleep(float(dest.option("settle_seconds", 1.0)))
                    if not transport.alive():
                        raise DeliveryFailed(f"{dest.name}: the receiver closed the connection")
                out.delivered.append(dead_id)
            except DeliveryFailed as exc:
                out.failed[dead_id] = str(exc)[:2000]
                out.http_status[dead_id] = exc.http_status
                transport.close()
    finally:
        transport.close()


def redrive(
    log: AuditLog,
    name: str,
    who: Identity,
    role: Role | None,
    ids: list[int] | None = None,
    reason: str | None = None,
) -> Redriven:
    """Send dead letters of destination ``name`` again: those ``ids``, or (None) every one
    not re-driven yet. Records each attempt and one ``siem.dead_letters_redriven`` event.

    Raises
    ------
    PermissionDenied
        ``role`` is not admin (logged as ``denied``).
    NotFound
        No destination ``name``, or an id that is not one of its dead letters.
    InvalidDestination
        ``ids`` given but empty.
    """
    asked: dict[str, Any] = {"dead_letter_ids": ids if ids is not None else "all"}
    authorize(log, who, role, ACTION, name, **asked, **_reason(reason))
    if ids is not None and not ids:
        raise InvalidDestination("ids", "give dead-letter ids (--id N) or --all")
    dest = get_destination(log.engine, name, with_secret=True)
    dest_id, out = int(dest.id or 0), Redriven(name)
    with log.engine.connect() as conn:
        chosen = _select(conn, dest_id, ids)
        items = [(int(r.id), _item(conn, r.stream, int(r.position))) for r in chosen]
    keys = {int(r.id): r.item_key for r in chosen}
    if not chosen:
        return out
    _send(dest, items, out)
    rows: list[tuple[int, str, str | None]] = sorted(
        [(i, "delivered", None) for i in out.delivered]
        + [(i, "failed", e) for i, e in out.failed.items()]
    )
    with log.engine.begin() as conn:
        for dead_id, result, error in rows:
            conn.execute(
                sa.insert(siem_redrives).values(
                    dead_letter_id=dead_id,
                    destination_id=dest_id,
                    requested_by=who.user,
                    reason=reason,
                    outcome=result,
                    error=error,
                    http_status=out.http_status.get(dead_id),
                )
            )
        details = {
            "dead_letters": [
                {"id": i, "item_key": keys[i], "outcome": result} for i, result, _ in rows
            ],
            "delivered": len(out.delivered),
            "failed": len(out.failed),
            **_reason(reason),
        }
        outcome: OutcomeName = "success" if not out.failed else "failure"
        # Recorded before our commit, as destination changes are.
        _audit(log, ACTION, who.actor(), name, None, None, details, outcome=outcome)
    return out
