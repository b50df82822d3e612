"""RFC 8785 (JCS) canonical JSON, fast.

``jcs(value)`` is byte-identical to ``rfc8785.dumps(value)`` (a hypothesis property test shows
it). For JSON without floats and with ASCII object keys, the standard library's encoder with
sorted keys, no whitespace and no ASCII escaping already produces JCS: integers print the same,
strings escape the same characters the same way, and ASCII keys sort the same by code point as
by UTF-16 code unit. Anything else falls back to the ``rfc8785`` package.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

import rfc8785

from auditlog.errors import InvalidEvent
from auditlog.model import check_json

_json_encoder = json.JSONEncoder(
    ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False
)


def _not_json(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not a JSON type")


# The C encoder made once, without circular-reference markers (a cycle ends in RecursionError):
# JSONEncoder.encode builds a new one per call, which costs more than encoding a small object.
_c_encoder = getattr(json.encoder, "c_make_encoder", None)
_c_encode = (
    _c_encoder(None, _not_json, json.encoder.encode_basestring, None, ":", ",", True, False, False)
    if _c_encoder
    else None
)


def _encode(value: Any) -> str:
    """Compact, sorted-key, non-ASCII-preserving JSON text (JCS for ints, strings, ASCII keys)."""
    if _c_encode is None:
        return _json_encoder.encode(value)
    try:
        return "".join(_c_encode(value, 0))
    except RecursionError:
        raise ValueError("nested too deeply (or refers to itself)") from None


def needs_slow_path(value: Any) -> bool:
    """True when ``value`` holds a float or a non-ASCII object key.

    Iterative: a stored value nested deeper than Python's recursion limit allows (rows of a
    log written before the depth bound, a hostile bundle) is walked all the same.
    """
    if not isinstance(value, dict | list):
        return isinstance(value, float)
    stack: list[Any] = [value]
    while stack:
        v = stack.pop()
        children: Iterable[Any] = v
        if isinstance(v, dict):
            if not "".join(v).isascii():
                return True
            children = v.values()
        for child in children:
            if isinstance(child, _NESTED):
                stack.append(child)
            elif isinstance(child, float):
                return True
    return False


_NESTED = (dict, list)


def jcs_text(value: Any, slow: bool | None = None) -> str:
    """Canonical JSON text of ``value``; ``slow`` may be passed when already known."""
    if slow is None:
        slow = needs_slow_path(value)
    if slow:
        return rfc8785.dumps(value).decode("utf-8")
    return _encode(value)


def jcs(value: Any) -> bytes:
    """Canonical JSON bytes of ``value`` (RFC 8785)."""
    return jcs_text(value).encode("utf-8")


_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
# A number with a fraction or exponent, or of 16+ digits, right after `:`, `[` or `,` (strings
# that merely look like that are told apart by a second search with the strings removed).
_FLOAT_OR_BIG = re.compile(r"[:\[,]-?\d(?:\d*[.eE]|\d{15})")


_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")


def screen_ok(text: str, free_json: str) -> bool:
    """True when JSON text from the C encoder is certainly JCS and holds nothing to refuse.

    ``text`` must be ASCII with no escaped NUL; ``free_json`` (the part that may hold numbers
    of the producer's, a part of ``text``) must hold no number with a fraction, exponent or
    16+ digits. The cheap first test has false positives (hex, dotted versions in strings);
    the second, with the strings removed, has none.
    """
    if not text.isascii() or "\\u0000" in text:
        return False
    # A byte-table translate is far cheaper than a regular expression over the text.
    zeros = free_json.encode("ascii").translate(_DIGITS_TO_ZERO)
    numberish = b"0." in zeros or b"0e" in zeros or b"0E" in zeros or b"0" * 16 in zeros
    return not numberish or not _FLOAT_OR_BIG.search(_STRINGS.sub("", free_json))


def checked_text(value: Any, field: str) -> str:
    """Canonical JSON text of a field value, refusing what PostgreSQL or I-JSON cannot hold.

    The encoded text is screened in C (ASCII only, no number with a fraction, exponent or 16+
    digits, no escaped NUL); only a value that trips a screen is walked in Python, which names
    the offending path and decides whether the ``rfc8785`` fallback is needed.
    """
    if value is None:
        return "null"
    if value.__class__ is str:
        text = _encode(value)
        if text.isascii() and "\\u0000" not in text:
            return text
        try:
            check_json(value)
        except ValueError as exc:
            raise InvalidEvent(field, str(exc)) from None
        return text
    try:
        text = _encode(value)
    except (TypeError, ValueError) as exc:
        try:
            check_json(value)  # names the path (e.g. a key that is not a string)
        except ValueError as named:
            raise InvalidEvent(field, str(named)) from None
        raise InvalidEvent(field, f"not representable as JSON: {exc}") from None
    plain = text.isascii() and "\\u0000" not in text and text[0] not in "-0123456789"
    if plain and (
        not _FLOAT_OR_BIG.search(text) or not _FLOAT_OR_BIG.search(_STRINGS.sub("", text))
    ):
        return text
    try:
        slow = check_json(value)
    except ValueError as exc:
        raise InvalidEvent(field, str(exc)) from None
    return rfc8785.dumps(value).decode("utf-8") if slow else text
