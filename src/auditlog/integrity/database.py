"""Verification of the database: every chain, its columns, checkpoints and purge anchors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from auditlog.columns import EVENT_COLUMNS, EventColumn
from auditlog.db.server import driver_errors
from auditlog.integrity.checkpoints import Checkpoint, anchor_message
from auditlog.integrity.keys import load_public_key
from auditlog.integrity.rule import ZERO_HASH
from auditlog.integrity.verifier import (
    ChainResult,
    ChainVerifier,
    Problem,
    SpanPolicy,
    VerifyReport,
)
from auditlog.model import utc_text
from auditlog.proofs.tree import TreeCheck, TreeReader

# --- the database ------------------------------------------------------------------------

_CHAIN_SQL = (
    "SELECT seq, prev_hash, entry_hash, convert_to(record, 'UTF8') FROM events "
    "WHERE category = %s ORDER BY seq"
)
# Every column must still equal its value in the hashed record; the first row where one does
# not, and which columns differ. Run by the server, in one pass. How a column reads out of the
# record ``r`` (jsonb) follows its record form (auditlog.columns).
_FROM_RECORD = {
    "text": "r->>'{n}'",
    "int": "(r->>'{n}')::bigint",
    "bool": "(r->>'{n}')::boolean",
    "uuid": "(r->>'{n}')::uuid",
    "timestamp": "(r->>'{n}')::timestamptz",
    "ip": "(r->>'{n}')::inet",
    "json": "r->'{n}'",
}


def _column_check(col: EventColumn) -> str:
    value = _FROM_RECORD[str(col.record)].format(n=col.name)
    if col.record == "json" and col.nullable:  # SQL NULL is stored for JSON null
        value = f"nullif({value}, 'null'::jsonb)"
    return f"e.{col.name} IS DISTINCT FROM {value}"


_COLUMN_CHECKS = {col.name: _column_check(col) for col in EVENT_COLUMNS if col.record}
_CONSISTENCY_SQL = (
    "SELECT seq, differs FROM (SELECT e.seq, array_remove(ARRAY["
    + ", ".join(f"CASE WHEN {cond} THEN '{col}' END" for col, cond in _COLUMN_CHECKS.items())
    + "], NULL) AS differs FROM (SELECT *, record::jsonb AS r FROM events WHERE category = %s "
    "OFFSET 0) e) s WHERE cardinality(differs) > 0 ORDER BY seq LIMIT 1"
)  # OFFSET 0 keeps the planner from inlining r, which would parse the record once per use


def db_public_keys(conn: Any) -> dict[str, Ed25519PublicKey]:
    """Public keys registered in the database (psycopg connection)."""
    with conn.cursor() as cur:
        cur.execute("SELECT key_id, public_key FROM signing_keys")
        return {k: load_public_key(bytes(pem)) for k, pem in cur.fetchall()}


def db_checkpoints(conn: Any, category: str) -> list[Checkpoint]:
    """The category's checkpoints in chain order (seq, then id), of every version."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT category, seq, entry_hash, signed_at, key_id, signature, version, prev_hash, "
            "count, origin, root_hash FROM checkpoints WHERE category = %s ORDER BY seq, id",
            (category,),
        )
        return [
            Checkpoint(
                c, int(s), bytes(h), utc_text(t), k, bytes(sig), int(v),
                None if prev is None else bytes(prev), None if n is None else int(n),
                origin, None if root is None else bytes(root),
            )
            for c, s, h, t, k, sig, v, prev, n, origin, root in cur.fetchall()
        ]  # fmt: skip


def db_anchor(conn: Any, category: str) -> tuple[int, bytes]:
    """(seq, entry_hash) of the last purged entry, or (0, zeros) if nothing was purged."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT seq, entry_hash FROM purge_anchors WHERE category = %s "
            "ORDER BY seq DESC LIMIT 1",
            (category,),
        )
        row = cur.fetchone()
    return (int(row[0]), bytes(row[1])) if row else (0, ZERO_HASH)


def verify_category(
    conn: Any,
    category: str,
    keys: Mapping[str, Ed25519PublicKey],
    batch: int = 20_000,
    span: SpanPolicy | None = None,
) -> ChainResult:
    """Verify one category: chain, columns against the hashed record, checkpoints (their
    signatures and their own chain) and the unsigned span after the last one."""
    checkpoints = db_checkpoints(conn, category)
    verifier = ChainVerifier(category, db_anchor(conn, category))
    verifier.watch = {cp.seq for cp in checkpoints}
    with conn.transaction(), conn.cursor(name=f"verify_{category}") as cur:
        cur.itersize = batch
        cur.execute(_CHAIN_SQL, (category,))
        feed = verifier.feed_stored
        tree = _tree_check(conn, category, verifier.start_seq)
        if tree is not None:
            tree.watch = {cp.seq for cp in checkpoints if cp.root is not None}
        add = tree.add if tree else (lambda _: None)
        for seq, prev, stored, record in cur:
            if not feed(seq, prev, stored, record):
                break
            add(stored)
    if tree is not None and verifier.result.problem is None:
        with conn.cursor() as cur:
            wrong = tree.first_wrong(cur, category)
        conn.commit()
        if wrong:
            verifier.result.problem = Problem(category, wrong[0], "tree node wrong", wrong[1])
        else:
            bad_root = _root_problem(conn, category, checkpoints, tree)
            verifier.result.problem = bad_root or verifier.result.problem
    verifier.check_checkpoints(checkpoints, keys)
    _check_span(conn, verifier, span or SpanPolicy())
    _check_columns(conn, category, verifier.result)
    verifier.result.problem = db_anchor_problem(conn, category, keys) or verifier.result.problem
    return verifier.result


def _root_problem(
    conn: Any, category: str, checkpoints: list[Checkpoint], tree: TreeCheck
) -> Problem | None:
    """The first version-3 checkpoint whose root is not the tree's root at its size (the
    tree recomputed from the entries read; below a purged prefix, from the kept hashes)."""
    reader = TreeReader(conn.cursor(), category)
    for cp in checkpoints:
        if cp.root is None:
            continue
        got = tree.roots.get(cp.seq)
        if got is None:
            try:
                got = reader.root(cp.seq)
            except KeyError:
                why = f"{cp.name()}: the tree of {cp.seq} entries cannot be rebuilt"
                return Problem(category, cp.seq, "checkpoint root wrong", why)
        if got != cp.root:
            return Problem(
                category, cp.seq, "checkpoint root wrong",
                f"{cp.name()} signs a Merkle root that is not the root of the first "
                f"{cp.seq} entries: the entries or the tree differ from what was signed",
            )  # fmt: skip
    conn.commit()
    return None


def _tree_check(conn: Any, category: str, start_seq: int) -> TreeCheck | None:
    """The Merkle tree check from the chain's first stored entry on (the edge of a purged
    prefix read from the store), or None for a chain purged before the tree existed."""
    try:
        edge = TreeReader(conn.cursor(), category).edge(start_seq)
    except KeyError:
        return None
    return TreeCheck(edge)


def _check_span(conn: Any, verifier: ChainVerifier, span: SpanPolicy) -> None:
    """The unsigned span: recorded_at of the first row no checkpoint covers, and the time."""
    cp = verifier.last_checkpoint
    first = max(cp.seq if cp else 0, verifier.start_seq) + 1
    with conn.cursor() as cur:
        cur.execute(
            "SELECT clock_timestamp(), (SELECT recorded_at FROM events "
            "WHERE category = %s AND seq = %s)",
            (verifier.result.category, first),
        )
        now, first_at = cur.fetchone()
    conn.commit()
    verifier.check_unsigned_span(span, first_at, now)


def db_anchor_problem(
    conn: Any, category: str, keys: Mapping[str, Ed25519PublicKey]
) -> Problem | None:
    """The first purge anchor of ``category`` whose signature does not verify, if any."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT seq, entry_hash, key_id, signature FROM purge_anchors "
            "WHERE category = %s ORDER BY seq",
            (category,),
        )
        anchors = cur.fetchall()
    conn.commit()
    for seq, entry, key_id, sig in anchors:
        msg = anchor_message(category, int(seq), bytes(entry), key_id or "")
        why = _anchor_flaw(keys.get(key_id or ""), key_id, sig, msg)
        if why:
            return Problem(
                category,
                int(seq),
                "bad anchor",
                f"the purge anchor's signature {why}: the purge up to seq {seq} is not vouched for",
            )
    return None


def _anchor_flaw(key: Ed25519PublicKey | None, key_id: str | None, sig: Any, msg: bytes) -> str:
    """Why an anchor's signature is not good ('' when it is)."""
    if sig is None:
        return "is missing"
    if key is None:
        return f"uses unknown key {key_id}"
    try:
        key.verify(bytes(sig), msg)
    except InvalidSignature:
        return "does not verify"
    return ""


def _check_columns(conn: Any, category: str, result: ChainResult) -> None:
    """Name the first row whose columns no longer equal its hashed record (if earlier)."""
    with conn.cursor() as cur:
        cur.execute(_CONSISTENCY_SQL, (category,))
        row = cur.fetchone()
    conn.commit()
    if row is None or (result.problem and (result.problem.seq or 0) <= row[0]):
        return
    cols = ", ".join(row[1])
    result.problem = Problem(
        category,
        row[0],
        "content changed",
        f"column(s) {cols} no longer "
        "match the hashed record: this row was altered after it was written",
    )


def verify_database(
    engine: Any,
    public_keys: Mapping[str, Ed25519PublicKey] | None = None,
    span: SpanPolicy | None = None,
) -> VerifyReport:
    """Verify every category; ``public_keys`` pins the trusted keys (default: those in the db);
    ``span`` says how long a tail may stay unsigned (default: the default settings')."""
    from auditlog.model import Category

    report = VerifyReport()
    with engine.connect() as sa_conn, driver_errors():
        conn = sa_conn.connection.driver_connection
        keys = dict(public_keys) if public_keys is not None else db_public_keys(conn)
        conn.commit()
        for cat in Category:
            result = verify_category(conn, cat.value, keys, span=span)
            report.chains[cat.value] = result
            if result.problem:
                report.problems.append(result.problem)
    return report
