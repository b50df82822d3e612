"""``auditlog db upgrade``: create or migrate the schema."""

from __future__ import annotations

import typer

from auditlog.cli._common import settings as _settings
from auditlog.db.migrate import current_version, upgrade
from auditlog.db.server import admin_url, ensure_database, make_engine

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
