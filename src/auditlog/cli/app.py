"""The ``auditlog`` command line: the root app, one module per command group.

Thin: each command parses options, calls the library, prints, sets the exit code. What the
commands share (settings, sessions, trusted keys, error-to-exit mapping) is in ``_common``.
"""

from __future__ import annotations

import typer

from auditlog.cli._common import fail
from auditlog.cli.apikey import apikey_app, serve
from auditlog.cli.db import db_app
from auditlog.cli.demo import demo
from auditlog.cli.export import export
from auditlog.cli.identity import identity_app
from auditlog.cli.ingest import ingest
from auditlog.cli.keys import checkpoint_app, keys_app
from auditlog.cli.proof import proof_app
from auditlog.cli.retention import archive_app, retention_app
from auditlog.cli.sample import sample
from auditlog.cli.siem import siem_app, stream
from auditlog.cli.timestamp import timestamp
from auditlog.cli.verify import verify
from auditlog.cli.witness import witness_app
from auditlog.errors import AuditLogError

app = typer.Typer(
    help="Tamper-evident audit log.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(db_app, name="db")
app.command()(ingest)
app.command()(demo)
app.command()(verify)
app.add_typer(checkpoint_app, name="checkpoint")
app.add_typer(keys_app, name="keys")
app.add_typer(identity_app, name="identity")
app.add_typer(retention_app, name="retention")
app.add_typer(archive_app, name="archive")
app.command()(export)
app.command()(sample)
app.add_typer(siem_app, name="siem")
app.command()(stream)
app.add_typer(witness_app, name="witness")
app.add_typer(proof_app, name="proof")
app.command()(timestamp)
app.add_typer(apikey_app, name="apikey")
app.command()(serve)


def main() -> None:
    """The ``auditlog`` console script (and ``python -m auditlog``)."""
    try:
        app()
    except AuditLogError as exc:
        fail(str(exc))
