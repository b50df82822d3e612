"""``auditlog ingest FILE``: append NDJSON events, naming each rejected line and why.

The reject file (default ``FILE.rejects.ndjson``) holds one JSON object per rejected line:
``{"line": 7, "reason": "...", "raw": "<the line as read>"}``, with ``"problems": [[path,
reason], ...]`` when the event had several, and for a line over ``max_line_bytes``
``"truncated": true``, its ``"bytes"`` and only its first :data:`PREVIEW_BYTES` in ``raw``.
A database error ends the run with one line saying how many events were stored before it.
"""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Annotated, Any

import typer

from auditlog.cli._common import DB_ERRORS, database_error, errors, fail, log_session
from auditlog.cli._common import settings as _settings
from auditlog.errors import EventConflict, InvalidEvent
from auditlog.settings import Settings
from auditlog.store import AuditLog, Prepared, prepare

PREVIEW_BYTES = 1024  # what the reject file keeps of a line over the cap


class Oversized:
    """A line over the cap: its first bytes and its length (the rest was read past)."""

    def __init__(self, head: bytes, size: int) -> None:
        self.head, self.size = head, size


def _lines(stream: IO[bytes], cap: int) -> Iterator[tuple[int, bytes | Oversized]]:
    """(line number, raw line) pairs; :class:`Oversized` for a line over ``cap`` (never
    parsed, never held whole in memory)."""
    number = 0
    while True:
        raw = stream.readline(cap + 1)
        if not raw:
            return
        number += 1
        if len(raw) > cap and not raw.endswith(b"\n"):
            head, size = raw[:PREVIEW_BYTES], len(raw)
            while raw and not raw.endswith(b"\n"):
                raw = stream.readline(65536)
                size += len(raw)
            yield number, Oversized(head, size - (1 if raw.endswith(b"\n") else 0))
        elif raw.strip():
            yield number, raw


def reject_record(number: int, raw: bytes | Oversized, reason: str, exc: Any = None) -> bytes:
    """One line of the reject file (see the module docstring)."""
    doc: dict[str, Any] = {"line": number, "reason": reason}
    problems = getattr(exc, "problems", None)
    if problems:
        doc["problems"] = [list(p) for p in problems]
    data = raw.head if isinstance(raw, Oversized) else raw.rstrip(b"\r\n")
    if isinstance(raw, Oversized):
        doc.update(truncated=True, bytes=raw.size)
    try:
        doc["raw"] = data.decode("utf-8")
    except UnicodeDecodeError:  # keep the bytes exactly; a cut may split a character too
        doc["raw_base64"] = base64.b64encode(data).decode("ascii")
    return json.dumps(doc, ensure_ascii=False).encode("utf-8") + b"\n"


class _Ingest:
    def __init__(self, log: AuditLog, rejects: IO[bytes] | None) -> None:
        self.log, self.rejects = log, rejects
        self.stored = self.duplicates = self.rejected = 0

    def reject(self, number: int, raw: bytes | Oversized, reason: str, exc: Any = None) -> None:
        self.rejected += 1
        typer.echo(f"line {number}: {reason}", err=True)
        if self.rejects is not None:
            self.rejects.write(reject_record(number, raw, reason, exc))

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
        Path | None,
        typer.Option(help="where invalid lines go, with reasons (default FILE.rejects.ndjson)"),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 5000,
) -> None:
    """Append events from NDJSON; report each invalid line with its number and reason."""
    settings = _settings()
    with errors(settings), log_session(settings) as log:
        job = _Ingest(log, None)
        try:
            _run_ingest(job, settings, file, strict, reject_file, batch_size)
        except DB_ERRORS as exc:
            fail(f"stored {job.stored} before the error: {database_error(exc, settings)}")


def _run_ingest(
    job: _Ingest,
    settings: Settings,
    file: str,
    strict: bool,
    reject_file: Path | None,
    batch_size: int,
) -> None:
    if reject_file is None:
        reject_file = Path("rejects.ndjson" if file == "-" else f"{file}.rejects.ndjson")
    cap = settings.store.max_line_bytes
    stream = sys.stdin.buffer if file == "-" else open(file, "rb")  # noqa: SIM115
    with stream, open(reject_file, "wb") as rejects:
        job.rejects = rejects
        pending: list[tuple[int, bytes, Prepared]] = []
        for number, raw in _lines(stream, cap):
            if isinstance(raw, Oversized):
                job.reject(number, raw, f"event: line exceeds {cap} bytes (it has {raw.size})")
                continue
            try:
                pending.append((number, raw, prepare(raw, settings, job.log.resolve)))
            except InvalidEvent as exc:
                job.reject(number, raw, str(exc), exc)
            if not strict and len(pending) >= batch_size:
                job.store(pending)
                pending = []
        if strict and job.rejected:
            typer.echo(f"--strict: {job.rejected} invalid line(s); nothing stored", err=True)
            raise typer.Exit(1)
        job.store(pending)
    if job.stored:
        job.log.checkpoint()  # sign the heads this run left: no unsigned span behind it
    if not job.rejected:
        reject_file.unlink(missing_ok=True)
    where = f"; rejected lines in {reject_file}" if job.rejected else ""
    typer.echo(
        f"stored {job.stored}, already present {job.duplicates}, rejected {job.rejected}{where}"
    )
    raise typer.Exit(1 if job.rejected else 0)
