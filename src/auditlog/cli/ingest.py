"""``auditlog ingest FILE``: append NDJSON events, naming each rejected line and why."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Annotated

import typer

from auditlog.cli._common import log_session
from auditlog.cli._common import settings as _settings
from auditlog.errors import EventConflict, InvalidEvent
from auditlog.settings import Settings
from auditlog.store import AuditLog, Prepared, prepare


def _lines(stream: IO[bytes], cap: int) -> Iterator[tuple[int, bytes | None]]:
    """(line number, raw line) pairs; None for a line over ``cap`` (never parsed)."""
    number = 0
    while True:
        raw = stream.readline(cap + 1)
        if not raw:
            return
        number += 1
        if len(raw) > cap and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):
                raw = stream.readline(65536)
            yield number, None
        elif raw.strip():
            yield number, raw


class _Ingest:
    def __init__(self, log: AuditLog, rejects: IO[bytes] | None) -> None:
        self.log, self.rejects = log, rejects
        self.stored = self.duplicates = self.rejected = 0

    def reject(self, number: int, raw: bytes | None, reason: str) -> None:
        self.rejected += 1
        typer.echo(f"line {number}: {reason}", err=True)
        if self.rejects is not None and raw is not None:
            self.rejects.write(raw if raw.endswith(b"\n") else raw + b"\n")

    def store(self, batch: list[tuple[int, bytes, Prepared]]) -> None:
        if not batch:
            return
        try:
            receipts = self.log.append_prepared([p for _, _, p in batch])
        except EventConflict:
            if len(batch) == 1:
                number, raw, _ = batch[0]
                return self.reject(number, raw, "event_id: reused with different content")
            for item in batch:  # find the conflicting line(s)
                self.store([item])
            return None
        dup = sum(r.duplicate for r in receipts)
        self.duplicates += dup
        self.stored += len(receipts) - dup
        return None


def ingest(
    file: Annotated[str, typer.Argument(help="NDJSON file, or - for standard input")],
    strict: Annotated[bool, typer.Option(help="store nothing unless every line is valid")] = False,
    reject_file: Annotated[
        Path | None, typer.Option(help="where invalid lines go (default FILE.rejects.ndjson)")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 5000,
) -> None:
    """Append events from NDJSON; report each invalid line with its number and reason."""
    settings = _settings()
    with log_session(settings) as log:
        _run_ingest(log, settings, file, strict, reject_file, batch_size)


def _run_ingest(
    log: AuditLog,
    settings: Settings,
    file: str,
    strict: bool,
    reject_file: Path | None,
    batch_size: int,
) -> None:
    if reject_file is None:
        reject_file = Path("rejects.ndjson" if file == "-" else f"{file}.rejects.ndjson")
    stream = sys.stdin.buffer if file == "-" else open(file, "rb")  # noqa: SIM115
    with stream, open(reject_file, "wb") as rejects:
        job = _Ingest(log, rejects)
        pending: list[tuple[int, bytes, Prepared]] = []
        for number, raw in _lines(stream, settings.store.max_line_bytes):
            if raw is None:
                job.reject(
                    number, None, f"event: line exceeds {settings.store.max_line_bytes} bytes"
                )
                continue
            try:
                pending.append((number, raw, prepare(raw, settings, log.resolve)))
            except InvalidEvent as exc:
                job.reject(number, raw, str(exc))
            if not strict and len(pending) >= batch_size:
                job.store(pending)
                pending = []
        if strict and job.rejected:
            typer.echo(f"--strict: {job.rejected} invalid line(s); nothing stored", err=True)
            raise typer.Exit(1)
        job.store(pending)
    if not job.rejected:
        reject_file.unlink(missing_ok=True)
    where = f"; rejected lines in {reject_file}" if job.rejected else ""
    typer.echo(
        f"stored {job.stored}, already present {job.duplicates}, rejected {job.rejected}{where}"
    )
    raise typer.Exit(1 if job.rejected else 0)
