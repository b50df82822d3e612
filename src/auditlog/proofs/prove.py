"""Proofs on demand, from the database: an event's inclusion in a signed tree, and one signed
tree's consistency with a later one (``auditlog proof ...``).

Every proof is checked here, against the signed root it names, before it is handed out; a
proof that does not check (a stored node that differs from the entries) is refused with the
reason, never printed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from auditlog.errors import IntegrityFailure, NotFound
from auditlog.integrity.checkpoints import Checkpoint
from auditlog.integrity.database import db_checkpoints
from auditlog.integrity.keys import load_public_key
from auditlog.proofs.merkle import leaf_hash, verify_consistency, verify_inclusion
from auditlog.proofs.note import format_consistency, format_inclusion
from auditlog.proofs.tree import TreeReader


@dataclass(frozen=True)
class Inclusion:
    """An event's place in a signed tree: ``text`` is the c2sp.org/tlog-proof@v1 form."""

    category: str
    seq: int
    entry_hash: bytes
    checkpoint: Checkpoint
    proof: list[bytes]
    text: str


def _key(conn: Any, key_id: str) -> Ed25519PublicKey:
    with conn.cursor() as cur:
        cur.execute("SELECT public_key FROM signing_keys WHERE key_id = %s", (key_id,))
        row = cur.fetchone()
    if row is None:
        raise NotFound(f"signing key {key_id} is not registered")
    return load_public_key(bytes(row[0]))


def covering(checkpoints: list[Checkpoint], seq: int) -> Checkpoint | None:
    """The newest version-3 checkpoint whose tree holds ``seq``."""
    return next((c for c in reversed(checkpoints) if c.root is not None and c.seq >= seq), None)


def inclusion(conn: Any, event_id: str) -> Inclusion:
    """The inclusion proof of ``event_id`` in its chain's newest signed tree (psycopg conn)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT category, seq, entry_hash FROM events WHERE event_id = %s::uuid", (event_id,)
        )
        row = cur.fetchone()
    if row is None:
        raise NotFound(f"event {event_id} is not in the log (or was purged by retention)")
    category, seq, entry = row[0], int(row[1]), bytes(row[2])
    cp = covering(db_checkpoints(conn, category), seq)
    if cp is None or cp.root is None:
        raise NotFound(
            f"no signed tree holds {category} seq {seq} yet: the next checkpoint will "
            "(`auditlog checkpoint` signs the heads now)"
        )
    with conn.cursor() as cur:
        proof = TreeReader(cur, category).inclusion(seq - 1, cp.seq)
    if not verify_inclusion(seq - 1, cp.seq, leaf_hash(entry), proof, cp.root):
        raise IntegrityFailure(
            f"the stored tree does not prove {category} seq {seq} in {cp.name()}: "
            "run `auditlog verify`, which names the stored node that differs"
        )
    text = format_inclusion(seq - 1, proof, cp.note(_key(conn, cp.key_id)), extra=entry)
    return Inclusion(category, seq, entry, cp, proof, text)


def consistency(conn: Any, old: Checkpoint, new: Checkpoint) -> str:
    """The consistency proof from ``old``'s tree to ``new``'s, as the tlog-witness request
    body (``old N``, the hashes, the new checkpoint note); checked before it is returned."""
    if old.seq > new.seq:
        old, new = new, old
    if old.category != new.category or old.root is None or new.root is None:
        raise NotFound("a consistency proof needs two version-3 checkpoints of one chain")
    with conn.cursor() as cur:
        proof = TreeReader(cur, new.category).consistency(old.seq, new.seq)
    if not verify_consistency(old.seq, new.seq, old.root, new.root, proof):
        raise IntegrityFailure(
            f"{new.name()} does not extend {old.name()}: the tree was rewritten in between "
            "(`auditlog verify --since` with the older checkpoint names it)"
        )
    return format_consistency(old.seq, proof, new.note(_key(conn, new.key_id)))
