"""Honest labels: which tier of assurance holds for each chain (issue 11, item 8).

- **tamper-detecting**: signed by the log's own key only. Edits, removals and reorderings are
  evident to anyone holding a checkpoint kept outside, but whoever holds both the database
  and the key can rewrite what no outside copy has seen.
- **witnessed**: the newest checkpoint (or an earlier one) is cosigned by independent
  witnesses, K of the N configured; a rewrite before it would need their keys too.
- **timestamped**: an RFC 3161 authority vouches that the checkpoint existed by its time.

The labels say what is *stored*; ``auditlog verify --witness-key ... --tsa-anchor ...``
checks the signatures themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from auditlog.integrity.checkpoints import Checkpoint
from auditlog.integrity.database import db_checkpoints
from auditlog.integrity.keys import load_public_key
from auditlog.model import CATEGORIES


@dataclass(frozen=True)
class ChainTier:
    """What vouches for one chain's newest checkpoint, beyond the log's own signature."""

    category: str
    checkpoint: Checkpoint | None
    note: str | None  # the newest version-3 checkpoint as the signed note an auditor keeps
    witnesses: tuple[tuple[str, datetime], ...] = ()  # (witness, when) of the newest cosigned
    witnessed_seq: int | None = None
    witness_quorum: int = 0  # K needed (0: no witness configured)
    witness_count: int = 0  # N configured
    stamp: tuple[str, datetime, int] | None = None  # (TSA URL, genTime, seq) of the newest

    @property
    def tiers(self) -> list[str]:
        out = []
        if self.checkpoint is not None:
            out.append("tamper-detecting (signed by the log's own key)")
        if self.witnesses:
            k, n = len(self.witnesses), max(self.witness_count, len(self.witnesses))
            met = "" if k >= self.witness_quorum else f", below the quorum of {self.witness_quorum}"
            when = max(t for _, t in self.witnesses)
            at = f"{when:%Y-%m-%d %H:%M} UTC"
            out.append(f"witnessed ({k} of {n}{met}; seq {self.witnessed_seq}, cosigned {at})")
        if self.stamp is not None:
            url, when, seq = self.stamp
            out.append(f"timestamped (by {url}, {when:%Y-%m-%d %H:%M:%S} UTC, seq {seq})")
        return out or ["not yet signed"]


def _table(conn: Any, name: str) -> bool:
    return bool(conn.execute(sa.text("SELECT to_regclass(:n) IS NOT NULL"), {"n": name}).scalar())


def _stamps(conn: Any) -> dict[str, tuple[str, datetime, int]]:
    if not _table(conn, "checkpoint_timestamps"):
        return {}
    rows = conn.execute(
        sa.text(
            "SELECT DISTINCT ON (c.category) c.category, t.tsa_url, t.gen_time, c.seq"
            " FROM checkpoint_timestamps t JOIN checkpoints c ON c.id = t.checkpoint_id"
            " ORDER BY c.category, c.seq DESC, t.gen_time DESC"
        )
    )
    return {cat: (url, when, int(seq)) for cat, url, when, seq in rows}


def chain_tiers(engine: Engine, witness_quorum: int = 0, witness_count: int = 0) -> list[ChainTier]:
    """One :class:`ChainTier` per category, from what the database holds."""
    with engine.connect() as sa_conn:
        raw: Any = sa_conn.connection.driver_connection
        stamps = _stamps(sa_conn)
        cosigned = _cosignatures(sa_conn)
        keys = {
            k: bytes(pem)
            for k, pem in sa_conn.execute(sa.text("SELECT key_id, public_key FROM signing_keys"))
        }
        out = []
        for cat in CATEGORIES:
            cps = db_checkpoints(raw, cat)
            newest = cps[-1] if cps else None
            v3 = next((c for c in reversed(cps) if c.root is not None), None)
            note = v3.note(load_public_key(keys[v3.key_id])) if v3 and v3.key_id in keys else None
            seq, who = cosigned.get(cat, (None, ()))
            out.append(
                ChainTier(
                    cat, newest, note, who, seq, witness_quorum, witness_count, stamps.get(cat)
                )
            )
        raw.commit()
    return out


def _cosignatures(conn: Any) -> dict[str, tuple[int, tuple[tuple[str, datetime], ...]]]:
    """category -> (seq, ((witness, when), ...)) of its newest cosigned checkpoint (as
    stored: the submitter verified them; ``verify --witness-key`` checks them again)."""
    if not _table(conn, "witness_cosignatures"):
        return {}
    rows = conn.execute(
        sa.text(
            "SELECT c.category, c.seq, w.witness, w.cosigned_at FROM witness_cosignatures w"
            " JOIN checkpoints c ON c.id = w.checkpoint_id"
            " WHERE c.seq = (SELECT max(c2.seq) FROM witness_cosignatures w2"
            "   JOIN checkpoints c2 ON c2.id = w2.checkpoint_id WHERE c2.category = c.category)"
            " ORDER BY c.category, w.witness"
        )
    )
    out: dict[str, tuple[int, tuple[tuple[str, datetime], ...]]] = {}
    for cat, seq, witness, when in rows:
        prev = out.get(cat, (int(seq), ()))[1]
        out[cat] = (int(seq), (*prev, (witness, when)))
    return out
