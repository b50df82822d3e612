"""``auditlog witness serve`` (an independent witness, C2SP tlog-witness) and
``auditlog witness key`` (print the witness's verifier key, creating the key if absent)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from auditlog.cli._common import errors
from auditlog.proofs.witness import load_witness_key, log_keys, serve, witness_vkey

witness_app = typer.Typer(
    help="An independent witness: cosigns a log's checkpoints only when they extend the last.",
    no_args_is_help=True,
)

StateOption = Annotated[
    Path, typer.Option("--state", help="the witness's own directory: its key and its state")
]
NameOption = Annotated[
    str, typer.Option("--name", help="the witness's key name, e.g. witness.example.com/w1")
]


@witness_app.command("serve")
def witness_serve(
    state: StateOption,
    name: NameOption,
    log: Annotated[
        list[str],
        typer.Option(
            "--log",
            help="a trusted log key (vkey, type 0x01) whose name is the origin it signs; repeat",
        ),
    ],
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port to listen on")] = 7380,
) -> None:
    """Run the witness (POST /add-checkpoint) until interrupted.

    It cosigns a checkpoint signed by a configured log key only when it extends, by a
    verified consistency proof, the last checkpoint it cosigned for that origin.
    """
    with errors():
        log_keys(log)  # a bad vkey is one line on stderr before anything starts
        serve(state, name, log, host=host, port=port)


@witness_app.command("key")
def witness_key(state: StateOption, name: NameOption) -> None:
    """Print the witness's verifier key (type 0x04), creating the key if absent.

    Give this key to the log (and to auditors); the key file is created with mode 0600.
    """
    with errors():
        typer.echo(witness_vkey(name, load_witness_key(state)))
