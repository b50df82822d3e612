"""Signing keys: the Ed25519 signer of checkpoints and anchors, key ids, PEM forms."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy.engine import Connection

from auditlog.errors import InvalidKey, SigningKeyRefused
from auditlog.settings import Settings

# --- registration (the database's record of keys; see auditlog.integrity.keyadmin) -------


def key_status(conn: Connection, key_id: str) -> str | None:
    """'active', 'retired', or None when ``key_id`` is not registered (any role may ask)."""
    status: str | None = conn.scalar(sa.text("SELECT auditlog_key_status(:k)"), {"k": key_id})
    return status


def not_registered(key_id: str) -> SigningKeyRefused:
    return SigningKeyRefused(
        f"signing key {key_id} is not registered in the database: a key administrator "
        "registers it with `auditlog keys register` (see docs/operations.md)"
    )


# --- signing -----------------------------------------------------------------------------


def key_id_of(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_pem(public: Ed25519PublicKey) -> str:
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def load_public_key(pem: str | bytes) -> Ed25519PublicKey:
    """The Ed25519 public key in ``pem``; :class:`InvalidKey` when unreadable or another kind."""
    try:
        key = serialization.load_pem_public_key(pem.encode() if isinstance(pem, str) else pem)
    except ValueError as exc:
        raise InvalidKey("public key", f"not a readable PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise InvalidKey("public key", "is not Ed25519; give the log's Ed25519 public key (PEM)")
    return key


@dataclass(frozen=True)
class Signer:
    """An Ed25519 signing key with its id."""

    private: Ed25519PrivateKey

    @property
    def public(self) -> Ed25519PublicKey:
        return self.private.public_key()

    @property
    def key_id(self) -> str:
        return key_id_of(self.public)

    def sign(self, message: bytes) -> bytes:
        return self.private.sign(message)

    @classmethod
    def generate(cls) -> Signer:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, pem: str | bytes) -> Signer:
        try:
            key = serialization.load_pem_private_key(
                pem.encode() if isinstance(pem, str) else pem, password=None
            )
        except (TypeError, ValueError) as exc:  # TypeError: the PEM is password-protected
            raise InvalidKey("signing key", f"not a readable unencrypted PEM key ({exc})") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise InvalidKey(
                "signing key",
                "is not Ed25519; set AUDITLOG_SIGNING_KEY to an Ed25519 PEM key, or remove "
                "signing_key.pem from the home directory to have one generated",
            )
        return cls(key)

    def private_pem(self) -> bytes:
        return self.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def load_signer(settings: Settings) -> Signer:
    """The key from AUDITLOG_SIGNING_KEY, else ``<home>/signing_key.pem`` (created 0600)."""
    if settings.store.signing_key:
        return Signer.from_pem(settings.store.signing_key)
    path: Path = settings.store.key_path
    if path.exists():
        return Signer.from_pem(path.read_bytes())
    path.parent.mkdir(parents=True, exist_ok=True)
    signer = Signer.generate()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(signer.private_pem())
    return signer
