"""``auditlog db upgrade``: create or migrate the schema; ``auditlog db rules``: the
retention floor and approval rule the database enforces."""

from __future__ import annotations

from typing import Annotated

import typer

from auditlog.cli._common import errors, operator
from auditlog.cli._common import settings as _settings
from auditlog.db.migrate import current_version, upgrade
from auditlog.db.server import admin_url, connect, ensure_database, make_engine
from auditlog.integrity.keyadmin import open_registered
from auditlog.retention.rules import change_database_rules

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)


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


@db_app.command("rules")
def db_rules(
    floor_days: Annotated[
        int | None, typer.Option("--floor-days", help="the retention floor in days", min=1)
    ] = None,
    require_approval: Annotated[
        bool | None,
        typer.Option(
            "--require-approval/--no-require-approval",
            help="whether every policy change needs a second approver",
        ),
    ] = None,
) -> None:
    """Show or change the retention floor and two-person rule the database enforces.

    Changing them needs the database owner's or a superuser's credential (the configured
    URL's user); each change is logged as retention.rules_changed."""
    settings = _settings()
    with errors():
        who, _ = operator(settings)
        owner = connect(settings, "admin")
        try:
            _, after, event = change_database_rules(owner, who, floor_days, require_approval)
        finally:
            owner.dispose()
        if event is not None:
            log = open_registered(settings)
            try:
                log.record(event)
            finally:
                log.engine.dispose()
    state = "required" if after.require_approval else "not required"
    typer.echo(f"retention floor {after.floor_days} days; second approver {state}")
