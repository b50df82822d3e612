"""The ``auditlog`` command line. Thin: parse options, call the library, print, set exit code."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from sqlalchemy.engine import Engine

from auditlog.cli.export import export as export_command
from auditlog.cli.retention import archive_app, retention_app
from auditlog.cli.siem import siem_app
from auditlog.cli.siem import stream as stream_command
from auditlog.db.migrate import current_version, upgrade
from auditlog.db.server import Role, admin_url, connect, ensure_database, make_engine
from auditlog.errors import AuditLogError, EventConflict, InvalidEvent
from auditlog.integrity.database import verify_database
from auditlog.integrity.keys import key_id_of, load_public_key, load_signer, public_pem
from auditlog.settings import Settings, load_settings
from auditlog.store import AuditLog, Prepared, prepare

app = typer.Typer(
    help="Tamper-evident audit log.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
identity_app = typer.Typer(help="Entra ID directory used to resolve actors.", no_args_is_help=True)
keys_app = typer.Typer(help="Checkpoint signing keys.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(identity_app, name="identity")
app.add_typer(keys_app, name="keys")
app.add_typer(retention_app, name="retention")
app.add_typer(archive_app, name="archive")
app.command("export")(export_command)
app.add_typer(siem_app, name="siem")
app.command("stream")(stream_command)


def _settings() -> Settings:
    return load_settings()


def _fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def open_log(settings: Settings) -> AuditLog:
    """The writer, resolving actors through the directory when one is loaded."""
    engine = connect(settings, "writer")
    try:
        from auditlog.identity.directory import Directory

        resolve = Directory(engine).resolver()
    except ImportError:  # pragma: no cover - identity is part of the package
        resolve = None
    return AuditLog(engine, settings, resolve=resolve)


@contextmanager
def log_session(settings: Settings) -> Iterator[AuditLog]:
    """An AuditLog whose connections are closed when the command ends."""
    log = open_log(settings)
    try:
        yield log
    finally:
        log.engine.dispose()


@contextmanager
def engine_session(settings: Settings, role: Role) -> Iterator[Engine]:
    engine = connect(settings, role)
    try:
        yield engine
    finally:
        engine.dispose()


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema (also done on first start)."""
    settings = _settings()
    ensure_database(settings)
    engine = make_engine(admin_url(settings), "admin")
    try:
        applied = upgrade(engine)
        version = current_version(engine)
    finally:
        engine.dispose()
    typer.echo(f"schema at version {version}; applied: {applied or 'none'}")


# --- ingest ------------------------------------------------------------------------------


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


@app.command()
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


# --- demo, verify, checkpoints, keys -----------------------------------------------------


@app.command()
def demo(
    events: Annotated[int, typer.Option(min=1, help="how many events")] = 5000,
    seed: Annotated[int, typer.Option()] = 7,
    if_empty: Annotated[bool, typer.Option(help="only when the log is empty")] = False,
    out: Annotated[Path | None, typer.Option(help="write NDJSON here instead of storing")] = None,
) -> None:
    """Generate realistic governance data (and a directory of its actors)."""
    from auditlog.demo import demo_events

    if out is not None:
        with open(out, "w", encoding="utf-8") as fh:
            for ev in demo_events(events, seed):
                fh.write(json.dumps(ev, ensure_ascii=False) + "\n")
        typer.echo(f"wrote {events} events to {out}")
        return
    with log_session(_settings()) as log:
        _run_demo(log, events, seed, if_empty)


def _run_demo(log: AuditLog, events: int, seed: int, if_empty: bool) -> None:
    from auditlog.demo import demo_events

    with log.engine.connect() as conn:
        count = conn.exec_driver_sql("SELECT count(*) FROM events").scalar_one()
    if if_empty and count:
        typer.echo(f"log holds {count} events; demo skipped")
        return
    _load_demo_directory(log, seed)
    batch: list[dict[str, Any]] = []
    for ev in demo_events(events, seed):
        batch.append(ev)
        if len(batch) >= 5000:
            log.record_many(batch)
            batch = []
    if batch:
        log.record_many(batch)
    log.checkpoint()
    typer.echo(f"stored {events} demo events")


def _load_demo_directory(log: AuditLog, seed: int) -> None:
    try:
        from auditlog.identity.directory import Directory, Principal
    except ImportError:  # pragma: no cover
        return
    from auditlog.demo import demo_actors

    directory = Directory(log.engine)
    directory.upsert(
        [
            Principal(
                object_id=a["entra_object_id"],
                type=a["type"],
                upn=a.get("upn"),
                mail=a.get("upn"),
                display_name=a["display_name"],
                tenant_id=a["tenant_id"],
                source="demo",
            )
            for a in demo_actors(seed)
        ]
    )
    log.resolve = directory.resolver()


@app.command()
def verify(
    public_key: Annotated[
        list[Path] | None, typer.Option(help="trusted public key PEM (repeatable)")
    ] = None,
    bundle: Annotated[
        Path | None, typer.Option(help="check an evidence bundle (ZIP) instead of the database")
    ] = None,
    archive: Annotated[
        Path | None, typer.Option(help="check a retention archive file instead of the database")
    ] = None,
) -> None:
    """Check every chain and checkpoint; name the first bad category/seq and why (exit 1)."""
    if bundle is not None:
        from auditlog.cli.export import verify_bundle_command

        verify_bundle_command(bundle, public_key)
        return
    if archive is not None:
        from auditlog.cli.retention import verify_archive_command

        verify_archive_command(archive, public_key)
        return
    keys = None
    if public_key:
        loaded = [load_public_key(p.read_bytes()) for p in public_key]
        keys = {key_id_of(k): k for k in loaded}
    with engine_session(_settings(), "reader") as engine:
        report = verify_database(engine, keys)
    for cat, res in report.chains.items():
        span = f"seq {res.first_seq}..{res.last_seq}" if res.rows else "empty"
        state = "FAIL" if res.problem else "ok"
        typer.echo(f"{state:4} {cat}: {res.rows} rows ({span}), {res.checkpoints} checkpoints")
    for problem in report.problems:
        typer.echo(f"FAIL {problem}", err=True)
    typer.echo("verified: all chains intact" if report.ok else "verification FAILED")
    raise typer.Exit(0 if report.ok else 1)


@app.command()
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


# --- identity ----------------------------------------------------------------------------


@identity_app.command("sync")
def identity_sync(
    csv: Annotated[Path | None, typer.Option(help="load principals from this CSV instead")] = None,
) -> None:
    """Fill the directory from Microsoft Graph (AUDITLOG_GRAPH_* settings) or a CSV."""
    from auditlog.identity.directory import Directory
    from auditlog.identity.graph import graph_client
    from auditlog.identity.sync import load_csv, sync_from_graph

    settings = _settings()
    with engine_session(settings, "writer") as engine:
        directory = Directory(engine)
        if csv is not None:
            count = directory.upsert(load_csv(csv))
            typer.echo(f"loaded {count} principals from {csv}")
            return
        result = sync_from_graph(directory, graph_client(settings.graph))
    typer.echo(f"synced {result.users} users and {result.service_principals} service principals")


def main() -> None:
    try:
        app()
    except AuditLogError as exc:
        _fail(str(exc))


if __name__ == "__main__":
    main()
