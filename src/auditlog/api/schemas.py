"""The answers' pydantic models and the OpenAPI 3.1 document written from them.

The request body is the event schema itself (:class:`auditlog.model.AuditEvent`), so the
document and the validation cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from auditlog import __version__
from auditlog.model import AuditEvent


class ReceiptOut(BaseModel):
    """Where one event landed."""

    index: int = Field(description="the event's position in the request (0-based)")
    event_id: str
    category: str
    seq: int = Field(description="position in its category's hash chain")
    entry_hash: str = Field(description="SHA-256(prev_hash || JCS(record)), hex")
    recorded_at: str | None = Field(description="server time the log accepted it, RFC 3339")
    duplicate: bool = Field(description="already stored: this is the original receipt")
    proof: str = Field(description="path of its inclusion proof (202 until a checkpoint covers it)")


class EventError(BaseModel):
    """One problem of one invalid event."""

    index: int
    line: int | None = None
    field: str = Field(description="dotted path of the field, e.g. actor.upn")
    reason: str


class IngestAnswer(BaseModel):
    """The answer to POST /v1/events (201: something stored; 200: all repeats)."""

    receipts: list[ReceiptOut]
    rejected: list[EventError] = Field(default_factory=list, description="with ?partial=true")


class ProblemOut(BaseModel):
    """RFC 9457 problem details (application/problem+json)."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[EventError] | None = Field(default=None, description="422: every problem")
    line: int | None = Field(default=None, description="400: where the JSON is malformed")
    column: int | None = None
    offset: int | None = None


class Health(BaseModel):
    """/healthz and /readyz."""

    status: str
    detail: str | None = None
    migration: int | None = None


MODELS: tuple[type[BaseModel], ...] = (
    ReceiptOut,
    EventError,
    IngestAnswer,
    ProblemOut,
    Health,
    AuditEvent,
)
REF = "#/components/schemas/{model}"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _content(schema: dict[str, Any], media: str = "application/json") -> dict[str, Any]:
    return {"content": {media: {"schema": schema}}}


def _problems(*codes: int) -> dict[str, Any]:
    return {
        str(code): {
            "description": "problem details",
            **_content(_ref("ProblemOut"), "application/problem+json"),
        }
        for code in codes
    }


def _schemas() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for model in MODELS:
        schema = model.model_json_schema(ref_template=REF)
        out.update(schema.pop("$defs", {}))
        out[model.__name__] = schema
    return out


_BEARER: list[dict[str, list[str]]] = [{"apiKey": []}]
_TEXT = {"type": "string"}


def _post_events() -> dict[str, Any]:
    batch = {"oneOf": [_ref("AuditEvent"), {"type": "array", "items": _ref("AuditEvent")}]}
    params = [
        {
            "name": "partial",
            "in": "query",
            "schema": {"type": "boolean"},
            "description": "store the valid events, name the rest",
        },
        {
            "name": "Idempotency-Key",
            "in": "header",
            "schema": _TEXT,
            "description": "event ids of events without one derive from it (safe retries)",
        },
    ]
    ok = {"description": "receipts", **_content(_ref("IngestAnswer"))}
    return {
        "summary": "Append one event (JSON), a batch (JSON array) or NDJSON",
        "security": _BEARER,
        "parameters": params,
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": batch},
                "application/x-ndjson": {"schema": _TEXT},
            },
        },
        "responses": {
            "200": ok,
            "201": ok,
            **_problems(400, 401, 403, 408, 409, 413, 415, 422, 429, 503),
        },
    }


def _get_events() -> dict[str, Any]:
    names = (
        "from",
        "to",
        "last",
        "category",
        "action",
        "outcome",
        "actor",
        "target_type",
        "target_id",
        "target_name",
        "ip",
        "correlation_id",
        "q",
        "limit",
        "cursor",
    )
    return {
        "summary": "Events matching the timeline's filters, newest first, as NDJSON pages",
        "security": _BEARER,
        "parameters": [{"name": n, "in": "query", "schema": _TEXT} for n in names],
        "responses": {
            "200": {
                "description": "one stored record per line; X-Next-Cursor",
                **_content(_TEXT, "application/x-ndjson"),
            },
            **_problems(401, 403, 422, 429, 503),
        },
    }


def _simple(summary: str, media: str, *codes: int, auth: bool = True) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {
            "200": {"description": summary, **_content(_TEXT, media)},
            **_problems(*codes),
        },
    }
    if auth:
        op["security"] = _BEARER
    return op


def _health(summary: str) -> dict[str, Any]:
    return {
        "summary": summary,
        "responses": {
            "200": {"description": "ready", **_content(_ref("Health"))},
            "503": {"description": "not ready", **_content(_ref("Health"))},
        },
    }


def openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 document of every route."""
    proof = _simple(
        "The event's c2sp.org/tlog-proof (202 until a checkpoint covers it)",
        "text/plain",
        401,
        403,
        404,
        422,
        429,
        503,
    )
    proof["parameters"] = [{"name": "event_id", "in": "path", "required": True, "schema": _TEXT}]
    proof["responses"]["202"] = {"description": "stored, not yet covered by a checkpoint"}
    paths = {
        "/v1/events": {"post": _post_events(), "get": _get_events()},
        "/v1/events/{event_id}/proof": {"get": proof},
        "/v1/checkpoints": {
            "get": _simple(
                "The newest checkpoint of each chain (C2SP notes; ?format=json)",
                "text/plain",
                401,
                403,
                429,
                503,
            )
        },
        "/healthz": {"get": _health("The process answers")},
        "/readyz": {"get": _health("The database is reachable and migrated")},
        "/metrics": {"get": _simple("Prometheus metrics", "text/plain", auth=False)},
        "/openapi.json": {"get": _simple("This document", "application/json", auth=False)},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "auditlog ingestion API", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
        },
    }
