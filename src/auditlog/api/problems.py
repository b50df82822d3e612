"""RFC 9457 problem details: every error the API answers with, never a traceback.

A handler raises :class:`Problem` (or any :class:`~auditlog.errors.AuditLogError`, whose
``status`` is used); :func:`problem_response` writes ``application/problem+json``. Database
outages (the engine's :class:`~auditlog.errors.DatabaseUnavailable`, or a driver error that
means the same) become 503 with ``Retry-After``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import psycopg
import sqlalchemy as sa
from starlette.responses import Response

from auditlog.db.server import translate
from auditlog.errors import AuditLogError, DatabaseUnavailable, QueryTimeout

_LOG = logging.getLogger(__name__)
PROBLEM_TYPE = "https://auditlog.dev/problems/"  # + slug; a name, not a page to fetch
TITLES = {
    400: "Malformed request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    408: "Request body too slow",
    409: "Conflict",
    413: "Request too large",
    415: "Unsupported media type",
    422: "Invalid events",
    429: "Too many requests",
    500: "Internal error",
    503: "Service unavailable",
}
RETRY_DB_SECONDS = 5


class Problem(Exception):
    """An error answer: ``status``, a one-line ``detail`` and extension members."""

    def __init__(
        self,
        status: int,
        detail: str,
        slug: str | None = None,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail
        self.slug = slug or TITLES.get(status, "error").lower().replace(" ", "-")
        self.headers = dict(headers or {})
        self.extra = extra

    def body(self, instance: str | None = None) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "type": PROBLEM_TYPE + self.slug,
            "title": TITLES.get(self.status, "Error"),
        }
        doc |= {"status": self.status, "detail": self.detail}
        if instance:
            doc["instance"] = instance
        return doc | self.extra


def problem_response(problem: Problem, instance: str | None = None) -> Response:
    """The problem as an ``application/problem+json`` response."""
    text = json.dumps(problem.body(instance), ensure_ascii=False)
    return Response(
        text, problem.status, headers=problem.headers, media_type="application/problem+json"
    )


def _database(exc: BaseException) -> AuditLogError | None:
    """The DatabaseUnavailable / QueryTimeout an error means, if it means one."""
    if isinstance(exc, DatabaseUnavailable | QueryTimeout):
        return exc
    orig = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
    if isinstance(orig, psycopg.Error):
        return translate(orig)
    if isinstance(exc, sa.exc.TimeoutError):  # the pool: every connection busy
        return DatabaseUnavailable(f"no database connection free in time ({exc})")
    return None


def as_problem(exc: BaseException) -> Problem:
    """The problem an exception means to a client; unexpected ones are logged, not shown."""
    if isinstance(exc, Problem):
        return exc
    db = _database(exc)
    if db is not None:
        retry = {"Retry-After": str(RETRY_DB_SECONDS)}
        return Problem(503, f"the database is unavailable: {db}; retry later", "database", retry)
    if isinstance(exc, AuditLogError):
        return Problem(exc.status, str(exc), type(exc).__name__.lower())
    _LOG.error("unexpected error answering a request", exc_info=exc)
    return Problem(500, "an unexpected error; it was logged on the server", "internal")
