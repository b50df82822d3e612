"""The append-only writer: validation, idempotency, per-category hash chains, COPY.

One transaction per batch. For each category in the batch (in name order, so writers never
deadlock) it takes an advisory lock, reads the chain head, assigns gapless ``seq`` and hashes,
and COPYs the rows in. A NOTIFY on ``auditlog_events`` fires on commit.

Single events (:meth:`AuditLog.record`) and requests (:meth:`AuditLog.submit`) from many
threads go through one committer (:mod:`auditlog.groupcommit`), which appends whatever is
queued as one batch: one transaction per chain lock hold, however many callers.
"""

from __future__ import annotations

import gc
import hashlib
import itertools
import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from json.encoder import encode_basestring as _encode_str
from typing import Any, NamedTuple

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from auditlog.canonical import _encode, checked_text, jcs_text, screen_ok
from auditlog.db.server import driver_errors
from auditlog.errors import (
    AppendRefused,
    BatchRejected,
    EventConflict,
    InvalidEvent,
    SigningKeyRefused,
)
from auditlog.groupcommit import CommitStats, GroupCaps, GroupCommitter
from auditlog.integrity.checkpoints import Checkpoint, sign_checkpoint
from auditlog.integrity.keys import Signer, key_status, load_signer, not_registered
from auditlog.integrity.rule import ZERO_HASH
from auditlog.model import CATEGORIES, Actor, AuditEvent, offset_minutes, parse_event, utc_text
from auditlog.proofs.merkle import CompactRange, leaf_hash
from auditlog.proofs.tree import STORED_LEVEL, TreeReader, store_nodes
from auditlog.settings import Settings, load_settings
from auditlog.source import source_text

_LOG = logging.getLogger(__name__)
NOTIFY_CHANNEL = "auditlog_events"
CHUNK = 1000  # events validated at a time while the server ingests the previous ones
STRIDE = 8  # rows written per STRIDE events validated
FIRST_CHUNK = 100  # the server waits while the first chunk is validated: keep it short
# The writer sends the hashed record and the links; PostgreSQL derives every other column from
# the record (auditlog_append_check), so no column can differ from what was hashed.
APPEND_COLUMNS = ("record", "prev_hash", "entry_hash")
COPY_SQL = f"COPY events ({', '.join(APPEND_COLUMNS)}) FROM STDIN"
ACTOR_KEYS = ("type", "id", "display_name", "upn", "entra_object_id", "tenant_id", "resolved")
ActorResolver = Callable[[Actor], Actor]


class _Unread:
    """``_maybe_checkpoint``'s default: the caller has not read the newest checkpoint."""


_UNREAD = _Unread()


class Receipt(NamedTuple):
    """Where an event landed. ``duplicate`` means it was already stored (idempotent repeat);
    ``recorded_at`` is the row's server time (the stored row's, for a duplicate)."""

    event_id: str
    category: str
    seq: int
    entry_hash: bytes
    duplicate: bool = False
    recorded_at: datetime | None = None


@dataclass(slots=True)
class Prepared:
    """A validated event with the canonical JSON text of each field.

    ``head``/``middle``/``tail`` are the record's JCS text around the three fields only known
    under the chain lock (clock_skew; recorded_at and seq), so hashing is a concatenation.
    """

    event: AuditEvent
    event_id: str
    category: str
    texts: dict[str, str]
    occurred: datetime
    head: str
    middle: str
    tail: str

    def content(self) -> dict[str, str]:
        return {k: v for k, v in self.texts.items() if k != "actor"}

    def record_text(self, skew: bool, recorded_at: str, seq: int) -> str:
        """JCS(record) as text; its UTF-8 bytes equal ``integrity.record_bytes`` of the row."""
        flag = "true" if skew else "false"
        return f'{self.head}{flag}{self.middle}"{recorded_at}","seq":{seq}{self.tail}'

    def size(self) -> int:
        """About the bytes of its record (characters; the chain fields' width added)."""
        return len(self.head) + len(self.middle) + len(self.tail) + 64


def _byte_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def _actor_dict(a: Actor) -> dict[str, Any]:
    return {
        "type": a.type,
        "id": a.id,
        "display_name": a.display_name,
        "upn": a.upn,
        "entra_object_id": a.entra_object_id,
        "tenant_id": a.tenant_id,
        "resolved": a.resolved,
    }


def _free_values(ev: AuditEvent, actor: dict[str, Any]) -> dict[str, Any]:
    """The fields whose values come from the producer as free JSON or text."""
    tgt = ev.target
    return {
        "actor": actor,
        "after": ev.after,
        "before": ev.before,
        "correlation_id": ev.correlation_id,
        "details": ev.details,
        "target": {"type": tgt.type, "id": tgt.id, "name": tgt.name},
        "user_agent": ev.user_agent,
    }


def _fixed_texts(ev: AuditEvent, event_id: str) -> dict[str, str]:
    # action, enums, the uuid, the timestamp and the canonical IP are validated to contain
    # nothing JSON escapes, so quoting them is their JCS form.
    ip = ev.source_ip
    return {
        "action": f'"{ev.action}"',
        "category": f'"{ev.category}"',
        "event_id": f'"{event_id}"',
        "occurred_at": f'"{utc_text(ev.occurred_at)}"',
        "occurred_offset": str(offset_minutes(ev.occurred_at)),
        "outcome": f'"{ev.outcome}"',
        "source_ip": "null" if ip is None else f'"{ip}"',
    }


def _fast_texts(ev: AuditEvent, event_id: str, a: Actor, resolved: bool) -> dict[str, str]:
    """Field texts by the C encoder and f-strings, which are JCS unless the caller's screen
    trips (non-ASCII, an escaped NUL, a float or a big number: then ``_checked_texts``).

    Actor and target have fixed keys, written here in sorted order; their values are strings
    (encoded as the C encoder encodes them), None, the validated type or the flag.
    """
    q, t = _encode_str, ev.target
    oid = a.entra_object_id
    texts = _fixed_texts(ev, event_id)
    texts["actor"] = (
        f'{{"display_name":{"null" if a.display_name is None else q(a.display_name)},'
        f'"entra_object_id":{"null" if oid is None else q(oid)},'
        f'"id":{"null" if a.id is None else q(a.id)},'
        f'"resolved":{"true" if resolved else "false"},'
        f'"tenant_id":{"null" if a.tenant_id is None else q(a.tenant_id)},'
        f'"type":"{a.type}","upn":{"null" if a.upn is None else q(a.upn)}}}'
    )
    texts["after"] = "null" if ev.after is None else _encode(ev.after)
    texts["before"] = "null" if ev.before is None else _encode(ev.before)
    texts["correlation_id"] = "null" if ev.correlation_id is None else q(ev.correlation_id)
    texts["details"] = _encode(ev.details)
    texts["target"] = (
        f'{{"id":{q(t.id)},"name":{"null" if t.name is None else q(t.name)},"type":{q(t.type)}}}'
    )
    texts["user_agent"] = "null" if ev.user_agent is None else q(ev.user_agent)
    return texts


def _checked_texts(ev: AuditEvent, event_id: str, a: Actor, resolved: bool) -> dict[str, str]:
    """Field texts walked in Python: names the offending field, or canonicalises floats and
    non-ASCII keys exactly (the rfc8785 package)."""
    free = _free_values(ev, {**_actor_dict(a), "resolved": resolved})
    return _fixed_texts(ev, event_id) | {k: checked_text(v, k) for k, v in free.items()}


def _segments(t: dict[str, str], source: str = "") -> tuple[str, str, str]:
    """The record's text around its chain fields; ``source`` (its JCS text, '' for none) is a
    member only when given, between seq and source_ip (docs/integrity.md, section 2)."""
    head = (
        f'{{"action":{t["action"]},"actor":{t["actor"]},"after":{t["after"]},'
        f'"before":{t["before"]},"category":{t["category"]},"clock_skew":'
    )
    middle = (
        f',"correlation_id":{t["correlation_id"]},"details":{t["details"]},'
        f'"event_id":{t["event_id"]},"occurred_at":{t["occurred_at"]},'
        f'"occurred_offset":{t["occurred_offset"]},"outcome":{t["outcome"]},"recorded_at":'
    )
    tail = f',"source_ip":{t["source_ip"]},"target":{t["target"]},"user_agent":{t["user_agent"]}}}'
    return head, middle, f',"source":{source}{tail}' if source else tail


def _check_sizes(
    t: dict[str, str], total: int, settings: Settings, size: Callable[[str], int]
) -> None:
    cap = settings.store.max_state_bytes
    for name in ("before", "after"):
        n = size(t[name])
        if n > cap:
            raise InvalidEvent(name, f"{n} bytes exceeds the {cap}-byte cap for before/after state")
    if total > settings.store.max_event_bytes:
        raise InvalidEvent(
            "event",
            f"{total} bytes exceeds the {settings.store.max_event_bytes}-byte cap for one event",
        )


def prepare(
    raw: Any,
    settings: Settings,
    resolve: ActorResolver | None = None,
    source: Mapping[str, str] | None = None,
) -> Prepared:
    """Validate one event and compute its canonical field texts (no database access).

    Parameters
    ----------
    raw
        The event as the producer sent it: a dict, JSON text or an ``AuditEvent``. It cannot
        carry ``source`` (the model refuses it).
    settings
        The bounds (``settings.store``).
    resolve
        Looks the actor up in the directory, if given.
    source
        The API key that submitted the event, ``{"type", "id", "name"}``
        (:mod:`auditlog.source`), or None (in-process, from a file): then the record has no
        ``source`` member and hashes as events always did.

    Raises
    ------
    InvalidEvent
        Naming every bad field (``source`` when the source itself is malformed).
    """
    return _prepare(raw, settings, resolve, source_text(source))


def _prepare(raw: Any, settings: Settings, resolve: ActorResolver | None, source: str) -> Prepared:
    """:func:`prepare` with the source's JCS text already checked ('' for none)."""
    ev = parse_event(raw, settings.store)
    event_id = str(ev.event_id)
    actor = resolve(ev.actor) if resolve else ev.actor
    resolved = bool(resolve and actor.resolved)
    try:
        t = _fast_texts(ev, event_id, actor, resolved)
        head, middle, tail = _segments(t, source)
        # actor and target hold only validated strings; numbers can come in the free JSON
        text = head + middle + tail
        slow = not screen_ok(text, t["before"] + t["after"] + t["details"])
    except (TypeError, ValueError):
        slow = True
    size: Callable[[str], int] = len  # the screen saw ASCII only: characters are bytes
    if slow:
        t = _checked_texts(ev, event_id, actor, resolved)
        head, middle, tail = _segments(t, source)
        size = _byte_len
        text = head + middle + tail
    total = size(text)
    _check_sizes(t, total + 64, settings, size)
    return Prepared(ev, event_id, ev.category, t, ev.occurred_at, head, middle, tail)


def prepare_many(
    raws: Iterable[Any],
    settings: Settings,
    resolve: ActorResolver | None = None,
    source: Mapping[str, str] | None = None,
) -> tuple[list[Prepared], dict[int, InvalidEvent]]:
    """Validate a batch, all submitted by ``source`` (see :func:`prepare`); return the valid
    events and the errors by index. A malformed ``source`` raises InvalidEvent at once."""
    text = source_text(source)  # once for the batch, not per event
    good: list[Prepared] = []
    bad: dict[int, InvalidEvent] = {}
    for i, raw in enumerate(raws):
        try:
            good.append(_prepare(raw, settings, resolve, text))
        except InvalidEvent as exc:
            bad[i] = exc
    return good, bad


def _same_content(p: Prepared, stored: dict[str, Any]) -> str:
    """'' when ``stored`` (record form) holds what ``p`` says, else the first differing field."""
    for key, text in p.content().items():
        if jcs_text(stored[key]) != text:
            return key
    actor = stored["actor"]
    given = {k: v for k, v in _actor_dict(p.event.actor).items() if k != "resolved"}
    for key, value in ((k, v) for k, v in given.items() if v is not None):
        if actor.get(key) != value:
            return f"actor.{key}"
    return ""


class AuditLog:
    """The audit log: append events, sign chain heads. There is no edit and no delete."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        signer: Signer | None = None,
        resolve: ActorResolver | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.signer = signer or load_signer(self.settings)
        self.resolve = resolve
        # recorded_at comes from the server clock; ``clock`` replaces it for rows that must be
        # recorded in the past (demo data, tests, benchmarks). The database refuses such rows
        # from every application role (docs/integrity.md): only a superuser session that skips
        # the append check (session_replication_role = replica) can store them.
        self.clock = clock
        self._signing: threading.Event | None = None
        # the right edge of each chain's Merkle tree as this process last committed it, by
        # (seq, entry_hash) of the head it belongs to; reread whenever the head moved
        self._edges: dict[str, tuple[int, bytes, CompactRange]] = {}
        self._edges_lock = threading.Lock()
        self._check_key()
        st = settings.store
        caps = GroupCaps(st.group_max_events, st.group_max_bytes, st.queue_max_events)
        self._committer: GroupCommitter[Prepared, Receipt] = GroupCommitter(
            self._append_group, Prepared.size, caps
        )

    @classmethod
    def open(
        cls, settings: Settings | None = None, engine: Engine | None = None, **kwargs: Any
    ) -> AuditLog:
        """Connect as the writer role (migrating on first start; or use ``engine``) and load
        the signing key, which a key administrator must have registered
        (:func:`auditlog.integrity.keyadmin.open_registered` registers it where the
        credential allows). Without ``settings``, they are read once here
        (:func:`~auditlog.settings.load_settings`).
        """
        from auditlog.db.server import connect

        settings = settings or load_settings()
        return cls(engine or connect(settings, "writer"), settings, **kwargs)

    def _check_key(self) -> None:
        """The database must know the signing key, or every checkpoint would be refused."""
        with self.engine.connect() as conn:
            status = key_status(conn, self.signer.key_id)
        if status is None:
            raise not_registered(self.signer.key_id)
        if status == "retired":
            raise SigningKeyRefused(
                f"signing key {self.signer.key_id} was retired by a key administrator: "
                "configure a new key (store.signing_key) and have it registered"
            )

    def record(self, event: Any) -> Receipt:
        """Append one event (dict, JSON text or AuditEvent); return its receipt.

        Validated in the calling thread, then committed with whatever other threads submitted
        meanwhile (group commit); the receipt comes after the commit. When the queue is full
        (setting ``queue_max_events``) this call waits for room. Raises InvalidEvent,
        EventConflict, DatabaseUnavailable (the event may or may not be stored: send it again
        with the same event_id) or WriterClosed (:meth:`close` came first).
        """
        prepared = prepare(event, self.settings, self.resolve)
        return self._committer.call([prepared])[0]

    def submit(self, prepared: Sequence[Prepared], *, block: bool = False) -> Future[list[Receipt]]:
        """Queue one request's validated events (:func:`prepare`) for the next group commit.

        They are stored together (all or none), in one transaction with the requests queued
        meanwhile; another request's failure never fails this one. ``block``: when the queue
        is full, wait for room, or (False, the default: a server answers 503 rather than pile
        up requests) fail at once with :class:`~auditlog.errors.WriterBusy`.

        Returns
        -------
        Future
            The receipts in input order once committed (a repeated event_id with the same
            content gets the stored row's, ``duplicate=True``), or this request's own error.
        """
        return self._committer.submit(prepared, block=block)

    def commit_stats(self) -> CommitStats:
        """How many group transactions, requests and events the committer has handled."""
        return self._committer.stats()

    def _append_group(self, prepared: list[Prepared]) -> list[Receipt]:
        # the committer tells an unavailable database from a bad request by these errors
        with driver_errors():
            return self.append_prepared(prepared)

    def record_many(self, events: Sequence[Any]) -> list[Receipt]:
        """Append a batch atomically: all valid events are stored, or none if any is invalid.

        Raises BatchRejected (every invalid event by index) or EventConflict; then nothing of
        the batch is stored. Receipts come in input order.
        """
        with paused_gc():
            return self._append(_chunks(events), prepared=False)

    def append_prepared(self, prepared: Sequence[Prepared]) -> list[Receipt]:
        """Store already validated events in one transaction; receipts in input order."""
        with paused_gc():
            return self._append([(0, prepared)], prepared=True)

    def _append(
        self, chunks: list[tuple[int, Sequence[Any]]], prepared: bool, careful: bool = False
    ) -> list[Receipt]:
        """One transaction. Optimistically the events are taken to be new (looking each up
        costs more than the rare repeat); if the unique event_id index refuses one, the
        transaction rolls back and the prepared events go again, ``careful``: looked up first,
        repeats answered from what is stored."""
        batch = _Batch(self, prepared, careful)
        first = batch.prepare(chunks[0][1], 0) if chunks else []
        # A batch of several chunks locks every chain (categories of later chunks are not known
        # yet); locks are always taken in name order, so writers never deadlock.
        cats = list(CATEGORIES) if len(chunks) > 1 else sorted({p.category for p in first})
        try:
            with self.engine.begin() as sa_conn:
                cur = _driver(sa_conn).cursor()
                batch.start(cur, cats)
                batch.lookup(cur, first)
                with cur.copy(COPY_SQL) as copy:
                    pending = first
                    for offset, chunk in chunks[1:]:
                        pending = batch.feed(copy, chunk, offset, pending)
                    if batch.errors:
                        raise BatchRejected(batch.errors)
                    batch.write(copy, pending)
                batch.finish(cur)
        except psycopg.errors.UniqueViolation as exc:
            if careful or exc.diag.constraint_name != "events_event_id_key":
                raise EventConflict("(one of the batch)", f" in another category: {exc}") from None
        except psycopg.errors.IntegrityConstraintViolation as exc:
            # the append check (auditlog_append_check) refused a row; nothing was stored
            raise AppendRefused(exc.diag.message_primary or str(exc)) from None
        else:
            self._keep_edges(batch)
            return batch.receipts
        # Validated again rather than kept: holding every event of a batch until its end would
        # free them all at once, after the commit, while the server waits for the next batch.
        again = [p for _, chunk in chunks for p in batch.prepare(chunk, 0)]
        return self._append([(0, again)], prepared=True, careful=True)

    def _maybe_checkpoint(
        self,
        cur: psycopg.Cursor[Any],
        category: str,
        seq: int,
        head: bytes,
        clock: datetime | None,
        edge: CompactRange | None,
        last: _LastCheckpoint | _Unread | None = _UNREAD,
    ) -> None:
        """Sign the head if due: N entries or T seconds (server clock) since the last one.

        ``clock`` is a reading of the server clock in this transaction (the batch's, when its
        recorded_at is one), else it is read here: it judges whether T seconds have passed and
        is the signed_at (the database refuses any other time). ``last`` is the newest
        checkpoint when the caller read it under this transaction's chain lock.
        """
        if isinstance(last, _Unread):
            last = _last_checkpoint(cur, category)
        if last is not None and last.seq >= seq:
            return
        clock = clock or _server_clock(cur)
        due = (
            last is None
            or seq - last.seq >= self.settings.store.checkpoint_every
            or clock - last.signed_at >= timedelta(seconds=self.settings.store.checkpoint_seconds)
        )
        if due:
            origin = self.settings.store.origin
            _insert_checkpoint(cur, self.signer, category, seq, head, last, clock, origin, edge)

    def _edge(
        self, cur: psycopg.Cursor[Any], category: str, seq: int, head: bytes
    ) -> CompactRange | None:
        """The tree's right edge at the head ``(seq, head)``: this process's own copy when
        nothing was appended since it committed, else read from the database."""
        with self._edges_lock:
            kept = self._edges.get(category)
        if kept is not None and kept[0] == seq and kept[1] == head:
            return CompactRange(seq, kept[2].nodes)
        try:
            return TreeReader(cur, category).edge(seq)
        except KeyError:  # a prefix purged before the tree existed: no leaves to build on
            _LOG.warning("%s has no Merkle tree (a prefix purged before migration 010)", category)
            return None

    def _keep_edges(self, batch: _Batch) -> None:
        with self._edges_lock:
            for cat, (seq, head) in batch.heads.items():
                edge = batch.edges[cat]
                if edge is not None:
                    self._edges[cat] = (seq, head, edge)

    def _now(self, cur: psycopg.Cursor[Any]) -> datetime:
        return self.clock() if self.clock is not None else _server_clock(cur)

    def sign_heads_every(self, seconds: float) -> None:
        """Sign uncovered chain heads every ``seconds`` from a daemon thread, so a process
        that writes now and then (the dashboard's self-audit) leaves no unsigned span. A
        failed round is logged and retried at the next; :meth:`close` stops it."""
        if self._signing is not None:
            return
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(seconds):
                try:
                    self.checkpoint()
                except Exception:  # the next round retries; the process must not die of it
                    _LOG.warning("signing the chain heads failed", exc_info=True)

        threading.Thread(target=loop, name="auditlog-checkpoints", daemon=True).start()
        self._signing = stop

    def close(self) -> None:
        """Stop signing heads (:meth:`sign_heads_every`) and the committer, and close the
        connections. A group being committed finishes (its callers get their receipts);
        events still queued fail with :class:`~auditlog.errors.WriterClosed`, and so does
        every later :meth:`record` or :meth:`submit`."""
        if self._signing is not None:
            self._signing.set()
            self._signing = None
        self._committer.close()
        self.engine.dispose()

    def checkpoint(self, categories: Iterable[str] | None = None) -> list[Checkpoint]:
        """Sign the current head of each category not yet covered; return what was signed."""

        done = []
        with self.engine.begin() as sa_conn:
            cur = _driver(sa_conn).cursor()
            for cat in sorted(categories or CATEGORIES):
                cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"auditlog:{cat}",))
                seq, head, _ = _head(cur, cat)
                last = _last_checkpoint(cur, cat)
                if seq > (last.seq if last else 0):
                    clock = _server_clock(cur)
                    edge = self._edge(cur, cat, seq, head)
                    origin = self.settings.store.origin
                    cp = _insert_checkpoint(
                        cur, self.signer, cat, seq, head, last, clock, origin, edge
                    )
                    done.append(cp)
        return done


def _chunks(events: Sequence[Any]) -> list[tuple[int, Sequence[Any]]]:
    """(offset, events) pieces: a short first one, so the COPY starts early, then CHUNK each."""
    if len(events) <= CHUNK:
        return [(0, events)]
    starts = [0, *range(FIRST_CHUNK, len(events), CHUNK)]
    return [(a, events[a:b]) for a, b in zip(starts, [*starts[1:], len(events)], strict=True)]


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic GC for a batch: it allocates many small, acyclic objects, and
    generation scans over them cost a third of the ingest time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _existing(cur: psycopg.Cursor[Any], batch: Sequence[Prepared]) -> dict[str, Receipt]:
    """Receipts for events already stored; EventConflict if one differs.

    The comparison is with the stored record (the exact text hashed), not with the jsonb
    columns, which hold numbers as PostgreSQL normalised them (1e+21 reads back as an int).
    """
    if not batch:
        return {}
    # One text parameter: far cheaper to send than a uuid[] built value by value.
    cur.execute(
        "SELECT event_id::text, category, seq, entry_hash, record, recorded_at FROM events "
        "WHERE event_id = ANY(string_to_array(%s, ',')::uuid[])",
        (",".join([p.event_id for p in batch]),),
    )
    rows = cur.fetchall()
    by_id = {p.event_id: p for p in batch}
    out = {}
    for event_id, category, seq, entry_hash, record, at in rows:
        p = by_id[event_id]
        diff = _same_content(p, json.loads(record))
        if diff:
            raise EventConflict(p.event_id, f" (field {diff} differs)")
        out[p.event_id] = Receipt(p.event_id, category, int(seq), bytes(entry_hash), True, at)
    return out


class _Batch:
    """State of one append: chain heads, receipts, errors, ids seen; rows go out by COPY.

    Validation of chunk n+1 is interleaved with writing chunk n row by row, so the server
    ingests (from the socket buffer) while we validate.
    """

    def __init__(self, log: AuditLog, prepared: bool, careful: bool) -> None:
        self.log, self.prepared, self.careful = log, prepared, careful
        self.receipts: list[Receipt] = []
        self.errors: dict[int, InvalidEvent] = {}
        # event_id -> (the record's texts around its chain fields, receipt): a repeat within the
        # batch must say the same; the Prepared itself is let go once its row is written
        self.seen: dict[str, tuple[tuple[str, str, str], Receipt]] = {}
        self.heads: dict[str, tuple[int, bytes]] = {}
        self.lasts: dict[str, _LastCheckpoint | None] = {}  # read under the lock, at start
        self.edges: dict[str, CompactRange | None] = {}
        self.nodes: dict[str, list[tuple[int, int, bytes]]] = {}  # completed, to store
        self.written: dict[str, int] = {}
        self.existing: dict[str, Receipt] = {}

    def prepare(self, chunk: Sequence[Any], offset: int) -> list[Prepared]:
        if self.prepared:
            good = list(chunk)
        else:
            good, bad = prepare_many(chunk, self.log.settings, self.log.resolve)
            self.errors.update({offset + i: e for i, e in bad.items()})
        return good

    def start(self, cur: psycopg.Cursor[Any], categories: Sequence[str]) -> None:
        """Lock each chain (in name order), then read its head, its newest checkpoint and the
        server clock: one round trip (a pipeline; each statement runs after the one before,
        with its own snapshot, so every read sees what was committed before its lock)."""
        conn = cur.connection
        asked: list[tuple[str, psycopg.Cursor[Any], psycopg.Cursor[Any]]] = []
        with conn.pipeline():
            for cat in categories:
                conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"auditlog:{cat}",))
                head_cur = conn.execute(_HEAD_SQL, (cat,))
                asked.append((cat, head_cur, conn.execute(_LAST_SQL, (cat,))))
            clock = conn.execute("SELECT clock_timestamp()") if self.log.clock is None else None
        last_at = None
        for cat, head_cur, last_cur in asked:
            seq, head, at = _head_of(head_cur.fetchone())
            self.lasts[cat] = _last_of(last_cur.fetchone())
            self.heads[cat] = (seq, head)
            self.edges[cat] = self.log._edge(cur, cat, seq, head)
            last_at = at if last_at is None or (at and at > last_at) else last_at
        now = self.log._now(cur) if clock is None else clock.fetchone()[0]  # type: ignore[index]
        self.now = max(now, last_at) if last_at else now
        # the server's own reading, for signing checkpoints without asking again
        self.server_now = now if self.log.clock is None else None
        self.rec_text = utc_text(self.now)
        self.skew = timedelta(seconds=self.log.settings.store.clock_skew_seconds)

    def lookup(self, cur: psycopg.Cursor[Any], chunk: Sequence[Prepared]) -> None:
        """Careful attempts only (one chunk, looked up before the COPY starts)."""
        if self.careful:
            self.existing = _existing(cur, chunk)

    def feed(
        self, copy: Any, chunk: Sequence[Any], offset: int, pending: Sequence[Prepared]
    ) -> list[Prepared]:
        """Validate ``chunk`` while writing ``pending`` (the previous one) a few rows at a time,
        so the server ingests rows while we validate."""
        if self.prepared:
            self.write(copy, pending)
            good = list(chunk)
        else:
            good, rows = [], iter(pending)
            for i, raw in enumerate(chunk, start=1):
                try:
                    good.append(prepare(raw, self.log.settings, self.log.resolve))
                except InvalidEvent as exc:
                    self.errors[offset + i - 1] = exc
                if not i % STRIDE and not self.errors:
                    self.write(copy, itertools.islice(rows, STRIDE))
            if not self.errors:
                self.write(copy, rows)
        return [] if self.errors else good  # on errors: validate on, to name every bad event

    def write(self, copy: Any, chunk: Iterable[Prepared]) -> None:
        sha256, rec_text = hashlib.sha256, self.rec_text
        lo, hi = self.now - self.skew, self.now + self.skew
        for p in chunk:
            eid = p.event_id
            known = self.seen.get(eid)
            texts = (p.head, p.middle, p.tail)
            if known is not None:
                if known[0] != texts:
                    raise EventConflict(eid, " (twice in this batch)")
                self.receipts.append(known[1]._replace(duplicate=True))
                continue
            stored = self.existing.get(eid)
            if stored is not None:
                self.seen[eid] = (texts, stored)
                self.receipts.append(stored)
                continue
            seq, prev = self.heads[p.category]
            seq += 1
            flagged = not lo <= p.occurred <= hi
            record = p.record_text(flagged, rec_text, seq)
            entry = sha256(prev + record.encode()).digest()
            copy.write_row((record, prev, entry))
            edge = self.edges[p.category]
            if edge is not None:
                done = edge.append(leaf_hash(entry))
                if len(done) > STORED_LEVEL:
                    self.nodes.setdefault(p.category, []).extend(done[STORED_LEVEL:])
            self.heads[p.category] = (seq, entry)
            self.written[p.category] = seq
            receipt = Receipt(eid, p.category, seq, entry, False, self.now)
            self.seen[eid] = (texts, receipt)
            self.receipts.append(receipt)

    def finish(self, cur: psycopg.Cursor[Any]) -> None:
        for cat, nodes in sorted(self.nodes.items()):
            store_nodes(cur, cat, nodes)
        for cat, seq in sorted(self.written.items()):
            head, edge = self.heads[cat][1], self.edges[cat]
            self.log._maybe_checkpoint(
                cur, cat, seq, head, self.server_now, edge, self.lasts.get(cat, _UNREAD)
            )
        if self.written:  # one statement for every chain this batch extended
            notes = [json.dumps({"category": c, "seq": q}) for c, q in sorted(self.written.items())]
            sql = "SELECT pg_notify(%s, n) FROM unnest(%s::text[]) AS n"
            cur.execute(sql, (NOTIFY_CHANNEL, notes))


def _driver(sa_conn: sa.Connection) -> psycopg.Connection[Any]:
    """The psycopg connection under a SQLAlchemy one (for COPY and raw cursors)."""
    driver: psycopg.Connection[Any] = sa_conn.connection.driver_connection  # type: ignore[assignment]
    return driver


_HEAD_SQL = "SELECT seq, entry_hash, recorded_at FROM auditlog_chain_head(%s)"
_LAST_SQL = "SELECT seq, signed_at, hash, count FROM auditlog_last_checkpoint(%s)"


def _head(cur: psycopg.Cursor[Any], category: str) -> tuple[int, bytes, datetime | None]:
    """(seq, entry_hash, recorded_at) of the chain head; a purge anchor if all was purged.

    The database's own definition (auditlog_chain_head), the one its append check uses."""
    cur.execute(_HEAD_SQL, (category,))
    return _head_of(cur.fetchone())


def _head_of(row: Any) -> tuple[int, bytes, datetime | None]:
    seq, head, at = row
    return int(seq), bytes(head), at


@dataclass(frozen=True, slots=True)
class _LastCheckpoint:
    """The newest checkpoint of a category, as the next one must chain to it."""

    seq: int
    signed_at: datetime
    hash: bytes
    count: int


def _last_checkpoint(cur: psycopg.Cursor[Any], category: str) -> _LastCheckpoint | None:
    cur.execute(_LAST_SQL, (category,))
    return _last_of(cur.fetchone())


def _last_of(row: Any) -> _LastCheckpoint | None:
    return None if row is None else _LastCheckpoint(int(row[0]), row[1], bytes(row[2]), row[3])


def _server_clock(cur: psycopg.Cursor[Any]) -> datetime:
    cur.execute("SELECT clock_timestamp()")
    return cur.fetchone()[0]  # type: ignore[index,no-any-return]


def _insert_checkpoint(
    cur: psycopg.Cursor[Any],
    signer: Signer,
    category: str,
    seq: int,
    head: bytes,
    last: _LastCheckpoint | None,
    signed_at: datetime,
    origin: str,
    edge: CompactRange | None,
) -> Checkpoint:
    """Sign (category, seq, head) chained to ``last`` and add it through the database's
    checking function (the writer has no INSERT on checkpoints): a version-3 note over the
    tree's root at seq, or version 2 for a chain without a tree (purged before it existed)."""
    prev, count = (last.hash, last.count + 1) if last else (ZERO_HASH, 1)
    if edge is None:
        cp = sign_checkpoint(signer, category, seq, head, signed_at, prev, count)
    else:
        assert edge.size == seq, "the tree's edge must be at the signed head"
        name = f"{origin}/{category}"
        cp = sign_checkpoint(signer, category, seq, head, signed_at, prev, count, name, edge.root())
    args = [cp.category, cp.seq, cp.entry_hash, signed_at, cp.key_id, cp.signature, prev, count]
    args.append(cp.message().decode("utf-8"))
    if cp.version == 3:
        cur.execute(
            "SELECT auditlog_add_checkpoint_v3(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (*args, cp.origin, cp.root),
        )
    else:
        cur.execute("SELECT auditlog_add_checkpoint(%s, %s, %s, %s, %s, %s, %s, %s, %s)", args)
    return cp
