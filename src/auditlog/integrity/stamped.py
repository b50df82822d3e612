"""The time-stamp check of ``auditlog verify --tsa-anchor PEM`` (docs/integrity.md, section 10).

Every stored token is checked against the checkpoint its row names: the TSA's signature, the
message imprint against SHA-256 of the checkpoint's note text (recomputed from the checkpoint's
fields, never read from a stored copy), the signer's chain to the given anchors
(:func:`auditlog.proofs.timestamp.verify_timestamp`), and the stored ``gen_time`` against the
token's own genTime. A token that fails is a problem of its own kind, ``bad time-stamp``: a
token moved to another checkpoint (an attacker with the database swapping tokens), a token from
a TSA not under the anchors, or a damaged token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from cryptography import x509
from sqlalchemy.engine import Engine

from auditlog.db.tables import checkpoint_timestamps as stamps
from auditlog.db.tables import checkpoints
from auditlog.errors import TimestampInvalid
from auditlog.integrity.checkpoints import Checkpoint
from auditlog.integrity.verifier import Problem
from auditlog.proofs.stamping import CHECKPOINT_COLUMNS, checkpoint_of
from auditlog.proofs.timestamp import verify_timestamp

KIND = "bad time-stamp"
BATCH = 500  # tokens are a few kB each: read them in slices, never all at once


@dataclass(frozen=True)
class ChainTime:
    """The newest stamped checkpoint of a chain and the time its token attests.

    ``tsa`` is the signer certificate's subject when the token was verified, else None (the
    time is then the stored, unchecked ``gen_time``).
    """

    category: str
    seq: int
    count: int | None
    gen_time: datetime
    tsa_url: str
    tsa: str | None


@dataclass
class StampCheck:
    """The outcome: tokens read, whether they were checked, problems, newest per chain."""

    checked: bool
    tokens: int = 0
    problems: list[Problem] = field(default_factory=list)
    newest: dict[str, ChainTime] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_stamps(engine: Engine, anchors: Sequence[x509.Certificate] | None) -> StampCheck:
    """Check every stored time-stamp token against its checkpoint and ``anchors``.

    Parameters
    ----------
    engine
        Any engine that may read the checkpoints and their tokens (the reader's).
    anchors
        The trusted root certificates of the TSA (:func:`~auditlog.proofs.timestamp.
        load_anchors`); None counts the tokens and reports their stored times, unchecked.

    Returns
    -------
    StampCheck
        One ``bad time-stamp`` problem per failing token (category and seq of the checkpoint
        its row names), and per chain the newest checkpoint with a good (or, unchecked, any)
        token.
    """
    result = StampCheck(checked=anchors is not None)
    query = (
        sa.select(stamps.c.id, stamps.c.checkpoint_id, stamps.c.tsa_url, stamps.c.token)
        .add_columns(stamps.c.gen_time, checkpoints.c.id, *CHECKPOINT_COLUMNS)
        .outerjoin(checkpoints, checkpoints.c.id == stamps.c.checkpoint_id)
        .order_by(stamps.c.id)
    )
    with engine.connect() as conn:
        for row in conn.execution_options(yield_per=BATCH).execute(query):
            result.tokens += 1
            _check_row(result, tuple(row), anchors)
    return result


def _check_row(
    result: StampCheck, row: tuple[Any, ...], anchors: Sequence[x509.Certificate] | None
) -> None:
    """Check one token row; record its problem, or its chain's newest time."""
    token_id, checkpoint_id, url, token, stored_time, found = row[:6]
    if found is None:
        why = f"token {token_id} names checkpoint id {checkpoint_id}, which does not exist"
        result.problems.append(Problem("checkpoint_timestamps", None, KIND, why))
        return
    cp = checkpoint_of(row[6:])
    tsa = None
    if anchors is not None:
        try:
            stamp = verify_timestamp(bytes(token), cp.message(), anchors)
        except TimestampInvalid as exc:
            result.problems.append(_problem(cp, token_id, url, exc.reason))
            return
        if stamp.gen_time != stored_time:
            why = f"its stored gen_time {stored_time.isoformat()} is not the token's genTime"
            result.problems.append(_problem(cp, token_id, url, f"{why} {stamp.gen_time}"))
            return
        tsa = stamp.tsa
    _keep_newest(result, ChainTime(cp.category, cp.seq, cp.count, stored_time, url, tsa))


def _problem(cp: Checkpoint, token_id: int, url: str, reason: str) -> Problem:
    why = (
        f"the time-stamp token {token_id} (from {url}) does not prove {cp.name()}: {reason}; "
        "the checkpoint's time is not vouched for by the TSA"
    )
    return Problem(cp.category, cp.seq, KIND, why)


def _keep_newest(result: StampCheck, got: ChainTime) -> None:
    kept = result.newest.get(got.category)
    if kept is None or (got.seq, got.gen_time) > (kept.seq, kept.gen_time):
        result.newest[got.category] = got
