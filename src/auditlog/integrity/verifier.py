"""The pure chain verifier: rows in seq order in, problems named by seq and kind out."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from auditlog.integrity.checkpoints import Checkpoint, signature_ok
from auditlog.integrity.rule import ZERO_HASH, chain_hash, record_bytes, record_seq
from auditlog.settings import Settings

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
        self.last_checkpoint: Checkpoint | None = None  # the newest that checked out

    def _fail(self, seq: int | None, kind: str, message: str) -> None:
        self.result.problem = Problem(self.result.category, seq, kind, message)

    def _reordered_from(self, rec: dict[str, Any], prev: bytes, stored: bytes) -> int | None:
        seq = rec["seq"]
        for delta in range(1, 65):
            for cand in (seq - delta, seq + delta):
                if cand >= 1 and chain_hash(prev, record_bytes({**rec, "seq": cand})) == stored:
                    return int(cand)
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
        """After all rows: signatures, the checkpoint chain, hashes at checkpointed seqs,
        truncation. ``checkpoints`` come in chain order (seq, then id, as stored)."""
        if self.result.problem:
            return
        last = self.result.last_seq if self.result.last_seq is not None else self.start_seq
        links = _CheckpointLinks()
        ordered = sorted(checkpoints, key=lambda c: c.seq)
        self.result.checkpoints = len(ordered)
        for cp in ordered:
            if not signature_ok(cp, keys):
                why = "unknown key " + cp.key_id if cp.key_id not in keys else "does not verify"
                return self._fail(cp.seq, "bad signature", f"checkpoint signature {why}")
        moved = _reordered(ordered)
        if moved is not None:
            return self._fail(
                moved[1].seq,
                "checkpoints reordered",
                f"{moved[1].name()} comes after {moved[0].name()} in seq order: the "
                "checkpoints' seqs no longer follow their signed order",
            )
        for cp in ordered:
            broken = links.follow(cp)
            if broken is not None:
                return self._fail(cp.seq, *broken)
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
            self.last_checkpoint = cp

    def check_unsigned_span(
        self, policy: SpanPolicy, first_unsigned_at: datetime | None, now: datetime
    ) -> None:
        """After :meth:`check_checkpoints`: the rows after the last checkpoint (the unsigned
        span) must be at most ``policy.every`` and unsigned for at most ``policy.seconds`` plus
        ``policy.slack`` (counted from the later of the last checkpoint's signed_at and the
        first unsigned row's recorded_at). ``first_unsigned_at`` is that row's recorded_at."""
        r = self.result
        cp = self.last_checkpoint
        covered = max(cp.seq if cp else 0, self.start_seq)
        if r.problem or r.last_seq is None or r.last_seq <= covered:
            return
        n = r.last_seq - covered
        since = first_unsigned_at
        if cp is not None:
            signed = datetime.fromisoformat(cp.signed_at)
            since = signed if since is None else max(since, signed)
        waited = (now - since).total_seconds() if since is not None else 0.0
        limit = policy.seconds + policy.slack
        if n > policy.every:
            why = f"{n} rows, more than checkpoint_every = {policy.every}"
        elif waited > limit:
            why = (
                f"unsigned for {_duration(waited)}, longer than checkpoint_seconds + "
                f"checkpoint_slack_seconds = {limit} s"
            )
        else:
            return
        last = f"the last checkpoint is at seq {cp.seq}" if cp else "there is no checkpoint"
        self._fail(
            covered + 1,
            "unsigned span",
            f"seq {covered + 1}..{r.last_seq} are signed by no checkpoint ({last}; {why}): "
            "newer entries and the checkpoints covering them may have been removed; sign the "
            "heads (`auditlog checkpoint`, from a timer for idle chains) and compare with a "
            "checkpoint kept outside the database (`auditlog verify --since FILE`)",
        )


@dataclass(frozen=True)
class SpanPolicy:
    """How long a chain's tail may stay unsigned before verify reports an unsigned span."""

    every: int = 1000
    seconds: int = 60
    slack: int = 300

    @classmethod
    def of(cls, settings: Settings) -> SpanPolicy:
        st = settings.store
        return cls(st.checkpoint_every, st.checkpoint_seconds, st.checkpoint_slack_seconds)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _reordered(ordered: list[Checkpoint]) -> tuple[Checkpoint, Checkpoint] | None:
    """The first version-2 checkpoint whose count is below one before it in seq order, and
    that one."""
    top: Checkpoint | None = None
    for cp in ordered:
        if cp.count is None:
            continue
        if top is not None and cp.count < (top.count or 0):
            return top, cp
        top = cp if top is None or cp.count > (top.count or 0) else top
    return None


class _CheckpointLinks:
    """Follows a category's checkpoints in seq order: version-2 ones must carry the count
    and prev_hash that continue the chain (docs/integrity.md, section 3)."""

    def __init__(self) -> None:
        self.position = 0
        self.count = 0
        self.hash = ZERO_HASH
        self.prev: Checkpoint | None = None
        self.chained = False

    def follow(self, cp: Checkpoint) -> tuple[str, str] | None:
        """(kind, message) when ``cp`` does not continue the chain, else None."""
        self.position += 1
        broken = self._v1(cp) if cp.version == 1 else self._v2(cp)
        self.prev, self.hash = cp, cp.hash()
        self.count = cp.count if cp.count is not None else self.position
        return broken

    def _after(self) -> str:
        return "the first checkpoint" if self.prev is None else f"after {self.prev.name()}"

    def _v1(self, cp: Checkpoint) -> tuple[str, str] | None:
        if not self.chained:
            return None
        return (
            "checkpoint chain broken",
            f"{cp.name()} is a version-1 (unchained) checkpoint {self._after()}, which is "
            "version 2: the log no longer writes version 1, so it was inserted afterwards",
        )

    def _v2(self, cp: Checkpoint) -> tuple[str, str] | None:
        self.chained = True
        count = cp.count or 0
        if count > self.count + 1:
            gap = f"count {self.count + 1}" + (f"..{count - 1}" if count > self.count + 2 else "")
            return (
                "checkpoint missing",
                f"{cp.name()} comes {self._after()}: checkpoint {gap} of the chain was removed",
            )
        if count <= self.count:
            return (
                "checkpoints reordered",
                f"{cp.name()} comes {self._after()} (count {self.count}) in seq order: "
                "the checkpoints' seqs no longer follow their signed order",
            )
        if cp.prev_hash != self.hash:
            return (
                "checkpoint chain broken",
                f"the prev_hash of {cp.name()} is not the hash of the checkpoint before it "
                f"({'none' if self.prev is None else self.prev.name()}): a checkpoint was "
                "replaced or removed",
            )
        return None
