"""The ASGI app: routes, wiring, and :func:`serve` (``auditlog serve``).

Starlette rather than FastAPI: the body must be read as raw bytes under a streaming cap and a
time limit, split as JSON or NDJSON with the log's own parser (duplicate keys, depth, huge
numbers named by field path), and every error must be an RFC 9457 problem; FastAPI would parse
and validate the body itself, with its own error shape. The answers' schemas are pydantic
models all the same, and the OpenAPI document is written from them (:mod:`.schemas`).

Writes go through the writer (ingest) role's :class:`~auditlog.store.AuditLog`; reads through
the reader role's engine, so a read key can never write and the pull API cannot append.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from auditlog.api import body, ingest, read
from auditlog.api.auth import Authenticator, KeyCache
from auditlog.api.metrics import Metrics
from auditlog.api.problems import as_problem, problem_response
from auditlog.api.schemas import openapi
from auditlog.apikeys.keys import may_read, may_write
from auditlog.apikeys.refusals import REASONS, Refusal, Refusals
from auditlog.db.migrate import migrations
from auditlog.errors import ApiProblem
from auditlog.settings import Settings
from auditlog.store import AuditLog, prepare

_LOG = logging.getLogger(__name__)
Handler = Callable[[Request], Awaitable[Response]]
FLUSH_SECONDS = 5.0
INLINE_SPLIT = 64 * 1024  # characters of body split on the event loop itself
_TRUE = ("1", "true", "yes", "on")
# problems counted where they arise (per refused key use, per invalid event), not again
_COUNTED = {"invalid-events", *(r.replace("_", "-") for r in REASONS)}


@dataclass
class Service:
    """What the handlers share."""

    settings: Settings
    log: AuditLog
    reader: Engine
    auth: Authenticator = field(init=False)
    refusals: Refusals = field(default_factory=Refusals)
    metrics: Metrics = field(init=False)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        cache = KeyCache(self.log.engine, self.settings.api.key_cache_seconds)
        self.auth = Authenticator(cache, self.settings.api, self.refused)
        self.metrics = Metrics(self.reader, self.settings)

    def refused(self, refusal: Refusal) -> None:
        """Count a refused key use; write its audit events in the background."""
        self.metrics.rejected.labels(refusal.reason).inc()
        self.write_soon(self.refusals.refused(refusal))

    def write_soon(self, events: list[dict[str, Any]]) -> None:
        if events:
            task = asyncio.get_running_loop().create_task(self.write(events))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def write(self, events: list[dict[str, Any]]) -> None:
        try:
            prepared = [prepare(e, self.log.settings, self.log.resolve) for e in events]
            await ingest._append(self.log, prepared)
        except Exception:  # the refusal is answered anyway; losing its record is logged
            _LOG.warning("recording a refused API key use failed", exc_info=True)

    async def flush_refusals(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            self.write_soon(self.refusals.due())


def _timed(svc: Service, route: str, fn: Handler) -> Handler:
    """``fn`` with every error answered as a problem, and its latency measured."""

    async def handler(request: Request) -> Response:
        start = time.perf_counter()
        try:
            response = await fn(request)
        except Exception as exc:
            problem = as_problem(exc)
            if route == "/v1/events" and request.method == "POST" and problem.slug not in _COUNTED:
                svc.metrics.rejected.labels(problem.slug).inc()
            response = problem_response(problem, request.url.path)
        took = time.perf_counter() - start
        svc.metrics.latency.labels(request.method, route, str(response.status_code)).observe(took)
        return response

    return handler


async def post_events(svc: Service, request: Request) -> Response:
    """POST /v1/events (see :mod:`auditlog.api.ingest`)."""
    api = svc.settings.api
    caller = await svc.auth.caller(request)
    kind = body.media_type(request.headers.get("content-type"))
    text = body.decode(await body.read_body(request, api.max_body_bytes, api.read_timeout_s))
    split = (kind, api.max_batch_events, svc.settings.store.max_json_depth)
    if len(text) > INLINE_SPLIT:  # a big body is split in a thread: the loop serves others
        items = await asyncio.to_thread(body.split, text, *split)
    else:
        items = body.split(text, *split)
    idem = _idempotency_key(request)
    checked = await asyncio.to_thread(ingest.validate, items, svc.log, caller, idem)
    outside = ingest.out_of_scope(caller, checked)
    if outside:
        i, cat = outside[0]
        raise svc.auth.refuse(
            request,
            "wrong_scope",
            403,
            f"API key {caller.key.name!r} may not write category {cat!r} (event {i}; its "
            f"scopes: {', '.join(caller.key.scopes)}); nothing was stored",
            caller.key,
        )
    partial = request.query_params.get("partial", "").lower() in _TRUE
    if checked.bad:
        svc.metrics.rejected.labels("invalid-event").inc(len(checked.bad))
        if not partial:
            raise ingest.invalid(checked.bad, items)
    svc.auth.buckets.take(caller.key, len(items))
    svc.metrics.batch.observe(len(items))
    receipts = await ingest.store(svc.log, checked)
    _count(svc, receipts)
    rejected = ingest.problems_of(checked.bad, items)
    status = 201 if any(not r["duplicate"] for r in receipts) else 200
    return JSONResponse({"receipts": receipts, "rejected": rejected}, status)


def _count(svc: Service, receipts: list[dict[str, Any]]) -> None:
    for r in receipts:
        if r["duplicate"]:
            svc.metrics.duplicates.inc()
        else:
            svc.metrics.accepted.labels(r["category"]).inc()


def _idempotency_key(request: Request) -> str | None:
    value = request.headers.get("idempotency-key")
    if value is None:
        return None
    if not 1 <= len(value) <= 255 or not value.isprintable():
        raise ApiProblem(400, "Idempotency-Key: 1 to 255 printable characters", "idempotency-key")
    return value


async def get_events(svc: Service, request: Request) -> Response:
    """GET /v1/events (see :mod:`auditlog.api.read`)."""
    caller = await svc.auth.caller(request, read=True)
    params = {k: request.query_params.getlist(k) for k in request.query_params}
    most = svc.settings.api.max_page_events
    page = await asyncio.to_thread(read.events_page, svc.reader, params, most)
    svc.auth.buckets.take(caller.key, 1)
    headers = {}
    if page.next_cursor:
        query = dict(request.query_params) | {"cursor": page.next_cursor}
        link = request.url.replace_query_params(**query)
        headers = {"X-Next-Cursor": page.next_cursor, "Link": f'<{link}>; rel="next"'}
    return StreamingResponse(read.lines(page), media_type="application/x-ndjson", headers=headers)


async def get_checkpoints(svc: Service, request: Request) -> Response:
    """GET /v1/checkpoints: the newest checkpoint of each chain (C2SP notes, or ?format=json)."""
    caller = await svc.auth.caller(request, read=True)
    fmt = request.query_params.get("format", "note")
    media, text = await asyncio.to_thread(read.checkpoints, svc.reader, fmt)
    svc.auth.buckets.take(caller.key, 1)
    return Response(text, media_type=media)


async def get_proof(svc: Service, request: Request) -> Response:
    """GET /v1/events/{event_id}/proof: for read keys, and write keys of its category."""
    caller = await svc.auth.caller(request)
    event_id = request.path_params["event_id"]
    category = await asyncio.to_thread(read.event_category, svc.reader, event_id)
    if not (may_read(caller.key.scopes) or may_write(caller.key.scopes, category)):
        raise svc.auth.refuse(
            request,
            "wrong_scope",
            403,
            f"API key {caller.key.name!r} may neither read nor write {category!r}",
            caller.key,
        )
    text = await asyncio.to_thread(read.proof_text, svc.reader, event_id)
    svc.auth.buckets.take(caller.key, 1)
    if text is None:
        wait = svc.settings.store.checkpoint_seconds
        detail = f"stored, not yet covered by a signed checkpoint; retry in {wait} s"
        return JSONResponse(
            {"status": "pending", "detail": detail}, 202, headers={"Retry-After": str(wait)}
        )
    return Response(text, media_type="text/plain; charset=utf-8")


def readiness(engine: Engine) -> tuple[bool, str, int]:
    """(ready, why not, newest applied migration): the database answers and every packaged
    migration is applied."""
    with engine.connect() as conn:
        done = set(conn.scalars(sa.text("SELECT version FROM schema_migrations")))
    missing = sorted({v for v, _, _ in migrations()} - done)
    newest = max(done, default=0)
    if missing:
        return False, f"migrations {missing} are not applied: run `auditlog db upgrade`", newest
    return True, "", newest


async def readyz(svc: Service, request: Request) -> Response:
    try:
        ok, why, version = await asyncio.to_thread(readiness, svc.log.engine)
    except Exception as exc:
        detail = as_problem(exc).detail
        return JSONResponse(
            {"status": "unavailable", "detail": detail}, 503, headers={"Retry-After": "5"}
        )
    status = {"status": "ready" if ok else "not ready", "migration": version, "detail": why or None}
    return JSONResponse(status, 200 if ok else 503)


async def healthz(svc: Service, request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def metrics(svc: Service, request: Request) -> Response:
    text = await asyncio.to_thread(svc.metrics.render)
    return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")


async def openapi_json(svc: Service, request: Request) -> Response:
    return JSONResponse(openapi())


ROUTES: list[tuple[str, str, Callable[[Service, Request], Awaitable[Response]]]] = [
    ("/v1/events", "POST", post_events),
    ("/v1/events", "GET", get_events),
    ("/v1/events/{event_id}/proof", "GET", get_proof),
    ("/v1/checkpoints", "GET", get_checkpoints),
    ("/healthz", "GET", healthz),
    ("/readyz", "GET", readyz),
    ("/metrics", "GET", metrics),
    ("/openapi.json", "GET", openapi_json),
]


def _bind(
    svc: Service, path: str, fn: Callable[[Service, Request], Awaitable[Response]]
) -> Handler:
    async def handler(request: Request) -> Response:
        return await fn(svc, request)

    return _timed(svc, path, handler)


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "an unexpected error"
    return problem_response(ApiProblem(status, f"{request.method} {request.url.path}: {detail}"))


def make_app(settings: Settings, log: AuditLog, reader: Engine) -> Starlette:
    """The service on ``log`` (its engine: the writer role) and ``reader`` (the reader role)."""
    svc = Service(settings, log, reader)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        flusher = asyncio.create_task(svc.flush_refusals())
        yield
        flusher.cancel()
        svc.write_soon(svc.refusals.due())
        if svc.tasks:
            await asyncio.gather(*svc.tasks, return_exceptions=True)

    routes = [Route(p, _bind(svc, p, fn), methods=[m]) for p, m, fn in ROUTES]
    app = Starlette(
        routes=routes, lifespan=lifespan, exception_handlers={HTTPException: _http_error}
    )
    app.state.service = svc
    return app


def open_service(settings: Settings) -> tuple[AuditLog, Engine]:
    """The writer's log (migrating on first start, signing chain heads every
    ``store.checkpoint_seconds``) and the reader's engine, as ``auditlog serve`` uses them."""
    from auditlog.db.server import connect
    from auditlog.identity.directory import Directory
    from auditlog.integrity.keyadmin import open_registered

    writer = connect(settings, "writer")
    log = open_registered(settings, engine=writer, resolve=Directory(writer).resolver())
    log.sign_heads_every(settings.store.checkpoint_seconds)
    return log, connect(settings, "reader")


def create_app() -> Starlette:
    """The app from the environment's settings: uvicorn's factory for ``--workers N``."""
    from auditlog.settings import load_settings

    settings = load_settings()
    return make_app(settings, *open_service(settings))


def server_options(host: str, port: int) -> dict[str, Any]:
    """uvicorn's options. Its own X-Forwarded-For handling is off: the client address is
    taken from the header only when the peer is in ``api.trusted_proxies`` (:mod:`.auth`)."""
    return {
        "host": host,
        "port": port,
        "log_level": "info",
        "proxy_headers": False,
        "server_header": False,
    }


def serve(
    settings: Settings, host: str | None = None, port: int | None = None, workers: int = 1
) -> None:
    """Run the service under uvicorn until interrupted (``auditlog serve``); ``workers`` > 1
    starts that many processes (each with its own connections, rate buckets and metrics)."""
    import uvicorn

    options = server_options(host or settings.api.host, port or settings.api.port)
    if workers > 1:
        uvicorn.run("auditlog.api.app:create_app", factory=True, workers=workers, **options)
        return
    log, reader = open_service(settings)
    try:
        uvicorn.run(make_app(settings, log, reader), **options)
    finally:
        log.close()
        reader.dispose()
