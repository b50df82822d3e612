"""When to try again: which answers are worth a retry, and how long to wait first.

A retry is safe because every event carries its event_id before the first attempt: the
service answers a repeat with the original receipt. Connection errors and 408, 429, 502, 503
and 504 are retried; every other status is the request's own fault and is raised at once.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

RETRY_STATUSES = frozenset({408, 429, 502, 503, 504})
MAX_BACKOFF = 30.0  # seconds: the exponential backoff stops growing here


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date), or None
    when it is absent or unreadable (RFC 9110 section 10.2.3). A date in the past is 0."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP date is always GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def backoff_delay(
    attempt: int, base: float, asked: float | None, rng: random.Random | None = None
) -> float:
    """Seconds to wait before retry number ``attempt`` (1 for the first retry).

    What the server ``asked`` for (Retry-After) wins, plus up to 10 % so that many clients
    told the same second do not all come back at once; otherwise "full jitter" exponential
    backoff: uniform in ``[0, base * 2**(attempt-1)]``, capped at :data:`MAX_BACKOFF`.
    """
    rng = rng or random.Random()
    if asked is not None:
        return asked * (1 + 0.1 * rng.random())
    return rng.uniform(0, min(MAX_BACKOFF, base * 2 ** (attempt - 1)))
