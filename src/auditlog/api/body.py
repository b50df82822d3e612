"""The body of POST /v1/events: read under a byte cap and a time limit, split into events.

The body is streamed: past ``max_body_bytes`` the request is refused (413) before anything is
parsed, and a client that has not sent it all within ``read_timeout_s`` gets 408, while the
event loop serves everyone else. The bytes must be UTF-8 (400 names the byte offset).

``application/json`` is one event object or an array of them; ``application/x-ndjson`` (also
``application/ndjson``, ``application/jsonl``) one per line. Splitting only finds each event's
text: a syntax error is 400 naming line, column and offset; each event's own text then goes to
:func:`auditlog.store.prepare`, which refuses duplicate keys, deep nesting and huge numbers by
field path (422). Numbers are not converted while splitting, so a number of a million digits
costs nothing here.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from auditlog.errors import ApiProblem
from auditlog.model import deep_path

JSON_TYPES = ("application/json",)
NDJSON_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonl")
_WS = re.compile(r"[ \t\n\r]*")


@dataclass(frozen=True, slots=True)
class Item:
    """One event's JSON text; ``has_id``: its object names ``event_id``; ``line`` (1-based)."""

    text: str
    has_id: bool
    line: int


def _zero(_text: str) -> int:
    return 0


def _has_id(pairs: list[tuple[str, Any]]) -> bool:
    return any(k == "event_id" for k, _ in pairs)


_SCAN = json.JSONDecoder(
    object_pairs_hook=_has_id, parse_int=_zero, parse_float=_zero, parse_constant=_zero
)


async def read_body(request: Request, max_bytes: int, timeout: float) -> bytes:
    """The whole body, or ApiProblem 413 (over ``max_bytes``) / 408 (not in ``timeout`` s)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)
    chunks, total = [], 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                total += len(chunk)
                if total > max_bytes:
                    raise _too_large(max_bytes)
                chunks.append(chunk)
    except TimeoutError:
        raise ApiProblem(
            408,
            f"the request body did not arrive within {timeout:g} s (setting api.read_timeout_s)",
            "body-timeout",
            {"Connection": "close"},
        ) from None
    return b"".join(chunks)


def _too_large(max_bytes: int) -> ApiProblem:
    return ApiProblem(
        413,
        f"the request body is over {max_bytes} bytes (setting api.max_body_bytes); "
        "send fewer events per request",
        "body-too-large",
        {"Connection": "close"},
    )


def media_type(content_type: str | None) -> str:
    """``json`` or ``ndjson`` from a Content-Type header, else ApiProblem 415."""
    mt = (content_type or "").split(";", 1)[0].strip().lower()
    if mt in JSON_TYPES:
        return "json"
    if mt in NDJSON_TYPES:
        return "ndjson"
    raise ApiProblem(
        415,
        f"Content-Type {mt or '(none)'!r}: send application/json (one event or an array) or "
        "application/x-ndjson (one event per line)",
        "media-type",
    )


def decode(body: bytes) -> str:
    """The body as text; ApiProblem 400 naming the first byte that is not UTF-8."""
    try:
        return body.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise ApiProblem(
            400,
            f"the body is not UTF-8: byte {exc.start} ({exc.reason})",
            "utf-8",
            offset=exc.start,
        ) from None


def split(text: str, kind: str, max_events: int, depth: int) -> list[Item]:
    """The events of a body of ``kind`` (``json`` or ``ndjson``), at most ``max_events``."""
    items = _ndjson(text, max_events, depth) if kind == "ndjson" else _json(text, max_events, depth)
    if not items:
        raise ApiProblem(400, "the body holds no event", "empty")
    return items


def _syntax(
    text: str, exc: json.JSONDecodeError, line_base: int = 0, offset_base: int = 0
) -> ApiProblem:
    line, col = exc.lineno + line_base, exc.colno
    return ApiProblem(
        400,
        f"malformed JSON at line {line}, column {col} (offset {exc.pos + offset_base}): {exc.msg}",
        "malformed-json",
        line=line,
        column=col,
        offset=exc.pos + offset_base,
    )


def _too_deep(text: str, start: int, index: int, depth: int) -> ApiProblem:
    path = deep_path(text[start:], depth) or "event"
    return ApiProblem(
        422,
        f"event {index}: nesting deeper than {depth} (setting max_json_depth)",
        "invalid-events",
        errors=[{"index": index, "field": path, "reason": f"nesting deeper than {depth}"}],
    )


def _value(text: str, pos: int, index: int, depth: int) -> tuple[Any, int]:
    try:
        return _SCAN.raw_decode(text, pos)
    except json.JSONDecodeError as exc:
        raise _syntax(text, exc) from None
    except RecursionError:
        raise _too_deep(text, pos, index, depth) from None


def _count(n: int, max_events: int) -> None:
    if n > max_events:
        raise ApiProblem(
            413,
            f"more than {max_events} events in one request (setting api.max_batch_events); "
            "split the batch",
            "too-many-events",
        )


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _json(text: str, max_events: int, depth: int) -> list[Item]:
    pos = _WS.match(text, 0).end()  # type: ignore[union-attr]
    if not text.startswith("[", pos):
        value, end = _value(text, pos, 0, depth)
        _end(text, end)
        return [Item(text[pos:end], value is True, _line_of(text, pos))]
    items: list[Item] = []
    pos = _WS.match(text, pos + 1).end()  # type: ignore[union-attr]
    if text.startswith("]", pos):
        _end(text, pos + 1)
        return items
    while True:
        _count(len(items) + 1, max_events)
        value, end = _value(text, pos, len(items), depth)
        items.append(Item(text[pos:end], value is True, _line_of(text, pos)))
        pos = _WS.match(text, end).end()  # type: ignore[union-attr]
        if text.startswith("]", pos):
            _end(text, pos + 1)
            return items
        if not text.startswith(",", pos):
            raise _syntax(text, json.JSONDecodeError("expected ',' or ']'", text, pos))
        pos = _WS.match(text, pos + 1).end()  # type: ignore[union-attr]


def _end(text: str, end: int) -> None:
    rest = _WS.match(text, end).end()  # type: ignore[union-attr]
    if rest != len(text):
        raise _syntax(text, json.JSONDecodeError("extra data after the JSON value", text, rest))


def _ndjson(text: str, max_events: int, depth: int) -> list[Item]:
    items: list[Item] = []
    offset = 0
    for n, line in enumerate(text.split("\n"), start=1):
        start = _WS.match(line, 0).end()  # type: ignore[union-attr]
        if start < len(line):
            _count(len(items) + 1, max_events)
            try:
                value, end = _SCAN.raw_decode(line, start)
                if _WS.match(line, end).end() != len(line):  # type: ignore[union-attr]
                    raise json.JSONDecodeError("extra data after the event", line, end)
            except json.JSONDecodeError as exc:
                raise _syntax(line, exc, n - 1, offset) from None
            except RecursionError:
                raise _too_deep(line, start, len(items), depth) from None
            items.append(Item(line[start:end], value is True, n))
        offset += len(line) + 1
    return items
