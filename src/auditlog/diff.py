"""Structural before/after diff of JSON states.

Paths name a value inside the state: ``conditions.users.include[1]``; an object key that is
not a plain name (spaces, dots, brackets, quotes, empty) is quoted: ``labels["a.b"]``. The
whole state is the empty path ``""``.

Lists are aligned by content (difflib over each element's canonical JSON), so inserting one
element reports one ``added`` rather than shifting every later index; elements replaced in
place are diffed pairwise, so one changed field inside an object in a list is one change.
``removed`` paths use the before index, ``added`` and ``changed`` the after index.

Kinds: ``added``, ``removed``, ``changed`` (same JSON type, different value) and
``type_changed`` (different JSON type: number -> string, null -> object, ...). Numbers
compare by value (``1 == 1.0``), booleans are not numbers (``true != 1``).
"""

from __future__ import annotations

import difflib
import html
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import polars as pl

Kind = Literal["added", "removed", "changed", "type_changed"]
ChangeKind = Literal["created", "deleted", "updated", "none"]
KIND_ORDER: tuple[Kind, ...] = ("changed", "added", "removed", "type_changed")
_PLAIN_KEY = re.compile(r"[^\W\d][\w-]*")  # used with fullmatch: "$" would let "a\n" through
_COLOURS = {
    "added": "#d7f5dd",
    "removed": "#ffe0e0",
    "changed": "#fff3bf",
    "type_changed": "#fff3bf",
}


@dataclass(frozen=True)
class Change:
    """One difference: at ``path``, ``old`` (before) became ``new`` (after).

    ``old`` is None for ``added`` and ``new`` is None for ``removed``.
    """

    path: str
    kind: Kind
    old: Any = None
    new: Any = None


@dataclass(frozen=True)
class Line:
    """One line of pretty-printed JSON; ``kind`` is set when the line shows a change."""

    text: str
    kind: Kind | None = None
    path: str | None = None


@dataclass(frozen=True)
class _Step:
    old_path: str
    new_path: str
    kind: Kind
    old: Any
    new: Any


def _jtype(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    raise TypeError(f"{type(value).__name__} is not a JSON value")


def key_path(parent: str, key: str) -> str:
    """``parent.key``, or ``parent["key"]`` when the key is not a plain name."""
    if _PLAIN_KEY.fullmatch(key):
        return f"{parent}.{key}" if parent else key
    return f"{parent}[{json.dumps(key, ensure_ascii=False)}]"


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _walk(old: Any, new: Any, op: str, np: str) -> Iterator[_Step]:
    kind_old, kind_new = _jtype(old), _jtype(new)
    if kind_old != kind_new:
        yield _Step(op, np, "type_changed", old, new)
    elif kind_old == "object":
        yield from _walk_object(old, new, op, np)
    elif kind_old == "array":
        yield from _walk_list(old, new, op, np)
    elif old != new:
        yield _Step(op, np, "changed", old, new)


def _walk_object(
    old: Mapping[str, Any], new: Mapping[str, Any], op: str, np: str
) -> Iterator[_Step]:
    for key, value in old.items():
        if key in new:
            yield from _walk(value, new[key], key_path(op, key), key_path(np, key))
        else:
            yield _Step(key_path(op, key), key_path(np, key), "removed", value, None)
    for key, value in new.items():
        if key not in old:
            yield _Step(key_path(op, key), key_path(np, key), "added", None, value)


def _walk_list(old: list[Any], new: list[Any], op: str, np: str) -> Iterator[_Step]:
    matcher = difflib.SequenceMatcher(
        None, [_canonical(v) for v in old], [_canonical(v) for v in new], autojunk=False
    )
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        paired = min(i2 - i1, j2 - j1) if tag == "replace" else 0
        for k in range(paired):
            yield from _walk(old[i1 + k], new[j1 + k], f"{op}[{i1 + k}]", f"{np}[{j1 + k}]")
        for i in range(i1 + paired, i2):
            yield _Step(f"{op}[{i}]", f"{np}[{j1 + paired}]", "removed", old[i], None)
        for j in range(j1 + paired, j2):
            yield _Step(f"{op}[{i1 + paired}]", f"{np}[{j}]", "added", None, new[j])


def _steps(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> list[_Step]:
    if before is None and after is None:
        return []
    if before is None:
        return [_Step("", "", "added", None, after)]
    if after is None:
        return [_Step("", "", "removed", before, None)]
    return list(_walk(before, after, "", ""))


def diff(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> list[Change]:
    """The changes from ``before`` to ``after``: removed and changed keys in ``before``'s
    key order, then added keys; list elements in list order.

    A creation (before None) is one ``added`` at path ``""``; a deletion (after None) is one
    ``removed`` at ``""``; both None gives no changes.
    """
    return [
        Change(s.old_path if s.kind == "removed" else s.new_path, s.kind, s.old, s.new)
        for s in _steps(before, after)
    ]


def change_kind(before: Any, after: Any) -> ChangeKind:
    """How an event changed its target: created (no before), deleted (no after), updated,
    or none (neither state)."""
    if before is None:
        return "none" if after is None else "created"
    return "deleted" if after is None else "updated"


def summary(changes: list[Change], limit: int = 3) -> str:
    """One line: ``2 changed, 1 added: enabled, grant.mfa, conditions.locations[2]``
    (at most ``limit`` paths, then ``+N more``); ``created`` / ``deleted`` for a whole-state
    change; ``no changes`` when empty."""
    if not changes:
        return "no changes"
    if len(changes) == 1 and changes[0].path == "":
        return {"added": "created", "removed": "deleted"}.get(changes[0].kind, "replaced")
    counts = {k: sum(1 for ch in changes if ch.kind == k) for k in KIND_ORDER}
    head = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in counts.items() if n)
    paths = ", ".join(ch.path for ch in changes[:limit])
    more = f" +{len(changes) - limit} more" if len(changes) > limit else ""
    return f"{head}: {paths}{more}"


def describe(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> str:
    """:func:`summary` of the diff, or ``no state recorded`` when neither state exists."""
    if before is None and after is None:
        return "no state recorded"
    return summary(diff(before, after))


def changes_frame(changes: list[Change]) -> pl.DataFrame:
    """A table of changes: path, kind, old, new (old/new as JSON text; null where the value
    is absent, i.e. old of ``added`` and new of ``removed``)."""

    def text(value: Any, absent: bool) -> str | None:
        return None if absent else json.dumps(value, ensure_ascii=False, sort_keys=True)

    rows = [
        (ch.path, ch.kind, text(ch.old, ch.kind == "added"), text(ch.new, ch.kind == "removed"))
        for ch in changes
    ]
    schema = {"path": pl.String(), "kind": pl.String(), "old": pl.String(), "new": pl.String()}
    return pl.DataFrame(rows, schema=schema, orient="row")


def _render(
    value: Any,
    path: str,
    marks: Mapping[str, Kind],
    out: list[Line],
    *,
    depth: int = 0,
    prefix: str = "",
    comma: str = "",
    inherited: Kind | None = None,
) -> None:
    kind = inherited or marks.get(path)
    pad = "  " * depth
    if isinstance(value, Mapping) and value:
        items = [
            (key_path(path, k), json.dumps(k, ensure_ascii=False) + ": ", v)
            for k, v in sorted(value.items())
        ]
        brackets = "{}"
    elif isinstance(value, list | tuple) and value:
        items = [(f"{path}[{i}]", "", v) for i, v in enumerate(value)]
        brackets = "[]"
    else:
        out.append(Line(f"{pad}{prefix}{json.dumps(value, ensure_ascii=False)}{comma}", kind, path))
        return
    out.append(Line(f"{pad}{prefix}{brackets[0]}", kind, path))
    for n, (child, child_prefix, v) in enumerate(items):
        sep = "," if n < len(items) - 1 else ""
        _render(
            v, child, marks, out, depth=depth + 1, prefix=child_prefix, comma=sep, inherited=kind
        )
    out.append(Line(f"{pad}{brackets[1]}{comma}", kind, path))


def highlighted(
    before: Mapping[str, Any] | None, after: Mapping[str, Any] | None
) -> tuple[list[Line], list[Line]]:
    """Pretty-printed before and after (2-space JSON, sorted keys) as lines, each line marked
    with the kind of change it shows (a changed object marks all its lines). A missing state
    (creation / deletion) is an empty list."""
    steps = _steps(before, after)
    old_marks: dict[str, Kind] = {s.old_path: s.kind for s in steps if s.kind != "added"}
    new_marks: dict[str, Kind] = {s.new_path: s.kind for s in steps if s.kind != "removed"}
    left: list[Line] = []
    right: list[Line] = []
    if before is not None:
        _render(before, "", old_marks, left)
    if after is not None:
        _render(after, "", new_marks, right)
    return left, right


def lines_html(lines: list[Line]) -> str:
    """HTML for :func:`highlighted` lines: a ``<pre>`` with changed lines coloured (added
    green, removed red, changed amber). Every text is escaped, so it is safe to render."""
    parts = []
    for line in lines:
        text = html.escape(line.text) or " "
        if line.kind:
            style = f"background:{_COLOURS[line.kind]}"
            parts.append(f'<span class="diff-{line.kind}" style="{style}">{text}</span>')
        else:
            parts.append(f"<span>{text}</span>")
    body = "\n".join(parts)
    return f'<pre style="font-size:0.85em;line-height:1.35;white-space:pre-wrap">{body}</pre>'
