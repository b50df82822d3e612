"""``auditlog proof inclusion|consistency``: proofs an auditor can check without the database."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from auditlog.cli._common import engine_session, errors, fail
from auditlog.cli._common import settings as _settings
from auditlog.db.server import driver_errors
from auditlog.integrity.checkpoints import Checkpoint
from auditlog.integrity.database import db_checkpoints
from auditlog.integrity.kept import load_kept
from auditlog.proofs import prove

proof_app = typer.Typer(help="Merkle proofs (RFC 9162) against the signed checkpoints.")


@proof_app.command("inclusion")
def proof_inclusion(event_id: Annotated[str, typer.Argument(help="the event's id")]) -> None:
    """Print the event's inclusion proof (c2sp.org/tlog-proof) in its chain's newest signed
    tree, with that checkpoint's signed note. Its leaf is SHA-256(0x00 || entry_hash); the
    `extra` line carries the entry_hash (docs/integrity.md, sections 8 and 9)."""
    with (
        errors(),
        engine_session(_settings(), "reader") as engine,
        engine.connect() as sa_conn,
        driver_errors(),
    ):
        found = prove.inclusion(sa_conn.connection.driver_connection, event_id)
    typer.echo(found.text, nl=False)


def _pick(conn: object, spec: str, kept: list[Checkpoint] | None = None) -> Checkpoint:
    """A checkpoint named ``CATEGORY:SEQ``, ``CATEGORY:latest``, or kept in a file."""
    if kept is not None:
        notes = [c for c in kept if c.root is not None]
        if len(notes) != 1:
            fail(f"{spec} holds {len(notes)} version-3 checkpoints: keep one chain's per file")
        return notes[0]
    category, _, which = spec.partition(":")
    chain = [c for c in db_checkpoints(conn, category) if c.root is not None]
    if not chain:
        fail(f"{category!r} has no version-3 checkpoint")
    if which in ("", "latest"):
        return chain[-1]
    if not which.isdigit():
        fail(f"{spec!r}: name a checkpoint as CATEGORY:SEQ, CATEGORY:latest or a kept file")
    match = [c for c in chain if c.seq == int(which)]
    if not match:
        fail(f"no version-3 checkpoint of {category} at seq {which}")
    return match[0]


@proof_app.command("consistency")
def proof_consistency(
    from_: Annotated[
        str, typer.Option("--from", help="CATEGORY:SEQ, or a file with a kept checkpoint note")
    ],
    to: Annotated[str, typer.Option("--to", help="CATEGORY:SEQ or CATEGORY:latest")] = "",
) -> None:
    """Print the consistency proof from one signed tree to a later one (the tlog-witness
    form: `old N`, the hashes, the newer checkpoint note)."""
    with errors(), engine_session(_settings(), "reader") as engine:
        path = Path(from_)
        kept = load_kept(path) if path.exists() else None
        with engine.connect() as sa_conn, driver_errors():
            conn = sa_conn.connection.driver_connection
            old = _pick(conn, from_, kept)
            new = _pick(conn, to or f"{old.category}:latest")
            text = prove.consistency(conn, old, new)
    typer.echo(text, nl=False)
