"""``auditlog demo``: realistic governance data, and a directory of its actors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from auditlog.cli._common import log_session
from auditlog.cli._common import settings as _settings
from auditlog.store import AuditLog


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
        # the key's registration, written when the log first opens, does not count
        count = conn.exec_driver_sql(
            "SELECT count(*) FROM events WHERE action <> 'keys.registered'"
        ).scalar_one()
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
