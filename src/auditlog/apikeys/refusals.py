"""Refused uses of API keys as audit events, without letting an attacker flood the log.

Each refusal (reason ``missing``, ``unknown``, ``wrong_secret``, ``revoked``, ``wrong_scope``,
``ip_not_allowed``) is counted in a bucket per (key, reason) and minute. The first refusal of
a bucket is an ``apikey.refused`` event at once; later ones in the same minute are only
counted, and when the minute is over one more event says how many repeats there were. So a
bucket writes at most two events a minute. Unknown keys share one bucket whatever key id they
claim (the attacker chooses those), so memory is bounded by the real keys. The buckets are per
process: with N worker processes, at most 2N events per bucket and minute.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from auditlog.model import new_event, utc_text

REASONS = ("missing", "unknown", "wrong_secret", "revoked", "wrong_scope", "ip_not_allowed")
WINDOW_SECONDS = 60.0


@dataclass
class _Bucket:
    start: float
    first: dict[str, Any]
    repeats: int = 0


@dataclass(frozen=True)
class Refusal:
    """One refused request: which key (None: none or unknown), why, from where."""

    reason: str
    key_id: str | None = None
    key_name: str | None = None
    source_ip: str | None = None
    user_agent: str | None = None
    path: str = ""


def _when(t: float) -> str:
    return utc_text(datetime.fromtimestamp(t, UTC))


def refusal_event(r: Refusal, details: dict[str, Any]) -> dict[str, Any]:
    """The ``apikey.refused`` event of ``r`` (outcome ``denied``)."""
    known = r.key_id is not None
    actor = {"type": "service", "id": r.key_id if known else "unknown-api-key"}
    if r.key_name:
        actor["display_name"] = r.key_name
    target = {"type": "api_key", "id": r.key_id, "name": r.key_name} if known else None
    return new_event(
        action="apikey.refused",
        outcome="denied",
        actor=actor,
        target=target or {"type": "api", "id": "auditlog-api", "name": "ingestion API"},
        details={"reason": r.reason, "path": r.path, **details},
        source_ip=r.source_ip,
        user_agent=r.user_agent[:500] if r.user_agent else None,
    )


class Refusals:
    """The coalescing counter. :meth:`refused` and :meth:`due` return the events to write."""

    def __init__(
        self, clock: Callable[[], float] = time.time, window: float = WINDOW_SECONDS
    ) -> None:
        self.clock, self.window = clock, window
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._lock = threading.Lock()

    def refused(self, r: Refusal) -> list[dict[str, Any]]:
        """Count ``r``; the events to write now: its own when it opens a bucket (after the
        summary of the bucket's previous minute, if that had repeats), else none."""
        now = self.clock()
        key = (r.key_id or "-", r.reason)
        with self._lock:
            old = self._buckets.get(key)
            if old is not None and now - old.start < self.window:
                old.repeats += 1
                return []
            out = self._summaries([key]) if old is not None else []
            first = {"window_start": _when(now)}
            self._buckets[key] = _Bucket(now, {"r": r})
        return [*out, refusal_event(r, first)]

    def due(self) -> list[dict[str, Any]]:
        """Summaries of the buckets whose minute is over (call it now and then)."""
        now = self.clock()
        with self._lock:
            keys = [k for k, b in self._buckets.items() if now - b.start >= self.window]
            return self._summaries(keys)

    def _summaries(self, keys: list[tuple[str, str]]) -> list[dict[str, Any]]:
        out = []
        for key in keys:
            b = self._buckets.pop(key)
            if b.repeats:
                times = {"window_start": _when(b.start), "window_end": _when(b.start + self.window)}
                out.append(refusal_event(b.first["r"], {**times, "repeats": b.repeats}))
        return out
