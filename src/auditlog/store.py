"""The append-only writer: validation, idempotency, per-category hash chains, COPY.

One transaction per batch. For each category in the batch (in name order, so writers never
deadlock) it takes an advisory lock, reads the chain head, assigns gapless ``seq`` and hashes,
and COPYs the rows in. A NOTIFY on ``auditlog_events`` fires on commit.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.copy import QueuedLibpqWriter
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from auditlog import integrity
from auditlog.canonical import _encode, checked_text, jcs_text
from auditlog.errors import BatchRejected, EventConflict, InvalidEvent
from auditlog.model import Actor, AuditEvent, offset_minutes, parse_event, utc_text
from auditlog.settings import Settings, load_settings

NOTIFY_CHANNEL = "auditlog_events"
COPY_COLUMNS = (
    "category", "seq", "event_id", "action", "outcome", "occurred_at", "occurred_offset",
    "recorded_at", "clock_skew", "actor", "target", "before", "after", "source_ip",
    "user_agent", "correlation_id", "details", "prev_hash", "entry_hash",
)  # fmt: skip
COPY_SQL = f"COPY events ({', '.join(COPY_COLUMNS)}) FROM STDIN"
ACTOR_KEYS = ("type", "id", "display_name", "upn", "entra_object_id", "tenant_id", "resolved")
ActorResolver = Callable[[Actor], Actor]


@dataclass(frozen=True)
class Receipt:
    """Where an event landed. ``duplicate`` means it was already stored (idempotent repeat)."""

    event_id: str
    category: str
    seq: int
    entry_hash: bytes
    duplicate: bool = False


@dataclass
class Prepared:
    """A validated event with the canonical JSON text of each content field."""

    event: AuditEvent
    texts: dict[str, str]
    given_actor: dict[str, Any]
    occurred: datetime
    size: int = 0
    values: dict[str, Any] = field(default_factory=dict)

    @property
    def event_id(self) -> str:
        return str(self.event.event_id)

    @property
    def category(self) -> str:
        return self.event.category.value

    def content(self) -> dict[str, str]:
        return {k: v for k, v in self.texts.items() if k != "actor"}


def _state_text(name: str, value: dict[str, Any] | None, cap: int) -> str:
    text = checked_text(value, name)
    size = len(text) if text.isascii() else len(text.encode("utf-8"))
    if size > cap:
        raise InvalidEvent(name, f"{size} bytes exceeds the {cap}-byte cap for before/after state")
    return text


def _actor_dict(a: Actor) -> dict[str, Any]:
    return {"type": a.type.value, "id": a.id, "display_name": a.display_name, "upn": a.upn,
            "entra_object_id": a.entra_object_id, "tenant_id": a.tenant_id,
            "resolved": a.resolved}  # fmt: skip


def prepare(raw: Any, settings: Settings, resolve: ActorResolver | None = None) -> Prepared:
    """Validate one event and compute its canonical field texts (no database access)."""
    ev = parse_event(raw)
    given = {k: v for k, v in _actor_dict(ev.actor).items() if v is not None and k != "resolved"}
    actor = resolve(ev.actor) if resolve else ev.actor
    tgt = ev.target
    texts = {
        "action": _encode(ev.action),
        "actor": checked_text({**_actor_dict(actor), "resolved": bool(resolve and actor.resolved)},
                              "actor"),  # fmt: skip
        "after": _state_text("after", ev.after, settings.max_state_bytes),
        "before": _state_text("before", ev.before, settings.max_state_bytes),
        "category": _encode(ev.category.value),
        "correlation_id": checked_text(ev.correlation_id, "correlation_id"),
        "details": checked_text(ev.details, "details"),
        "event_id": _encode(str(ev.event_id)),
        "occurred_at": _encode(utc_text(ev.occurred_at)),
        "occurred_offset": str(offset_minutes(ev.occurred_at)),
        "outcome": _encode(ev.outcome.value),
        "source_ip": _encode(ev.source_ip),
        "target": checked_text({"type": tgt.type, "id": tgt.id, "name": tgt.name}, "target"),
        "user_agent": checked_text(ev.user_agent, "user_agent"),
    }
    size = sum(map(len, texts.values())) + 256
    if size > settings.max_event_bytes:
        raise InvalidEvent("event", f"about {size} bytes exceeds the "
                           f"{settings.max_event_bytes}-byte cap for one event")  # fmt: skip
    return Prepared(ev, texts, given, ev.occurred_at, size, {"source_ip": ev.source_ip})


def prepare_many(
    raws: Iterable[Any], settings: Settings, resolve: ActorResolver | None = None
) -> tuple[list[Prepared], dict[int, InvalidEvent]]:
    """Validate a batch; return the valid events and the errors by index."""
    good: list[Prepared] = []
    bad: dict[int, InvalidEvent] = {}
    for i, raw in enumerate(raws):
        try:
            good.append(prepare(raw, settings, resolve))
        except InvalidEvent as exc:
            bad[i] = exc
    return good, bad


def _same_content(p: Prepared, stored: dict[str, Any]) -> str:
    """'' when ``stored`` (record form) holds what ``p`` says, else the first differing field."""
    for key, text in p.content().items():
        if jcs_text(stored[key]) != text:
            return key
    actor = stored["actor"]
    for key, value in p.given_actor.items():
        if actor.get(key) != value:
            return f"actor.{key}"
    return ""


class AuditLog:
    """The audit log: append events, sign chain heads. There is no edit and no delete."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings | None = None,
        signer: integrity.Signer | None = None,
        resolve: ActorResolver | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings or load_settings()
        self.signer = signer or integrity.load_signer(self.settings)
        self.resolve = resolve
        self._register_key()

    @classmethod
    def open(cls, settings: Settings | None = None, **kwargs: Any) -> AuditLog:
        """Connect as the writer role (migrating on first start) and load the signing key."""
        from auditlog.db import connect

        settings = settings or load_settings()
        return cls(connect(settings, "writer"), settings, **kwargs)

    def _register_key(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.text("INSERT INTO signing_keys (key_id, public_key) VALUES (:k, :p) "
                        "ON CONFLICT (key_id) DO NOTHING"),  # fmt: skip
                {"k": self.signer.key_id, "p": integrity.public_pem(self.signer.public).encode()},
            )

    def record(self, event: Any) -> Receipt:
        """Append one event (dict, JSON text or AuditEvent); return its receipt."""
        return self.append_prepared([prepare(event, self.settings, self.resolve)])[0]

    def record_many(self, events: Sequence[Any]) -> list[Receipt]:
        """Append a batch atomically: all valid events are stored, or none if any is invalid."""
        prepared, bad = prepare_many(events, self.settings, self.resolve)
        if bad:
            raise BatchRejected(bad)
        return self.append_prepared(prepared)

    def append_prepared(self, prepared: Sequence[Prepared]) -> list[Receipt]:
        """Store already validated events in one transaction; receipts in input order."""
        unique, repeats = _dedupe_batch(prepared)
        receipts: dict[str, Receipt] = {}
        try:
            with self.engine.begin() as sa_conn:
                conn: psycopg.Connection[Any] = sa_conn.connection.driver_connection
                by_cat: dict[str, list[Prepared]] = {}
                for p in unique:
                    by_cat.setdefault(p.category, []).append(p)
                for cat in sorted(by_cat):
                    receipts.update(self._append_category(conn, cat, by_cat[cat]))
        except psycopg.errors.UniqueViolation as exc:
            raise EventConflict("(one of the batch)", f" in another category: {exc}") from None
        out = []
        for p in prepared:
            r = receipts[p.event_id]
            out.append(Receipt(r.event_id, r.category, r.seq, r.entry_hash,
                               r.duplicate or id(p) in repeats))  # fmt: skip
        return out

    def _append_category(
        self, conn: psycopg.Connection[Any], category: str, batch: list[Prepared]
    ) -> dict[str, Receipt]:
        cur = conn.cursor()
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"auditlog:{category}",))
        receipts = _existing(cur, batch)
        fresh = [p for p in batch if p.event_id not in receipts]
        if not fresh:
            return receipts
        seq, prev, last_at = _head(cur, category)
        cur.execute("SELECT clock_timestamp()")
        now = max(cur.fetchone()[0], last_at) if last_at else cur.fetchone()[0]  # type: ignore[index]
        rec_text = jcs_text(utc_text(now))
        skew = timedelta(seconds=self.settings.clock_skew_seconds)
        # The queued writer sends to the server from a thread while we hash the next rows.
        with cur.copy(COPY_SQL, writer=QueuedLibpqWriter(cur)) as copy:
            for p in fresh:
                seq += 1
                flagged = abs(p.occurred - now) > skew
                texts = {**p.texts, "seq": str(seq), "recorded_at": rec_text,
                         "clock_skew": "true" if flagged else "false"}  # fmt: skip
                entry = integrity.chain_hash(prev, integrity.record_bytes_from_texts(texts))
                copy.write_row(_copy_row(p, seq, now, flagged, prev, entry))
                receipts[p.event_id] = Receipt(p.event_id, category, seq, entry)
                prev = entry
        self._maybe_checkpoint(cur, category, seq, prev, now)
        cur.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL,
                    json.dumps({"category": category, "seq": seq})))  # fmt: skip
        return receipts

    def _maybe_checkpoint(
        self, cur: psycopg.Cursor[Any], category: str, seq: int, head: bytes, now: datetime
    ) -> None:
        cur.execute("SELECT seq, signed_at FROM checkpoints WHERE category = %s "
                    "ORDER BY seq DESC LIMIT 1", (category,))  # fmt: skip
        last = cur.fetchone()
        due = (
            last is None
            or seq - last[0] >= self.settings.checkpoint_every
            or now - last[1] >= timedelta(seconds=self.settings.checkpoint_seconds)
        )
        if due and (last is None or last[0] < seq):
            _insert_checkpoint(cur, integrity.sign_checkpoint(self.signer, category, seq, head, now))

    def checkpoint(self, categories: Iterable[str] | None = None) -> list[integrity.Checkpoint]:
        """Sign the current head of each category not yet covered; return what was signed."""
        from auditlog.model import Category

        done = []
        with self.engine.begin() as sa_conn:
            cur = sa_conn.connection.driver_connection.cursor()
            for cat in sorted(categories or [c.value for c in Category]):
                cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"auditlog:{cat}",))
                seq, head, _ = _head(cur, cat)
                cur.execute("SELECT max(seq) FROM checkpoints WHERE category = %s", (cat,))
                covered = cur.fetchone()[0] or 0  # type: ignore[index]
                if seq > covered:
                    cur.execute("SELECT clock_timestamp()")
                    now = cur.fetchone()[0]  # type: ignore[index]
                    cp = integrity.sign_checkpoint(self.signer, cat, seq, head, now)
                    _insert_checkpoint(cur, cp)
                    done.append(cp)
        return done


def _dedupe_batch(prepared: Sequence[Prepared]) -> tuple[list[Prepared], set[int]]:
    first: dict[str, Prepared] = {}
    repeats: set[int] = set()
    for p in prepared:
        seen = first.get(p.event_id)
        if seen is None:
            first[p.event_id] = p
            continue
        if seen.texts != p.texts:
            raise EventConflict(p.event_id, " (twice in this batch)")
        repeats.add(id(p))
    return list(first.values()), repeats


def _existing(cur: psycopg.Cursor[Any], batch: list[Prepared]) -> dict[str, Receipt]:
    """Receipts for events already stored; EventConflict if one differs."""
    ids = [p.event_id for p in batch]
    cur.execute(f"SELECT {', '.join(COPY_COLUMNS)} FROM events WHERE event_id = ANY(%s::uuid[])",
                (ids,))  # fmt: skip
    rows = cur.fetchall()
    if not rows:
        return {}
    by_id = {p.event_id: p for p in batch}
    out = {}
    for row in rows:
        stored = integrity.row_to_record(dict(zip(COPY_COLUMNS, row, strict=True)))
        p = by_id[stored["event_id"]]
        diff = _same_content(p, stored)
        if diff:
            raise EventConflict(p.event_id, f" (field {diff} differs)")
        out[p.event_id] = Receipt(p.event_id, stored["category"], stored["seq"],
                                  bytes.fromhex(stored["entry_hash"]), True)  # fmt: skip
    return out


def _head(cur: psycopg.Cursor[Any], category: str) -> tuple[int, bytes, datetime | None]:
    """(seq, entry_hash, recorded_at) of the chain head; a purge anchor if all was purged."""
    cur.execute("SELECT seq, entry_hash, recorded_at FROM events WHERE category = %s "
                "ORDER BY seq DESC LIMIT 1", (category,))  # fmt: skip
    row = cur.fetchone()
    if row:
        return int(row[0]), bytes(row[1]), row[2]
    cur.execute("SELECT seq, entry_hash FROM purge_anchors WHERE category = %s "
                "ORDER BY seq DESC LIMIT 1", (category,))  # fmt: skip
    anchor = cur.fetchone()
    return (int(anchor[0]), bytes(anchor[1]), None) if anchor else (0, integrity.ZERO_HASH, None)


def _copy_row(
    p: Prepared, seq: int, now: datetime, flagged: bool, prev: bytes, entry: bytes
) -> tuple[Any, ...]:
    t, ev = p.texts, p.event
    return (
        p.category, seq, p.event_id, ev.action, ev.outcome.value, ev.occurred_at,
        offset_minutes(ev.occurred_at), now, flagged, t["actor"], t["target"],
        None if ev.before is None else t["before"], None if ev.after is None else t["after"],
        p.values["source_ip"], ev.user_agent, ev.correlation_id, t["details"], prev, entry,
    )  # fmt: skip


def _insert_checkpoint(cur: psycopg.Cursor[Any], cp: integrity.Checkpoint) -> None:
    cur.execute(
        "INSERT INTO checkpoints (category, seq, entry_hash, signed_at, key_id, signature) "
        "VALUES (%s, %s, %s, %s, %s, %s)",
        (cp.category, cp.seq, cp.entry_hash, cp.signed_at, cp.key_id, cp.signature),
    )


__all__ = ["AuditLog", "Prepared", "Receipt", "prepare", "prepare_many"]
