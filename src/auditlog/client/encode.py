"""Events as the client sends them: plain dicts, each with its event_id, encoded as JSON."""

from __future__ import annotations

import ipaddress
import json
import uuid
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel

from auditlog.errors import InvalidEvent

Event = Mapping[str, Any] | BaseModel


def as_dict(event: Event, index: int = 0) -> dict[str, Any]:
    """A shallow copy of ``event`` (a mapping, or a pydantic model such as ``AuditEvent``)."""
    if isinstance(event, BaseModel):
        return event.model_dump(mode="json", exclude_none=True)
    if isinstance(event, Mapping):
        return dict(event)
    raise InvalidEvent(
        f"event {index}", f"a {type(event).__name__} is not an event: send a dict or AuditEvent"
    )


def with_event_id(event: Event, index: int = 0) -> dict[str, Any]:
    """A copy of ``event`` with an ``event_id``: its own, or a new uuid4 when it has none.

    Done before the first attempt, so every retry of the request carries the same id and the
    service stores the event once (it answers a repeat with the original receipt).
    """
    doc = as_dict(event, index)
    if doc.get("event_id") is None:
        doc["event_id"] = str(uuid.uuid4())
    return doc


def with_event_ids(events: Iterable[Event]) -> list[dict[str, Any]]:
    """Copies of ``events``, each with an event_id (see :func:`with_event_id`).

    A producer that must survive its own crash stores these ids (an outbox) before sending,
    so that sending the same events again after a restart stores each once.
    """
    return [with_event_id(e, i) for i, e in enumerate(events)]


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, uuid.UUID | ipaddress.IPv4Address | ipaddress.IPv6Address):
        return str(value)
    raise TypeError(f"a {type(value).__name__} value is not JSON")


def encode_one(event: Mapping[str, Any], index: int) -> str:
    """One event's compact JSON text; InvalidEvent naming the event when it is not JSON."""
    try:
        return json.dumps(
            event, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_jsonable
        )
    except (TypeError, ValueError) as exc:
        raise InvalidEvent(f"event {index}", f"cannot be sent as JSON: {exc}") from None


def encode_batch(events: list[dict[str, Any]], offset: int = 0) -> bytes:
    """A JSON array of ``events`` (UTF-8); ``offset`` numbers them in error messages."""
    texts = [encode_one(e, offset + i) for i, e in enumerate(events)]
    return ("[" + ",".join(texts) + "]").encode("utf-8")
