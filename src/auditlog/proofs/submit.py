"""The log's side of witnessing: submit every new version-3 checkpoint to every configured
witness (c2sp.org/tlog-witness), durably, and show how far each witness lags.

    configured_witnesses(section)   -> [Target] from the ``[witness]`` settings
    Submitter(engine, targets, ...) -> .run_pass() (one pass), .run(stop) (the worker loop)
    witness_status(engine, targets) -> [Lag], one per witness and chain

Per witness and category, ``witness_state`` keeps the size the witness last cosigned; the
next checkpoint goes with the consistency proof from that size (from the size the witness
names, when it answers 409). Each returned cosignature is verified against the witness's
configured key by :class:`~auditlog.proofs.witness.WitnessClient` before it is stored in
``witness_cosignatures`` (insert-only), together with the new size, in one transaction.
A failure records the error, the attempt time and when to retry (exponential back-off with
jitter). One worker per witness: a session advisory lock (:data:`LEASE_CLASS`, a key from
the witness's name) on a connection of its own, checked in the transaction that advances
the state, so a worker that lost its lease stores nothing (docs/witness.md).
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import httpx
import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.engine import Engine

from auditlog.errors import ConfigError, NoteError, WitnessConflict, WitnessError
from auditlog.integrity.checkpoints import Checkpoint
from auditlog.integrity.database import db_public_keys
from auditlog.model import utc_text
from auditlog.proofs.note import ALG_COSIGNATURE, NoteSignature, parse_vkey
from auditlog.proofs.tree import TreeReader
from auditlog.proofs.witness import WitnessClient
from auditlog.settings import WitnessSettings

log = logging.getLogger("auditlog.witness")
LEASE_CLASS = 0x5754  # first key of the two-key advisory locks that are witness leases
Conn = psycopg.Connection[Any]


# --- configuration --------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A configured witness: its name (the vkey's), URL and cosignature verifier key."""

    name: str
    url: str
    vkey: str


def configured_witnesses(section: WitnessSettings) -> list[Target]:
    """The witnesses of ``[witness] servers``, each ``'<vkey> <url>'``.

    Raises
    ------
    ConfigError
        Naming the entry: not two parts, a vkey that is not a cosignature key (type 0x04),
        a URL that is not http(s), or two entries for one witness name.
    """
    out: list[Target] = []
    for n, entry in enumerate(section.servers, 1):
        out.append(_target(n, entry))
    names = [t.name for t in out]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"setting witness.servers: witness {twice[0]!r} is listed twice")
    return out


def _target(n: int, entry: str) -> Target:
    where = f"setting witness.servers entry {n}"
    parts = entry.split()
    if len(parts) != 2:
        raise ConfigError(f"{where}: {entry[:80]!r} is not '<vkey> <url>'")
    text, url = parts
    try:
        key = parse_vkey(text)
    except NoteError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if key.alg != ALG_COSIGNATURE:
        raise ConfigError(f"{where}: the vkey is not a witness cosignature key (type 0x04)")
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"{where}: {url[:80]!r} is not an http:// or https:// URL")
    return Target(key.name, url, text)


def quorum_of(section: WitnessSettings, keys: int) -> int:
    """The cosignatures a checkpoint needs: ``quorum``, or all ``keys`` when it is 0."""
    if section.quorum < 0:
        raise ConfigError(f"setting witness.quorum: {section.quorum} is negative")
    return section.quorum or keys


# --- reading the log ------------------------------------------------------------------------


@dataclass(frozen=True)
class Pending:
    """A version-3 checkpoint to submit: its row id, the checkpoint and its signed note."""

    id: int
    checkpoint: Checkpoint
    note: str


@dataclass(frozen=True)
class State:
    """What ``witness_state`` says of one witness and chain."""

    size: int
    error_count: int
    retry_at: datetime | None


def _state(conn: Conn, witness: str, category: str) -> State:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT cosigned_size, error_count, retry_at FROM witness_state "
            "WHERE witness = %s AND category = %s",
            (witness, category),
        )
        row = cur.fetchone()
    return State(0, 0, None) if row is None else State(int(row[0]), int(row[1]), row[2])


def _pending(
    conn: Conn, category: str, after: int, keys: dict[str, Ed25519PublicKey]
) -> list[Pending]:
    """The category's version-3 checkpoints past tree size ``after``, in seq order."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT id, seq, entry_hash, signed_at, key_id, signature, prev_hash, count, origin,"
            " root_hash FROM checkpoints WHERE category = %s AND version = 3 AND seq > %s"
            " ORDER BY seq, id",
            (category, after),
        )
        rows = cur.fetchall()
    out = []
    for i, seq, head, at, key_id, sig, prev, count, origin, root in rows:
        cp = Checkpoint(
            category, int(seq), bytes(head), utc_text(at), key_id, bytes(sig), 3,
            bytes(prev), int(count), origin, bytes(root),
        )  # fmt: skip
        key = keys.get(key_id)
        if key is not None:  # an unregistered key cannot be in checkpoints (011 checks it)
            out.append(Pending(int(i), cp, cp.note(key)))
    return out


def _categories(conn: Conn) -> list[str]:
    with conn.cursor() as cur:
        cur.execute("SELECT DISTINCT category FROM checkpoints WHERE version = 3 ORDER BY 1")
        return [str(c) for (c,) in cur.fetchall()]


# --- the outcome of one pass ------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What one pass did for one witness and chain: the seqs cosigned, and the error (or why
    it was skipped)."""

    witness: str
    category: str
    cosigned: tuple[int, ...] = ()
    error: str | None = None
    skipped: str | None = None

    def line(self) -> str:
        """One line for the command's output."""
        where = f"{self.witness} {self.category}"
        if self.error:
            return f"FAIL {where}: {self.error}"
        if self.skipped:
            return f"skip {where}: {self.skipped}"
        if not self.cosigned:
            return f"ok   {where}: nothing new to submit"
        seqs = ", ".join(str(s) for s in self.cosigned)
        return f"ok   {where}: cosigned checkpoint(s) at seq {seqs}"


# --- the submitter ----------------------------------------------------------------------------


def lease_key(witness: str) -> int:
    """The second key of a witness's advisory lock: 31 bits of SHA-256 of its name."""
    return int.from_bytes(hashlib.sha256(witness.encode("utf-8")).digest()[:4], "big") >> 1


class Submitter:
    """Submits checkpoints to each of ``targets``; :meth:`run_pass` does one pass.

    Parameters
    ----------
    engine
        An engine logged in as ``auditlog_stream`` (``make_engine(url, "stream")``).
    targets
        The witnesses (:func:`configured_witnesses`).
    section
        The ``[witness]`` settings: timeout and back-off.
    clock
        POSIX seconds now; tests move it to pass a back-off.
    transport
        An httpx transport for the witness clients (tests, proxies).
    """

    def __init__(
        self,
        engine: Engine,
        targets: Sequence[Target],
        section: WitnessSettings,
        *,
        clock: Callable[[], float] = time.time,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.engine, self.targets, self.section, self.clock = engine, targets, section, clock
        self.clients = {
            t.name: WitnessClient(
                t.url, t.name, t.vkey, timeout=section.timeout_seconds, transport=transport
            )
            for t in targets
        }
        self._lease_conn: Conn | None = None
        self.held: set[str] = set()

    def close(self) -> None:
        """Close the witness clients and the lease connection (which frees the leases)."""
        for client in self.clients.values():
            client.close()
        if self._lease_conn is not None:
            self._lease_conn.close()
            self._lease_conn, self.held = None, set()

    def __enter__(self) -> Submitter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- leases -------------------------------------------------------------------------
    def _leases(self) -> Conn:
        if self._lease_conn is None or self._lease_conn.closed:
            raw = self.engine.raw_connection()
            conn = cast("Conn", raw.driver_connection)
            raw.detach()  # it holds the locks: it must never go back to the pool
            conn.rollback()
            conn.autocommit = True
            self._lease_conn, self.held = conn, set()
        return self._lease_conn

    def take_lease(self, witness: str) -> bool:
        """Take ``witness``'s lease unless another worker holds it; True when ours."""
        if witness in self.held:
            return True
        row = (
            self._leases()
            .execute("SELECT pg_try_advisory_lock(%s, %s)", (LEASE_CLASS, lease_key(witness)))
            .fetchone()
        )
        if row is not None and row[0]:
            self.held.add(witness)
        return witness in self.held

    def _check_lease(self, cur: psycopg.Cursor[Any], witness: str) -> None:
        cur.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND classid = %s"
            " AND objid = %s AND objsubid = 2 AND pid = %s AND granted)",
            (LEASE_CLASS, lease_key(witness), self._leases().info.backend_pid),
        )
        row = cur.fetchone()
        if not (row and row[0]):
            self.held.discard(witness)
            raise WitnessError(
                f"witness {witness}: this worker lost its lease (its connection broke); "
                "nothing was stored, another worker may submit now"
            )

    # --- passes -------------------------------------------------------------------------
    def run_pass(self, force: bool = False) -> list[Outcome]:
        """Submit what is new to every witness whose lease this worker holds; with
        ``force``, also to those still backing off after an error."""
        out: list[Outcome] = []
        with self._session() as conn:
            categories = _categories(conn)
            conn.commit()
            for target in self.targets:
                if not self.take_lease(target.name):
                    why = "another worker holds this witness's lease"
                    out += [Outcome(target.name, c, skipped=why) for c in categories]
                    continue
                out += [self._guarded(conn, target.name, c, force) for c in categories]
        return out

    def _guarded(self, conn: Conn, witness: str, category: str, force: bool) -> Outcome:
        try:
            return self._chain(conn, witness, category, force)
        except WitnessError as exc:  # the lease was lost: nothing was stored
            conn.rollback()
            return Outcome(witness, category, error=str(exc))

    def run(self, stop: threading.Event) -> None:
        """Pass after pass, every ``poll_seconds``, until ``stop`` is set."""
        while not stop.is_set():
            try:
                for outcome in self.run_pass():
                    if outcome.error or outcome.cosigned:
                        log.info("%s", outcome.line())
            except psycopg.Error as exc:  # the database is away: try again next time
                log.warning("witness submission pass failed: %s", exc)
            stop.wait(self.section.poll_seconds)

    @contextmanager
    def _session(self) -> Iterator[Conn]:
        with self.engine.connect() as sa_conn:
            conn = cast("Conn", sa_conn.connection.driver_connection)
            try:
                yield conn
            finally:
                conn.rollback()

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def _chain(self, conn: Conn, witness: str, category: str, force: bool) -> Outcome:
        """Submit the chain's new checkpoints to one witness, in seq order, until one fails."""
        state = _state(conn, witness, category)
        if not force and state.retry_at is not None and state.retry_at > self._now():
            conn.commit()
            return Outcome(
                witness, category, skipped=f"backing off until {utc_text(state.retry_at)}"
            )
        pending = _pending(conn, category, state.size, db_public_keys(conn))
        conn.commit()
        size, done = state.size, list[int]()
        for item in pending:
            if item.checkpoint.seq < size:
                continue  # the witness is already past it
            try:
                sig = self._submit(conn, witness, item, size)
            except WitnessError as exc:
                return self._failed(conn, witness, category, state.error_count, str(exc), done)
            if isinstance(sig, int):
                size = sig  # the witness is past this checkpoint: on to the next
                continue
            self._stored(conn, witness, item, sig)
            size = item.checkpoint.seq
            done.append(size)
        if pending and size > pending[-1].checkpoint.seq:
            why = (
                f"witness {witness} has cosigned tree size {size}, past the log's newest "
                f"checkpoint (seq {pending[-1].checkpoint.seq}): checkpoints or rows were removed"
            )
            return self._failed(conn, witness, category, state.error_count, why, done)
        return Outcome(witness, category, tuple(done))

    def _submit(self, conn: Conn, witness: str, item: Pending, size: int) -> NoteSignature | int:
        """The cosignature, or the witness's size when it is already past this checkpoint.
        On a 409 it proves again from the size the witness names, once."""
        client, new = self.clients[witness], item.checkpoint.seq
        try:
            return client.add_checkpoint(size, self._proof(conn, item, size), item.note)
        except WitnessConflict as conflict:
            if conflict.size > new:
                return conflict.size
            proof = self._proof(conn, item, conflict.size)
            return client.add_checkpoint(conflict.size, proof, item.note)

    @staticmethod
    def _proof(conn: Conn, item: Pending, old: int) -> list[bytes]:
        with conn.cursor() as cur:
            proof = TreeReader(cur, item.checkpoint.category).consistency(old, item.checkpoint.seq)
        conn.commit()
        return proof

    def _stored(self, conn: Conn, witness: str, item: Pending, sig: NoteSignature) -> None:
        """The cosignature and the witness's new size, in one transaction under the lease."""
        when = datetime.fromtimestamp(int.from_bytes(sig.signature[:8], "big"), UTC)
        with conn.cursor() as cur:
            self._check_lease(cur, witness)
            cur.execute(
                "INSERT INTO witness_cosignatures (checkpoint_id, witness, key_hash, signature,"
                " cosigned_at) VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (item.id, witness, sig.key_hash, sig.signature, when),
            )
            cur.execute(
                "INSERT INTO witness_state AS s (witness, category, cosigned_size,"
                " cosigned_checkpoint_id, cosigned_at, last_attempt_at, error_count)"
                " VALUES (%s, %s, %s, %s, %s, %s, 0) ON CONFLICT (witness, category) DO UPDATE"
                " SET cosigned_size = excluded.cosigned_size, cosigned_at = excluded.cosigned_at,"
                " cosigned_checkpoint_id = excluded.cosigned_checkpoint_id,"
                " last_attempt_at = excluded.last_attempt_at, error_count = 0, retry_at = NULL",
                (witness, item.checkpoint.category, item.checkpoint.seq, item.id, when,
                 self._now()),
            )  # fmt: skip
        conn.commit()

    def _failed(
        self, conn: Conn, witness: str, category: str, errors: int, message: str, done: list[int]
    ) -> Outcome:
        """Record the error, the attempt and the next try (back-off doubling, jittered)."""
        now = self._now()
        base = self.section.retry_min_seconds * 2 ** min(errors, 30)
        delay = min(self.section.retry_max_seconds, base) * random.uniform(0.5, 1.0)
        with conn.cursor() as cur:
            self._check_lease(cur, witness)
            cur.execute(
                "INSERT INTO witness_state (witness, category, last_attempt_at, last_error,"
                " last_error_at, error_count, retry_at) VALUES (%s, %s, %s, %s, %s, 1, %s)"
                " ON CONFLICT (witness, category) DO UPDATE SET last_attempt_at = excluded."
                "last_attempt_at, last_error = excluded.last_error, last_error_at = excluded."
                "last_error_at, error_count = witness_state.error_count + 1,"
                " retry_at = excluded.retry_at",
                (witness, category, now, message[:1000], now, now + timedelta(seconds=delay)),
            )
        conn.commit()
        log.warning("witness %s %s: %s", witness, category, message)
        return Outcome(witness, category, tuple(done), error=message)


# --- status -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lag:
    """How far one witness is behind on one chain.

    ``lag_seconds`` is how long the oldest checkpoint it has not cosigned has waited (0 when
    it has cosigned the newest); ``lag_seq`` is the newest checkpoint's seq minus the size it
    cosigned."""

    witness: str
    category: str
    newest_seq: int
    newest_at: datetime
    cosigned_seq: int
    cosigned_at: datetime | None
    lag_seq: int
    lag_seconds: float
    last_attempt_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    retry_at: datetime | None

    def line(self) -> str:
        """One line for ``auditlog witness status``."""
        when = f" at {utc_text(self.cosigned_at)}" if self.cosigned_at else ""
        text = (
            f"{self.witness} {self.category}: newest checkpoint seq {self.newest_seq} "
            f"(signed {utc_text(self.newest_at)}), cosigned seq {self.cosigned_seq}{when}; "
            f"lag {self.lag_seq} seq, {self.lag_seconds:.0f} s"
        )
        if self.last_error and self.last_error_at:
            text += f"; last error {utc_text(self.last_error_at)}: {self.last_error}"
        return text


_STATUS = (
    "SELECT c.category, max(c.seq), max(c.signed_at),"
    " min(c.signed_at) FILTER (WHERE c.seq > coalesce(s.cosigned_size, 0)),"
    " coalesce(s.cosigned_size, 0), s.cosigned_at, s.last_attempt_at, s.last_error,"
    " s.last_error_at, s.retry_at"
    " FROM checkpoints c LEFT JOIN witness_state s ON s.category = c.category AND s.witness = %s"
    " WHERE c.version = 3"
    " GROUP BY c.category, s.cosigned_size, s.cosigned_at, s.last_attempt_at, s.last_error,"
    " s.last_error_at, s.retry_at ORDER BY c.category"
)


def witness_status(
    engine: Engine, witnesses: Sequence[str], clock: Callable[[], float] = time.time
) -> list[Lag]:
    """One :class:`Lag` per witness (by name) and chain that has version-3 checkpoints."""
    now = datetime.fromtimestamp(clock(), UTC)
    out = []
    with engine.connect() as sa_conn:
        conn = cast("Conn", sa_conn.connection.driver_connection)
        with conn.cursor() as cur:
            for name in witnesses:
                cur.execute(_STATUS, (name,))
                for cat, seq, at, waiting, size, cos_at, tried, err, err_at, retry in cur:
                    wait = 0.0 if waiting is None else max(0.0, (now - waiting).total_seconds())
                    behind = max(0, int(seq) - int(size))
                    out.append(
                        Lag(name, cat, int(seq), at, int(size), cos_at, behind, wait, tried, err,
                            err_at, retry)
                    )  # fmt: skip
        conn.rollback()
    return out
