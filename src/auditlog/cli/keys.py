"""``auditlog checkpoint`` and ``auditlog keys export-public``: signing the chain heads."""

from __future__ import annotations

import typer

from auditlog.cli._common import log_session
from auditlog.cli._common import settings as _settings
from auditlog.integrity.keys import load_signer, public_pem

keys_app = typer.Typer(help="Checkpoint signing keys.", no_args_is_help=True)


def checkpoint() -> None:
    """Sign the head of every chain not yet covered by a checkpoint (run it periodically)."""
    with log_session(_settings()) as log:
        signed = log.checkpoint()
    for cp in signed:
        typer.echo(f"signed {cp.category} seq {cp.seq} {cp.entry_hash.hex()}")


@keys_app.command("export-public")
def keys_export_public() -> None:
    """Print the public key that verifies this installation's checkpoints (PEM)."""
    typer.echo(public_pem(load_signer(_settings()).public), nl=False)
