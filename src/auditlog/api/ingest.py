"""POST /v1/events: events in, receipts out.

Each event's text is validated by :func:`auditlog.store.prepare` (the same rules as every
other way in); the key must have a write scope for each event's category. A batch is
all-or-nothing (422 naming every invalid event by index and field path) unless
``?partial=true``, which stores the valid ones and names the rest. A repeated event_id with
the same content answers its original receipt (``duplicate: true``; 200 when every event was
a repeat, else 201); with different content 409 names the event.

``Idempotency-Key``: an event without an event_id gets ``uuid5(key id, header, index)``, so
a retried request stores nothing twice even when its producer sets no ids.

Appends go through :func:`_append` only (one place to switch to group commit).
"""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from auditlog.api.auth import Caller
from auditlog.api.body import Item
from auditlog.apikeys.keys import may_write
from auditlog.errors import ApiProblem, InvalidEvent
from auditlog.model import utc_text
from auditlog.store import AuditLog, Prepared, Receipt, prepare

IDEMPOTENCY_NAMESPACE = uuid.UUID("6f1c5a52-8f0e-4b7e-9a53-4c1e2f8a9d10")
MAX_PROBLEMS = 1000  # problems listed in one 422 answer; the count says how many in all
_TAKES_SOURCE = "source" in inspect.signature(prepare).parameters


def idempotent_id(key_id: str, idempotency_key: str, index: int) -> uuid.UUID:
    """The event_id of event ``index`` of a request with ``Idempotency-Key`` from a key."""
    return uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{key_id}\n{idempotency_key}\n{index}")


def _prepare(raw: Any, log: AuditLog, source: dict[str, str]) -> Prepared:
    """``prepare``, recording the key as the event's source once ``prepare`` takes one."""
    if _TAKES_SOURCE:
        return prepare(raw, log.settings, log.resolve, source=source)  # type: ignore[call-arg]
    return prepare(raw, log.settings, log.resolve)


async def _append(log: AuditLog, prepared: Sequence[Prepared]) -> list[Receipt]:
    """Store ``prepared`` in one transaction; receipts in input order (committed)."""
    return await asyncio.to_thread(log.append_prepared, prepared)


@dataclass
class Checked:
    """A request's events after validation: the good ones by index, problems by index."""

    good: list[tuple[int, Prepared]]
    bad: dict[int, InvalidEvent]


def validate(items: Sequence[Item], log: AuditLog, caller: Caller, idem: str | None) -> Checked:
    """Prepare every event (CPU work: run it in a thread for big batches)."""
    good, bad = [], {}
    for i, item in enumerate(items):
        try:
            p = _prepare(item.text, log, caller.source)
            if idem and not item.has_id:
                fixed = p.event.model_copy(
                    update={"event_id": idempotent_id(caller.key.key_id, idem, i)}
                )
                p = _prepare(fixed, log, caller.source)
            good.append((i, p))
        except InvalidEvent as exc:
            bad[i] = exc
    return Checked(good, bad)


def problems_of(bad: dict[int, InvalidEvent], items: Sequence[Item]) -> list[dict[str, Any]]:
    """Every (index, line, field, reason) of the invalid events, at most MAX_PROBLEMS."""
    out = [
        {"index": i, "line": items[i].line, "field": path, "reason": reason}
        for i, exc in sorted(bad.items())
        for path, reason in exc.problems
    ]
    return out[:MAX_PROBLEMS]


def invalid(bad: dict[int, InvalidEvent], items: Sequence[Item]) -> ApiProblem:
    """The 422 answer naming every invalid event."""
    first = min(bad)
    return ApiProblem(
        422,
        f"{len(bad)} of {len(items)} event(s) are invalid, first event {first}: {bad[first]}; "
        "nothing was stored (send ?partial=true to store the valid ones)",
        "invalid-events",
        errors=problems_of(bad, items),
    )


def out_of_scope(caller: Caller, checked: Checked) -> list[tuple[int, str]]:
    """(index, category) of the events the key may not write."""
    scopes = caller.key.scopes
    return [(i, p.category) for i, p in checked.good if not may_write(scopes, p.category)]


def recorded_times(log: AuditLog, receipts: Sequence[Receipt]) -> dict[str, datetime]:
    """recorded_at of each receipt's row (read back until receipts carry it)."""
    missing = [r.event_id for r in receipts if getattr(r, "recorded_at", None) is None]
    times = {r.event_id: getattr(r, "recorded_at", None) for r in receipts}
    if missing:
        sql = sa.text(
            "SELECT event_id::text, recorded_at FROM events "
            "WHERE event_id = ANY(string_to_array(:ids, ',')::uuid[])"
        )
        with log.engine.connect() as conn:
            rows = conn.execute(sql, {"ids": ",".join(missing)}).all()
            times |= {eid: at for eid, at in rows}
    return {k: v for k, v in times.items() if v is not None}


def receipt_json(index: int, r: Receipt, recorded: datetime | None) -> dict[str, Any]:
    """One receipt as the API answers it."""
    return {
        "index": index,
        "event_id": r.event_id,
        "category": r.category,
        "seq": r.seq,
        "entry_hash": r.entry_hash.hex(),
        "recorded_at": utc_text(recorded) if recorded else None,
        "duplicate": r.duplicate,
        "proof": f"/v1/events/{r.event_id}/proof",
    }


async def store(log: AuditLog, checked: Checked) -> list[dict[str, Any]]:
    """Append the valid events; their receipts as JSON, in input order."""
    if not checked.good:
        return []
    receipts = await _append(log, [p for _, p in checked.good])
    times = await asyncio.to_thread(recorded_times, log, receipts)
    return [
        receipt_json(i, r, times.get(r.event_id))
        for (i, _), r in zip(checked.good, receipts, strict=True)
    ]
