"""SIEM destinations, stored in the database; every change is a configuration audit event.

A destination names a transport (``syslog-tcp``, ``syslog-tls``, ``hec``, ``webhook``), an
endpoint (``host:port`` for syslog, an ``https://`` URL for HTTP), a format and options. Its
secret (HEC token, webhook HMAC key) is stored in its own column, which the dashboard's reader
role cannot select; audit events, listings and error messages never contain it.

Only an admin (permission ``siem.configure`` of :mod:`auditlog.access`) may add, change or
remove a destination, whoever calls (the CLI with its local operator, the dashboard with its
signed-in user); a refused attempt is recorded as the same action with outcome ``denied``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection, Engine

from auditlog import access
from auditlog.access import Identity, Role
from auditlog.db.tables import siem_cursors, siem_destinations
from auditlog.errors import InvalidDestination, NotFound, PermissionDenied
from auditlog.model import CATEGORIES, OutcomeName, new_event
from auditlog.siem.formats import FORMATS, Formatter, check_hostname, default_hostname
from auditlog.store import AuditLog, Receipt

TRANSPORTS = ("syslog-tcp", "syslog-tls", "hec", "webhook")
SIEM_CHANNEL = "auditlog_siem"
_NOTIFY = sa.text("SELECT pg_notify(:channel, :payload)")
REDACTED = "[redacted]"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_HOST = re.compile(r"^[A-Za-z0-9.-]{1,253}$")
OPTION_TYPES: dict[str, Any] = {
    "categories": list,
    "ca_pem": str,
    "server_name": str,
    "hostname": str,
    "pen": int,
    "batch": int,
    "settle_seconds": float,
    "timeout": float,
    "index": str,
    "source": str,
    "sourcetype": str,
    "ack": bool,
    "ack_timeout": float,
}
LIMITS: dict[str, tuple[Any, Any]] = {
    "batch": (1, 10_000),
    "settle_seconds": (0.0, 60.0),
    "timeout": (0.5, 300.0),
    "pen": (1, 2**31 - 1),
    "ack_timeout": (1.0, 3600.0),
}
CHANGEABLE = ("endpoint", "format", "options", "enabled", "secret")
COLUMNS = (
    "id",
    "name",
    "transport",
    "format",
    "endpoint",
    "options",
    "enabled",
    "has_secret",
    "created_at",
    "updated_at",
)


@dataclass(frozen=True)
class Destination:
    """One SIEM destination. ``secret`` is None unless loaded for delivery."""

    name: str
    transport: str
    endpoint: str
    format: str = "rfc5424"
    options: dict[str, Any] = field(default_factory=dict)
    secret: str | None = field(default=None, repr=False)
    enabled: bool = True
    id: int | None = None
    has_secret: bool = False
    updated_at: datetime | None = None

    @property
    def categories(self) -> list[str]:
        return list(self.options.get("categories") or CATEGORIES)

    def option(self, name: str, default: Any) -> Any:
        value = self.options.get(name)
        return default if value is None else value

    def formatter(self) -> Formatter:
        fmt: Any = self.format  # validated against FORMATS
        return Formatter(
            fmt, self.option("hostname", default_hostname()), self.option("pen", 32473)
        )

    def redacted(self) -> dict[str, Any]:
        """The configuration as an audit event or listing shows it: no secret, CA as a hash."""
        opts = dict(self.options)
        if "ca_pem" in opts:
            opts["ca_pem"] = "sha256:" + hashlib.sha256(opts["ca_pem"].encode()).hexdigest()
        secret = self.secret is not None or self.has_secret
        return {
            "name": self.name,
            "transport": self.transport,
            "endpoint": self.endpoint,
            "format": self.format,
            "options": opts,
            "enabled": self.enabled,
            "secret": REDACTED if secret else None,
        }


def _bad(name: str, reason: str) -> InvalidDestination:
    return InvalidDestination(name, reason)


def split_host_port(endpoint: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port); InvalidDestination when malformed."""
    m = re.match(r"^(?:\[([0-9A-Fa-f:.]+)\]|([^:\[\]]+)):(\d{1,5})$", endpoint)
    if m is None:
        raise _bad("endpoint", f"{endpoint[:80]!r} is not host:port (IPv6 as [addr]:port)")
    host, port = m.group(1) or m.group(2), int(m.group(3))
    if m.group(1):
        ipaddress.IPv6Address(host)
    elif not _HOST.match(host):
        raise _bad("endpoint", f"{host[:80]!r} is not a host name or address")
    if not 1 <= port <= 65535:
        raise _bad("endpoint", f"port {port} is outside 1-65535")
    return host, port


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_url(endpoint: str) -> None:
    url = urllib.parse.urlsplit(endpoint)
    if url.scheme not in ("https", "http") or not url.hostname:
        raise _bad("endpoint", f"{endpoint[:80]!r} is not an https:// URL")
    if url.scheme == "http" and not _is_loopback(url.hostname):
        raise _bad("endpoint", "plain http is allowed only to a loopback address; use https://")
    if url.username or url.password:
        raise _bad("endpoint", "no credentials in the URL; give them as the destination secret")


def _check_option(key: str, given: Any) -> Any:
    typ = OPTION_TYPES.get(key)
    if typ is None:
        raise _bad(f"options.{key}", f"unknown option; known: {', '.join(OPTION_TYPES)}")
    # JSON and the CLI give whole seconds as int
    value: Any = float(given) if typ is float and type(given) is int else given
    if not isinstance(value, typ) or (isinstance(value, bool) and typ is not bool):
        raise _bad(f"options.{key}", f"expected {typ.__name__}, got {type(value).__name__}")
    lo, hi = LIMITS.get(key, (None, None))
    if lo is not None and hi is not None and not lo <= value <= hi:
        raise _bad(f"options.{key}", f"{value} is outside {lo}-{hi}")
    if key == "categories":
        unknown = [c for c in value if c not in CATEGORIES]
        if unknown or not value:
            raise _bad("options.categories", f"give some of {', '.join(CATEGORIES)}")
    if key == "hostname":
        try:
            check_hostname(value)
        except ValueError as exc:
            raise _bad("options.hostname", str(exc)) from None
    return value


def validate(dest: Destination) -> Destination:
    """Check every field; return the destination with normalised options."""
    if not _NAME.match(dest.name):
        raise _bad("name", f"{dest.name[:80]!r} is not 1-64 of a-z 0-9 _ . - (starting a-z0-9)")
    if dest.transport not in TRANSPORTS:
        raise _bad("transport", f"{dest.transport!r} is not one of {', '.join(TRANSPORTS)}")
    if dest.format not in FORMATS:
        raise _bad("format", f"{dest.format!r} is not one of {', '.join(FORMATS)}")
    if dest.transport.startswith("syslog"):
        split_host_port(dest.endpoint)
        if dest.secret:
            raise _bad("secret", "syslog destinations take no secret")
    else:
        _check_url(dest.endpoint)
        if not dest.secret and not dest.has_secret:
            what = "HEC token" if dest.transport == "hec" else "HMAC key"
            raise _bad("secret", f"a {dest.transport} destination needs its {what}")
        if dest.secret is not None and len(dest.secret) < 8:
            raise _bad("secret", "too short; use at least 8 characters (32 random bytes for HMAC)")
    for key in ("ack", "ack_timeout"):
        if dest.transport != "hec" and dest.options.get(key) is not None:
            raise _bad(f"options.{key}", "indexer acknowledgement is a Splunk HEC option")
    if dest.transport in ("syslog-tcp",) and dest.options.get("ca_pem"):
        raise _bad("options.ca_pem", "only TLS transports use a CA")
    options = {k: _check_option(k, v) for k, v in dest.options.items() if v is not None}
    if "ca_pem" in options and "BEGIN CERTIFICATE" not in options["ca_pem"]:
        raise _bad("options.ca_pem", "expected PEM text with a BEGIN CERTIFICATE block")
    return replace(dest, options=options)


# --- storage -------------------------------------------------------------------------------


def _row(row: Any, secret: str | None = None) -> Destination:
    return Destination(
        name=row["name"],
        transport=row["transport"],
        endpoint=row["endpoint"],
        format=row["format"],
        options=dict(row["options"] or {}),
        secret=secret,
        enabled=row["enabled"],
        id=row["id"],
        has_secret=row["has_secret"],
        updated_at=row["updated_at"],
    )


def list_destinations(engine: Engine, with_secrets: bool = False) -> list[Destination]:
    """Current (not removed) destinations by name; secrets only when ``with_secrets``."""
    cols = ", ".join(COLUMNS) + (", secret" if with_secrets else "")
    sql = f"SELECT {cols} FROM siem_destinations WHERE removed_at IS NULL ORDER BY name"
    with engine.connect() as conn:
        rows = conn.execute(sa.text(sql)).mappings().all()
    return [_row(r, r.get("secret") if with_secrets else None) for r in rows]


def get_destination(engine: Engine, name: str, with_secret: bool = False) -> Destination:
    for dest in list_destinations(engine, with_secrets=with_secret):
        if dest.name == name:
            return dest
    raise NotFound(f"no SIEM destination named {name!r}; `auditlog siem list` shows them")


def _locked(conn: Connection, name: str) -> Destination:
    sql = (
        f"SELECT {', '.join(COLUMNS)} FROM siem_destinations "
        "WHERE name = :n AND removed_at IS NULL FOR UPDATE"
    )
    row = conn.execute(sa.text(sql), {"n": name}).mappings().first()
    if row is None:
        raise NotFound(f"no SIEM destination named {name!r}; `auditlog siem list` shows them")
    return _row(row)


def _audit(
    log: AuditLog,
    action: str,
    actor: Mapping[str, Any],
    name: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    details: dict[str, Any],
    outcome: OutcomeName = "success",
) -> Receipt:
    target = {"type": "siem_destination", "id": name, "name": name}
    return log.record(
        new_event(
            action=action,
            actor=actor,
            target=target,
            outcome=outcome,
            before=before,
            after=after,
            details=details,
        )
    )


def authorize(
    log: AuditLog, who: Identity, role: Role | None, action: str, name: str, **details: Any
) -> None:
    """Raise PermissionDenied unless ``role`` may configure the SIEM; log a refusal first.

    The refusal is ``action`` (e.g. ``siem.destination_added``) with outcome ``denied``,
    naming the role and what was attempted (``details``: never a secret).
    """
    try:
        access.require(role, "siem.configure")
    except PermissionDenied as exc:
        refused = {"refused": str(exc), "role": role, **details}
        _audit(log, action, who.actor(), name, None, None, refused, outcome="denied")
        raise PermissionDenied(str(exc)) from None


def _start_positions(conn: Connection, dest: Destination, start: str) -> dict[str, int]:
    if start == "beginning":
        return {**{c: 0 for c in dest.categories}, "checkpoints": 0}
    if start != "now":
        raise _bad("start", f"{start!r} is not 'beginning' or 'now'")
    heads: dict[str, int] = dict(
        conn.execute(sa.text("SELECT category, max(seq) FROM events GROUP BY category")).all()
    )
    cp = conn.scalar(sa.text("SELECT coalesce(max(id), 0) FROM checkpoints"))
    return {**{c: int(heads.get(c) or 0) for c in dest.categories}, "checkpoints": int(cp)}


def _ensure_cursors(conn: Connection, dest_id: int, positions: Mapping[str, int]) -> None:
    for stream, pos in positions.items():
        cursor = pg_insert(siem_cursors).values(destination_id=dest_id, stream=stream, position=pos)
        conn.execute(cursor.on_conflict_do_nothing(index_elements=["destination_id", "stream"]))


def _reason(reason: str | None) -> dict[str, Any]:
    return {"reason": reason} if reason else {}


def add_destination(
    log: AuditLog,
    dest: Destination,
    who: Identity,
    role: Role | None,
    start: str = "beginning",
    reason: str | None = None,
) -> Destination:
    """Store a new destination and its cursors; record ``siem.destination_added``.

    ``start``: ``beginning`` delivers the whole log (the off-platform copy), ``now`` only what
    is appended from now on.

    Raises
    ------
    PermissionDenied
        ``role`` is not admin (logged as ``denied``).
    InvalidDestination
        A setting is wrong (``field`` names it), or the name is taken.
    """
    # Only what needs no validation (a refused destination is not checked, nor is its CA).
    tried = {"transport": dest.transport, "endpoint": dest.endpoint, "format": dest.format}
    attempt = {"attempted": tried, "start": start, **_reason(reason)}
    authorize(log, who, role, "siem.destination_added", dest.name, **attempt)
    dest = validate(dest)
    with log.engine.begin() as conn:
        taken = conn.scalar(
            sa.text("SELECT 1 FROM siem_destinations WHERE name = :n AND removed_at IS NULL"),
            {"n": dest.name},
        )
        if taken:
            raise _bad("name", f"{dest.name!r} already exists; remove it first or choose another")
        stored = sa.insert(siem_destinations).values(
            name=dest.name,
            transport=dest.transport,
            format=dest.format,
            endpoint=dest.endpoint,
            options=dest.options,
            secret=dest.secret,
            enabled=dest.enabled,
        )
        dest_id = conn.scalar(stored.returning(siem_destinations.c.id))
        _ensure_cursors(conn, dest_id, _start_positions(conn, dest, start))
        conn.execute(_NOTIFY, {"channel": SIEM_CHANNEL, "payload": dest.name})
        # Recorded before our commit: a change is never made without its audit event.
        _audit(
            log,
            "siem.destination_added",
            who.actor(),
            dest.name,
            None,
            dest.redacted(),
            {"start": start, **_reason(reason)},
        )
    return replace(dest, id=dest_id, has_secret=dest.secret is not None)


def change_destination(
    log: AuditLog,
    name: str,
    who: Identity,
    role: Role | None,
    reason: str | None = None,
    **changes: Any,
) -> Destination:
    """Change fields of a destination (``endpoint``, ``format``, ``options``, ``enabled``,
    ``secret``); record ``siem.destination_changed`` with before/after (secret redacted).

    Raises
    ------
    PermissionDenied
        ``role`` is not admin (logged as ``denied``).
    InvalidDestination
        Nothing to change, a field that cannot be changed, or a wrong new value.
    NotFound
        No destination is named ``name``.
    """
    changed = sorted(changes)
    authorize(log, who, role, "siem.destination_changed", name, changed=changed, **_reason(reason))
    unknown = set(changes) - set(CHANGEABLE)
    if unknown:
        raise _bad(sorted(unknown)[0], f"cannot be changed; change one of {', '.join(CHANGEABLE)}")
    if not changes:
        raise _bad("changes", f"nothing to change; give a new {', '.join(CHANGEABLE)}")
    with log.engine.begin() as conn:
        old = _locked(conn, name)
        new = validate(replace(old, **changes))
        conn.execute(
            sa.text(
                "UPDATE siem_destinations SET format = :f, endpoint = :e, "
                "options = CAST(:o AS jsonb), enabled = :en, secret = coalesce(:s, secret), "
                "updated_at = now() WHERE id = :id"
            ),
            {
                "f": new.format,
                "e": new.endpoint,
                "o": json.dumps(new.options),
                "en": new.enabled,
                "s": changes.get("secret"),
                "id": old.id,
            },
        )
        _ensure_cursors(conn, int(old.id or 0), {c: 0 for c in new.categories})
        conn.execute(_NOTIFY, {"channel": SIEM_CHANNEL, "payload": name})
        details: dict[str, Any] = {"secret_changed": "secret" in changes}
        if reason:
            details["reason"] = reason
        before, after = old.redacted(), new.redacted()
        _audit(log, "siem.destination_changed", who.actor(), name, before, after, details)
    return replace(new, secret=None)


def remove_destination(
    log: AuditLog, name: str, who: Identity, role: Role | None, reason: str | None = None
) -> None:
    """Retire a destination (its secret is erased, its history kept); record the removal.

    Raises
    ------
    PermissionDenied
        ``role`` is not admin (logged as ``denied``).
    NotFound
        No destination is named ``name``.
    """
    authorize(log, who, role, "siem.destination_removed", name, **_reason(reason))
    with log.engine.begin() as conn:
        old = _locked(conn, name)
        conn.execute(
            sa.text(
                "UPDATE siem_destinations SET removed_at = now(), enabled = false, secret = NULL, "
                "updated_at = now() WHERE id = :id"
            ),
            {"id": old.id},
        )
        conn.execute(_NOTIFY, {"channel": SIEM_CHANNEL, "payload": name})
        _audit(
            log,
            "siem.destination_removed",
            who.actor(),
            name,
            old.redacted(),
            None,
            _reason(reason),
        )
