"""The one list of hostile values every output format is tested with.

Each value has broken some CSV, syslog, CEF, OCSF, JSON reader or spreadsheet at some time:
line breaks (CR, LF, U+2028/U+2029, NEL), escape and control characters, delimiters of each
format, formula triggers, bidi controls and emoji.
"""

from __future__ import annotations

import uuid
from typing import Any

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
]

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
