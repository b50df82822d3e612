"""RFC 9457 problem details: every error the API answers with, never a traceback.

A handler raises :class:`ApiProblem` (or any :class:`~auditlog.errors.AuditLogError`, whose
``status`` is used); :func:`problem_response` writes ``application/problem+json``. Database
outages (the engine's :class:`~auditlog.errors.DatabaseUnavailable`, or a driver error that
means the same) become 503 with ``Retry-After``.
"""

from __future__ import annotations

import json
import logging

import psycopg
import sqlalchemy as sa
from starlette.responses import Response

from auditlog.db.server import translate
from auditlog.errors import ApiProblem, AuditLogError, DatabaseUnavailable, QueryTimeout

_LOG = logging.getLogger(__name__)
RETRY_DB_SECONDS = 5


def problem_response(problem: ApiProblem, instance: str | None = None) -> Response:
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


def as_problem(exc: BaseException) -> ApiProblem:
    """The problem an exception means to a client; unexpected ones are logged, not shown."""
    if isinstance(exc, ApiProblem):
        return exc
    db = _database(exc)
    if db is not None:
        retry = {"Retry-After": str(RETRY_DB_SECONDS)}
        return ApiProblem(503, f"the database is unavailable: {db}; retry later", "database", retry)
    if isinstance(exc, AuditLogError):
        return ApiProblem(exc.status, str(exc), type(exc).__name__.lower())
    _LOG.error("unexpected error answering a request", exc_info=exc)
    return ApiProblem(500, "an unexpected error; it was logged on the server", "internal")
