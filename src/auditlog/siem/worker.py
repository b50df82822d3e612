"""The stream worker behind ``auditlog stream``.

One thread per enabled destination runs a :class:`~auditlog.siem.delivery.Runner`. The main
thread LISTENs on ``auditlog_events`` (the store NOTIFYs on commit) and wakes every runner when
something was appended; runners also poll every ``poll_seconds``, so a lost notification or a
broken LISTEN connection only delays delivery. ``auditlog_siem`` notifications (a destination
added, changed or removed) and a timer reload the destinations.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

import psycopg
from sqlalchemy.engine import Engine

from auditlog.siem.delivery import Runner
from auditlog.siem.destinations import SIEM_CHANNEL, Destination, list_destinations
from auditlog.store import NOTIFY_CHANNEL

log = logging.getLogger("auditlog.siem")


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
    ) -> None:
        self.engine = engine
        self.names = set(names) if names else None
        self.poll_seconds, self.reload_seconds = poll_seconds, reload_seconds
        self.running: dict[int, _Running] = {}
        self.stop_event = threading.Event()
        self._thread: threading.Thread | None = None

    def wanted(self) -> list[Destination]:
        dests = list_destinations(self.engine, with_secrets=True)
        return [d for d in dests if d.enabled and (self.names is None or d.name in self.names)]

    def reload(self) -> None:
        """Start runners for new destinations, restart changed ones, stop removed ones."""
        want = {int(d.id or 0): d for d in self.wanted()}
        for dest_id in list(self.running):
            dest = want.get(dest_id)
            if dest is None or dest.updated_at != self.running[dest_id].version:
                self._stop_runner(dest_id)
        for dest_id, dest in want.items():
            if dest_id not in self.running:
                self._start_runner(dest)

    def _start_runner(self, dest: Destination) -> None:
        runner, stop = Runner(self.engine, dest), threading.Event()
        thread = threading.Thread(
            target=runner.run, args=(stop, self.poll_seconds), name=f"siem-{dest.name}", daemon=True
        )
        self.running[int(dest.id or 0)] = _Running(runner, thread, stop, dest.updated_at)
        thread.start()
        log.info("delivering to %s (%s, %s)", dest.name, dest.transport, dest.format)

    def _stop_runner(self, dest_id: int) -> None:
        r = self.running.pop(dest_id)
        r.stop.set()
        r.runner.wake.set()
        r.thread.join(timeout=15)

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

    def _reload_safely(self) -> None:
        try:
            self.reload()
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


def drain_all(engine: Engine, names: Iterable[str] | None = None, timeout: float = 300.0) -> bool:
    """Deliver everything appended so far to each destination, then return (``--once``)."""
    ok = True
    for dest in Streamer(engine, names).wanted():
        runner = Runner(engine, dest)
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
        ok = ok and done
    return ok


def run_stream(
    engine: Engine,
    names: Iterable[str] | None = None,
    once: bool = False,
    poll_seconds: float = 2.0,
    reload_seconds: float = 5.0,
) -> int:
    """Run the worker until SIGTERM/SIGINT (or, with ``once``, until caught up); exit code."""
    if once:
        return 0 if drain_all(engine, names) else 1
    streamer = Streamer(engine, names, poll_seconds, reload_seconds)

    def _stop(_signum: int, _frame: Any) -> None:
        streamer.stop_event.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    streamer.run()
    return 0
