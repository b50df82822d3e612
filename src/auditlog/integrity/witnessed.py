"""Are the chains witnessed? The cosignature check of ``auditlog verify --witness-key``.

    witness_keys(texts)                          -> [VerifierKey] (type 0x04), deduplicated
    resolve_quorum(given, configured, keys)      -> K
    check_witnessed(engine, keys, k, categories) -> ([Witnessed], [Problem])

The newest version-3 checkpoint of each chain must carry valid ``cosignature/v1``
cosignatures (c2sp.org/tlog-cosignature) from at least K of the given witness keys. A
cosignature counts only when it verifies, with the pinned key, over the checkpoint's note
text as rebuilt from the checkpoint's fields; what the database stores beside it (names,
times) is not believed. Otherwise the chain gets a finding of kind ``not witnessed``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Engine

from auditlog.db.server import driver_errors
from auditlog.errors import ConfigError, NoteError
from auditlog.integrity.checkpoints import Checkpoint
from auditlog.integrity.verifier import Problem
from auditlog.model import utc_text
from auditlog.proofs.note import (
    ALG_COSIGNATURE,
    NoteSignature,
    VerifierKey,
    cosignature_time,
    parse_vkey,
)

NOT_WITNESSED = "not witnessed"


def witness_keys(texts: Iterable[str]) -> list[VerifierKey]:
    """The witness verifier keys given (``name+id+base64``, type 0x04), each once.

    Raises
    ------
    NoteError
        Naming the key (``--witness-key N``) that is malformed or not a cosignature key.
    """
    out: list[VerifierKey] = []
    for n, text in enumerate(texts, 1):
        try:
            key = parse_vkey(text.strip())
        except NoteError as exc:
            raise NoteError(f"--witness-key {n}", f"{exc.field}: {exc.reason}") from None
        if key.alg != ALG_COSIGNATURE:
            raise NoteError(f"--witness-key {n}", "is not a witness cosignature key (type 0x04)")
        if key not in out:
            out.append(key)
    return out


def resolve_quorum(given: int | None, configured: int, keys: int) -> int:
    """K: ``--quorum`` when given, else the configured quorum (``[witness] quorum``, 0 =
    none set), else every key given. Raises ConfigError when K is not in 1..keys."""
    k = given if given is not None else (configured or keys)
    if not 1 <= k <= keys:
        raise ConfigError(
            f"--quorum {k}: needs between 1 and the {keys} witness key(s) given; "
            "give more --witness-key or a smaller --quorum"
        )
    return k


@dataclass(frozen=True)
class Witnessed:
    """One chain: its newest version-3 checkpoint and the witnesses whose cosignature of it
    verifies; the newest checkpoint with a quorum, and when its last counted cosignature
    was made."""

    category: str
    newest: Checkpoint | None
    valid: tuple[str, ...]
    cosigned: Checkpoint | None
    cosigned_at: datetime | None

    def line(self, quorum: int, keys: int) -> str:
        """One line for ``auditlog verify``."""
        state = "ok  " if self.newest is not None and len(self.valid) >= quorum else "FAIL"
        if self.cosigned is None or self.cosigned_at is None:
            last = f"no checkpoint carries {quorum} of the {keys} witness keys' cosignatures"
        else:
            last = f"newest cosigned {self.cosigned.name()}, cosigned {utc_text(self.cosigned_at)}"
        return f"{state} witnessed {self.category} ({quorum} of {keys}): {last}"


def _rows(conn: Any, category: str) -> list[tuple[Checkpoint, list[NoteSignature]]]:
    """The category's version-3 checkpoints, newest first, each with its stored
    cosignatures."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT c.id, c.seq, c.entry_hash, c.signed_at, c.key_id, c.signature, c.prev_hash,"
            " c.count, c.origin, c.root_hash, w.witness, w.key_hash, w.signature"
            " FROM checkpoints c LEFT JOIN witness_cosignatures w ON w.checkpoint_id = c.id"
            " WHERE c.category = %s AND c.version = 3 ORDER BY c.seq DESC, c.id DESC",
            (category,),
        )
        rows = cur.fetchall()
    out: dict[int, tuple[Checkpoint, list[NoteSignature]]] = {}
    for i, seq, head, at, key_id, sig, prev, count, origin, root, name, kh, cosig in rows:
        if i not in out:
            cp = Checkpoint(
                category, int(seq), bytes(head), utc_text(at), key_id, bytes(sig), 3,
                bytes(prev), int(count), origin, bytes(root),
            )  # fmt: skip
            out[i] = (cp, [])
        if name is not None:
            out[i][1].append(NoteSignature(name, bytes(kh), bytes(cosig)))
    return list(out.values())


def valid_cosignatures(
    cp: Checkpoint, sigs: Sequence[NoteSignature], keys: Sequence[VerifierKey]
) -> dict[VerifierKey, int]:
    """Key -> cosignature time, for each key with a valid cosignature of ``cp``."""
    text = cp.message().decode("utf-8")
    out: dict[VerifierKey, int] = {}
    for key in keys:
        for sig in sigs:
            stamp = cosignature_time(text, sig, key.name, key.public)
            if stamp is not None and stamp > 0:  # tlog-witness: the time is never zero
                out[key] = stamp
                break
    return out


def _chain(conn: Any, category: str, keys: Sequence[VerifierKey], quorum: int) -> Witnessed:
    rows = _rows(conn, category)
    newest_valid: dict[VerifierKey, int] = {}
    cosigned: tuple[Checkpoint, datetime] | None = None
    for n, (cp, sigs) in enumerate(rows):
        valid = valid_cosignatures(cp, sigs, keys)
        if n == 0:
            newest_valid = valid
        if len({k.name for k in valid}) >= quorum:  # witnesses, not keys: a rotation is one
            cosigned = (cp, datetime.fromtimestamp(max(valid.values()), UTC))
            break
    names = tuple(sorted({k.name for k in newest_valid}))
    newest = rows[0][0] if rows else None
    return Witnessed(
        category,
        newest,
        names,
        cosigned[0] if cosigned else None,
        cosigned[1] if cosigned else None,
    )


def check_witnessed(
    engine: Engine, keys: Sequence[VerifierKey], quorum: int, categories: Iterable[str]
) -> tuple[list[Witnessed], list[Problem]]:
    """Each chain in ``categories`` (those with rows): witnessed by ``quorum`` of ``keys``?"""
    found, problems = [], []
    with engine.connect() as sa_conn, driver_errors():
        conn: Any = sa_conn.connection.driver_connection
        for category in categories:
            chain = _chain(conn, category, keys, quorum)
            found.append(chain)
            problem = _problem(chain, quorum, len(keys))
            if problem is not None:
                problems.append(problem)
        conn.rollback()
    return found, problems


def _problem(chain: Witnessed, quorum: int, keys: int) -> Problem | None:
    if chain.newest is None:
        return Problem(
            chain.category, None, NOT_WITNESSED,
            "the chain has no version-3 checkpoint, so no witness could cosign it",
        )  # fmt: skip
    if len(chain.valid) >= quorum:
        return None
    by = f" (from {', '.join(chain.valid)})" if chain.valid else ""
    return Problem(
        chain.category, chain.newest.seq, NOT_WITNESSED,
        f"{chain.newest.name()} carries {len(chain.valid)} valid cosignature(s){by} of the "
        f"{keys} witness key(s) given; {quorum} needed",
    )  # fmt: skip
