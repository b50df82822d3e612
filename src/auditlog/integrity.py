"""Hash chains and signed checkpoints: the rule of docs/integrity.md, and its verification.

entry_hash = SHA-256(prev_hash || JCS(record)); record = every stored field but the hashes.
A checkpoint signs JCS({category, seq, entry_hash (hex), signed_at, key_id}) with Ed25519.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from auditlog.canonical import jcs, jcs_text
from auditlog.model import canonical_ip, utc_text
from auditlog.settings import Settings

ZERO_HASH = bytes(32)
# Sorted as JCS sorts them (all ASCII), so a record can be assembled field by field.
HASHED_FIELDS = (
    "action",
    "actor",
    "after",
    "before",
    "category",
    "clock_skew",
    "correlation_id",
    "details",
    "event_id",
    "occurred_at",
    "occurred_offset",
    "outcome",
    "recorded_at",
    "seq",
    "source_ip",
    "target",
    "user_agent",
)
CHAIN_FIELDS = ("prev_hash", "entry_hash")


def record_bytes_from_texts(texts: Mapping[str, str]) -> bytes:
    """JCS of a record whose field values are already canonical JSON texts."""
    body = ",".join(f'"{k}":{texts[k]}' for k in HASHED_FIELDS)
    return ("{" + body + "}").encode("utf-8")


def record_bytes(record: Mapping[str, Any]) -> bytes:
    """JCS of the hashed part of a stored record (record form: JSON values)."""
    return record_bytes_from_texts({k: jcs_text(record[k]) for k in HASHED_FIELDS})


def chain_hash(prev_hash: bytes, record_json: bytes) -> bytes:
    return hashlib.sha256(prev_hash + record_json).digest()


def record_seq(record: bytes) -> int | None:
    """The top-level ``seq`` of a canonical record, without parsing it all.

    In JCS the top-level keys are sorted, so only source_ip, target (fixed keys) and
    user_agent follow ``seq``; a quote inside a string is escaped. So the last ``,"seq":``
    is the top-level one.
    """
    at = record.rfind(b',"seq":')
    if at < 0:
        return None
    end = record.find(b",", at + 7)
    try:
        return int(record[at + 7 : end])
    except ValueError:
        return None


def row_to_record(row: Mapping[str, Any]) -> dict[str, Any]:
    """A database row (Python types) in record form: the JSON values the hash covers."""
    occurred, recorded = row["occurred_at"], row["recorded_at"]
    ip = row["source_ip"]
    return {
        "action": row["action"],
        "actor": row["actor"],
        "after": row["after"],
        "before": row["before"],
        "category": row["category"],
        "clock_skew": bool(row["clock_skew"]),
        "correlation_id": row["correlation_id"],
        "details": row["details"],
        "event_id": str(row["event_id"]),
        "occurred_at": utc_text(occurred) if isinstance(occurred, datetime) else occurred,
        "occurred_offset": int(row["occurred_offset"]),
        "outcome": row["outcome"],
        "recorded_at": utc_text(recorded) if isinstance(recorded, datetime) else recorded,
        "seq": int(row["seq"]),
        "source_ip": None if ip is None else canonical_ip(str(ip)),
        "target": row["target"],
        "user_agent": row["user_agent"],
        "prev_hash": bytes(row["prev_hash"]).hex(),
        "entry_hash": bytes(row["entry_hash"]).hex(),
    }


# --- signing -----------------------------------------------------------------------------


def key_id_of(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_pem(public: Ed25519PublicKey) -> str:
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def load_public_key(pem: str | bytes) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(pem.encode() if isinstance(pem, str) else pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("public key is not Ed25519")
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
        key = serialization.load_pem_private_key(
            pem.encode() if isinstance(pem, str) else pem, password=None
        )
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("signing key is not Ed25519")
        return cls(key)

    def private_pem(self) -> bytes:
        return self.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def load_signer(settings: Settings) -> Signer:
    """The key from AUDITLOG_SIGNING_KEY, else ``<home>/signing_key.pem`` (created 0600)."""
    if settings.signing_key:
        return Signer.from_pem(settings.signing_key)
    path: Path = settings.key_path
    if path.exists():
        return Signer.from_pem(path.read_bytes())
    path.parent.mkdir(parents=True, exist_ok=True)
    signer = Signer.generate()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(signer.private_pem())
    return signer


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
    return jcs({"anchor": "purge", "category": category, "seq": seq,
                "entry_hash": entry_hash.hex(), "key_id": key_id})  # fmt: skip


def signature_ok(cp: Checkpoint, keys: Mapping[str, Ed25519PublicKey]) -> bool:
    key = keys.get(cp.key_id)
    if key is None:
        return False
    try:
        key.verify(cp.signature, cp.message())
    except InvalidSignature:
        return False
    return True


# --- verification ------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """The first thing wrong in one chain: where and why."""

    category: str
    seq: int | None
    kind: str
    message: str

    def __str__(self) -> str:
        where = f"{self.category} seq {self.seq}" if self.seq is not None else self.category
        return f"{where}: {self.kind}: {self.message}"


@dataclass
class ChainResult:
    category: str
    first_seq: int | None = None
    last_seq: int | None = None
    last_hash: bytes | None = None
    rows: int = 0
    checkpoints: int = 0
    problem: Problem | None = None


@dataclass
class VerifyReport:
    chains: dict[str, ChainResult] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def rows(self) -> int:
        return sum(c.rows for c in self.chains.values())


class ChainVerifier:
    """Feed one category's rows (record form, ascending seq); it stops at the first problem.

    ``start`` is (seq, entry_hash) of the last entry before the first row fed: (0, zeros) for
    a whole chain, or a purge anchor. ``contiguous=False`` lets an export with gaps (a filtered
    subset) verify each row and the links of each contiguous run.
    """

    def __init__(
        self, category: str, start: tuple[int, bytes] = (0, ZERO_HASH), contiguous: bool = True
    ) -> None:
        self.result = ChainResult(category)
        self.expect_seq, self.prev_hash = start[0] + 1, start[1]
        self.contiguous = contiguous
        self.start_seq = start[0]
        self.hashes_at: dict[int, bytes] = {}
        self.watch: set[int] = set()

    def _fail(self, seq: int | None, kind: str, message: str) -> None:
        self.result.problem = Problem(self.result.category, seq, kind, message)

    def _reordered_from(self, rec: dict[str, Any], prev: bytes, stored: bytes) -> int | None:
        seq = rec["seq"]
        for delta in range(1, 65):
            for cand in (seq - delta, seq + delta):
                if cand >= 1 and chain_hash(prev, record_bytes({**rec, "seq": cand})) == stored:
                    return cand
        return None

    def feed(self, rec: dict[str, Any]) -> bool:
        """Check one row in record form; return False once the chain has a problem."""
        if self.result.problem:
            return False
        prev, stored = bytes.fromhex(rec["prev_hash"]), bytes.fromhex(rec["entry_hash"])
        ok = chain_hash(prev, record_bytes(rec)) == stored
        moved = None if ok else self._reordered_from(rec, prev, stored)
        return self._check(rec["seq"], prev, stored, ok, moved)

    def feed_stored(self, seq: int, prev: bytes, stored: bytes, record: bytes) -> bool:
        """Check one row by its stored record bytes (the database's ``record`` column)."""
        if self.result.problem:
            return False
        ok = hashlib.sha256(prev + record).digest() == stored
        written = record_seq(record) if ok else None
        if written is not None and written != seq:
            return self._check(seq, prev, stored, False, written)
        return self._check(seq, prev, stored, ok, None)

    def _check(self, seq: int, prev: bytes, stored: bytes, ok: bool, moved: int | None) -> bool:
        if moved is not None:
            self._fail(
                seq, "rows reordered", f"the entry stored at seq {seq} was written at seq {moved}"
            )
            return False
        if not ok:
            self._fail(
                seq,
                "content changed",
                "entry_hash does not match the stored "
                "fields: this row was altered after it was written",
            )
            return False
        if self.contiguous or seq == self.expect_seq:
            if seq > self.expect_seq:
                self._fail(
                    self.expect_seq,
                    "row missing",
                    f"seq {self.expect_seq}"
                    f"{'' if seq == self.expect_seq + 1 else f'..{seq - 1}'} "
                    f"absent (next present is {seq})",
                )
                return False
            if seq < self.expect_seq:
                self._fail(
                    seq, "rows reordered", f"seq {seq} appears after seq {self.expect_seq - 1}"
                )
                return False
            if prev != self.prev_hash:
                self._fail(
                    seq,
                    "link broken",
                    "prev_hash is not the entry_hash of seq "
                    f"{seq - 1}: an entry before it was replaced or removed",
                )
                return False
        self._accept(seq, stored)
        return True

    def _accept(self, seq: int, stored: bytes) -> None:
        r = self.result
        r.rows += 1
        r.first_seq = seq if r.first_seq is None else r.first_seq
        r.last_seq, r.last_hash = seq, stored
        self.expect_seq, self.prev_hash = seq + 1, stored
        if seq in self.watch:
            self.hashes_at[seq] = stored

    def check_checkpoints(
        self, checkpoints: Iterable[Checkpoint], keys: Mapping[str, Ed25519PublicKey]
    ) -> None:
        """After all rows: signatures, hashes at checkpointed seqs, truncation."""
        if self.result.problem:
            return
        last = self.result.last_seq if self.result.last_seq is not None else self.start_seq
        for cp in sorted(checkpoints, key=lambda c: c.seq):
            self.result.checkpoints += 1
            if not signature_ok(cp, keys):
                why = "unknown key " + cp.key_id if cp.key_id not in keys else "does not verify"
                return self._fail(cp.seq, "bad signature", f"checkpoint signature {why}")
            if cp.seq > last:
                return self._fail(
                    last + 1,
                    "chain cut",
                    f"a signed checkpoint covers seq "
                    f"{cp.seq} but the chain ends at seq {last}: entries "
                    f"{last + 1}..{cp.seq} were removed",
                )
            got = self.hashes_at.get(cp.seq)
            if got is not None and got != cp.entry_hash:
                return self._fail(
                    cp.seq,
                    "checkpoint mismatch",
                    "the entry_hash at this seq differs from the signed checkpoint",
                )


# --- the database ------------------------------------------------------------------------

_CHAIN_SQL = (
    "SELECT seq, prev_hash, entry_hash, convert_to(record, 'UTF8') FROM events "
    "WHERE category = %s ORDER BY seq"
)
# Every column must still equal its value in the hashed record; the first row where one does
# not, and which columns differ. Run by the server, in one pass.
_COLUMN_CHECKS = {
    "category": "e.category IS DISTINCT FROM r->>'category'",
    "seq": "e.seq IS DISTINCT FROM (r->>'seq')::bigint",
    "event_id": "e.event_id IS DISTINCT FROM (r->>'event_id')::uuid",
    "action": "e.action IS DISTINCT FROM r->>'action'",
    "outcome": "e.outcome IS DISTINCT FROM r->>'outcome'",
    "occurred_at": "e.occurred_at IS DISTINCT FROM (r->>'occurred_at')::timestamptz",
    "occurred_offset": "e.occurred_offset IS DISTINCT FROM (r->>'occurred_offset')::int",
    "recorded_at": "e.recorded_at IS DISTINCT FROM (r->>'recorded_at')::timestamptz",
    "clock_skew": "e.clock_skew IS DISTINCT FROM (r->>'clock_skew')::boolean",
    "actor": "e.actor IS DISTINCT FROM r->'actor'",
    "target": "e.target IS DISTINCT FROM r->'target'",
    "before": "e.before IS DISTINCT FROM nullif(r->'before', 'null'::jsonb)",
    "after": "e.after IS DISTINCT FROM nullif(r->'after', 'null'::jsonb)",
    "source_ip": "e.source_ip IS DISTINCT FROM (r->>'source_ip')::inet",
    "user_agent": "e.user_agent IS DISTINCT FROM r->>'user_agent'",
    "correlation_id": "e.correlation_id IS DISTINCT FROM r->>'correlation_id'",
    "details": "e.details IS DISTINCT FROM r->'details'",
}
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
    with conn.cursor() as cur:
        cur.execute(
            "SELECT category, seq, entry_hash, signed_at, key_id, signature "
            "FROM checkpoints WHERE category = %s ORDER BY seq",
            (category,),
        )
        return [
            Checkpoint(c, int(s), bytes(h), utc_text(t), k, bytes(sig))
            for c, s, h, t, k, sig in cur.fetchall()
        ]


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
    conn: Any, category: str, keys: Mapping[str, Ed25519PublicKey], batch: int = 20_000
) -> ChainResult:
    """Verify one category: chain, columns against the hashed record, and checkpoints."""
    checkpoints = db_checkpoints(conn, category)
    verifier = ChainVerifier(category, db_anchor(conn, category))
    verifier.watch = {cp.seq for cp in checkpoints}
    with conn.transaction(), conn.cursor(name=f"verify_{category}") as cur:
        cur.itersize = batch
        cur.execute(_CHAIN_SQL, (category,))
        feed = verifier.feed_stored
        for seq, prev, stored, record in cur:
            if not feed(seq, prev, stored, record):
                break
    verifier.check_checkpoints(checkpoints, keys)
    _check_columns(conn, category, verifier.result)
    verifier.result.problem = db_anchor_problem(conn, category, keys) or verifier.result.problem
    return verifier.result


def db_anchor_problem(
    conn: Any, category: str, keys: Mapping[str, Ed25519PublicKey]
) -> Problem | None:
    """The first purge anchor of ``category`` whose signature does not verify, if any."""
    with conn.cursor() as cur:
        cur.execute("SELECT seq, entry_hash, key_id, signature FROM purge_anchors "
                    "WHERE category = %s ORDER BY seq", (category,))  # fmt: skip
        anchors = cur.fetchall()
    conn.commit()
    for seq, entry, key_id, sig in anchors:
        msg = anchor_message(category, int(seq), bytes(entry), key_id or "")
        why = _anchor_flaw(keys.get(key_id or ""), key_id, sig, msg)
        if why:
            return Problem(category, int(seq), "bad anchor", f"the purge anchor's signature "
                           f"{why}: the purge up to seq {seq} is not vouched for")  # fmt: skip
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
    engine: Any, public_keys: Mapping[str, Ed25519PublicKey] | None = None
) -> VerifyReport:
    """Verify every category; ``public_keys`` pins the trusted keys (default: those in the db)."""
    from auditlog.model import Category

    report = VerifyReport()
    with engine.connect() as sa_conn:
        conn = sa_conn.connection.driver_connection
        keys = dict(public_keys) if public_keys is not None else db_public_keys(conn)
        conn.commit()
        for cat in Category:
            result = verify_category(conn, cat.value, keys)
            report.chains[cat.value] = result
            if result.problem:
                report.problems.append(result.problem)
    return report
