"""Who is calling: ``Authorization: Bearer alk_<key_id>_<secret>``, checked per request.

A key is looked up by its id (as the writer role, which may read only what this needs) and
kept for ``api.key_cache_seconds``, so a revocation takes effect within that time. The secret
is compared in constant time with the stored SHA-256. Then the key's source allow-list (the
client address: the peer, or X-Forwarded-For when the peer is a trusted proxy), its scopes,
and its rate (a token bucket per key and process). Every refusal is reported to
``on_refused`` (an audit event, coalesced: :mod:`auditlog.apikeys.refusals`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from starlette.requests import Request

from auditlog.apikeys.keys import (
    address_allowed,
    digest,
    may_read,
    parse_token,
    secret_matches,
)
from auditlog.apikeys.refusals import Refusal
from auditlog.errors import ApiProblem
from auditlog.settings import ApiSettings

_LOOKUP = sa.text(
    "SELECT key_id, name, secret_hash, scopes, allow_cidrs::text[], rate, burst, "
    "revoked_at IS NOT NULL FROM api_keys WHERE key_id = :k"
)
_DUMMY = digest("x" * 43)


@dataclass(frozen=True, slots=True)
class StoredKey:
    """What authentication needs of a key's row."""

    key_id: str
    name: str
    digest: bytes
    scopes: tuple[str, ...]
    allow: tuple[str, ...]
    rate: float
    burst: int
    revoked: bool


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated request: its key and the client's address."""

    key: StoredKey
    address: str | None

    @property
    def source(self) -> dict[str, str]:
        """The event ``source`` recorded with what this key writes."""
        return {"type": "api_key", "id": self.key.key_id, "name": self.key.name}


class KeyCache:
    """Keys by id, each read from the database at most once per ``ttl`` seconds."""

    def __init__(self, engine: Engine, ttl: float, clock: Callable[[], float] = time.monotonic):
        self.engine, self.ttl, self.clock = engine, ttl, clock
        self._kept: dict[str, tuple[float, StoredKey | None]] = {}
        self._lock = threading.Lock()

    def _read(self, key_id: str) -> StoredKey | None:
        with self.engine.connect() as conn:
            row = conn.execute(_LOOKUP, {"k": key_id}).first()
        if row is None:
            return None
        kid, name, dig, scopes, allow, rate, burst, revoked = row
        return StoredKey(kid, name, bytes(dig), tuple(scopes), tuple(allow), rate, burst, revoked)

    def get(self, key_id: str) -> StoredKey | None:
        """The key (None when no row has this id); from memory while fresh."""
        now = self.clock()
        with self._lock:
            kept = self._kept.get(key_id)
        if kept is not None and now - kept[0] < self.ttl:
            return kept[1]
        key = self._read(key_id)
        if key is not None and self.ttl > 0:  # unknown ids are not kept: an attacker picks them
            with self._lock:
                self._kept[key_id] = (now, key)
        return key


class Buckets:
    """A token bucket per key: ``rate`` events/s, up to ``burst`` at once. A request may take
    more than is left (a batch bigger than the burst still passes when the bucket is full);
    the debt is paid back before the key's next request passes."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._state: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def _level(self, key: StoredKey, now: float) -> float:
        tokens, then = self._state.get(key.key_id, (float(key.burst), now))
        return min(float(key.burst), tokens + (now - then) * key.rate)

    def wait(self, key: StoredKey) -> float:
        """Seconds until ``key`` may send again; 0 when it may now."""
        with self._lock:
            level = self._level(key, self.clock())
        return 0.0 if level >= 1 else (1 - level) / key.rate

    def take(self, key: StoredKey, n: int) -> None:
        """Spend ``n`` events of ``key``'s bucket."""
        now = self.clock()
        with self._lock:
            self._state[key.key_id] = (self._level(key, now) - n, now)


def client_address(request: Request, trusted: Sequence[str]) -> str | None:
    """The client's address: the peer's, or when the peer is a trusted proxy the nearest
    untrusted address of X-Forwarded-For (the proxy appends the one it saw)."""
    peer = request.client.host if request.client else None
    nets = [ipaddress.ip_network(n, strict=False) for n in trusted]

    def is_trusted(addr: str | None) -> bool:
        try:
            ip = ipaddress.ip_address(addr or "")
        except ValueError:
            return False
        return any(ip in n for n in nets)

    if not nets or not is_trusted(peer):
        return peer
    hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not is_trusted(hop):
            return hop
    return peer


class Authenticator:
    """Checks each request's key; see the module docstring."""

    def __init__(
        self, cache: KeyCache, settings: ApiSettings, on_refused: Callable[[Refusal], None]
    ) -> None:
        self.cache, self.settings, self.on_refused = cache, settings, on_refused
        self.buckets = Buckets()

    def refuse(
        self, request: Request, reason: str, status: int, detail: str, key: StoredKey | None = None
    ) -> ApiProblem:
        """Report the refusal and return the problem to raise."""
        address = client_address(request, self.settings.trusted_proxies)
        self.on_refused(
            Refusal(
                reason,
                key.key_id if key else None,
                key.name if key else None,
                address,
                request.headers.get("user-agent"),
                request.url.path,
            )
        )
        headers = {"WWW-Authenticate": 'Bearer realm="auditlog"'} if status == 401 else {}
        return ApiProblem(status, detail, reason.replace("_", "-"), headers)

    async def caller(self, request: Request, read: bool = False) -> Caller:
        """The request's :class:`Caller`; ApiProblem 401/403/429 otherwise. ``read``: the
        request needs the read scope (write scopes are checked per event, later)."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise self.refuse(request, "missing", 401, "send an API key: Authorization: Bearer KEY")
        parsed = parse_token(token.strip())
        key = await asyncio.to_thread(self.cache.get, parsed[0]) if parsed else None
        if key is None or parsed is None:
            secret_matches("x" * 43, _DUMMY)  # as long as a real comparison takes
            raise self.refuse(request, "unknown", 401, "the API key is not known")
        if not secret_matches(parsed[1], key.digest):
            raise self.refuse(request, "wrong_secret", 401, "the API key is not known", key)
        if key.revoked:
            raise self.refuse(request, "revoked", 401, f"API key {key.name!r} was revoked", key)
        address = client_address(request, self.settings.trusted_proxies)
        if not address_allowed(address, key.allow):
            raise self.refuse(
                request,
                "ip_not_allowed",
                403,
                f"API key {key.name!r} may not be used from {address}",
                key,
            )
        if read and not may_read(key.scopes):
            raise self.refuse(
                request, "wrong_scope", 403, f"API key {key.name!r} has no read scope", key
            )
        self._rate(key)
        return Caller(key, address)

    def _rate(self, key: StoredKey) -> None:
        wait = self.buckets.wait(key)
        if wait > 0:
            raise ApiProblem(
                429,
                f"API key {key.name!r} is over its rate ({key.rate:g} events/s, burst "
                f"{key.burst}); retry after the Retry-After seconds",
                "rate-limited",
                {"Retry-After": str(max(1, math.ceil(wait)))},
            )
