"""One HTTP exchange with the service, retried: httpx over keep-alive connections.

Connection errors and the statuses of :data:`~auditlog.client.retry.RETRY_STATUSES` are
tried again (Retry-After honoured, else exponential backoff with jitter) up to ``retries``
times, then :class:`~auditlog.errors.ApiUnavailable`. Every other error status raises
:class:`~auditlog.errors.ApiRefused` at once, carrying the RFC 9457 problem.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from auditlog.client.retry import RETRY_STATUSES, backoff_delay, retry_after
from auditlog.errors import ApiRefused, ApiUnavailable


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to retry; ``max_wait``: the longest Retry-After obeyed."""

    retries: int = 5
    backoff: float = 0.2
    max_wait: float = 60.0


def problem_of(response: httpx.Response) -> dict[str, Any]:
    """The response's problem document; one made of its status and text when the body is
    not JSON (a proxy's HTML error page, say)."""
    try:
        doc = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        doc = None
    if isinstance(doc, dict):
        return doc
    return {
        "title": response.reason_phrase or f"HTTP {response.status_code}",
        "status": response.status_code,
        "detail": response.text[:300],
    }


class Session:
    """The client's HTTP connection pool and retry loop."""

    def __init__(
        self,
        http: httpx.Client,
        policy: RetryPolicy,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.http, self.policy, self.sleep = http, policy, sleep

    def request(
        self, method: str, path: str, stored: Sequence[Any] = (), **kw: Any
    ) -> httpx.Response:
        """The first answer below 400; ApiRefused / ApiUnavailable otherwise. ``stored``
        (receipts of earlier batches) is carried by the error raised."""
        reason, problem, asked = "no attempt made", None, None
        attempt = 0
        for attempt in range(1, self.policy.retries + 2):
            if attempt > 1:
                self.sleep(backoff_delay(attempt - 1, self.policy.backoff, asked))
            try:
                response = self.http.request(method, path, **kw)
            except httpx.TransportError as exc:
                reason, problem, asked = f"{type(exc).__name__}: {exc or 'no answer'}", None, None
                continue
            if response.status_code < 400:
                return response
            problem = problem_of(response)
            if response.status_code not in RETRY_STATUSES:
                raise ApiRefused(response.status_code, problem, stored)
            asked = retry_after(response.headers.get("retry-after"))
            reason = f"{response.status_code} {problem.get('title')}: {problem.get('detail')}"
            if asked is not None and asked > self.policy.max_wait:
                reason += f" (it asked to wait {asked:g} s, more than max_wait)"
                break
        url = str(self.http.base_url.join(path))
        raise ApiUnavailable(url, attempt, reason, problem, asked, stored)

    def close(self) -> None:
        self.http.close()
