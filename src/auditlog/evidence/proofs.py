"""The bundle's membership proofs: every exported row's RFC 9162 inclusion proof in the tree
signed by its chain's newest version-3 checkpoint (``proofs.ndjson``; docs/evidence.md).

The file (format ``auditlog-proofs/2``) is NDJSON: a header line, then per category one
line naming the rows proven and the tree they are proven in, and the *node table* of that
tree: the hashes on the rows' audit paths, each distinct node once (many rows of a range
share most of their paths), as lines of one level each::

    {"format":"auditlog-proofs/2"}
    {"category":C,"size":N,"rows":[[first_seq,last_seq],...]}
    {"category":C,"size":N,"level":L,"index":[i,...],"hashes":"<64 hex digits per index>"}

``size`` is the signing checkpoint's seq (its tree size); row S is leaf S - 1, and its audit
path is read from the table by position alone (``merkle.path_nodes``), so each row still
verifies on its own. A row appended after the bundle signed the heads has no signed tree yet
and is not listed; the manifest counts such rows as unproven. Bundles written before this
format have one line per row (``{"category","seq","size","proof":[hex,...]}``, format 1);
both verifiers still read them.
"""

from __future__ import annotations

import base64
import json
import re
import time
import zipfile
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, Any

from auditlog.errors import IntegrityFailure
from auditlog.evidence.export import Tally
from auditlog.integrity.checkpoints import Checkpoint
from auditlog.integrity.database import db_checkpoints
from auditlog.model import utc_text
from auditlog.proofs.tree import TreeReader

PROOFS_NAME = "proofs.ndjson"
PROOFS_FORMAT = "auditlog-proofs/2"
PROOFS_RULE = (
    "RFC 9162 inclusion of SHA-256(0x00 || entry_hash) at index seq - 1 in the tree of the "
    "checkpoint's size, against its signed root, the audit path read from the tree's node "
    "table (docs/evidence.md section 4, docs/integrity.md sections 8, 9)"
)
_TAIL = re.compile(rb'"entry_hash":"([0-9a-f]{64})"\}\n')  # an NDJSON line's end
TABLE_LINE = 50_000  # nodes per node-table line: a line stays a few MB


def _clip(pairs: list[list[int]], top: int) -> list[list[int]]:
    """The seq runs ``pairs`` cut to the seqs a tree of ``top`` entries holds."""
    return [[a, min(b, top)] for a, b in pairs if a <= top]


def newest_tree(conn: Any, category: str) -> Checkpoint | None:
    """The category's newest checkpoint if it signs a tree (version 3), else None."""
    cps = db_checkpoints(conn, category)
    return cps[-1] if cps and cps[-1].root is not None else None


def rows_line(category: str, size: int, runs: list[list[int]]) -> bytes:
    """The line naming the rows proven in the tree of ``size`` entries."""
    runs_text = json.dumps(runs, separators=(",", ":"))
    return f'{{"category":{json.dumps(category)},"size":{size},"rows":{runs_text}}}\n'.encode()


def node_lines(category: str, size: int, level: int, nodes: dict[int, bytes]) -> Iterator[bytes]:
    """The node-table lines of one level (indices ascending, at most TABLE_LINE a line)."""
    head = f'{{"category":{json.dumps(category)},"size":{size},"level":{level},"index":['
    idx = list(nodes)
    for k in range(0, len(idx), TABLE_LINE):
        part = idx[k : k + TABLE_LINE]
        hashes = b"".join([nodes[i] for i in part]).hex()
        yield f'{head}{",".join(map(str, part))}],"hashes":"{hashes}"}}\n'.encode()


class EntryTap:
    """The entry_hash of each exported row, read off the NDJSON lines as they stream into
    the bundle (each ends in the fixed tail ``,"entry_hash":"<64 hex>"}``, docs/evidence.md
    section 3), so the proofs need not read those entries from the database again. Rows are
    counted by ``row`` (the export's ``on_row``), in the order their lines follow."""

    def __init__(self, runs: Any) -> None:
        self.runs = runs
        self.by_cat: dict[str, bytearray] = {}
        self._pending: deque[list[Any]] = deque()  # [category, its rows not yet read off]

    def row(self, category: str, seq: int) -> None:
        self.runs.add(category, seq)
        if self._pending and self._pending[-1][0] == category:
            self._pending[-1][1] += 1
        else:
            self._pending.append([category, 1])

    def tap(self, blobs: Iterable[bytes]) -> Iterator[bytes]:
        """``blobs`` unchanged; their lines' entry hashes kept, in order, by category."""
        for blob in blobs:
            hexes = _TAIL.findall(blob)
            k = 0
            while k < len(hexes) and self._pending:
                cat, n = self._pending[0]
                m = min(n, len(hexes) - k)
                raw = bytes.fromhex(b"".join(hexes[k : k + m]).decode("ascii"))
                self.by_cat.setdefault(cat, bytearray()).extend(raw)
                k += m
                if m == n:
                    self._pending.popleft()
                else:
                    self._pending[0][1] -= m
            yield blob

    def entries(self, category: str, seqs: Sequence[int]) -> dict[int, bytes]:
        """Leaf index -> entry_hash of ``seqs`` (the category's first exported seqs, in
        order); empty when the lines read off do not add up (then all is read again)."""
        data = self.by_cat.get(category, bytearray())
        total = sum(b - a + 1 for a, b in self.runs.pairs(category))
        if len(data) != 32 * total:
            return {}
        return {s - 1: bytes(data[32 * k : 32 * k + 32]) for k, s in enumerate(seqs)}


def _prove(member: IO[bytes], tally: Tally, conn: Any, cat: str, cp: Checkpoint,
           runs: list[list[int]], tap: EntryTap | None) -> None:  # fmt: skip
    """Write the lines proving ``runs`` in ``cp``'s tree; the table must lead to its root."""
    n = sum(b - a + 1 for a, b in runs)
    member.write(tally.take(rows_line(cat, cp.seq, runs), n))

    def emit(level: int, nodes: dict[int, bytes]) -> None:
        for line in node_lines(cat, cp.seq, level, nodes):
            member.write(tally.take(line, 0))

    seqs = [s for a, b in runs for s in range(a, b + 1)]
    known = tap.entries(cat, seqs) if tap is not None else {}
    with conn.cursor() as cur:
        root = TreeReader(cur, cat).audit_table([s - 1 for s in seqs], cp.seq, emit, known)
    if root != cp.root:
        raise IntegrityFailure(
            f"the stored tree does not prove the {cat} rows in {cp.name()}: run "
            "`auditlog verify`, which names the stored node that differs"
        )


def write_proofs(
    zf: zipfile.ZipFile, conn: Any, runs: Any, tap: EntryTap | None = None
) -> tuple[Tally, dict[str, Any]]:
    """Write ``proofs.ndjson`` for the rows in ``runs``; return its tally (``rows``: the rows
    proven) and, per category, the checkpoint the proofs lead to and how many rows are (not)
    proven. ``tap`` holds the rows' entry hashes as exported (else they are read). Raises
    IntegrityFailure when the stored tree and the entries do not lead to the signed root."""
    tally, summary = Tally(), {}
    info = zipfile.ZipInfo(PROOFS_NAME, date_time=time.localtime()[:6])
    info.compress_type = zipfile.ZIP_STORED  # hashes do not compress: spare the time
    with zf.open(info, "w", force_zip64=True) as member:
        member.write(tally.take(f'{{"format":"{PROOFS_FORMAT}"}}\n'.encode(), 0))
        for cat in sorted(runs.by_cat):
            pairs = runs.pairs(cat)
            total = sum(b - a + 1 for a, b in pairs)
            cp = newest_tree(conn, cat)
            proven = _clip(pairs, cp.seq) if cp is not None else []
            n = sum(b - a + 1 for a, b in proven)
            summary[cat] = {
                "checkpoint": None if cp is None else {"seq": cp.seq, "count": cp.count},
                "rows_proven": n,
                "rows_unproven": total - n,
            }
            if cp is not None and proven:
                _prove(member, tally, conn, cat, cp, proven, tap)
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
