"""What the Integrity page shows: a verification and its frames, the newest signed checkpoint
of each category, and the public keys that check them.

    verify_as(engine, role)           -> VerifyReport (the role must allow integrity.verify)
    chains_frame(report), problems_frame(report)                                  pure
    latest_checkpoints(engine)        -> frame (category, seq, signed_at, entry_hash, key_id)
    public_keys(engine, settings)     -> [(key_id, PEM, signs new checkpoints)], current first

All read as the reader role.
"""

from __future__ import annotations

from typing import Any

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from auditlog import access
from auditlog.access import Role
from auditlog.integrity.database import verify_database
from auditlog.integrity.keys import key_id_of, load_public_key, load_signer, public_pem
from auditlog.integrity.verifier import VerifyReport
from auditlog.settings import Settings

LATEST_CHECKPOINTS = sa.text(
    "SELECT DISTINCT ON (category) category, seq, signed_at, entry_hash, key_id "
    "FROM checkpoints ORDER BY category, seq DESC"
)
KEYS = sa.text("SELECT key_id, public_key FROM signing_keys ORDER BY created_at")
CHECKPOINT_SCHEMA: dict[str, Any] = {
    "category": pl.String,
    "seq": pl.Int64,
    "signed_at": pl.Datetime("us", "UTC"),
    "entry_hash": pl.String,
    "key_id": pl.String,
}
PROBLEM_SCHEMA: dict[str, Any] = {
    "category": pl.String,
    "seq": pl.Int64,
    "kind": pl.String,
    "message": pl.String,
}


def verify_as(engine: Engine, role: Role | None) -> VerifyReport:
    """:func:`verify_database` for a caller whose ``role`` may verify integrity.

    Raises
    ------
    PermissionDenied
        ``role`` may not use ``integrity.verify``.
    """
    access.require(role, "integrity.verify")
    return verify_database(engine)


def chains_frame(report: VerifyReport) -> pl.DataFrame:
    """One row per category: rows, seq range, checkpoints checked, and its problem if any."""
    rows = [
        {
            "category": c.category,
            "rows": c.rows,
            "first seq": c.first_seq,
            "last seq": c.last_seq,
            "checkpoints": c.checkpoints,
            "state": "intact" if c.problem is None else f"BROKEN: {c.problem.kind}",
        }
        for c in report.chains.values()
    ]
    return pl.DataFrame(rows)


def problems_frame(report: VerifyReport) -> pl.DataFrame:
    """The first problem of each broken chain: category, seq, kind, message."""
    return pl.DataFrame([vars(p) for p in report.problems], schema=PROBLEM_SCHEMA)


def latest_checkpoints(engine: Engine) -> pl.DataFrame:
    """The newest signed checkpoint of each category (entry hash as hex)."""
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(LATEST_CHECKPOINTS).mappings()]
    rows = [{**r, "entry_hash": bytes(r["entry_hash"]).hex()} for r in rows]
    return pl.DataFrame(rows, schema=CHECKPOINT_SCHEMA)


def _current_pem(settings: Settings) -> str | None:
    """The installation's signing key as PEM; the key file is only read, never created."""
    try:
        if settings.store.signing_key or settings.store.key_path.is_file():
            return public_pem(load_signer(settings).public)
    except (OSError, ValueError):
        return None
    return None


def public_keys(engine: Engine, settings: Settings) -> list[tuple[str, str, bool]]:
    """(key_id, PEM, is the installation's current signing key), current first.

    When the signer's key is not readable, the keys registered in the database
    (``signing_keys``) stand in; a current key not registered yet is listed too.
    """
    current = _current_pem(settings)
    with engine.connect() as conn:
        stored = [(k, bytes(pem).decode("ascii")) for k, pem in conn.execute(KEYS)]
    keys = [(k, pem, pem.strip() == (current or "").strip()) for k, pem in stored]
    if current and not any(c for _, _, c in keys):
        keys.append((key_id_of(load_public_key(current)), current, True))
    return sorted(keys, key=lambda k: not k[2])
