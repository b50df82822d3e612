"""Delivery to one destination: read past its cursors, send in batches, advance after delivery.

At-least-once. Two positions per stream: ``sent`` (in memory: written on the current
connection) and ``durable`` (the database cursor). The durable cursor advances

- on HTTP, when the receiver answered 2xx for the batch;
- on syslog, once the batch was written and the connection then stayed open for
  ``settle_seconds`` (the receiver never answers; a receiver that dies closes or resets the
  connection, which we see). When the connection breaks, ``sent`` rewinds to ``durable`` and
  everything not yet settled is sent again.

A restarted worker starts from the durable cursors, so a crash re-sends at most the unsettled
tail: duplicates (dedupe on the event_id) but no loss. Checkpoints are sent after the events
they cover. A permanent rejection (HTTP 400/413/422) of one item goes to the dead-letter
table and the cursor moves past it; a batch so rejected is split until the culprit is alone.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection, Engine

from auditlog import access
from auditlog.access import Role
from auditlog.db.tables import siem_dead_letters, siem_state
from auditlog.errors import DatabaseUnavailable, DeliveryFailed, QueryTimeout
from auditlog.integrity.checkpoints import Checkpoint
from auditlog.model import utc_text
from auditlog.siem.destinations import Destination, get_destination, split_host_port
from auditlog.siem.formats import Item
from auditlog.siem.transports import (
    HecTransport,
    SyslogTransport,
    Transport,
    WebhookTransport,
    now_text,
    tls_context,
)

log = logging.getLogger("auditlog.siem")
BACKOFF_BASE = 0.5
BACKOFF_CAP = 60.0
REJECTION_LIMIT = 20  # this many single-item rejections in a row: the receiver is misconfigured
Positions = dict[str, int]


def make_transport(dest: Destination) -> Transport:
    """The transport a destination names, configured from its options (and secret)."""
    fmt, timeout = dest.formatter(), float(dest.option("timeout", 10.0))
    ca = dest.options.get("ca_pem")
    if dest.transport.startswith("syslog"):
        host, port = split_host_port(dest.endpoint)
        tls = tls_context(ca) if dest.transport == "syslog-tls" else None
        return SyslogTransport(host, port, fmt, tls, dest.options.get("server_name"), timeout)
    if dest.transport == "hec":
        return HecTransport(dest.endpoint, fmt, dest.secret or "", ca, dest.options, timeout)
    return WebhookTransport(dest.endpoint, fmt, dest.secret or "", ca, timeout)


def send_test(dest: Destination) -> str:
    """Send one test message (MSGID ``TEST``; not an audit event); DeliveryFailed if refused.

    Over syslog, success means the receiver accepted the connection (and TLS handshake) and
    the bytes; it still has to route and keep them. Over HTTP it means a 2xx answer.
    """
    transport = make_transport(dest)
    item = Item("test", "test", 0, {"destination": dest.name, "sent_at": now_text()})
    try:
        transport.send([item])
        if not transport.acknowledged:
            time.sleep(0.2)  # a receiver that refuses us resets the connection right away
            if not transport.alive():
                raise DeliveryFailed(f"{dest.name}: the receiver closed the connection")
    finally:
        transport.close()
    how = "acknowledged" if transport.acknowledged else "written; syslog has no acknowledgement"
    return f"test message sent to {dest.name} ({dest.transport} {dest.endpoint}): {how}"


def send_test_message(engine: Engine, name: str, role: Role | None) -> str:
    """Send a test message to the destination ``name`` when ``role`` may configure the SIEM.

    ``engine`` must be able to read secrets (the writer): the test uses the real credentials.
    A test changes nothing, and a successful one is not logged, so a refusal is not either.

    Raises
    ------
    PermissionDenied
        ``role`` is not admin.
    NotFound
        No destination is named ``name``.
    """
    access.require(role, "siem.configure")
    return send_test(get_destination(engine, name, with_secret=True))


def backoff(failures: int, rng: Callable[[float, float], float] = random.uniform) -> float:
    """Exponential back-off with jitter: a random delay in [d/2, d], d = base * 2^(n-1) <= cap."""
    delay = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(failures - 1, 0))
    return rng(delay / 2, delay)


def positions(items: Sequence[Item]) -> Positions:
    out: Positions = {}
    for it in items:
        out[it.stream] = max(out.get(it.stream, 0), it.position)
    return out


def _merge(into: Positions, more: Positions) -> None:
    for k, v in more.items():
        into[k] = max(into.get(k, 0), v)


# --- reading -------------------------------------------------------------------------------


def _cursor(conn: Connection) -> Any:
    return conn.connection.driver_connection.cursor()  # type: ignore[union-attr]


def fetch_events(conn: Connection, category: str, after: int, limit: int) -> list[Item]:
    """Events of ``category`` with seq > ``after``, in seq order, in record form with hashes."""
    cur = _cursor(conn)
    cur.execute(
        "SELECT seq, record, encode(prev_hash, 'hex'), encode(entry_hash, 'hex') FROM events "
        "WHERE category = %s AND seq > %s ORDER BY seq LIMIT %s",
        (category, after, limit),
    )
    items, loads = [], json.loads
    for seq, record, prev, entry in cur.fetchall():
        data = loads(record)
        data["prev_hash"] = prev
        data["entry_hash"] = entry
        # The stored record is compact JSON in data's key order; if it is ASCII it is already
        # the ASCII JSON of data once the two hashes are appended.
        text = f'{record[:-1]},"prev_hash":"{prev}","entry_hash":"{entry}"}}'
        items.append(Item("event", category, seq, data, text if record.isascii() else None))
    return items


def fetch_checkpoints(conn: Connection, after: int, covered: Positions, limit: int) -> list[Item]:
    """Checkpoints with id > ``after`` of the ``covered`` categories, in id order, up to the
    first one whose seq is past what was sent of its category (it waits for its events)."""
    cur = _cursor(conn)
    cur.execute(
        "SELECT id, category, seq, entry_hash, signed_at, key_id, signature, version, prev_hash, "
        "count, origin, root_hash FROM checkpoints "
        "WHERE id > %s AND category = ANY(%s) ORDER BY id LIMIT %s",
        (after, list(covered), limit),
    )
    rows = cur.fetchall()
    items = []
    for cid, cat, seq, head, signed, key_id, sig, version, prev, count, origin, root in rows:
        if seq > covered[cat]:
            break
        cp = Checkpoint(
            cat, seq, bytes(head), utc_text(signed), key_id, bytes(sig), version,
            None if prev is None else bytes(prev), count,
            origin, None if root is None else bytes(root),
        )  # fmt: skip
        data = cp.to_json()  # versions 2 and 3 also carry prev_hash, count and hash
        items.append(Item("checkpoint", "checkpoints", cid, data))
    return items


def load_cursors(conn: Connection, dest_id: int) -> Positions:
    rows = conn.execute(
        sa.text("SELECT stream, position FROM siem_cursors WHERE destination_id = :d"),
        {"d": dest_id},
    ).all()
    return {str(s): int(p) for s, p in rows}


# --- the runner ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Lease:
    """A destination's lease: the advisory lock (``key``, ``dest_id``) held by backend ``pid``."""

    key: int
    dest_id: int
    pid: int

    def check(self, conn: Connection) -> None:
        """DeliveryFailed unless the lease is still held by its connection (in pg_locks)."""
        held = conn.scalar(
            sa.text(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' "
                "AND classid = :k AND objid = :d AND objsubid = 2 AND pid = :p AND granted)"
            ),
            {"k": self.key, "d": self.dest_id, "p": self.pid},
        )
        if not held:
            raise DeliveryFailed(
                f"destination {self.dest_id}: this worker lost its lease (its connection "
                "broke); another worker may deliver now, so the cursor was not advanced"
            )


class Runner:
    """Delivers the log to one destination. ``step`` does one round; ``run`` loops."""

    def __init__(
        self,
        engine: Engine,
        dest: Destination,
        wake: threading.Event | None = None,
        transport: Transport | None = None,
        clock: Callable[[], float] = time.monotonic,
        lease: Lease | None = None,
    ) -> None:
        self.engine, self.dest, self.lease = engine, dest, lease
        self.id = int(dest.id or 0)
        self.transport = transport or make_transport(dest)
        self.wake = wake or threading.Event()
        self.clock = clock
        self.batch = int(dest.option("batch", 1000))
        self.settle = float(dest.option("settle_seconds", 1.0))
        self.streams = [*dest.categories, "checkpoints"]
        self.durable: Positions = {}
        self.sent: Positions = {}
        self.pending: deque[tuple[float, Positions]] = deque()
        self.failures = 0
        self.rejections = 0
        self.retry_at = 0.0
        self.last_beat = -1e9
        self.delivered = 0  # items sent (and acknowledged or settled), duplicates included

    # -- positions

    def load(self) -> None:
        with self.engine.connect() as conn:
            found = load_cursors(conn, self.id)
        self.durable = {s: found.get(s, 0) for s in self.streams}
        self.sent = dict(self.durable)

    def rewind(self) -> None:
        """Forget what was sent but not delivered; the next round sends it again."""
        self.sent = dict(self.durable)
        self.pending.clear()
        self.transport.close()

    def commit(self, done: Positions, dead: Sequence[tuple[Item, DeliveryFailed]] = ()) -> None:
        """Advance the durable cursors (and store dead letters) in one transaction."""
        with self.engine.begin() as conn:
            if self.lease is not None:
                self.lease.check(conn)
            for item, exc in dead:
                payload = json.dumps(self.dest.formatter().payload(item), ensure_ascii=False)
                conn.execute(
                    sa.insert(siem_dead_letters).values(
                        destination_id=self.id,
                        stream=item.stream,
                        position=item.position,
                        item_key=item.key,
                        http_status=exc.http_status,
                        error=str(exc)[:2000],
                        payload=payload,
                    )
                )
            for stream, pos in done.items():
                conn.execute(
                    sa.text(
                        "UPDATE siem_cursors SET position = :p, delivered_at = now() "
                        "WHERE destination_id = :d AND stream = :s AND position < :p"
                    ),
                    {"p": pos, "d": self.id, "s": stream},
                )
        _merge(self.durable, done)
        _merge(self.sent, done)

    # -- one round

    def next_items(self) -> list[Item]:
        """What to send next after ``sent``: up to ``batch`` events, then the checkpoints
        they complete."""
        items: list[Item] = []
        with self.engine.connect() as conn:
            for cat in self.streams[:-1]:
                room = self.batch - len(items)
                if room > 0:
                    items += fetch_events(conn, cat, self.sent[cat], room)
            covered = {c: self.sent[c] for c in self.streams[:-1]}
            _merge(covered, positions(items))
            items += fetch_checkpoints(conn, self.sent["checkpoints"], covered, 100)
        return items

    def step(self) -> bool:
        """Send the next batch (if any) and settle what is due; True if something was sent."""
        items = self.next_items()
        if items:
            self.deliver(items)
        self.settle_due()
        self.succeeded()
        return bool(items)

    def deliver(self, items: list[Item]) -> None:
        if self.transport.acknowledged:
            self.send_acknowledged(items)
            return
        if self.pending and not self.transport.alive():
            raise DeliveryFailed(f"{self.dest.name}: the receiver closed the connection")
        self.transport.send(items)
        done = positions(items)
        _merge(self.sent, done)
        self.pending.append((self.clock(), done))
        self.delivered += len(items)

    def send_acknowledged(self, items: list[Item]) -> None:
        try:
            self.transport.send(items)
        except DeliveryFailed as exc:
            if exc.retryable:
                raise
            if len(items) > 1:
                half = len(items) // 2
                self.send_acknowledged(items[:half])
                self.send_acknowledged(items[half:])
                return
            if self.rejections >= REJECTION_LIMIT:  # it rejects everything: a setup problem
                raise DeliveryFailed(
                    f"{exc} ({self.rejections} items rejected in a row; no more are "
                    "dead-lettered until one is accepted: check the destination)",
                    http_status=exc.http_status,
                ) from None
            self.rejections += 1
            log.warning("%s: dead-lettered %s: %s", self.dest.name, items[0].key, exc)
            self.commit(positions(items), [(items[0], exc)])
            return
        self.rejections = 0
        self.delivered += len(items)
        self.commit(positions(items))

    def settle_due(self) -> None:
        """Advance the durable cursors over batches written ``settle`` seconds ago or more,
        if the connection is still open (else rewind: they are sent again)."""
        now, due = self.clock(), Positions()
        while self.pending and now - self.pending[0][0] >= self.settle:
            _merge(due, self.pending.popleft()[1])
        if not due:
            return
        if not self.transport.alive():
            raise DeliveryFailed(f"{self.dest.name}: the receiver closed the connection")
        self.commit(due)

    def next_settle_in(self) -> float | None:
        if not self.pending:
            return None
        return max(0.0, self.pending[0][0] + self.settle - self.clock())

    # -- state for the dashboard

    def _state(self, sql: str, params: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            state = pg_insert(siem_state).values(destination_id=self.id)
            conn.execute(state.on_conflict_do_nothing(index_elements=["destination_id"]))
            conn.execute(sa.text(sql), {"d": self.id, **params})

    def failed(self, exc: DeliveryFailed) -> float:
        """Record a failure, rewind, and schedule the retry; returns the delay."""
        self.failures += 1
        delay = exc.retry_after if exc.retry_after is not None else backoff(self.failures)
        if exc.retry_after is not None:
            delay += random.uniform(0, min(1.0, delay * 0.1))
        self.retry_at = self.clock() + delay
        self.rewind()
        log.warning("%s: %s (retry in %.1fs)", self.dest.name, exc, delay)
        self._state(
            "UPDATE siem_state SET error_count = error_count + 1, last_error = :e, "
            "last_error_at = now(), retry_at = now() + make_interval(secs => :s), "
            "heartbeat_at = now() WHERE destination_id = :d",
            {"e": str(exc)[:2000], "s": delay},
        )
        return delay

    def succeeded(self) -> None:
        if self.failures:
            self.failures = 0
            self._state(
                "UPDATE siem_state SET retry_at = NULL, last_success_at = now(), "
                "heartbeat_at = now() WHERE destination_id = :d",
                {},
            )
            self.last_beat = self.clock()
        elif self.clock() - self.last_beat >= 5.0:
            self._state(
                "UPDATE siem_state SET heartbeat_at = now(), last_success_at = "
                "coalesce(last_success_at, now()) WHERE destination_id = :d",
                {},
            )
            self.last_beat = self.clock()

    # -- loops

    def run(self, stop: threading.Event, poll_seconds: float = 2.0) -> None:
        """Deliver until ``stop`` is set; wake early when ``self.wake`` is set."""
        loaded = False
        while not stop.is_set():
            wait = self.run_once_safely(loaded, poll_seconds)
            loaded = True
            if wait > 0:
                self.wake.wait(wait)
        self.transport.close()

    def run_once_safely(self, loaded: bool, poll_seconds: float) -> float:
        """One round with its errors handled; returns how long to wait before the next."""
        self.wake.clear()  # a notification from here on wakes the next wait
        now = self.clock()
        if now < self.retry_at:
            return min(self.retry_at - now, poll_seconds)
        try:
            if not loaded:
                self.load()
            if self.step():
                return 0.0
            settle = self.next_settle_in()
            return poll_seconds if settle is None else min(settle + 0.01, poll_seconds)
        except DeliveryFailed as exc:
            return min(self.failed(exc), poll_seconds)
        except (sa.exc.SQLAlchemyError, DatabaseUnavailable, QueryTimeout) as exc:
            log.warning("%s: database error: %s", self.dest.name, exc)
        except Exception:  # a bug must not end delivery to this destination for good
            log.exception("%s: unexpected error", self.dest.name)
        self.failures += 1
        self.retry_at = self.clock() + backoff(self.failures)
        self.rewind()
        return poll_seconds

    def drain(self, timeout: float = 60.0) -> bool:
        """Deliver until caught up and settled (``auditlog stream --once``); False on failure."""
        self.load()
        end = self.clock() + timeout
        while self.clock() < end:
            try:
                busy = self.step()
            except DeliveryFailed as exc:
                self.failed(exc)
                return False
            if not busy and not self.pending:
                return True
            if not busy:
                time.sleep(min(self.next_settle_in() or 0.01, 0.5))
        return False
