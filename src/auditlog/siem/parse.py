"""Reading SIEM messages back: RFC 6587 octet-counted frames, RFC 5424 messages, CEF lines.

Used by the tests (every value parsed back must equal the value stored) and usable by an
auditor checking a SIEM copy. The parsers are strict: malformed input raises ValueError.
Each undoes the encoding of :mod:`auditlog.siem.formats` (docs/siem.md, "Encoding"):

- SD-PARAM values: ``\\"``, ``\\\\``, ``\\]`` and ``\\uXXXX`` (4 hex digits) are decoded; any
  other backslash is an ordinary character, as RFC 5424 section 6.3.3 says.
- CEF header fields: ``\\|``, ``\\\\``, ``\\r``, ``\\n``, ``\\uXXXX``; extension values: ``\\=``,
  ``\\\\``, ``\\r``, ``\\n``, ``\\uXXXX``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

# Header fields are PRINTUSASCII (33..126) only.
_HEADER = re.compile(
    r"^<(?P<pri>\d{1,3})>1 (?P<ts>[!-~]+) (?P<host>[!-~]{1,255}) (?P<app>[!-~]{1,48}) "
    r"(?P<procid>[!-~]{1,128}) (?P<msgid>[!-~]{1,32}) "
)
_SD_NAME = re.compile(r'(?:(?![= \]"])[!-~]){1,32}')  # PRINTUSASCII but = SP ] "
_CEF_KEY = re.compile(r"[A-Za-z0-9_.\[\]-]+$")
_HEX4 = re.compile(r"[0-9a-fA-F]{4}")
_CEF_HEADER_ESCAPE = re.compile(r"\\([\\|rn]|u[0-9a-fA-F]{4})")
_CEF_EXT_ESCAPE = re.compile(r"\\([\\=rn]|u[0-9a-fA-F]{4})")
_CEF_CHARS = {"\\": "\\", "|": "|", "=": "=", "r": "\r", "n": "\n"}


@dataclass
class SyslogMessage:
    """A parsed RFC 5424 message; ``sd`` maps SD-ID to its params (unescaped)."""

    pri: int
    timestamp: str
    hostname: str
    app_name: str
    procid: str
    msgid: str
    sd: dict[str, dict[str, str]] = field(default_factory=dict)
    msg: str = ""

    def json(self) -> Any:
        """The MSG parsed as JSON."""
        return json.loads(self.msg)


def split_frames(data: bytes) -> tuple[list[bytes], bytes]:
    """Split an octet-counted stream into messages; returns (messages, incomplete rest)."""
    out: list[bytes] = []
    at = 0
    while True:
        space = data.find(b" ", at)
        if space < 0:
            return out, data[at:]
        length = int(data[at:space])
        end = space + 1 + length
        if end > len(data):
            return out, data[at:]
        out.append(data[space + 1 : end])
        at = end


def _sd_value(text: str, at: int) -> tuple[str, int]:
    """Read a quoted PARAM-VALUE starting after its opening quote; return (value, next)."""
    out = []
    while at < len(text):
        ch = text[at]
        if ch == "\\" and at + 1 < len(text) and text[at + 1] in '"\\]':
            out.append(text[at + 1])
            at += 2
        elif ch == "\\" and text.startswith("u", at + 1) and _HEX4.match(text, at + 2):
            out.append(chr(int(text[at + 2 : at + 6], 16)))
            at += 6
        elif ch == '"':
            return "".join(out), at + 1
        else:
            out.append(ch)
            at += 1
    raise ValueError("unterminated SD-PARAM value")


def _sd_element(text: str, at: int) -> tuple[str, dict[str, str], int]:
    m = _SD_NAME.match(text, at + 1)
    if text[at] != "[" or m is None:
        raise ValueError(f"bad SD-ELEMENT at {at}")
    sd_id, params, at = m.group(), {}, m.end()
    while text.startswith(" ", at):
        m = _SD_NAME.match(text, at + 1)
        if m is None or text[m.end() : m.end() + 2] != '="':
            raise ValueError(f"bad SD-PARAM at {at}")
        params[m.group()], at = _sd_value(text, m.end() + 2)
    if not text.startswith("]", at):
        raise ValueError(f"SD-ELEMENT {sd_id} not closed at {at}")
    return sd_id, params, at + 1


def parse_syslog(message: bytes | str) -> SyslogMessage:
    """Parse one RFC 5424 message (no framing)."""
    text = message.decode("utf-8") if isinstance(message, bytes) else message
    m = _HEADER.match(text)
    if m is None:
        raise ValueError(f"not an RFC 5424 header: {text[:80]!r}")
    out = SyslogMessage(int(m["pri"]), m["ts"], m["host"], m["app"], m["procid"], m["msgid"])
    at = m.end()
    if text.startswith("-", at):
        at += 1
    else:
        while text.startswith("[", at):
            sd_id, params, at = _sd_element(text, at)
            out.sd[sd_id] = params
    if at < len(text):
        if text[at] != " ":
            raise ValueError(f"expected a space before MSG at {at}")
        out.msg = text[at + 1 :].removeprefix("\ufeff")
    return out


def _split_unescaped(text: str, sep: str, count: int) -> list[str]:
    parts: list[str] = []
    cur: list[str] = []
    at = 0
    while at < len(text) and len(parts) < count:
        ch = text[at]
        if ch == "\\" and at + 1 < len(text):
            cur.append(text[at : at + 2])
            at += 2
            continue
        if ch == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        at += 1
    parts.append("".join(cur) + text[at:])
    return parts


def _cef_char(m: re.Match[str]) -> str:
    code = m.group(1)
    return chr(int(code[1:], 16)) if len(code) == 5 else _CEF_CHARS[code]


def _unescape_header(value: str) -> str:
    return _CEF_HEADER_ESCAPE.sub(_cef_char, value)


def _unescape_ext(value: str) -> str:
    return _CEF_EXT_ESCAPE.sub(_cef_char, value)


def _extension(text: str) -> dict[str, str]:
    """Keys end at an unescaped ``=``; a value runs to the space before the next key."""
    marks, at = [], 0
    while at < len(text):
        if text[at] == "\\":
            at += 2
            continue
        if text[at] == "=":
            start = text.rfind(" ", 0, at) + 1
            key = text[start:at]
            if not _CEF_KEY.match(key):
                raise ValueError(f"bad CEF extension key {key!r}")
            marks.append((start, key, at + 1))
        at += 1
    out = {}
    for i, (_, key, vstart) in enumerate(marks):
        vend = marks[i + 1][0] - 1 if i + 1 < len(marks) else len(text)
        out[key] = _unescape_ext(text[vstart:vend])
    return out


def parse_cef(line: str) -> tuple[list[str], dict[str, str]]:
    """(the six header fields after ``CEF:0``, the extension as a dict), unescaped."""
    if not line.startswith("CEF:0|"):
        raise ValueError(f"not a CEF:0 line: {line[:40]!r}")
    parts = _split_unescaped(line[6:], "|", 6)
    if len(parts) != 7:
        raise ValueError("a CEF line has 7 header fields and an extension")
    return [_unescape_header(p) for p in parts[:6]], _extension(parts[6])
