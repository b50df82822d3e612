"""The timeline's filter set, its validation and its URL query-string form.

:class:`Filters` is re-exported by :mod:`auditlog.query`, which turns it into SQL.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from auditlog.errors import InvalidFilter
from auditlog.model import Category, Outcome, parse_timestamp

PRESETS: dict[str, timedelta] = {
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
    "90d": timedelta(days=90),
    "1y": timedelta(days=365),
}
MAX_TEXT = 512  # longest free-text / name filter, in characters
MAX_CHOICES = 200  # most values in one multi-valued filter

# URL key -> field, for single-valued text filters.
_TEXT_KEYS = {
    "actor": "actor",
    "target_type": "target_type",
    "target_id": "target_id",
    "target_name": "target_name",
    "ip": "ip",
    "correlation_id": "correlation_id",
    "q": "text",
}
_LIST_KEYS = {"category": "categories", "action": "actions", "outcome": "outcomes"}


def check_text(field: str, value: Any) -> str:
    """``value`` if it is text PostgreSQL can hold, else InvalidFilter naming ``field``.

    PostgreSQL text holds neither NUL (U+0000) nor a lone surrogate (not UTF-8); sent as a
    parameter either would come back as a driver error instead of a message.
    """
    if not isinstance(value, str):
        raise InvalidFilter(field, f"expected text, got {type(value).__name__}")
    if "\x00" in value:
        raise InvalidFilter(
            field, "contains a NUL character (U+0000), which no event holds; remove it"
        )
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidFilter(
                field, "contains a lone surrogate, which is not valid Unicode; remove it"
            ) from None
    return value


def _text(field: str, value: Any) -> str | None:
    if value is None:
        return None
    value = check_text(field, value).strip()
    if len(value) > MAX_TEXT:
        raise InvalidFilter(field, f"{len(value)} characters; at most {MAX_TEXT} are allowed")
    return value or None


def _choices(field: str, values: Any, allowed: Sequence[str] | None = None) -> tuple[str, ...]:
    if values is None:
        return ()
    if isinstance(values, str):
        values = (values,)
    out = tuple(dict.fromkeys(v for v in (_text(field, v) for v in values) if v))
    if len(out) > MAX_CHOICES:
        raise InvalidFilter(field, f"{len(out)} values; at most {MAX_CHOICES} are allowed")
    for v in out:
        if allowed is not None and v not in allowed:
            raise InvalidFilter(field, f"{v!r} is not one of {', '.join(allowed)}")
    return out


def _time(field: str, value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        return parse_timestamp(value)
    except ValueError as exc:
        raise InvalidFilter(field, str(exc)) from None


def _network(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        if "/" in value:
            return str(ipaddress.ip_network(value, strict=False))
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise InvalidFilter(
            "ip", f"{value[:60]!r} is not an IPv4/IPv6 address or CIDR network (10.0.0.0/8)"
        ) from None


@dataclass(frozen=True)
class Filters:
    """What the timeline shows. Empty tuples / None mean "no restriction".

    Attributes
    ----------
    time_from, time_to
        Aware datetimes; ``time_from <= occurred_at < time_to``. Cleared when ``last`` is set.
    last
        A key of :data:`PRESETS` ("24h", "7d", ...): the window ending now (stays relative
        in a shared URL).
    categories, actions, outcomes
        Any of these values (categories and outcomes are checked against the model).
    actor
        The actor's UPN (case-insensitive), id, Entra object id, or the start of the
        display name (case-insensitive, literal).
    target_type, target_id
        Exact. ``target_name``: case-insensitive substring, matched literally.
    ip
        An IPv4/IPv6 address or CIDR network; events whose source_ip is inside it.
    correlation_id
        Exact.
    text
        Case-insensitive substring of the before, after or details JSON, matched literally
        (``%``, ``_`` and ``\\`` are not wildcards; quotes match quotes inside JSON strings).
    """

    time_from: datetime | None = None
    time_to: datetime | None = None
    last: str | None = None
    categories: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()
    outcomes: tuple[str, ...] = ()
    actor: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    target_name: str | None = None
    ip: str | None = None
    correlation_id: str | None = None
    text: str | None = None

    def __post_init__(self) -> None:
        """Validate and normalise; raises InvalidFilter naming the field."""
        put = object.__setattr__
        for name in ("time_from", "time_to"):
            put(self, name, _time(name, getattr(self, name)))
        put(self, "last", _text("last", self.last))
        if self.last is not None:
            if self.last not in PRESETS:
                raise InvalidFilter("last", f"{self.last!r} is not one of {', '.join(PRESETS)}")
            put(self, "time_from", None)
            put(self, "time_to", None)
        if self.time_from and self.time_to and self.time_from >= self.time_to:
            raise InvalidFilter("time_to", "must be later than time_from")
        put(self, "categories", _choices("category", self.categories, list(Category)))
        put(self, "outcomes", _choices("outcome", self.outcomes, list(Outcome)))
        put(self, "actions", _choices("action", self.actions))
        for name in _TEXT_KEYS.values():
            put(self, name, _text(name, getattr(self, name)))
        put(self, "ip", _network(self.ip))

    def window(self, now: datetime | None = None) -> tuple[datetime | None, datetime | None]:
        """The effective (from, to) bounds; ``last`` is resolved against ``now`` (UTC now)."""
        if self.last is None:
            return self.time_from, self.time_to
        now = now or datetime.now(UTC)
        return now - PRESETS[self.last], None

    def replace(self, **changes: Any) -> Filters:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_query_params(self) -> dict[str, str | list[str]]:
        """URL query parameters; multi-valued filters are lists (repeated keys).

        Keys: from, to, last, category, action, outcome, actor, target_type, target_id,
        target_name, ip, correlation_id, q. Empty filters are omitted; times are RFC 3339
        with their offset.
        """
        out: dict[str, str | list[str]] = {}
        if self.last:
            out["last"] = self.last
        if self.time_from:
            out["from"] = self.time_from.isoformat()
        if self.time_to:
            out["to"] = self.time_to.isoformat()
        for key, name in _LIST_KEYS.items():
            if getattr(self, name):
                out[key] = list(getattr(self, name))
        for key, name in _TEXT_KEYS.items():
            if getattr(self, name) is not None:
                out[key] = getattr(self, name)
        return out

    @classmethod
    def from_query_params(cls, params: Mapping[str, str | Sequence[str]]) -> Filters:
        """Inverse of :meth:`to_query_params`; unknown keys are ignored, bad values raise
        InvalidFilter. A value may be a string or a list of strings (e.g.
        ``{k: st.query_params.get_all(k) for k in st.query_params}``); a single-valued key
        given several times takes the last."""

        def one(key: str) -> str | None:
            value = params.get(key)
            if value is None or isinstance(value, str):
                return value
            return value[-1] if value else None

        def many(key: str) -> list[str]:
            value = params.get(key)
            if value is None:
                return []
            return [value] if isinstance(value, str) else list(value)

        kwargs: dict[str, Any] = {"time_from": one("from"), "time_to": one("to")}
        kwargs["last"] = one("last")
        kwargs |= {name: tuple(many(key)) for key, name in _LIST_KEYS.items()}
        kwargs |= {name: one(key) for key, name in _TEXT_KEYS.items()}
        return cls(**kwargs)
