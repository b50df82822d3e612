"""The API key itself: its text, the hash stored for it, its scopes and source allow-list.

A key is ``alk_<key_id>_<secret>``: ``key_id`` (16 hex digits) finds the row, ``secret`` (256
random bits, base64url) is compared with the stored SHA-256 in constant time. A fast hash is
enough for a secret this long (nobody can guess or brute-force 2**256 values, however cheap
each try), and a slow one would cost every request CPU time an attacker could make us spend.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from auditlog.errors import InvalidApiKeySetting
from auditlog.model import CATEGORIES

KEY_PREFIX = "alk"
_TOKEN = re.compile(r"alk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
READ = "read"
WRITE_ALL = "write:*"
SCOPES = (READ, WRITE_ALL, *(f"write:{c}" for c in CATEGORIES))
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class NewSecret:
    """A freshly made key: ``token`` is what the client sends; only ``digest`` is stored."""

    key_id: str
    token: str
    digest: bytes
    prefix: str


def new_secret() -> NewSecret:
    """A new random key id and secret (from :mod:`secrets`)."""
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    token = f"{KEY_PREFIX}_{key_id}_{secret}"
    return NewSecret(key_id, token, digest(secret), f"{KEY_PREFIX}_{key_id}_{secret[:4]}")


def digest(secret: str) -> bytes:
    """SHA-256 of the secret part of a key: the only thing stored."""
    return hashlib.sha256(secret.encode("ascii")).digest()


def parse_token(token: str) -> tuple[str, str] | None:
    """``(key_id, secret)`` of a key's text, or None when it is not one."""
    m = _TOKEN.fullmatch(token)
    return (m.group(1), m.group(2)) if m else None


def secret_matches(secret: str, stored: bytes) -> bool:
    """Whether ``secret`` hashes to ``stored``, compared in constant time."""
    return hmac.compare_digest(digest(secret), stored)


def check_name(name: str) -> str:
    """The key's name, or InvalidApiKeySetting saying what a name may hold."""
    if not NAME.fullmatch(name):
        raise InvalidApiKeySetting(
            "name",
            f"{name[:70]!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit",
        )
    return name


def check_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """The scopes, sorted and without repeats; at least one, each one of :data:`SCOPES`."""
    given = sorted({s.strip() for s in scopes})
    if not given:
        raise InvalidApiKeySetting("scope", f"give at least one of {', '.join(SCOPES)}")
    for scope in given:
        if scope not in SCOPES:
            raise InvalidApiKeySetting(
                "scope", f"{scope[:70]!r} is not a scope; use one of {', '.join(SCOPES)}"
            )
    return tuple(given)


def check_networks(cidrs: Iterable[str]) -> tuple[str, ...]:
    """The allow-list as canonical CIDR texts (``10.0.0.0/8``, ``2001:db8::/32``)."""
    out = []
    for text in cidrs:
        try:
            out.append(str(ipaddress.ip_network(text.strip(), strict=False)))
        except ValueError:
            raise InvalidApiKeySetting(
                "allow", f"{text[:70]!r} is not an IPv4/IPv6 address or CIDR (10.0.0.0/8)"
            ) from None
    return tuple(dict.fromkeys(out))


def check_rate(rate: float, burst: int) -> tuple[float, int]:
    """A positive rate (events/s) and burst (events)."""
    if not rate > 0:
        raise InvalidApiKeySetting("rate", f"{rate!r}: events per second must be more than 0")
    if burst < 1:
        raise InvalidApiKeySetting("burst", f"{burst!r}: must be at least 1 event")
    return float(rate), int(burst)


def may_write(scopes: Sequence[str], category: str) -> bool:
    """Whether a key with ``scopes`` may append an event of ``category``."""
    return WRITE_ALL in scopes or f"write:{category}" in scopes


def may_read(scopes: Sequence[str]) -> bool:
    """Whether a key with ``scopes`` may use the pull API (GET /v1/events, checkpoints)."""
    return READ in scopes


def address_allowed(address: str | None, networks: Sequence[str]) -> bool:
    """Whether ``address`` is inside one of ``networks`` (an empty list allows every address)."""
    if not networks:
        return True
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in ipaddress.ip_network(n) for n in networks)
