"""The one list of hostile values every output format is tested with.

Each value has broken some CSV, syslog, CEF, OCSF, JSON reader or spreadsheet at some time:
line breaks (CR, LF, U+2028/U+2029, NEL), escape and control characters, delimiters of each
format, formula triggers, bidi controls, emoji and other non-BMP characters, text that looks
like an escape sequence of some format, and a long value made of all of them.

:data:`FIELD_CAPS` names every free-text field of an event (with the length the model allows)
and :func:`field_cases` gives each one every hostile value that fits, plus one exactly at its
cap: the matrix the per-format read-back tests are parametrized over.
"""

from __future__ import annotations

import unicodedata
import uuid
from typing import Any

import pytest

from tests.support.factories import valid

HOSTILE = [
    "line\r\nbreak",
    "lone\rcr",
    "lone\nlf",
    "\n<134>1 2026-01-01T00:00:00Z forged app - - - forged message",
    "a],[b",
    "close]bracket",
    "\\]",
    'quote " and ""two""',
    "back\\slash\\",
    "pipe|pipe",
    "CEF:0|forged|x|1|sig|name|10|act=forged",
    "eq=eq",
    " act=forged suser=mallory",
    "=SUM(A1:A9)",
    "+cmd|' /C calc'!A0",
    "+1 555",
    "-2+3",
    "-1",
    '@HYPERLINK("http://x")',
    "@import",
    "\tTab first",
    "tab\there",
    "'already quoted",
    "emoji 🔥👩‍💻 😀🧨",
    "rtl \u202eevil\u202c and \u200f mark \u2066isolate\u2069",
    "line sep\u2028para\u2029",
    "nel\x85 esc\x1b[31m bell\x07 del\x7f",
    "comma, semicolon; done",
    "trailing space ",
    "",
    "\r",
    "\n",
    "\r\n",
    "\n\r",
    "crlf at end\r\n",
    "\x01 soh, \x1f us, \x0b vt, \x0c ff, \x08 bs",  # NUL itself is refused at ingest
    "\x1c\x1d\x1e file/group/record separators",  # str.splitlines breaks on these
    "\x1b]0;title\x07 osc, \x1bc reset",
    "\x7f",
    "\x85",
    "c1 \x80 \x9b csi \x9d osc \x9f",
    "\u2028",
    "\u2029",
    "\u061c alm \u200e lrm \u202a lre \u202b rle \u202d lro \u2067 rli \u2068 fsi",
    "zwj\u200d zwsp\u200b bom\ufeff nbsp\xa0 ideographic\u3000space",
    "]",
    '"',
    "\\",
    "|",
    "=",
    '"] [forged@1 a="b"]',
    "\\u000a \\u0000 \\n \\r \\x0a #012 %0A &#10;",  # look like escapes of some format
    "\\\\u2028 \\\\]",
    "\U0001d54f \U0001f600 \U0010fffd \U000e0041 tag",  # non-BMP: math, emoji, plane 16, a tag
    "\U0001f600" * 40,
]
# Made of every kind above, so each escape is also tested beside the others and at length.
_MIX = 'a\r\n]"\\|= \x1b\x7f\x85\u2028\u202e😀\t=+'


def raw_controls(text: str) -> list[str]:
    """The characters of ``text`` no output may carry raw where a reader sees structure:
    controls (C0, DEL, C1), line and paragraph separators, and bidi controls."""
    return [
        c
        for c in text
        if unicodedata.category(c) in ("Cc", "Zl", "Zp")
        or unicodedata.bidirectional(c) in _BIDI_CONTROLS
        or c in "\u061c\u200e\u200f"  # ALM, LRM, RLM (classed AL, L and R)
    ]


_BIDI_CONTROLS = {"LRE", "RLE", "PDF", "LRO", "RLO", "LRI", "RLI", "FSI", "PDI"}


def long_value(length: int) -> str:
    """A hostile value of exactly ``length`` characters (code points)."""
    return (_MIX * (length // len(_MIX) + 1))[:length]


HOSTILE.append(long_value(128))  # fits every free-text field

# Every free-text field a producer sets, and the length the model allows it (code points).
# ``action`` is not free text (a dotted verb, validated), so it is not here.
FIELD_CAPS = {
    "correlation_id": 256,
    "user_agent": 2048,
    "actor.id": 512,
    "actor.display_name": 512,
    "actor.upn": 512,
    "target.type": 128,
    "target.id": 512,
    "target.name": 1024,
    "details.key": 1024,
    "details.value": 4096,
    "after.value": 4096,
}
_REQUIRED = {"target.type", "target.id"}  # the model refuses an empty one


def field_cases() -> list[Any]:
    """``pytest.param(field, value)`` for every field and every hostile value that fits it."""
    cases = []
    for name, cap in FIELD_CAPS.items():
        fits = [v for v in HOSTILE if len(v) <= cap and (v or name not in _REQUIRED)]
        fits += [] if long_value(cap) in fits else [long_value(cap)]
        for i, value in enumerate(fits):
            cases.append(pytest.param(name, value, id=f"{name}-{i}"))
    return cases


def event_with(name: str, value: str) -> dict[str, Any]:
    """A valid event whose field ``name`` (a :data:`FIELD_CAPS` key) holds ``value``."""
    actor: dict[str, Any] = {"type": "user", "id": "u-1", "upn": "a@contoso.com"}
    target: dict[str, Any] = {"type": "policy", "id": "p-1"}
    event = valid(event_id=str(uuid.uuid4()), actor=actor, target=target, details={"k": 1})
    where, _, key = name.partition(".")
    if where == "details":
        event["details"] = {value: 1} if key == "key" else {"v": value, "nested": [{"v": value}]}
    elif key:
        event[where] = {**event[where], key: value} if where != "after" else {"v": value}
    else:
        event[where] = value
    return event


def field_value(record: dict[str, Any], name: str) -> Any:
    """The value of field ``name`` in a record (or a read-back of one): the inverse of
    :func:`event_with`."""
    where, _, key = name.partition(".")
    if where == "details" and key == "key":
        (found,) = record["details"]
        return found
    if where in ("details", "after"):
        return record[where]["v"]
    return record[where][key] if key else record[where]


# Every free-text field an event can carry, each set to one hostile value.
FIELDS = (
    "actor.id",
    "actor.display_name",
    "target.id",
    "target.name",
    "correlation_id",
    "user_agent",
    "details",
    "after",
)


def hostile_event(value: str, i: int = 0) -> dict[str, Any]:
    """A valid event whose free-text fields all hold ``value``."""
    nonempty = value or "x"
    return valid(
        event_id=str(uuid.uuid4()),
        actor={"type": "user", "id": nonempty, "display_name": value, "upn": "a@contoso.com"},
        target={"type": "policy", "id": nonempty, "name": value},
        correlation_id=value,
        user_agent=value,
        details={"note": value, value: i, "nested": [value, {"k": value}]},
        after={"enabled": True, "label": value},
    )


def hostile_events() -> list[dict[str, Any]]:
    events = []
    for i, text in enumerate(HOSTILE):
        events.append(
            valid(
                category=("configuration", "governance", "user_activity")[i % 3],
                occurred_at="2026-11-28T04:15:02.000001-05:00" if i % 2 else "2026-11-28T09:15:02Z",
                actor={"type": "user", "id": f"u{i}", "display_name": text or None},
                target={"type": "policy", "id": text or "x", "name": text},
                before={text: [text, {"k": text}], "n": -i} if text else None,
                after={"v": text, "f": 0.1 + 0.2, "big": 1e21, "tiny": 1e-7},
                user_agent=text,
                correlation_id=text,
                source_ip=("2001:db8::7", "192.0.2.44", None)[i % 3],
                details={"note": text, "i": i},
            )
        )
    return events
