"""Managing API keys: create, list, rotate, revoke. Each change is an audit event.

The functions take an :class:`~auditlog.store.AuditLog` whose engine acts as a role holding
``auditlog_apikeys`` (the key administrator, ``connect(settings, "keys")``, or the dashboard's
``connect(settings, "apikeys")``): the database changes keys only through its SECURITY
DEFINER functions (migration 015), and the same engine appends the event. Listing needs only
the reader role. A secret is returned once, by :func:`create_key` and :func:`rotate_key`, and
never stored or logged.

Events (category ``configuration``): ``apikey.created``, ``apikey.rotated``,
``apikey.revoked``; the target is ``{type: api_key, id: key_id, name}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from auditlog.access import Identity
from auditlog.apikeys.keys import (
    check_name,
    check_networks,
    check_rate,
    check_scopes,
    new_secret,
)
from auditlog.errors import InvalidApiKeySetting, NotFound
from auditlog.model import new_event
from auditlog.store import AuditLog

_COLUMNS = (
    "key_id, name, prefix, scopes, allow_cidrs::text[] AS allow, rate, burst, created_at, "
    "created_by, revoked_at, revoked_by, rotated_from"
)


@dataclass(frozen=True)
class ApiKeyInfo:
    """One key as listed: everything but its secret (which is not stored)."""

    key_id: str
    name: str
    prefix: str
    scopes: tuple[str, ...]
    allow: tuple[str, ...]
    rate: float
    burst: int
    created_at: datetime
    created_by: str
    revoked_at: datetime | None = None
    revoked_by: str | None = None
    rotated_from: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def settings(self) -> dict[str, Any]:
        """What the key may do, as recorded in its events."""
        return {
            "name": self.name,
            "prefix": self.prefix,
            "scopes": list(self.scopes),
            "allow": list(self.allow),
            "rate": self.rate,
            "burst": self.burst,
        }


@dataclass(frozen=True)
class CreatedKey:
    """A key just made: ``token`` is the only copy of its secret; show it once."""

    info: ApiKeyInfo
    token: str


def _info(row: Any) -> ApiKeyInfo:
    data = dict(row._mapping)
    data["scopes"], data["allow"] = tuple(data["scopes"]), tuple(data["allow"])
    return ApiKeyInfo(**data)


def list_keys(engine: Engine, include_revoked: bool = False) -> list[ApiKeyInfo]:
    """Every active key (and the revoked ones too with ``include_revoked``), by name."""
    where = "" if include_revoked else " WHERE revoked_at IS NULL"
    sql = sa.text(f"SELECT {_COLUMNS} FROM api_keys{where} ORDER BY name, created_at")
    with engine.connect() as conn:
        return [_info(r) for r in conn.execute(sql)]


def get_key(engine: Engine, key_id: str) -> ApiKeyInfo:
    """The key ``key_id`` (active or not); NotFound when there is none."""
    sql = sa.text(f"SELECT {_COLUMNS} FROM api_keys WHERE key_id = :k")
    with engine.connect() as conn:
        row = conn.execute(sql, {"k": key_id}).first()
    if row is None:
        raise NotFound(f"API key {key_id} does not exist")
    return _info(row)


def _target(info: ApiKeyInfo) -> dict[str, str]:
    return {"type": "api_key", "id": info.key_id, "name": info.name}


def create_key(
    log: AuditLog,
    who: Identity,
    name: str,
    scopes: Sequence[str],
    allow: Sequence[str] = (),
    rate: float | None = None,
    burst: int | None = None,
) -> CreatedKey:
    """Create a key; log ``apikey.created``; return it with its secret (shown once).

    ``rate`` (events/s) and ``burst`` default to settings ``api.default_rate`` and
    ``api.default_burst``.

    Raises
    ------
    InvalidApiKeySetting
        A bad name, scope, network or rate; or an active key already has ``name``.
    """
    api = log.settings.api
    name, scopes = check_name(name), check_scopes(scopes)
    nets = check_networks(allow)
    rate, burst = check_rate(api.default_rate if rate is None else rate, burst or api.default_burst)
    new = new_secret()
    args: dict[str, Any] = {
        "k": new.key_id,
        "n": name,
        "h": new.digest,
        "p": new.prefix,
        "s": list(scopes),
    }
    args |= {"a": list(nets), "r": rate, "b": burst, "by": who.user}
    sql = "SELECT auditlog_api_key_create(:k, :n, :h, :p, :s, CAST(:a AS cidr[]), :r, :b, :by)"
    try:
        with log.engine.begin() as conn:
            conn.execute(sa.text(sql), args)
    except sa.exc.IntegrityError:
        raise InvalidApiKeySetting(
            "name", f"an active API key is already named {name!r}: rotate or revoke it"
        ) from None
    info = get_key(log.engine, new.key_id)
    log.record(
        new_event(
            action="apikey.created", actor=who.actor(), target=_target(info), after=info.settings()
        )
    )
    return CreatedKey(info, new.token)


def rotate_key(log: AuditLog, who: Identity, name: str) -> CreatedKey:
    """A new secret for the active key ``name`` (same scopes, allow-list and rate); the old
    secret stops working at once. Logs ``apikey.rotated``. NotFound when no key is active."""
    new = new_secret()
    sql = sa.text("SELECT auditlog_api_key_rotate(:n, :k, :h, :p, :by)")
    with log.engine.begin() as conn:
        old = conn.scalar(
            sql, {"n": name, "k": new.key_id, "h": new.digest, "p": new.prefix, "by": who.user}
        )
    if old is None:
        raise NotFound(f"no active API key is named {name!r} (`auditlog apikey list`)")
    info = get_key(log.engine, new.key_id)
    log.record(
        new_event(
            action="apikey.rotated",
            actor=who.actor(),
            target=_target(info),
            before={"key_id": old, "status": "revoked"},
            after={"key_id": info.key_id, **info.settings()},
        )
    )
    return CreatedKey(info, new.token)


def revoke_key(log: AuditLog, who: Identity, name: str) -> ApiKeyInfo:
    """Revoke the active key ``name``; log ``apikey.revoked``. NotFound when none is active."""
    with log.engine.begin() as conn:
        key_id = conn.scalar(
            sa.text("SELECT auditlog_api_key_revoke(:n, :by)"), {"n": name, "by": who.user}
        )
    if key_id is None:
        raise NotFound(f"no active API key is named {name!r} (`auditlog apikey list`)")
    info = get_key(log.engine, key_id)
    log.record(
        new_event(
            action="apikey.revoked",
            actor=who.actor(),
            target=_target(info),
            before={"status": "active"},
            after={"status": "revoked"},
        )
    )
    return info


def as_row(info: ApiKeyInfo) -> dict[str, Any]:
    """A key as a flat dict (for a table or JSON): no secret, no hash."""
    return asdict(info) | {"status": "active" if info.active else "revoked"}
