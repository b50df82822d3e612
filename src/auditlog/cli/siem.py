"""``auditlog siem add|list|set|test|remove|dead-letters|redrive`` and ``auditlog stream``.

Registered by :mod:`auditlog.cli.app`.
Secrets (HEC token, webhook HMAC key) are read from a file, an environment variable or a
hidden prompt, never from the command line (where ``ps`` and shell history would keep them).
Changes and test messages need the admin role: the local operator (``AUDITLOG_USER``, else the
OS user) with the role ``auditlog.toml`` gives them (see :mod:`auditlog.access`).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from auditlog.cli._common import engine_session, errors, fail, log_session, open_log, operator
from auditlog.cli._common import settings as _settings
from auditlog.errors import InvalidDestination
from auditlog.settings import load_settings
from auditlog.siem import destinations as dst
from auditlog.siem.delivery import send_test_message
from auditlog.siem.redrive import redrive as redrive_dead_letters
from auditlog.siem.status import dead_letters, destination_status

siem_app = typer.Typer(help="SIEM destinations (see docs/siem.md).", no_args_is_help=True)

Name = Annotated[str, typer.Argument(help="destination name: a-z 0-9 _ . -")]
SecretFile = Annotated[
    Path | None, typer.Option(help="file holding the HEC token / webhook HMAC key")
]
SecretEnv = Annotated[str | None, typer.Option(help="environment variable holding the token / key")]
Reason = Annotated[str | None, typer.Option(help="why (kept in the audit event)")]


def _secret(transport: str, path: Path | None, env: str | None, required: bool) -> str | None:
    if path is not None:
        return path.read_text("utf-8").strip()
    if env is not None:
        value = os.environ.get(env)
        if not value:
            raise InvalidDestination("secret", f"environment variable {env} is not set")
        return value
    if not required or transport.startswith("syslog"):
        return None
    if not sys.stdin.isatty():
        raise InvalidDestination("secret", "give --secret-file or --secret-env")
    return str(typer.prompt("token / HMAC key", hide_input=True))


def _options(**given: Any) -> dict[str, Any]:
    return {k: v for k, v in given.items() if v not in (None, [], ())}


@siem_app.command("add")
def add(
    name: Name,
    transport: Annotated[str, typer.Option(help="syslog-tcp | syslog-tls | hec | webhook")],
    endpoint: Annotated[str, typer.Option(help="host:port (syslog) or https:// URL")],
    format: Annotated[str, typer.Option(help="rfc5424 | cef | ocsf | json")] = "rfc5424",
    category: Annotated[list[str] | None, typer.Option(help="only these (repeatable)")] = None,
    ca_file: Annotated[Path | None, typer.Option(help="PEM CA to verify the server")] = None,
    server_name: Annotated[str | None, typer.Option(help="TLS name to verify")] = None,
    hostname: Annotated[str | None, typer.Option(help="RFC 5424 HOSTNAME / HEC host")] = None,
    index: Annotated[str | None, typer.Option(help="Splunk index")] = None,
    sourcetype: Annotated[str | None, typer.Option(help="Splunk sourcetype")] = None,
    batch: Annotated[int | None, typer.Option(help="items per send (default 1000)")] = None,
    settle_seconds: Annotated[float | None, typer.Option(help="syslog settle time")] = None,
    ack: Annotated[
        bool | None,
        typer.Option("--ack/--no-ack", help="HEC: wait for indexer acknowledgement"),
    ] = None,
    ack_timeout: Annotated[
        float | None, typer.Option(help="HEC: seconds to wait for an ack (default 120)")
    ] = None,
    secret_file: SecretFile = None,
    secret_env: SecretEnv = None,
    from_now: Annotated[bool, typer.Option(help="skip what is already in the log")] = False,
    reason: Reason = None,
) -> None:
    """Add a destination (audited as siem.destination_added; the secret is not logged)."""
    with errors(), log_session(_settings()) as log:
        options = _options(
            categories=category,
            server_name=server_name,
            hostname=hostname,
            index=index,
            sourcetype=sourcetype,
            batch=batch,
            settle_seconds=settle_seconds,
            ack=ack,
            ack_timeout=ack_timeout,
            ca_pem=ca_file.read_text("utf-8") if ca_file else None,
        )
        secret = _secret(transport, secret_file, secret_env, required=True)
        dest = dst.Destination(name, transport, endpoint, format, options, secret)
        start = "now" if from_now else "beginning"
        dst.add_destination(log, dest, *operator(log.settings), start, reason)
    typer.echo(f"added {name}; `auditlog stream` delivers to it")


@siem_app.command("set")
def set_(
    name: Name,
    enable: Annotated[bool | None, typer.Option("--enable/--disable")] = None,
    endpoint: Annotated[str | None, typer.Option()] = None,
    format: Annotated[str | None, typer.Option()] = None,
    secret_file: SecretFile = None,
    secret_env: SecretEnv = None,
    reason: Reason = None,
) -> None:
    """Change a destination (audited as siem.destination_changed)."""
    with errors(), log_session(_settings()) as log:
        changes = _options(enabled=enable, endpoint=endpoint, format=format)
        secret = _secret("", secret_file, secret_env, required=False)
        if secret is not None:
            changes["secret"] = secret
        dst.change_destination(log, name, *operator(log.settings), reason, **changes)
    typer.echo(f"changed {name}")


@siem_app.command("list")
def list_(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Destinations with their delivery status (secrets are never shown)."""
    with errors(), log_session(_settings()) as log:
        dests = dst.list_destinations(log.engine)
        status = destination_status(log.engine)
    if as_json:
        doc = [
            {**d.redacted(), "status": status.filter(destination=d.name).to_dicts()} for d in dests
        ]
        typer.echo(json.dumps(doc, default=str, indent=2))
        return
    for d in dests:
        state = "enabled" if d.enabled else "disabled"
        typer.echo(f"{d.name}  {d.transport} {d.endpoint}  {d.format}  {state}")
        for r in status.filter(destination=d.name).iter_rows(named=True):
            err = f"  errors {r['errors']}: {r['last_error']}" if r["last_error"] else ""
            typer.echo(
                f"  {r['category']:<14} seq {r['delivered_seq']}/{r['head_seq'] or 0}"
                f"  lag {r['lag_events']} ({r['lag_seconds']:.0f}s){err}"
            )


@siem_app.command("test")
def test(name: Name) -> None:
    """Send one test message (MSGID TEST) to a destination now."""
    with errors(), log_session(_settings()) as log:
        typer.echo(send_test_message(log.engine, name, operator(log.settings)[1]))


@siem_app.command("remove")
def remove(name: Name, reason: Reason = None) -> None:
    """Retire a destination (audited as siem.destination_removed; its secret is erased)."""
    with errors(), log_session(_settings()) as log:
        dst.remove_destination(log, name, *operator(log.settings), reason)
    typer.echo(f"removed {name}")


@siem_app.command("dead-letters")
def dead(name: Annotated[str | None, typer.Argument()] = None, limit: int = 50) -> None:
    """Items receivers rejected permanently (newest first)."""
    with errors(), log_session(_settings()) as log:
        frame = dead_letters(log.engine, name, limit)
    for r in frame.iter_rows(named=True):
        again = f"  re-driven {r['redriven_at']}" if r["redriven_at"] else ""
        typer.echo(
            f"{r['id']}  {r['created_at']}  {r['destination']}  {r['item_key']}  {r['error']}"
            f"{again}"
        )


@siem_app.command("redrive")
def redrive(
    name: Name,
    dead_letter: Annotated[
        list[int] | None, typer.Option("--id", help="dead-letter id (repeatable; see dead-letters)")
    ] = None,
    all_: Annotated[
        bool, typer.Option("--all", help="every dead letter of NAME not re-driven yet")
    ] = False,
    reason: Reason = None,
) -> None:
    """Send dead letters again once the receiver is fixed (audited as
    siem.dead_letters_redriven); exit 1 if any failed again."""
    if bool(dead_letter) == all_:
        fail("give the dead letters to re-drive: --id N (repeatable) or --all")
    settings = _settings()
    # as the SIEM worker: it reads checkpoints (a dead letter may be one) and the secret
    with errors(settings), engine_session(settings, "stream") as engine:
        log = open_log(settings, engine)
        ids = None if all_ else list(dead_letter or [])
        done = redrive_dead_letters(log, name, *operator(settings), ids, reason)
    typer.echo(done.summary())
    for dead_id, why in done.failed.items():
        typer.echo(f"  {dead_id}: {why}", err=True)
    raise typer.Exit(1 if done.failed else 0)


def stream(
    once: Annotated[bool, typer.Option(help="deliver what is there, then exit")] = False,
    destination: Annotated[list[str] | None, typer.Option(help="only these")] = None,
    poll: Annotated[
        float | None, typer.Option(help="polling fallback, seconds (default: siem.poll_seconds)")
    ] = None,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait/--no-wait",
            help="wait for a destination another worker delivers to (its lease), or refuse",
        ),
    ] = True,
) -> None:
    """Deliver the log to the SIEM destinations; runs until stopped (SIGTERM / Ctrl-C).

    One worker per destination: a second one waits for the first's lease (or, with
    --no-wait, refuses), so nothing is delivered twice by design.
    """
    from auditlog.siem.worker import run_stream

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = load_settings()
    # the SIEM worker has its own login (auditlog_stream)
    with errors(settings), engine_session(settings, "stream") as engine:
        code = run_stream(
            engine,
            destination,
            once,
            poll or settings.siem.poll_seconds,
            settings.siem.reload_seconds,
            wait=wait,
        )
    raise typer.Exit(code)
