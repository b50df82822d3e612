"""Signed checkpoints and purge anchors: the signed messages and their checks.

A checkpoint signs JCS({category, seq, entry_hash (hex), signed_at, key_id}) with Ed25519.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from auditlog.canonical import jcs
from auditlog.integrity.keys import Signer
from auditlog.model import utc_text


def checkpoint_message(
    category: str, seq: int, entry_hash: bytes, signed_at: datetime | str, key_id: str
) -> bytes:
    """The exact bytes a checkpoint signature covers."""
    when = utc_text(signed_at) if isinstance(signed_at, datetime) else signed_at
    return jcs(
        {
            "category": category,
            "seq": seq,
            "entry_hash": entry_hash.hex(),
            "signed_at": when,
            "key_id": key_id,
        }
    )


@dataclass(frozen=True)
class Checkpoint:
    category: str
    seq: int
    entry_hash: bytes
    signed_at: str
    key_id: str
    signature: bytes

    def message(self) -> bytes:
        return checkpoint_message(
            self.category, self.seq, self.entry_hash, self.signed_at, self.key_id
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "seq": self.seq,
            "entry_hash": self.entry_hash.hex(),
            "signed_at": self.signed_at,
            "key_id": self.key_id,
            "signature": self.signature.hex(),
        }


def sign_checkpoint(
    signer: Signer, category: str, seq: int, entry_hash: bytes, signed_at: datetime
) -> Checkpoint:
    when = utc_text(signed_at)
    msg = checkpoint_message(category, seq, entry_hash, when, signer.key_id)
    return Checkpoint(category, seq, entry_hash, when, signer.key_id, signer.sign(msg))


def anchor_message(category: str, seq: int, entry_hash: bytes, key_id: str) -> bytes:
    """The exact bytes a purge anchor's signature covers (see docs/retention.md)."""
    return jcs(
        {
            "anchor": "purge",
            "category": category,
            "seq": seq,
            "entry_hash": entry_hash.hex(),
            "key_id": key_id,
        }
    )


def signature_ok(cp: Checkpoint, keys: Mapping[str, Ed25519PublicKey]) -> bool:
    key = keys.get(cp.key_id)
    if key is None:
        return False
    try:
        key.verify(cp.signature, cp.message())
    except InvalidSignature:
        return False
    return True
