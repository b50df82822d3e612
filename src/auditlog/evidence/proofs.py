"""The bundle's membership proofs: for every exported row, its RFC 9162 inclusion proof in the
tree signed by its chain's newest version-3 checkpoint (``proofs.ndjson``; docs/evidence.md).

One line per proven row, in (category, seq) order::

    {"category": ..., "seq": S, "size": N, "proof": ["<hex>", ...]}

``size`` is the signing checkpoint's seq (its tree size); the leaf is SHA-256(0x00 ||
entry_hash) at index S - 1. A row appended after the bundle signed the heads has no signed
tree yet and no line; the manifest counts such rows as unproven.
"""

from __future__ import annotations

import base64
import json
import time
import zipfile
from typing import Any

from auditlog.evidence.export import Tally
from auditlog.integrity.checkpoints import Checkpoint
from auditlog.integrity.database import db_checkpoints
from auditlog.model import utc_text
from auditlog.proofs.tree import TreeReader

PROOFS_NAME = "proofs.ndjson"


def _seqs(pairs: list[list[int]], top: int) -> list[int]:
    return [s for a, b in pairs for s in range(a, min(b, top) + 1)]


def newest_tree(conn: Any, category: str) -> Checkpoint | None:
    """The category's newest checkpoint if it signs a tree (version 3), else None."""
    cps = db_checkpoints(conn, category)
    return cps[-1] if cps and cps[-1].root is not None else None


def write_proofs(
    zf: zipfile.ZipFile, conn: Any, runs: Any, chunk: int
) -> tuple[Tally, dict[str, Any]]:
    """Write ``proofs.ndjson`` for the rows in ``runs``; return its tally and, per category,
    the checkpoint the proofs lead to and how many rows are (not) proven."""
    tally, summary = Tally(), {}
    info = zipfile.ZipInfo(PROOFS_NAME, date_time=time.localtime()[:6])
    info.compress_type = zipfile.ZIP_STORED  # hashes do not compress: spare the time
    with zf.open(info, "w", force_zip64=True) as member:
        for cat in sorted(runs.by_cat):
            pairs = runs.pairs(cat)
            total = sum(b - a + 1 for a, b in pairs)
            cp = newest_tree(conn, cat)
            seqs = _seqs(pairs, cp.seq) if cp is not None else []
            summary[cat] = {
                "checkpoint": None if cp is None else {"seq": cp.seq, "count": cp.count},
                "rows_proven": len(seqs),
                "rows_unproven": total - len(seqs),
            }
            if cp is None or not seqs:
                continue
            with conn.cursor() as cur:
                tree = TreeReader(cur, cat)
                tree.prefetch_for([s - 1 for s in seqs], cp.seq)
                lines: list[str] = []
                head = f'{{"category":{json.dumps(cat)},"seq":'
                tail = f',"size":{cp.seq},"proof":['
                for seq in seqs:
                    proof = ",".join([f'"{h.hex()}"' for h in tree.inclusion(seq - 1, cp.seq)])
                    lines.append(f"{head}{seq}{tail}{proof}]}}")
                    if len(lines) >= chunk:
                        member.write(tally.take(("\n".join(lines) + "\n").encode(), len(lines)))
                        lines = []
                if lines:
                    member.write(tally.take(("\n".join(lines) + "\n").encode(), len(lines)))
    return tally, summary


def _attach(conn: Any, checkpoints: list[dict[str, Any]], key: str, sql: str, item: Any) -> int:
    """Add to each bundled checkpoint, under ``key``, an ``item(row)`` for every row of
    ``sql`` (category, seq, count, then the row's own columns) that belongs to it."""
    if not checkpoints:
        return 0
    with conn.cursor() as cur:
        cur.execute(sql, (sorted({cp["category"] for cp in checkpoints}),))
        rows = cur.fetchall()
    by_key = {(cp["category"], cp["seq"], cp.get("count")): cp for cp in checkpoints}
    n = 0
    for cat, seq, count, *rest in rows:
        cp = by_key.get((cat, seq, count))
        if cp is not None:
            cp.setdefault(key, []).append(item(*rest))
            n += 1
    return n


def attach_timestamps(conn: Any, checkpoints: list[dict[str, Any]]) -> int:
    """Add to each bundled checkpoint its stored RFC 3161 tokens (``timestamps``: TSA URL,
    genTime, the DER token in base64), so the time travels with the evidence; return how many."""
    sql = (
        "SELECT c.category, c.seq, c.count, t.tsa_url, t.gen_time, t.token"
        " FROM checkpoint_timestamps t JOIN checkpoints c ON c.id = t.checkpoint_id"
        " WHERE c.category = ANY(%s) ORDER BY t.id"
    )

    def item(url: str, gen_time: Any, token: bytes) -> dict[str, str]:
        b64 = base64.b64encode(bytes(token)).decode("ascii")
        return {"tsa_url": url, "gen_time": utc_text(gen_time), "token": b64}

    return _attach(conn, checkpoints, "timestamps", sql, item)


def attach_cosignatures(conn: Any, checkpoints: list[dict[str, Any]]) -> int:
    """Add to each bundled checkpoint the witnesses' cosignatures stored for it
    (``cosignatures``: witness, key hash and the 72-byte cosignature/v1 value, hex)."""
    sql = (
        "SELECT c.category, c.seq, c.count, w.witness, w.key_hash, w.signature"
        " FROM witness_cosignatures w JOIN checkpoints c ON c.id = w.checkpoint_id"
        " WHERE c.category = ANY(%s) ORDER BY w.received_at"
    )

    def item(witness: str, khash: bytes, sig: bytes) -> dict[str, str]:
        return {"witness": witness, "key_hash": bytes(khash).hex(), "signature": bytes(sig).hex()}

    return _attach(conn, checkpoints, "cosignatures", sql, item)
