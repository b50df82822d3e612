"""Stamping checkpoints: the configured RFC 3161 time-stamp authority (TSA) stamps every
version-3 checkpoint that has no token yet (``auditlog timestamp``, docs/timestamps.md).

A round reads the waiting checkpoints, oldest first, and for each asks the TSA to stamp
SHA-256 of its note text (:meth:`Checkpoint.message`), verifies the token against the
configured trust anchors and stores it in ``checkpoint_timestamps``, one transaction per
token, so a token is stored whole or not at all. The first failure ends the round: the error
goes to ``timestamp_state`` and the checkpoints left wait for the next round, which retries
them. A token that does not verify is never stored.

Errors: :class:`~auditlog.errors.ConfigError` for a missing URL or anchor file; the TSA's own
failures (:class:`~auditlog.errors.TimestampError` and subclasses) are caught per round,
recorded and returned as :attr:`Round.error`, never raised by :func:`stamp_round`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from cryptography import x509
from sqlalchemy.dialects.postgresql import distinct_on, insert
from sqlalchemy.engine import Connection, Engine

from auditlog.db.tables import checkpoint_timestamps as stamps
from auditlog.db.tables import checkpoints
from auditlog.db.tables import timestamp_state as state
from auditlog.errors import ConfigError, DatabaseUnavailable, QueryTimeout, TimestampError
from auditlog.integrity.checkpoints import Checkpoint
from auditlog.model import utc_text
from auditlog.proofs.timestamp import Stamp, load_anchors, request_timestamp, verify_timestamp
from auditlog.settings import TimestampSettings

CHECKPOINT_COLUMNS = (
    *(checkpoints.c.category, checkpoints.c.seq, checkpoints.c.entry_hash),
    *(checkpoints.c.signed_at, checkpoints.c.key_id, checkpoints.c.signature),
    *(checkpoints.c.version, checkpoints.c.prev_hash, checkpoints.c.count),
    *(checkpoints.c.origin, checkpoints.c.root_hash),
)
"""The checkpoint columns :func:`checkpoint_of` reads, in its order."""


def checkpoint_of(row: Sequence[Any]) -> Checkpoint:
    """A :class:`Checkpoint` from a row of :data:`CHECKPOINT_COLUMNS` (as stored)."""
    cat, seq, head, at, key_id, sig, version, prev, count, origin, root = row
    return Checkpoint(
        cat, int(seq), bytes(head), utc_text(at), key_id, bytes(sig), int(version),
        None if prev is None else bytes(prev), None if count is None else int(count),
        origin, None if root is None else bytes(root),
    )  # fmt: skip


@dataclass(frozen=True)
class Stamper:
    """Which TSA stamps, the anchors its tokens must chain to, and how long to wait for it."""

    url: str
    anchors: tuple[x509.Certificate, ...]
    timeout: float = 10.0

    @classmethod
    def of(cls, settings: TimestampSettings) -> Stamper:
        """The stamper the ``[timestamps]`` settings configure.

        Raises
        ------
        ConfigError
            ``timestamps.url`` or ``timestamps.anchor`` is unset, or the anchor file is
            unreadable or holds no certificate.
        """
        if settings.url is None:
            raise ConfigError(
                "setting timestamps.url (AUDITLOG_TIMESTAMPS_URL) is unset: give the "
                "time-stamp authority's URL"
            )
        if settings.anchor is None:
            raise ConfigError(
                "setting timestamps.anchor (AUDITLOG_TIMESTAMPS_ANCHOR) is unset: give the PEM "
                "file of the TSA's root CA, so that every token is verified before it is stored"
            )
        anchors = tuple(load_anchors(settings.anchor))
        return cls(settings.url, anchors, settings.timeout_seconds)

    def stamp(self, cp: Checkpoint) -> tuple[bytes, Stamp]:
        """A verified token for ``cp``'s note text (raises a TimestampError otherwise)."""
        message = cp.message()
        token = request_timestamp(self.url, message, timeout=self.timeout)
        return token, verify_timestamp(token, message, self.anchors)


@dataclass(frozen=True)
class Round:
    """What one round did: tokens stored, checkpoints still waiting (-1: unknown, the database
    was out of reach), the error that ended it."""

    stamped: int
    waiting: int
    error: str | None = None


def waiting(conn: Connection, limit: int | None = None) -> list[tuple[int, Checkpoint]]:
    """(id, checkpoint) of every version-3 checkpoint without a token, oldest first."""
    stamped = sa.exists().where(stamps.c.checkpoint_id == checkpoints.c.id)
    query = (
        sa.select(checkpoints.c.id, *CHECKPOINT_COLUMNS)
        .where(checkpoints.c.version == 3, ~stamped)
        .order_by(checkpoints.c.id)
        .limit(limit)
    )
    return [(int(row[0]), checkpoint_of(row[1:])) for row in conn.execute(query)]


def count_waiting(conn: Connection) -> int:
    """How many version-3 checkpoints have no token."""
    stamped = sa.exists().where(stamps.c.checkpoint_id == checkpoints.c.id)
    query = sa.select(sa.func.count()).where(checkpoints.c.version == 3, ~stamped)
    return int(conn.scalar(query) or 0)


def stamp_round(engine: Engine, stamper: Stamper, limit: int | None = None) -> Round:
    """Stamp the waiting checkpoints (at most ``limit``); stop at the first failure.

    Parameters
    ----------
    engine
        An engine of the stream role (``make_engine(url, "stream")``).
    stamper
        The TSA and its trust anchors (:meth:`Stamper.of`).
    limit
        At most this many checkpoints this round (None: all that wait).

    Returns
    -------
    Round
        Tokens stored, checkpoints still waiting, and the TSA's error if one ended the round
        (also recorded in ``timestamp_state``).
    """
    with engine.connect() as conn:
        todo = waiting(conn, limit)
    done = 0
    for checkpoint_id, cp in todo:
        try:
            token, stamp = stamper.stamp(cp)
        except TimestampError as exc:
            error = f"{cp.name()}: {exc}"
            _record_failure(engine, stamper.url, error)
            return Round(done, _waiting(engine), error)
        done += _store(engine, stamper.url, checkpoint_id, token, stamp.gen_time)
    _record_round(engine, stamper.url)
    return Round(done, _waiting(engine))


def _waiting(engine: Engine) -> int:
    with engine.connect() as conn:
        return count_waiting(conn)


def _store(engine: Engine, url: str, checkpoint_id: int, token: bytes, gen_time: datetime) -> int:
    """Keep one token and the TSA's success, in one transaction; 0 if another worker won."""
    row = {"checkpoint_id": checkpoint_id, "tsa_url": url, "token": token, "gen_time": gen_time}
    with engine.begin() as conn:
        statement = insert(stamps).values(row).on_conflict_do_nothing().returning(stamps.c.id)
        added = len(conn.execute(statement).all())
        _upsert(conn, url, failures=0, last_success_at=sa.func.now(), last_round_at=sa.func.now())
    return int(added)


def _record_failure(engine: Engine, url: str, error: str) -> None:
    """The round's error and one more consecutive failure, for ``--status`` to show."""
    with engine.begin() as conn:
        _upsert(
            conn, url, failures=state.c.failures + 1, last_error=error,
            last_error_at=sa.func.now(), last_round_at=sa.func.now(),
        )  # fmt: skip


def _record_round(engine: Engine, url: str) -> None:
    """A round that ended without an error: nothing is failing now."""
    with engine.begin() as conn:
        _upsert(conn, url, failures=0, last_round_at=sa.func.now())


def _upsert(conn: Connection, url: str, **values: Any) -> None:
    """Set ``values`` on the TSA's state row, creating it. ``failures`` may be an expression
    over the existing row (``failures + 1``); a new row starts it at 1 then."""
    first = dict(values)
    if not isinstance(first.get("failures", 0), int):
        first["failures"] = 1
    statement = insert(state).values(tsa_url=url, **first)
    conn.execute(statement.on_conflict_do_update(index_elements=[state.c.tsa_url], set_=values))


def run_stamper(
    engine: Engine,
    stamper: Stamper,
    poll_seconds: float,
    stop: threading.Event,
    on_round: Callable[[Round], None] | None = None,
) -> None:
    """Run rounds every ``poll_seconds`` until ``stop`` is set; a failed round is retried at
    the next. ``on_round`` sees each round's outcome (the CLI prints it). The database out of
    reach is such a failure too (it cannot be recorded there: only ``on_round`` sees it)."""
    while not stop.is_set():
        try:
            outcome = stamp_round(engine, stamper)
        except (DatabaseUnavailable, QueryTimeout) as exc:
            outcome = Round(0, -1, f"the database: {exc}")
        if on_round is not None:
            on_round(outcome)
        stop.wait(poll_seconds)


# --- status --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TsaState:
    """What the worker last saw of one TSA (a row of ``timestamp_state``)."""

    tsa_url: str
    failures: int
    last_error: str | None
    last_error_at: datetime | None
    last_success_at: datetime | None
    last_round_at: datetime | None


@dataclass(frozen=True)
class ChainStamp:
    """The newest stamped checkpoint of a chain, with the genTime stored beside its token."""

    category: str
    seq: int
    count: int | None
    gen_time: datetime
    tsa_url: str


@dataclass(frozen=True)
class StampStatus:
    """Tokens stored, checkpoints waiting, each TSA's state, each chain's newest stamp."""

    tokens: int
    waiting: int
    tsas: list[TsaState]
    newest: list[ChainStamp]


def stamp_status(engine: Engine) -> StampStatus:
    """The stamping state as stored (tokens are not verified here: ``auditlog verify
    --tsa-anchor`` does that)."""
    with engine.connect() as conn:
        tokens = int(conn.scalar(sa.select(sa.func.count()).select_from(stamps)) or 0)
        tsas = [TsaState(*row) for row in conn.execute(sa.select(state).order_by(state.c.tsa_url))]
        return StampStatus(tokens, count_waiting(conn), tsas, _newest(conn))


def _newest(conn: Connection) -> list[ChainStamp]:
    """Per category, the stamped checkpoint of the highest seq (its latest token)."""
    query = (
        sa.select(
            checkpoints.c.category,
            checkpoints.c.seq,
            checkpoints.c.count,
            stamps.c.gen_time,
            stamps.c.tsa_url,
        )
        .join(stamps, stamps.c.checkpoint_id == checkpoints.c.id)
        .ext(distinct_on(checkpoints.c.category))
        .order_by(checkpoints.c.category, checkpoints.c.seq.desc(), stamps.c.gen_time.desc())
    )
    return [ChainStamp(c, int(s), n, t, u) for c, s, n, t, u in conn.execute(query)]
