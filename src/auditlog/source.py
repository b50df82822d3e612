"""The submitting source of an event: which API key wrote it (docs/integrity.md, section 2).

The log sets it, never the producer: ``{"type": "api_key", "id": <key id>, "name": <key
name>}``, exactly these three strings. An event that came in-process or from a file has none,
and its record then has no ``source`` member at all (so rows stored before the field existed
hash as they always did). PostgreSQL's append check (migration 014) holds the same shape.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from auditlog.canonical import jcs_text
from auditlog.errors import InvalidEvent

SOURCE_KEYS = ("type", "id", "name")
TYPE_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,31}")
MAX_ID = 128
MAX_NAME = 256


def _problem(source: Mapping[str, str]) -> str:
    """Why ``source`` is not a valid source ('' when it is)."""
    keys = set(source)
    if keys != set(SOURCE_KEYS):
        return f"must have exactly the keys type, id and name, not {', '.join(sorted(keys))}"
    for key in SOURCE_KEYS:
        value = source[key]
        if not isinstance(value, str):
            return f"{key} must be a string, not {type(value).__name__}"
        if "\x00" in value:
            return f"{key} holds a NUL character, which PostgreSQL text cannot hold"
    if not TYPE_PATTERN.fullmatch(source["type"]):
        return f"type {source['type'][:40]!r} is not a short lower-case identifier like api_key"
    for key, cap in (("id", MAX_ID), ("name", MAX_NAME)):
        if not 1 <= len(source[key]) <= cap:
            return f"{key} must be 1 to {cap} characters, not {len(source[key])}"
    return ""


def source_text(source: Mapping[str, str] | None) -> str:
    """The canonical JSON (JCS) text of a valid ``source``, or '' for None (no member).

    Raises
    ------
    InvalidEvent
        On field ``source``, naming what is wrong with it.
    """
    if source is None:
        return ""
    if not isinstance(source, Mapping):
        raise InvalidEvent("source", f"must be a mapping, not {type(source).__name__}")
    why = _problem(source)
    if why:
        raise InvalidEvent("source", why)
    text = jcs_text({key: source[key] for key in SOURCE_KEYS})
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidEvent("source", "holds text that is not valid Unicode") from None
    return text
