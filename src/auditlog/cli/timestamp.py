"""``auditlog timestamp``: have the configured RFC 3161 time-stamp authority stamp every
version-3 checkpoint not yet stamped (a worker; ``--once`` for one round; ``--status`` shows
the state and the last error). Settings: ``[timestamps]`` (docs/configuration.md)."""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Annotated

import typer

from auditlog.cli._common import engine_session, errors
from auditlog.cli._common import settings as _settings
from auditlog.model import utc_text
from auditlog.proofs.stamping import (
    Round,
    Stamper,
    StampStatus,
    TsaState,
    run_stamper,
    stamp_round,
    stamp_status,
)


def timestamp(
    once: Annotated[
        bool, typer.Option("--once", help="one round, then exit (1 if the TSA failed)")
    ] = False,
    status: Annotated[
        bool, typer.Option("--status", help="show tokens, waiting checkpoints and the last error")
    ] = False,
) -> None:
    """Stamp each version-3 checkpoint with the configured time-stamp authority (RFC 3161).

    Runs rounds every timestamps.poll_seconds until interrupted; a failed round is retried at
    the next. Logs in as the stream worker (auditlog_stream).
    """
    config = _settings()
    if status:
        with errors(config), engine_session(config, "reader") as engine:
            print_status(stamp_status(engine))
        return
    with errors(config):
        stamper = Stamper.of(config.timestamps)
    with errors(config), engine_session(config, "stream") as engine:
        if once:
            outcome = stamp_round(engine, stamper)
            _print_round(outcome)
            raise typer.Exit(1 if outcome.error else 0)
        typer.echo(f"stamping checkpoints with {stamper.url} (Ctrl-C stops)")
        try:
            poll = config.timestamps.poll_seconds
            run_stamper(engine, stamper, poll, threading.Event(), _print_round)
        except KeyboardInterrupt:
            typer.echo("stopped")


def _print_round(outcome: Round) -> None:
    """One line per round; the error, if any, on standard error."""
    left = f"{outcome.waiting} waiting" if outcome.waiting >= 0 else "waiting unknown"
    typer.echo(f"stamped {outcome.stamped} checkpoint(s); {left}")
    if outcome.error:
        typer.echo(f"error: {outcome.error}; retried next round", err=True)


def print_status(status: StampStatus) -> None:
    """Tokens, waiting checkpoints, each TSA's state and each chain's newest stamp."""
    typer.echo(
        f"time-stamps: {status.tokens} token(s) stored; {status.waiting} checkpoint(s) waiting"
    )
    for tsa in status.tsas:
        typer.echo(_tsa_line(tsa))
    for chain in status.newest:
        count = f" count {chain.count}" if chain.count is not None else ""
        typer.echo(
            f"{chain.category}: newest stamped checkpoint seq {chain.seq}{count}, "
            f"TSA time {utc_text(chain.gen_time)} ({chain.tsa_url})"
        )
    if not status.tsas:
        typer.echo("no round has run yet (auditlog timestamp)")


def _when(at: datetime | None) -> str:
    return utc_text(at) if at is not None else "never"


def _tsa_line(tsa: TsaState) -> str:
    """A TSA's state: its last stamp and round, and whether it is failing now and why."""
    head = (
        f"TSA {tsa.tsa_url}: last stamp {_when(tsa.last_success_at)}, "
        f"last round {_when(tsa.last_round_at)}"
    )
    if tsa.failures:
        return (
            f"{head}; FAILING, {tsa.failures} round(s) in a row, last error at "
            f"{_when(tsa.last_error_at)}: {tsa.last_error}"
        )
    if tsa.last_error:
        return f"{head}; ok (an earlier error at {_when(tsa.last_error_at)}: {tsa.last_error})"
    return f"{head}; ok"
