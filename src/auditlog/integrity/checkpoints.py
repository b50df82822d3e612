"""Signed checkpoints and purge anchors: the signed messages and their checks.

A version-2 checkpoint signs, with Ed25519,
JCS({category, count, entry_hash (hex), key_id, prev_hash (hex), seq, signed_at, version: 2});
its ``hash`` is SHA-256 of that message, and the next checkpoint of the category carries it as
``prev_hash``, so the checkpoints form a chain of their own (docs/integrity.md, section 3).
Version-1 checkpoints (written before migration 006) signed
JCS({category, seq, entry_hash, signed_at, key_id}) and still verify.

A version-3 checkpoint (migration 011) is a C2SP tlog-checkpoint signed note over the chain's
Merkle tree: origin, tree size (= seq), base64 root, then ``head``, ``prev``, ``count`` and
``time`` lines; its ``hash`` is SHA-256 of that text, chained exactly as version 2
(docs/integrity.md, section 9).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from auditlog.canonical import jcs
from auditlog.integrity.keys import Signer
from auditlog.integrity.rule import ZERO_HASH
from auditlog.model import utc_text
from auditlog.proofs.note import CheckpointBody, Note, NoteSignature, format_note, key_hash


def checkpoint_message(
    category: str, seq: int, entry_hash: bytes, signed_at: datetime | str, key_id: str
) -> bytes:
    """The exact bytes a version-1 checkpoint signature covers."""
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


def checkpoint_message_v3(
    origin: str,
    seq: int,
    root: bytes,
    entry_hash: bytes,
    prev_hash: bytes,
    count: int,
    signed_at: datetime | str,
) -> bytes:
    """The exact text (UTF-8) a version-3 checkpoint's note signature covers."""
    when = utc_text(signed_at) if isinstance(signed_at, datetime) else signed_at
    body = CheckpointBody(
        origin,
        seq,
        root,
        (f"head {entry_hash.hex()}", f"prev {prev_hash.hex()}", f"count {count}", f"time {when}"),
    )
    return body.text().encode("utf-8")


def checkpoint_message_v2(
    category: str,
    seq: int,
    entry_hash: bytes,
    signed_at: datetime | str,
    key_id: str,
    prev_hash: bytes,
    count: int,
) -> bytes:
    """The exact bytes a version-2 checkpoint signature covers (and its ``hash`` hashes)."""
    when = utc_text(signed_at) if isinstance(signed_at, datetime) else signed_at
    return jcs(
        {
            "category": category,
            "count": count,
            "entry_hash": entry_hash.hex(),
            "key_id": key_id,
            "prev_hash": prev_hash.hex(),
            "seq": seq,
            "signed_at": when,
            "version": 2,
        }
    )


@dataclass(frozen=True)
class Checkpoint:
    """A signed chain head. ``prev_hash`` and ``count`` are None for a version-1 checkpoint."""

    category: str
    seq: int
    entry_hash: bytes
    signed_at: str
    key_id: str
    signature: bytes
    version: int = 1
    prev_hash: bytes | None = None
    count: int | None = None
    origin: str | None = None  # version 3: the note's origin, "<deployment>/<category>"
    root: bytes | None = None  # version 3: the Merkle tree's root at seq

    def message(self) -> bytes:
        if self.version == 3:
            return checkpoint_message_v3(
                self.origin or "",
                self.seq,
                self.root or b"",
                self.entry_hash,
                self.prev_hash or b"",
                self.count or 0,
                self.signed_at,
            )
        if self.version == 1:
            return checkpoint_message(
                self.category, self.seq, self.entry_hash, self.signed_at, self.key_id
            )
        return checkpoint_message_v2(
            self.category,
            self.seq,
            self.entry_hash,
            self.signed_at,
            self.key_id,
            self.prev_hash or b"",
            self.count or 0,
        )

    def hash(self) -> bytes:
        """SHA-256 of the signed message: what the next checkpoint's ``prev_hash`` must be."""
        return hashlib.sha256(self.message()).digest()

    def note(self, public: Ed25519PublicKey) -> str:
        """The version-3 checkpoint as the signed note an auditor keeps (C2SP signed-note: the
        text, a blank line, the signature line of key name ``origin``)."""
        if self.version != 3 or self.origin is None:
            raise ValueError(f"{self.name()} is version {self.version}: it has no note form")
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        sig = NoteSignature(self.origin, key_hash(self.origin, raw), self.signature)
        return format_note(Note(self.message().decode("utf-8"), (sig,)))

    def name(self) -> str:
        """How a finding names this checkpoint."""
        count = f" count {self.count}" if self.count is not None else ""
        return f"checkpoint {self.category} seq {self.seq}{count} (signed {self.signed_at})"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "category": self.category,
            "seq": self.seq,
            "entry_hash": self.entry_hash.hex(),
            "signed_at": self.signed_at,
            "key_id": self.key_id,
            "signature": self.signature.hex(),
        }
        if self.version != 1:
            out.update(
                version=self.version,
                prev_hash=(self.prev_hash or b"").hex(),
                count=self.count,
            )
        if self.version == 3:
            out.update(origin=self.origin, root=(self.root or b"").hex())
        return out

    @classmethod
    def from_json(cls, item: Mapping[str, Any]) -> Checkpoint:
        """The checkpoint in ``item`` (the form of :meth:`to_json`, as exported, bundled or
        sent to a SIEM). Raises KeyError, TypeError or ValueError when a field is missing or
        malformed."""
        version = int(item.get("version", 1))
        if version not in (1, 2, 3):
            raise ValueError(f"version {version} is not 1, 2 or 3")
        v2 = version >= 2
        v3 = version == 3
        cp = cls(
            str(item["category"]),
            _whole(item["seq"], "seq"),
            _hex(item["entry_hash"], "entry_hash", 32),
            str(item["signed_at"]),
            str(item["key_id"]),
            _hex(item["signature"], "signature", 64),
            version,
            _hex(item["prev_hash"], "prev_hash", 32) if v2 else None,
            _whole(item["count"], "count") if v2 else None,
            str(item["origin"]) if v3 else None,
            _hex(item["root"], "root", 32) if v3 else None,
        )
        if v2 and "hash" in item and _hex(item["hash"], "hash", 32) != cp.hash():
            raise ValueError("hash is not SHA-256 of the checkpoint's message")
        return cp


def _whole(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a whole number, not {value!r}")
    return value


def _hex(value: Any, name: str, size: int) -> bytes:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a hex string")
    raw = bytes.fromhex(value)
    if len(raw) != size:
        raise ValueError(f"{name} must be {size} bytes ({2 * size} hex digits)")
    return raw


def sign_checkpoint(
    signer: Signer,
    category: str,
    seq: int,
    entry_hash: bytes,
    signed_at: datetime,
    prev_hash: bytes = ZERO_HASH,
    count: int = 1,
    origin: str | None = None,
    root: bytes | None = None,
) -> Checkpoint:
    """A checkpoint of (category, seq, entry_hash), chained to ``prev_hash``: version 3 (a
    signed note over the tree ``root``) when ``origin`` and ``root`` are given, else 2."""
    when = utc_text(signed_at)
    if origin is not None and root is not None:
        msg = checkpoint_message_v3(origin, seq, root, entry_hash, prev_hash, count, when)
        return Checkpoint(
            category, seq, entry_hash, when, signer.key_id, signer.sign(msg), 3,
            prev_hash, count, origin, root,
        )  # fmt: skip
    msg = checkpoint_message_v2(category, seq, entry_hash, when, signer.key_id, prev_hash, count)
    return Checkpoint(
        category, seq, entry_hash, when, signer.key_id, signer.sign(msg), 2, prev_hash, count
    )


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
