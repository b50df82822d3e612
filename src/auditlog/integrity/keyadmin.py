"""Key administration: registering and retiring checkpoint signing keys.

A duty of its own (login ``auditlog_key_admin``, group ``auditlog_keyadmin``): the writer can
neither register nor retire a key, so it cannot sign checkpoints with a key of its choosing.
Each registration and retirement is an audit event (``keys.registered``, ``keys.retired``).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.engine import Engine

from auditlog.access import Identity
from auditlog.db.server import Role, connect
from auditlog.db.tables import signing_keys
from auditlog.errors import NotFound, PermissionDenied, SigningKeyRefused
from auditlog.integrity.keys import (
    Signer,
    key_id_of,
    key_status,
    load_signer,
    not_registered,
    public_pem,
)
from auditlog.model import new_event
from auditlog.settings import Settings
from auditlog.store import AuditLog


def _target(key_id: str) -> dict[str, str]:
    return {"type": "signing_key", "id": key_id}


def _insert(engine: Engine, public: Ed25519PublicKey, who: Identity) -> bool:
    """Register ``public`` through ``engine`` (acting as the key administrator); False when
    it already is. A retired key cannot come back: :class:`SigningKeyRefused`."""
    key_id = key_id_of(public)
    with engine.begin() as conn:
        status = key_status(conn, key_id)
        if status == "retired":
            raise SigningKeyRefused(f"signing key {key_id} was retired; generate a new key")
        if status == "active":
            return False
        conn.execute(
            sa.insert(signing_keys).values(
                key_id=key_id, public_key=public_pem(public).encode(), registered_by=who.user
            )
        )
    return True


def _registered(public: Ed25519PublicKey, who: Identity) -> dict[str, Any]:
    key_id = key_id_of(public)
    return new_event(
        action="keys.registered",
        actor=who.actor(),
        target=_target(key_id),
        after={"key_id": key_id, "public_key": public_pem(public)},
    )


def register_key(log: AuditLog, public: Ed25519PublicKey, who: Identity) -> bool:
    """Register ``public`` (``log``'s engine acts as the key administrator) and log it;
    False if it already was registered."""
    new = _insert(log.engine, public, who)
    if new:
        log.record(_registered(public, who))
    return new


def retire_key(log: AuditLog, key_id: str, who: Identity, reason: str) -> None:
    """Retire ``key_id``: the database refuses checkpoints signed with it from now on."""
    reason = reason.strip()
    if not reason:
        raise SigningKeyRefused("a reason is required to retire a signing key")
    if key_id == log.signer.key_id:
        raise SigningKeyRefused(
            f"signing key {key_id} is this installation's own key: configure a new key "
            "(store.signing_key), register it, then retire the old one"
        )
    with log.engine.begin() as conn:
        status = key_status(conn, key_id)
        if status is None:
            raise NotFound(f"signing key {key_id} is not registered")
        if status == "retired":
            return
        conn.execute(
            sa.text(
                "INSERT INTO signing_key_retirements (key_id, retired_by, reason) "
                "VALUES (:k, :who, :reason)"
            ),
            {"k": key_id, "who": who.user, "reason": reason},
        )
    log.record(
        new_event(
            action="keys.retired",
            actor=who.actor(),
            target=_target(key_id),
            before={"status": "active"},
            after={"status": "retired"},
            details={"reason": reason},
        )
    )


def ensure_registered(settings: Settings, signer: Signer, who: Identity) -> None:
    """Register the installation's key if the configured credential may act as the key
    administrator (the embedded server, or a URL whose user is a member of
    ``auditlog_keyadmin``); else :class:`SigningKeyRefused` saying who must."""
    try:
        engine = connect(settings, "keys")
    except sa.exc.DBAPIError:
        raise not_registered(signer.key_id) from None
    try:
        if _insert(engine, signer.public, who):
            AuditLog(engine, settings, signer=signer).record(_registered(signer.public, who))
    except (sa.exc.DBAPIError, PermissionDenied):
        raise not_registered(signer.key_id) from None
    finally:
        engine.dispose()


def open_registered(
    settings: Settings, engine: Engine | None = None, role: Role = "writer", **kwargs: Any
) -> AuditLog:
    """:meth:`AuditLog.open` on ``engine`` (or a new one for ``role``, closed again if the log
    cannot open), registering the installation's key first when it is not and the
    configured credential may act as the key administrator (the embedded server's logins;
    the CLI and the dashboard open their log this way)."""
    from auditlog.access import local_identity

    owned = engine is None
    engine = engine or connect(settings, role)
    try:
        signer = kwargs.setdefault("signer", load_signer(settings))
        with engine.connect() as conn:
            status = key_status(conn, signer.key_id)
        if status is None:
            ensure_registered(settings, signer, local_identity(settings.dashboard.user))
        return AuditLog.open(settings, engine=engine, **kwargs)
    except BaseException:
        if owned:
            engine.dispose()
        raise
