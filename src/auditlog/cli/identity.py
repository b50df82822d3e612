"""``auditlog identity sync``: fill the Entra ID directory actors are resolved against."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from auditlog.cli._common import engine_session
from auditlog.cli._common import settings as _settings

identity_app = typer.Typer(help="Entra ID directory used to resolve actors.", no_args_is_help=True)


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
