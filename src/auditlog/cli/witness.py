"""``auditlog witness serve`` (an independent witness, C2SP tlog-witness) and
``auditlog witness key`` (print the witness's verifier key, creating the key if absent);
the log's side: ``auditlog witness submit`` (send every new checkpoint to the configured
witnesses) and ``auditlog witness status`` (how far each witness lags)."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from auditlog.cli._common import engine_session, errors, fail
from auditlog.cli._common import settings as _settings
from auditlog.proofs.submit import Submitter, configured_witnesses, witness_status
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


@witness_app.command("submit")
def witness_submit(
    once: Annotated[
        bool, typer.Option(help="one pass to every witness now (back-off ignored), then exit")
    ] = False,
) -> None:
    """Submit every new version-3 checkpoint to every configured witness ([witness] servers).

    Per witness and chain it keeps the size the witness cosigned, sends each new checkpoint
    with the consistency proof from there, stores each verified cosignature, and on an error
    records it and retries with back-off. Runs until stopped (SIGTERM / Ctrl-C) unless
    --once; with --once the exit code is 1 when any submission failed.
    """
    config = _settings()
    with errors(config):
        targets = configured_witnesses(config.witness)
    if not targets:
        fail("no witness is configured: set [witness] servers (AUDITLOG_WITNESS_SERVERS)")
    with (
        errors(config),
        engine_session(config, "stream") as engine,
        Submitter(engine, targets, config.witness) as submitter,
    ):
        if not once:
            _run_until_stopped(submitter)
            return
        outcomes = submitter.run_pass(force=True)
        for outcome in outcomes:
            typer.echo(outcome.line(), err=outcome.error is not None)
    raise typer.Exit(1 if any(o.error for o in outcomes) else 0)


def _run_until_stopped(submitter: Submitter) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        submitter.run(stop)
    except KeyboardInterrupt:
        stop.set()


@witness_app.command("status")
def witness_status_command() -> None:
    """Per configured witness and chain: the newest checkpoint, the last one it cosigned,
    the lag (seq and seconds) and the last error."""
    config = _settings()
    with errors(config):
        targets = configured_witnesses(config.witness)
    if not targets:
        fail("no witness is configured: set [witness] servers (AUDITLOG_WITNESS_SERVERS)")
    with errors(config), engine_session(config, "reader") as engine:
        lags = witness_status(engine, [t.name for t in targets])
    for lag in lags:
        typer.echo(lag.line())
    if not lags:
        typer.echo("no version-3 checkpoint yet: nothing to witness")
