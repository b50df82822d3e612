"""The pull API for keys with the read scope: GET /v1/events, /v1/checkpoints, and an
event's inclusion proof. All read as the reader role.

``GET /v1/events`` takes the timeline's filters (:meth:`Filters.from_query_params`: from,
to, last, category, action, outcome, actor, target_type, target_id, target_name, ip,
correlation_id, q) and answers NDJSON, newest first, keyset-paged on (occurred_at, event_id):
each line is the stored, hashed record with its ``prev_hash`` and ``entry_hash`` (hex), so a
consumer can check the chain. The next page's cursor is in ``X-Next-Cursor`` and a ``Link``
header (absent on the last page).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from auditlog.db.server import driver_errors
from auditlog.errors import InvalidFilter, NotFound
from auditlog.integrity.kept import export_checkpoints, export_notes
from auditlog.model import parse_timestamp, utc_text
from auditlog.proofs.prove import inclusion
from auditlog.query.filters import Filters
from auditlog.query.table import NEWEST_FIRST, c
from auditlog.query.timeline import where_clauses


@dataclass(frozen=True)
class EventPage:
    """NDJSON lines of one page and the cursor of the next (None: last page)."""

    lines: list[str]
    next_cursor: str | None


def _cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        ts, _, eid = cursor.partition("~")
        return parse_timestamp(ts), uuid.UUID(eid)
    except (ValueError, TypeError):
        raise InvalidFilter(
            "cursor", "not a cursor from a previous page (X-Next-Cursor); start without one"
        ) from None


def page_size(text: str | None, most: int) -> int:
    """The ``limit`` parameter: 1 to ``most`` (default ``most``)."""
    if text is None:
        return most
    if not text.isdigit() or not 1 <= int(text) <= most:
        raise InvalidFilter("limit", f"{text[:40]!r} is not a whole number from 1 to {most}")
    return int(text)


def _line(record: str, prev: bytes, entry: bytes) -> str:
    return (
        f'{record[:-1]},"prev_hash":"{bytes(prev).hex()}","entry_hash":"{bytes(entry).hex()}"}}\n'
    )


def events_page(engine: Engine, params: Mapping[str, Sequence[str]], most: int) -> EventPage:
    """One page of events matching the query parameters (InvalidFilter naming a bad one)."""
    filters = Filters.from_query_params(params)
    limit = page_size(next(iter(params.get("limit", [])[-1:]), None), most)
    clauses = where_clauses(filters, None)
    cursor = next(iter(params.get("cursor", [])[-1:]), None)
    if cursor:
        ts, eid = _cursor(cursor)
        clauses.append(sa.tuple_(c.occurred_at, c.event_id) < sa.tuple_(ts, eid))
    stmt = (
        sa.select(c.occurred_at, c.event_id, c.record, c.prev_hash, c.entry_hash)
        .where(*clauses)
        .order_by(*NEWEST_FIRST)
        .limit(limit + 1)
    )
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    nxt = None
    if len(rows) > limit:
        last = rows[limit - 1]
        nxt = f"{utc_text(last.occurred_at.astimezone(UTC))}~{last.event_id}"
    return EventPage([_line(r.record, r.prev_hash, r.entry_hash) for r in rows[:limit]], nxt)


def lines(page: EventPage) -> Iterator[bytes]:
    """The page's body, a line at a time."""
    for line in page.lines:
        yield line.encode("utf-8")


def checkpoints(engine: Engine, fmt: str) -> tuple[str, str]:
    """(media type, body): the newest checkpoint of each chain as C2SP notes, or JSON."""
    doc = export_checkpoints(engine)
    if fmt == "json":
        return "application/json", json.dumps(doc, sort_keys=True)
    if fmt != "note":
        raise InvalidFilter("format", f"{fmt[:40]!r}: use note (the default) or json")
    return "text/plain; charset=utf-8", export_notes(doc)[0]


def event_category(engine: Engine, event_id: str) -> str:
    """The category of a stored event; NotFound (also for a malformed id)."""
    try:
        eid = uuid.UUID(event_id)
    except ValueError:
        raise InvalidFilter("event_id", f"{event_id[:60]!r} is not a UUID") from None
    with engine.connect() as conn:
        cat = conn.scalar(sa.select(c.category).where(c.event_id == eid))
    if cat is None:
        raise NotFound(f"event {eid} is not in the log (or was purged by retention)")
    return str(cat)


def proof_text(engine: Engine, event_id: str) -> str | None:
    """The c2sp.org/tlog-proof of a stored event, or None while no checkpoint covers it."""
    with engine.connect() as sa_conn, driver_errors():
        conn: Any = sa_conn.connection.driver_connection
        try:
            return inclusion(conn, str(uuid.UUID(event_id))).text
        except NotFound:
            return None
        finally:
            conn.rollback()
