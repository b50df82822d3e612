"""The stream worker behind ``auditlog stream``.

One thread per enabled destination runs a :class:`~auditlog.siem.delivery.Runner`. The main
thread LISTENs on ``auditlog_events`` (the store NOTIFYs on commit) and wakes every runner when
something was appended; runners also poll every ``poll_seconds``, so a lost notification or a
broken LISTEN connection only delays delivery. ``auditlog_siem`` notifications (a destination
added, changed or removed) and a timer reload the destinations.

One worker per destination: before delivering to a destination a worker takes its **lease**, a
session-level advisory lock (:data:`LEASE_CLASS`, destination id) held on a connection of its
own for as long as it delivers, so it dies with the process. A second worker waits for the
lease (retrying at each reload) or, with ``wait=False``, refuses with :class:`LeaseHeld`. A
runner checks the lease in each cursor commit (:meth:`Leases.check_sql`), so one whose lease
connection broke stops before it advances a cursor another worker now owns.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from auditlog.errors import LeaseHeld
from auditlog.siem.delivery import Lease, Runner
from auditlog.siem.destinations import SIEM_CHANNEL, Destination, list_destinations
from auditlog.store import NOTIFY_CHANNEL

log = logging.getLogger("auditlog.siem")
LEASE_CLASS = 0x5153  # first key of the two-key advisory locks that are SIEM leases
_SET_HOLDER = sa.text(
    "INSERT INTO siem_state (destination_id, lease_holder, lease_since) VALUES (:d, :h, now()) "
    "ON CONFLICT (destination_id) DO UPDATE SET lease_holder = :h, lease_since = now()"
)
_CLEAR_HOLDER = sa.text(
    "UPDATE siem_state SET lease_holder = NULL, lease_since = NULL "
    "WHERE destination_id = :d AND lease_holder = :h"
)


def default_holder() -> str:
    """How a worker names itself in the status view: host, process and a per-worker tag."""
    return f"{socket.gethostname()} pid {os.getpid()} worker {os.urandom(3).hex()}"


class Leases:
    """The destinations' leases this worker holds, on one connection of its own.

    A session advisory lock is released when its connection closes, so a worker that dies
    (killed, crashed, host gone) frees its leases; a clean stop releases them at once.
    """

    def __init__(self, engine: Engine, holder: str | None = None) -> None:
        self.engine = engine
        self.holder = holder or default_holder()
        self.conn: psycopg.Connection[Any] | None = None
        self.held: set[int] = set()

    def _connection(self) -> psycopg.Connection[Any]:
        if self.conn is None:
            raw = self.engine.raw_connection()
            conn = cast("psycopg.Connection[Any]", raw.driver_connection)
            raw.detach()  # it holds the locks: it must never go back to the pool
            conn.rollback()
            conn.autocommit = True
            self.conn = conn
        return self.conn

    def lease(self, dest_id: int) -> Lease:
        """What a runner checks before it advances a cursor: (class, id, our backend pid)."""
        return Lease(LEASE_CLASS, dest_id, self._connection().info.backend_pid)

    def alive(self) -> bool:
        """False (and no lease held any more) when the lease connection was lost."""
        if self.conn is None:
            return not self.held
        try:
            self.conn.execute("SELECT 1")
            return True
        except psycopg.Error as exc:
            log.warning("lease connection lost (%s); leases are given up", exc)
            self._drop()
            return False

    def _drop(self) -> None:
        conn, self.conn = self.conn, None
        self.held.clear()
        if conn is not None:
            conn.close()

    def try_acquire(self, dest_id: int) -> bool:
        """Take the lease of ``dest_id`` if no other worker holds it; True when ours."""
        if dest_id in self.held:
            return True
        row = (
            self._connection()
            .execute("SELECT pg_try_advisory_lock(%s, %s)", (LEASE_CLASS, dest_id))
            .fetchone()
        )
        if not (row and row[0]):
            return False
        self.held.add(dest_id)
        with self.engine.begin() as conn:
            conn.execute(_SET_HOLDER, {"d": dest_id, "h": self.holder})
        return True

    def holder_of(self, dest_id: int) -> str | None:
        """Who the status table says holds ``dest_id``'s lease (and since when)."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.text(
                    "SELECT lease_holder, lease_since FROM siem_state WHERE destination_id = :d"
                ),
                {"d": dest_id},
            ).first()
        if row is None or row[0] is None:
            return None
        return f"{row[0]}, since {row[1]:%Y-%m-%d %H:%M:%S %Z}"

    def release(self, dest_id: int) -> None:
        if dest_id not in self.held:
            return
        self.held.discard(dest_id)
        try:
            with self.engine.begin() as conn:
                conn.execute(_CLEAR_HOLDER, {"d": dest_id, "h": self.holder})
            self._connection().execute("SELECT pg_advisory_unlock(%s, %s)", (LEASE_CLASS, dest_id))
        except (psycopg.Error, sa.exc.SQLAlchemyError) as exc:  # the lock dies with the conn
            log.warning("could not release the lease of destination %d: %s", dest_id, exc)
            self._drop()

    def close(self) -> None:
        for dest_id in list(self.held):
            self.release(dest_id)
        self._drop()


@dataclass
class _Running:
    runner: Runner
    thread: threading.Thread
    stop: threading.Event
    version: Any


class Streamer:
    """Follows the log and delivers it to every enabled destination (or those ``names``)."""

    def __init__(
        self,
        engine: Engine,
        names: Iterable[str] | None = None,
        poll_seconds: float = 2.0,
        reload_seconds: float = 5.0,
        wait: bool = True,
        holder: str | None = None,
    ) -> None:
        self.engine = engine
        self.names = set(names) if names else None
        self.poll_seconds, self.reload_seconds = poll_seconds, reload_seconds
        self.running: dict[int, _Running] = {}
        self.stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self.leases = Leases(engine, holder)
        self.wait = wait  # False: refuse (LeaseHeld) when a lease is held at start
        self.waiting: set[int] = set()  # destinations whose lease another worker holds
        self.reloads = 0

    def wanted(self) -> list[Destination]:
        dests = list_destinations(self.engine, with_secrets=True)
        return [d for d in dests if d.enabled and (self.names is None or d.name in self.names)]

    def reload(self) -> None:
        """Start runners for new destinations, restart changed ones, stop removed ones."""
        want = {int(d.id or 0): d for d in self.wanted()}
        if not self.leases.alive():  # the lease connection broke: another worker may take over
            for dest_id in list(self.running):
                self._stop_runner(dest_id)
        for dest_id in list(self.running):
            dest = want.get(dest_id)
            if dest is None or dest.updated_at != self.running[dest_id].version:
                self._stop_runner(dest_id, release=dest is None)
        first, self.reloads = self.reloads == 0, self.reloads + 1
        for dest_id, dest in want.items():
            if dest_id not in self.running and self._lease(dest, refuse=first and not self.wait):
                self._start_runner(dest)

    def _lease(self, dest: Destination, refuse: bool) -> bool:
        dest_id = int(dest.id or 0)
        if self.leases.try_acquire(dest_id):
            if dest_id in self.waiting:
                log.info("%s: lease taken over; delivering", dest.name)
            self.waiting.discard(dest_id)
            return True
        holder = self.leases.holder_of(dest_id)
        if refuse:
            raise LeaseHeld(dest.name, holder)
        if dest_id not in self.waiting:
            log.info("%s: waiting for the lease held by %s", dest.name, holder or "another worker")
            self.waiting.add(dest_id)
        return False

    def _start_runner(self, dest: Destination) -> None:
        lease = self.leases.lease(int(dest.id or 0))
        runner, stop = Runner(self.engine, dest, lease=lease), threading.Event()
        thread = threading.Thread(
            target=runner.run, args=(stop, self.poll_seconds), name=f"siem-{dest.name}", daemon=True
        )
        self.running[int(dest.id or 0)] = _Running(runner, thread, stop, dest.updated_at)
        thread.start()
        log.info("delivering to %s (%s, %s)", dest.name, dest.transport, dest.format)

    def _stop_runner(self, dest_id: int, release: bool = True) -> None:
        r = self.running.pop(dest_id)
        r.stop.set()
        r.runner.wake.set()
        r.thread.join(timeout=15)
        if release:
            self.leases.release(dest_id)

    def wake_all(self) -> None:
        for r in self.running.values():
            r.runner.wake.set()

    def _listen(self) -> psycopg.Connection[Any] | None:
        conn: psycopg.Connection[Any] | None = None
        try:
            raw = self.engine.raw_connection()
            conn = cast("psycopg.Connection[Any]", raw.driver_connection)
            raw.detach()  # a LISTENing connection must not go back to the pool
            assert conn is not None
            conn.rollback()
            conn.autocommit = True
            conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
            conn.execute(f"LISTEN {SIEM_CHANNEL}")
            return conn
        except Exception as exc:  # the database is down: poll until it is back
            log.warning("LISTEN failed (%s); polling every %.1fs", exc, self.poll_seconds)
            if conn is not None:
                conn.close()
            return None

    def _wait(self, conn: psycopg.Connection[Any] | None, seconds: float) -> tuple[bool, bool]:
        """Wait for notifications up to ``seconds``; (reload wanted, connection still good)."""
        if conn is None:
            self.stop_event.wait(seconds)
            return False, False
        reload = False
        try:
            for note in conn.notifies(timeout=seconds):
                if note.channel == SIEM_CHANNEL:
                    reload = True
                    break
                self.wake_all()
        except psycopg.Error as exc:
            log.warning("LISTEN connection lost (%s); polling until it is back", exc)
            return reload, False
        return reload, True

    def run(self) -> None:
        """Deliver until :meth:`close` (or a signal) sets the stop event."""
        conn, next_reload = None, 0.0
        try:
            while not self.stop_event.is_set():
                if time.monotonic() >= next_reload:
                    self._reload_safely()
                    next_reload = time.monotonic() + self.reload_seconds
                if conn is None:
                    conn = self._listen()
                reload, ok = self._wait(conn, 0.5)
                if reload:
                    next_reload = 0.0
                if not ok and conn is not None:
                    conn.close()
                    conn = None
        finally:
            if conn is not None:
                conn.close()
            for dest_id in list(self.running):
                self._stop_runner(dest_id)
            self.leases.close()

    def _reload_safely(self) -> None:
        try:
            self.reload()
        except LeaseHeld:
            raise
        except Exception as exc:  # keep delivering to the destinations we have
            log.warning("could not reload destinations: %s", exc)

    def start(self) -> Streamer:
        """Run in a background thread (tests, embedding)."""
        self._thread = threading.Thread(target=self.run, name="siem-streamer", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout=30)


def _wait_for_lease(leases: Leases, dest: Destination, wait: bool, timeout: float) -> bool:
    dest_id, end, said = int(dest.id or 0), time.monotonic() + timeout, False
    while not leases.try_acquire(dest_id):
        holder = leases.holder_of(dest_id)
        if not wait:
            raise LeaseHeld(dest.name, holder)
        if time.monotonic() >= end:
            log.warning("%s: the lease is still held by %s; not delivered", dest.name, holder)
            return False
        if not said:
            log.info("%s: waiting for the lease held by %s", dest.name, holder or "another worker")
            said = True
        time.sleep(0.5)
    return True


def drain_all(
    engine: Engine,
    names: Iterable[str] | None = None,
    timeout: float = 300.0,
    wait: bool = True,
    holder: str | None = None,
) -> bool:
    """Deliver everything appended so far to each destination, then return (``--once``).

    Each destination's lease is taken first (waited for up to ``timeout``, or refused with
    :class:`LeaseHeld` when ``wait`` is False) and released when it is caught up.
    """
    ok, leases = True, Leases(engine, holder)
    try:
        for dest in Streamer(engine, names).wanted():
            if not _wait_for_lease(leases, dest, wait, timeout):
                ok = False
                continue
            ok = _drain_one(engine, dest, leases, timeout) and ok
            leases.release(int(dest.id or 0))
    finally:
        leases.close()
    return ok


def _drain_one(engine: Engine, dest: Destination, leases: Leases, timeout: float) -> bool:
    runner = Runner(engine, dest, lease=leases.lease(int(dest.id or 0)))
    try:
        done = runner.drain(timeout)
    finally:
        runner.transport.close()
    log.info(
        "%s: %s, %d item(s) sent",
        dest.name,
        "caught up" if done else "NOT caught up",
        runner.delivered,
    )
    return done


def run_stream(
    engine: Engine,
    names: Iterable[str] | None = None,
    once: bool = False,
    poll_seconds: float = 2.0,
    reload_seconds: float = 5.0,
    wait: bool = True,
) -> int:
    """Run the worker until SIGTERM/SIGINT (or, with ``once``, until caught up); exit code.

    Raises :class:`LeaseHeld` when ``wait`` is False and another worker holds a lease.
    """
    if once:
        return 0 if drain_all(engine, names, wait=wait) else 1
    streamer = Streamer(engine, names, poll_seconds, reload_seconds, wait=wait)

    def _stop(_signum: int, _frame: Any) -> None:
        streamer.stop_event.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    streamer.run()
    return 0
