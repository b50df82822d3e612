"""The audit event: one schema for every action, validated with pydantic.

``AuditEvent`` is what a producer sends; ``parse_event`` turns a dict (or JSON text) into one
or raises :class:`~auditlog.errors.InvalidEvent` naming the field and the reason.

The log's own events (retention, SIEM configuration, exports, the dashboard's self-audit) are
built by one factory, :func:`new_event`, over one vocabulary, :data:`ACTIONS` (each action with
its category and a description), like django-auditlog's ``LogEntry.Action``.
"""

from __future__ import annotations

import json
import re
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Literal, get_args

import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator

from auditlog.errors import InvalidEvent
from auditlog.settings import StoreSettings

MAX_SAFE_INT = 2**53 - 1
_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)
_RFC3339_PLAIN = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d)\Z")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
_ACTION = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")


class Category(StrEnum):
    configuration = "configuration"
    governance = "governance"
    user_activity = "user_activity"


CATEGORIES: tuple[str, ...] = tuple(c.value for c in Category)
"""The chains, in name order (the order writers take their locks in)."""


class Outcome(StrEnum):
    success = "success"
    failure = "failure"
    denied = "denied"


class ActorType(StrEnum):
    user = "user"
    service = "service"
    automation = "automation"
    system = "system"


# The model's fields take these as Literal types: validated in pydantic's core without building
# enum members (the same error text, and values are plain strings either way).
CategoryName = Literal["configuration", "governance", "user_activity"]
OutcomeName = Literal["success", "failure", "denied"]
ActorTypeName = Literal["user", "service", "automation", "system"]
assert get_args(CategoryName) == CATEGORIES
assert get_args(OutcomeName) == tuple(Outcome)
assert get_args(ActorTypeName) == tuple(ActorType)


def _check_text(value: str, what: str = "text") -> str:
    if "\x00" in value:
        raise ValueError(f"contains a NUL character (\\u0000), which {what} cannot hold")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("contains a lone surrogate; send valid Unicode (UTF-8)") from exc
    return value


def parse_timestamp(value: Any) -> datetime:
    """An RFC 3339 timestamp with an explicit offset, as an aware datetime (microseconds)."""
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("naive datetime; give an explicit UTC offset")
        return _in_years(value)
    if not isinstance(value, str):
        raise ValueError(f"expected an RFC 3339 string, got {type(value).__name__}")
    if _RFC3339_PLAIN.match(value):  # the common form, which fromisoformat reads as it is
        try:
            return _in_years(datetime.fromisoformat(value))
        except ValueError:
            pass  # not a real date or an offset out of range: the path below says which
    m = _RFC3339.match(value)
    if m is None:
        raise ValueError(
            f"{value[:40]!r} is not RFC 3339 with an explicit offset "
            "(e.g. 2026-11-28T09:15:02.123Z or +01:00); now/infinity/naive times are refused"
        )
    offset = m.group(8).upper()
    if (m.group(7) or "").__len__() > 7 or "t" in value or "z" in value:
        frac = (m.group(7) or ".0")[1:7].ljust(6, "0")
        value = f"{value[:10]}T{value[11:19]}.{frac}{offset}"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a real date/time: {exc}") from exc
    off = parsed.utcoffset() or timedelta(0)
    if abs(off) >= timedelta(hours=24):
        raise ValueError(f"offset {offset} is out of range")
    return _in_years(parsed)


def _in_years(ts: datetime) -> datetime:
    """``ts`` when it is within years 0001..9999 in UTC (what the log stores), else ValueError."""
    if 1 < ts.year < 9999:
        return ts
    try:
        ts.astimezone(UTC)
    except OverflowError:
        raise ValueError(
            f"{ts.isoformat()} is outside years 0001..9999 in UTC, which the log stores"
        ) from None
    return ts


def check_json(value: Any, path: str = "") -> bool:
    """Check a JSON value; return True when it holds a float or a non-ASCII key.

    Refuses NUL characters, lone surrogates, non-finite numbers, integers outside
    +-(2**53-1) (I-JSON) and non-JSON types, naming the path. The store runs it only when
    the fast checks over the encoded text (``auditlog.canonical``) found something to name.
    """
    slow = False
    if isinstance(value, str):
        try:
            _check_text(value, "PostgreSQL jsonb")
        except ValueError as exc:
            raise ValueError(f"{path or 'value'}: {exc}") from None
    elif isinstance(value, bool) or value is None:
        pass
    elif isinstance(value, int):
        if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            raise ValueError(f"{path or 'value'}: integer {value} is outside +-(2**53-1)")
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{path or 'value'}: NaN/Infinity are not JSON")
        slow = True
    elif isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError(f"{path}: object keys must be strings")
            try:
                _check_text(k, "PostgreSQL jsonb")
            except ValueError as exc:
                raise ValueError(f"{path or 'value'}: key {k[:40]!r} {exc}") from None
            if not k.isascii():
                slow = True
            slow = check_json(v, f"{path}.{k}" if path else k) or slow
    elif isinstance(value, list):
        for i, v in enumerate(value):
            slow = check_json(v, f"{path}[{i}]") or slow
    else:
        raise ValueError(f"{path or 'value'}: {type(value).__name__} is not a JSON type")
    return slow


class _Strict(BaseModel):
    # NUL characters and lone surrogates are found by ``find_bad_text`` over the encoded
    # event (one pass in C) rather than by a validator per field.
    # Enum fields hold their plain string value after validation (cheaper to serialise).
    model_config = ConfigDict(
        extra="forbid", frozen=True, str_max_length=4096, use_enum_values=True
    )


class Actor(_Strict):
    """Who did it. ``resolved`` is set by the directory lookup, never by the producer."""

    type: ActorTypeName
    id: str | None = Field(default=None, max_length=512)
    display_name: str | None = Field(default=None, max_length=512)
    upn: str | None = Field(default=None, max_length=512)
    entra_object_id: str | None = None
    tenant_id: str | None = Field(default=None, max_length=128)
    resolved: bool = False

    @field_validator("entra_object_id")
    @classmethod
    def _uuid(cls, v: str | None) -> str | None:
        if v is None or _UUID.match(v):  # already canonical: the common case
            return v
        return str(uuid.UUID(v))

    @pydantic.model_validator(mode="after")
    def _identified(self) -> Actor:
        if not (self.id or self.upn or self.entra_object_id):
            raise ValueError("give at least one of id, upn or entra_object_id")
        return self


class Target(_Strict):
    """What it was done to."""

    type: str = Field(min_length=1, max_length=128)
    id: str = Field(min_length=1, max_length=512)
    name: str | None = Field(default=None, max_length=1024)


class AuditEvent(_Strict):
    """One governance action, as a producer sends it."""

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    category: CategoryName
    action: str = Field(max_length=128, pattern=_ACTION.pattern)
    outcome: OutcomeName
    occurred_at: datetime
    actor: Actor
    target: Target
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    source_ip: str | None = None
    user_agent: str | None = Field(default=None, max_length=2048)
    correlation_id: str | None = Field(default=None, max_length=256)
    details: dict[str, Any] = Field(default_factory=dict)

    @field_validator("occurred_at", mode="before")
    @classmethod
    def _ts(cls, v: Any) -> datetime:
        return parse_timestamp(v)

    @field_validator("source_ip")
    @classmethod
    def _ip(cls, v: str | None) -> str | None:
        if v is None:
            return None
        try:
            return canonical_ip(v)
        except (ValueError, OSError):
            raise ValueError(f"{v[:60]!r} is not an IPv4 or IPv6 address") from None


# Fields of the stored event that the log sets and a producer cannot send (it gets this reason).
SET_BY_LOG = {
    "source": "set by the log from the API key that submitted it; a producer cannot send it",
}


def _loc(err: Any) -> str:
    path = ""
    for part in err["loc"]:
        if part == "__root__":
            continue
        path = f"{path}[{part}]" if isinstance(part, int) else _join(path, str(part))
    return path or "event"


def _reason(err: Any) -> str:
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden" and len(err["loc"]) == 1 and err["loc"][0] in SET_BY_LOG:
        msg = SET_BY_LOG[err["loc"][0]]
    if err["type"] == "string_pattern_mismatch" and err["loc"] == ("action",):
        msg = f"{str(err['input'])[:60]!r} is not a dotted lower-case verb like 'policy.updated'"
    return msg


DEFAULT_STORE = StoreSettings()
"""The bounds :func:`parse_event` applies when given no settings (the defaults)."""


def parse_event(
    data: dict[str, Any] | str | bytes | AuditEvent, store: StoreSettings = DEFAULT_STORE
) -> AuditEvent:
    """Validate one event; raise InvalidEvent listing every bad field with its path.

    ``store`` gives the bounds (``max_json_depth``, ``max_object_keys``, the occurred_at
    window); they are checked before anything recurses into the value, so JSON nested
    10,000 deep is an InvalidEvent, never a RecursionError. JSON text with a duplicate object
    key is refused (RFC 7493 I-JSON).
    """
    problems: list[tuple[str, str]] = []
    if isinstance(data, str | bytes):
        data, problems = _loads(data, store)
    elif isinstance(data, AuditEvent):
        free = {"before": data.before, "after": data.after, "details": data.details}
        problems = _dict_problems(free, store)
        if problems:
            raise InvalidEvent.of(problems)
        check_window(data.occurred_at, store)
        return data
    elif not isinstance(data, dict):
        raise InvalidEvent("event", f"expected a mapping, got {type(data).__name__}")
    else:
        problems = _dict_problems(data, store)
    try:
        event = AuditEvent.model_validate(data)
    except pydantic.ValidationError as exc:
        problems += [(_loc(err), _reason(err)) for err in exc.errors(include_url=False)]
        problems += _window_of_raw(data, store, exc)
        raise InvalidEvent.of(problems) from None
    # The window after validation (a with-context validator costs more on every event); on
    # an invalid event _window_of_raw reports it together with the rest.
    lo, hi = _window_edges(store)
    if problems or not lo <= event.occurred_at <= hi:
        raise InvalidEvent.of([*problems, *_window_of(event.occurred_at, store)])
    return event


def _window_of(ts: datetime, store: StoreSettings) -> list[tuple[str, str]]:
    problem = window_problem(ts, store)
    return [("occurred_at", problem)] if problem else []


def _window_of_raw(
    data: Mapping[str, Any], store: StoreSettings, exc: pydantic.ValidationError
) -> list[tuple[str, str]]:
    """The window problem of an event pydantic refused for other reasons, if any."""
    if any(err["loc"][:1] == ("occurred_at",) for err in exc.errors(include_url=False)):
        return []
    try:
        return _window_of(parse_timestamp(data.get("occurred_at")), store)
    except ValueError:
        return []


def check_window(ts: datetime, store: StoreSettings, now: datetime | None = None) -> None:
    """Raise InvalidEvent for an occurred_at outside the window (see :func:`window_problem`)."""
    problem = window_problem(ts, store, now)
    if problem:
        raise InvalidEvent("occurred_at", problem)


def window_problem(ts: datetime, store: StoreSettings, now: datetime | None = None) -> str:
    """Why ``ts`` is outside the occurred_at window around ``now``, or '' when inside.

    The window is ``store.occurred_past_days`` back and ``store.occurred_future_hours`` ahead
    of ``now``, by default the clock of the host that validates the event: the moment just
    before the writer takes the chain lock and reads recorded_at from the server (seconds
    apart at most, against a window of years and a day). Without ``now`` the window's edges
    are reused for up to a second (a clock read and two subtractions per event cost more
    than a comparison).
    """
    lo, hi = _window_edges(store) if now is None else _edges(store, now)
    if ts < lo:
        return (
            f"{utc_text(ts)} is more than {store.occurred_past_days} days before now "
            "(setting occurred_past_days, AUDITLOG_OCCURRED_PAST_DAYS)"
        )
    if ts > hi:
        return (
            f"{utc_text(ts)} is more than {store.occurred_future_hours} hours after now "
            "(setting occurred_future_hours, AUDITLOG_OCCURRED_FUTURE_HOURS)"
        )
    return ""


_UTC_MIN = datetime.min.replace(tzinfo=UTC)
_UTC_MAX = datetime.max.replace(tzinfo=UTC)
_EDGES: dict[tuple[int, int], tuple[float, datetime, datetime]] = {}


def _edges(store: StoreSettings, now: datetime) -> tuple[datetime, datetime]:
    """The window around ``now``, clamped to the datetimes Python has (no OverflowError)."""
    past, future = (
        timedelta(days=store.occurred_past_days),
        timedelta(hours=store.occurred_future_hours),
    )
    lo = now - past if now - _UTC_MIN > past else _UTC_MIN
    hi = now + future if _UTC_MAX - now > future else _UTC_MAX
    return lo, hi


def _window_edges(store: StoreSettings) -> tuple[datetime, datetime]:
    key = (store.occurred_past_days, store.occurred_future_hours)
    tick = time.monotonic()
    cached = _EDGES.get(key)
    if cached is None or tick - cached[0] > 1.0:
        cached = (tick, *_edges(store, datetime.now(UTC)))
        _EDGES[key] = cached
    return cached[1], cached[2]


# --- bounds of JSON text and values: depth, keys, duplicates --------------------------------


# What the fast decoder's hook raises at a duplicate key or an object over the key cap: the
# slower naming pass then says where.
_REFUSED = InvalidEvent("event", "duplicate key or too many keys")


class _Marked(dict[str, Any]):
    """An object of the naming pass with a problem: its duplicate keys and its key count."""

    dups: list[str]
    count: int


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _fast_hook(max_keys: int) -> Callable[[list[tuple[str, Any]]], dict[str, Any]]:
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        d = dict(pairs)
        if len(d) != len(pairs) or len(pairs) > max_keys:
            raise _REFUSED
        return d

    return hook


def _marking_hook(max_keys: int) -> Callable[[list[tuple[str, Any]]], dict[str, Any]]:
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        d = dict(pairs)
        if len(d) == len(pairs) and len(pairs) <= max_keys:
            return d
        marked = _Marked(d)
        seen: set[str] = set()
        marked.dups = [k for k, _ in pairs if k in seen or seen.add(k)]  # type: ignore[func-returns-value]
        marked.count = len(pairs)
        return marked

    return hook


_DECODERS: dict[int, tuple[json.JSONDecoder, json.JSONDecoder]] = {}


def _decoders(max_keys: int) -> tuple[json.JSONDecoder, json.JSONDecoder]:
    pair = _DECODERS.get(max_keys)
    if pair is None:
        pair = (
            json.JSONDecoder(object_pairs_hook=_fast_hook(max_keys)),
            json.JSONDecoder(object_pairs_hook=_marking_hook(max_keys)),
        )
        _DECODERS[max_keys] = pair
    return pair


def _loads(raw: str | bytes, store: StoreSettings) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The event object of JSON text and its duplicate-key / key-count problems.

    Depth is checked on the text before the decoder (which recurses) sees it; the common case
    costs two ``count`` calls. Raises InvalidEvent when the text cannot be decoded at all.
    """
    limit = store.max_json_depth
    if isinstance(raw, bytes):
        brackets = raw.count(b"{") + raw.count(b"[")
        try:
            text = raw.decode(json.detect_encoding(raw), "surrogatepass")
        except (UnicodeDecodeError, LookupError) as exc:
            raise InvalidEvent("event", f"not valid JSON: {exc}") from None
    else:
        text, brackets = raw, raw.count("{") + raw.count("[")
    if brackets > limit:
        deep = deep_path(text, limit)
        if deep is not None:
            raise InvalidEvent(deep, f"nesting deeper than {limit}")
    fast, marking = _decoders(store.max_object_keys)
    problems: list[tuple[str, str]] = []
    try:
        try:
            data = fast.decode(text)
        except InvalidEvent:  # _REFUSED
            data = marking.decode(text)
            problems = _marked_problems(data, store.max_object_keys)
    except ValueError as exc:
        raise InvalidEvent("event", f"not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidEvent("event", f"nesting deeper than {limit}") from None
    if not isinstance(data, dict):
        raise InvalidEvent("event", "must be a JSON object")
    return data, problems


def _marked_problems(root: Any, max_keys: int) -> list[tuple[str, str]]:
    """Every duplicate key and oversized object in a naming pass's result, by path."""
    problems: list[tuple[str, str]] = []
    stack: list[tuple[Any, str]] = [(root, "")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, _Marked):
            for key in dict.fromkeys(value.dups):
                problems.append(
                    (_join(path, key), "duplicate key")
                    if not path
                    else (path, f"duplicate key {json.dumps(key)}")
                )
            if value.count > max_keys:
                problems.append((path or "event", _too_many(value.count, max_keys)))
        if isinstance(value, dict):
            stack.extend((v, _join(path, k)) for k, v in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend((v, f"{path}[{i}]") for i, v in reversed(list(enumerate(value))))
    return problems


def _too_many(count: int, max_keys: int) -> str:
    return f"{count} keys, more than {max_keys} in one object (setting max_object_keys)"


_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{},]')
_STRING_TEXT = re.compile(r'"(?:[^"\\]|\\.)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def deep_path(text: str, limit: int) -> str | None:
    """The path of the first object or array of JSON text nested deeper than ``limit``
    (the outermost value is at depth 1), or None. Never recurses; strings are skipped."""
    depth = 0
    for ch in _NOT_BRACKET.sub("", _STRING_TEXT.sub("", text)):
        depth = depth + 1 if ch in "[{" else depth - 1
        if depth > limit:
            break
    else:
        return None
    stack: list[list[Any]] = []  # [kind, key or index] of each open container
    expect_key = False
    for m in _TOKENS.finditer(text):
        tok = m.group()
        if tok[0] == '"':
            if expect_key and stack:
                stack[-1][1] = _key_text(tok)
            expect_key = False
        elif tok in "[{":
            if len(stack) >= limit:
                return _stack_path(stack)
            stack.append([tok, 0 if tok == "[" else ""])
            expect_key = tok == "{"
        elif tok in "]}":
            if stack:
                stack.pop()
        elif stack:  # a comma
            if stack[-1][0] == "[":
                stack[-1][1] += 1
            else:
                expect_key = True
    return "event"


def _key_text(token: str) -> str:
    try:
        return str(json.loads(token))
    except ValueError:
        return token[1:-1]


def _stack_path(stack: list[list[Any]]) -> str:
    path = ""
    for kind, at in stack:
        path = f"{path}[{at}]" if kind == "[" else _join(path, at)
    return path if path and not path.startswith("[") else f"event{path}"


_CONTAINERS = (dict, list, tuple)
_SEQUENCES = (list, tuple)
_SCALARS = frozenset({str, int, float, bool, type(None)})


def _dict_problems(data: Mapping[str, Any], store: StoreSettings) -> list[tuple[str, str]]:
    """Depth and key-count problems of an event given as Python values, by path.

    Only before/after/details hold free JSON: elsewhere pydantic refuses a nested value or an
    extra key without walking it. The walk is iterative and stops at the depth limit, so a
    deep or self-referencing value cannot recurse; an object of scalars only (the common
    case) is passed over in C (``issuperset`` over ``map(type, ...)``).
    """
    max_depth, max_keys = store.max_json_depth, store.max_object_keys
    scalars = _SCALARS.issuperset
    stack: list[tuple[Any, int]] = []
    for name in _FREE:
        value = data.get(name)
        if value is None:
            continue
        if (
            value.__class__ is dict
            and len(value) <= max_keys
            and scalars(map(type, value.values()))
        ):
            continue
        stack.append((value, 2))
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            if len(value) > max_keys:
                break
            value = value.values()
        elif not isinstance(value, _SEQUENCES):
            continue
        if depth > max_depth:
            break
        if not scalars(map(type, value)):
            stack.extend([(c, depth + 1) for c in value if isinstance(c, _CONTAINERS)])
    else:
        return []
    return _named_problems(data, max_depth, max_keys)


_FREE = ("before", "after", "details")


def _named_problems(
    data: Mapping[str, Any], max_depth: int, max_keys: int
) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    roots = [(data.get(k), k) for k in ("details", "after", "before")]
    named = [(v, path, 2) for v, path in roots if isinstance(v, _CONTAINERS)]
    while named:
        value, path, depth = named.pop()
        if depth > max_depth:
            problems.append((path, f"nesting deeper than {max_depth}"))
            continue
        if isinstance(value, dict):
            if len(value) > max_keys:
                problems.append((path, _too_many(len(value), max_keys)))
            items = [(c, _join(path, str(k))) for k, c in value.items()]
        else:
            items = [(c, f"{path}[{i}]") for i, c in enumerate(value)]
        named.extend((c, p, depth + 1) for c, p in reversed(items) if isinstance(c, _CONTAINERS))
    return problems


def utc_text(ts: datetime) -> str:
    """RFC 3339 UTC with microseconds, the form the hash covers: 2026-11-28T09:15:02.123456Z."""
    off = ts.utcoffset()
    if off is None:
        raise ValueError("naive datetime; give an explicit UTC offset")
    return (ts.replace(tzinfo=None) - off).isoformat(timespec="microseconds") + "Z"


def offset_minutes(ts: datetime) -> int:
    off = ts.utcoffset() or timedelta(0)
    return int(off.total_seconds() // 60)


def canonical_ip(value: str | None) -> str | None:
    """IPv4 dotted quad; IPv6 as eight groups of four lower-case hex digits (docs/integrity.md).

    Raises ValueError for anything that is not a bare IPv4 or IPv6 address.
    """
    if value is None:
        return None
    if ":" not in value:
        socket.inet_pton(socket.AF_INET, value)  # refuses leading zeros: its input is canonical
        return value
    try:
        p = socket.inet_pton(socket.AF_INET6, value)
    except OSError:
        raise ValueError(f"{value!r} is not an IPv6 address") from None
    return p.hex(":", 2)  # eight groups of two bytes: 2001:0db8:0000:...


# --- the log's own events -------------------------------------------------------------------


@dataclass(frozen=True)
class Action:
    """One action the log itself writes: its dotted name, its chain and what it means."""

    name: str
    category: CategoryName
    description: str


_VOCABULARY = (
    Action("retention.policy_changed", "configuration",
           "a category's retention policy took effect (before/after, actor, reason)"),
    Action("retention.policy_change_proposed", "configuration",
           "a policy change was proposed and waits for a second compliance lead"),
    Action("retention.policy_change_approved", "configuration",
           "a proposed policy change was approved by a different compliance lead"),
    Action("retention.policy_change_rejected", "configuration",
           "a proposed policy change was rejected (or withdrawn by its proposer)"),
    Action("retention.legal_hold_placed", "configuration",
           "a legal hold was placed on a category: nothing of it is purged"),
    Action("retention.legal_hold_lifted", "configuration",
           "a legal hold was lifted"),
    Action("retention.archived", "governance",
           "a month of a chain past retention was archived and verified"),
    Action("retention.purged", "governance",
           "an archived chain prefix was removed from the hot table"),
    Action("retention.archive_deleted", "governance",
           "an archive's files were deleted after its own archive period"),
    Action("siem.destination_added", "configuration",
           "a SIEM destination was added (secret redacted)"),
    Action("siem.destination_changed", "configuration",
           "a SIEM destination was changed (before/after, secret redacted)"),
    Action("siem.destination_removed", "configuration",
           "a SIEM destination was removed"),
    Action("siem.dead_letters_redriven", "configuration",
           "dead letters of a SIEM destination were sent again (ids, outcome of each)"),
    Action("retention.rules_changed", "configuration",
           "the database's retention floor or approval rule was changed by its owner"),
    Action("keys.registered", "configuration",
           "a checkpoint signing key was registered by a key administrator"),
    Action("keys.retired", "configuration",
           "a signing key was retired: checkpoints signed with it later are refused"),
    Action("apikey.created", "configuration",
           "an API key of the ingestion service was created (name, scopes; never the secret)"),
    Action("apikey.rotated", "configuration",
           "an API key was given a new secret; the old one stops working"),
    Action("apikey.revoked", "configuration",
           "an API key was revoked: requests with it are refused from now on"),
    Action("apikey.refused", "user_activity",
           "a request with an unknown, revoked or wrong-scope API key, or from an address "
           "not allowed, was refused (repeats within a minute are counted, not logged)"),
    Action("export.downloaded", "user_activity",
           "events were exported or an archive downloaded (filters, rows, file hash)"),
    Action("user.login", "user_activity",
           "a user signed in to the dashboard (denied: no role)"),
    Action("dashboard.viewed", "user_activity",
           "a user opened a distinct view of a dashboard page"),
)  # fmt: skip

ACTIONS: Mapping[str, Action] = MappingProxyType({a.name: a for a in _VOCABULARY})
"""Every action the log writes for its own events, by name; :func:`new_event` refuses others."""


def utc_now() -> datetime:
    """The clock of the log's own events (``new_event(clock=...)`` replaces it in tests)."""
    return datetime.now(UTC)


def new_event(
    *,
    action: str,
    actor: Mapping[str, Any],
    target: Mapping[str, Any],
    outcome: OutcomeName = "success",
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    details: Mapping[str, Any] | None = None,
    correlation_id: str | None = None,
    source_ip: str | None = None,
    user_agent: str | None = None,
    occurred_at: datetime | None = None,
    event_id: str | uuid.UUID | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> dict[str, Any]:
    """One of the log's own events, in the form ``AuditLog.record`` / ``record_many`` take.

    Parameters
    ----------
    action
        A name in :data:`ACTIONS`; its entry gives the event's category.
    actor, target
        The event's actor and target objects (e.g. ``Identity.actor()``).
    outcome
        ``success``, ``failure`` or ``denied``.
    before, after, details, correlation_id, source_ip, user_agent
        As in the event schema; None leaves the field out.
    occurred_at
        When it happened (aware); default: ``clock()``.
    event_id
        A fixed idempotency key, for an event that may be built again (default: generated).
    clock
        Where "now" comes from when ``occurred_at`` is not given.

    Raises
    ------
    InvalidEvent
        ``action`` is not in :data:`ACTIONS`.
    """
    spec = ACTIONS.get(action)
    if spec is None:
        raise InvalidEvent(
            "action",
            f"{action!r} is not in the log's action vocabulary; add it to "
            "auditlog.model.ACTIONS with its category and a description",
        )
    event: dict[str, Any] = {
        "category": spec.category,
        "action": spec.name,
        "outcome": outcome,
        "occurred_at": utc_text(occurred_at or clock()),
        "actor": dict(actor),
        "target": dict(target),
        "details": dict(details or {}),
    }
    optional = {"event_id": str(event_id) if event_id else None, "before": before, "after": after,
                "correlation_id": correlation_id, "source_ip": source_ip,
                "user_agent": user_agent}  # fmt: skip
    event.update({k: v for k, v in optional.items() if v is not None})
    return event
