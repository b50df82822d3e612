"""``auditlog apikey create|list|rotate|revoke``: API keys of the ingestion service, and
``auditlog serve``: the service itself.

Key changes need the key administrator's credential (``auditlog_key_admin``; the embedded
server's is at hand) and are audit events. ``create`` and ``rotate`` print the key alone on
their last line: it is shown this once and stored only as a hash.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from auditlog.apikeys.admin import (
    ApiKeyInfo,
    CreatedKey,
    as_row,
    create_key,
    list_keys,
    revoke_key,
    rotate_key,
)
from auditlog.cli._common import engine_session, errors, operator
from auditlog.cli._common import settings as _settings
from auditlog.integrity.keyadmin import open_registered

apikey_app = typer.Typer(help="API keys of the HTTP ingestion service.", no_args_is_help=True)


def _describe(info: ApiKeyInfo) -> str:
    allow = ",".join(info.allow) or "any address"
    state = (
        "active"
        if info.active
        else f"revoked {info.revoked_at:%Y-%m-%d %H:%M} by {info.revoked_by}"
    )
    return (
        f"{info.name}  {info.prefix}…  scopes {','.join(info.scopes)}  from {allow}  "
        f"rate {info.rate:g}/s burst {info.burst}  created {info.created_at:%Y-%m-%d %H:%M} "
        f"by {info.created_by}  {state}"
    )


def _shown(created: CreatedKey, verb: str) -> None:
    typer.echo(f"{verb} API key {created.info.name} ({created.info.key_id})")
    typer.echo(_describe(created.info))
    typer.echo("the key is shown once and stored only as a hash; keep it now:", err=True)
    typer.echo(created.token)


@apikey_app.command("create")
def apikey_create(
    name: Annotated[str, typer.Argument(help="a name for the key, e.g. the service using it")],
    scope: Annotated[
        list[str] | None,
        typer.Option("--scope", help="write:CATEGORY, write:* or read (repeat; default write:*)"),
    ] = None,
    allow: Annotated[
        list[str] | None,
        typer.Option("--allow", help="source address or CIDR allowed to use it (repeat)"),
    ] = None,
    rate: Annotated[
        float | None, typer.Option(help="events per second (default: setting api.default_rate)")
    ] = None,
    burst: Annotated[
        int | None, typer.Option(help="events at once (default: setting api.default_burst)")
    ] = None,
) -> None:
    """Create an API key (logged apikey.created); the key is the last line printed."""
    s = _settings()
    with errors(s), engine_session(s, "keys") as engine:
        who, _ = operator(s)
        log = open_registered(s, engine=engine)
        created = create_key(log, who, name, scope or ["write:*"], allow or (), rate, burst)
    _shown(created, "created")


@apikey_app.command("list")
def apikey_list(
    all_keys: Annotated[bool, typer.Option("--all", help="revoked keys too")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per key")] = False,
) -> None:
    """List the keys (never a secret: it is not stored)."""
    s = _settings()
    with errors(s), engine_session(s, "reader") as engine:
        keys = list_keys(engine, include_revoked=all_keys)
    for info in keys:
        typer.echo(json.dumps(as_row(info), default=str) if as_json else _describe(info))
    if not keys and not as_json:
        typer.echo("no API keys (`auditlog apikey create NAME`)")


@apikey_app.command("rotate")
def apikey_rotate(name: Annotated[str, typer.Argument(help="the key's name")]) -> None:
    """Give a key a new secret (logged apikey.rotated); the old one stops working."""
    s = _settings()
    with errors(s), engine_session(s, "keys") as engine:
        who, _ = operator(s)
        created = rotate_key(open_registered(s, engine=engine), who, name)
    _shown(created, "rotated")


@apikey_app.command("revoke")
def apikey_revoke(name: Annotated[str, typer.Argument(help="the key's name")]) -> None:
    """Revoke a key (logged apikey.revoked): requests with it are refused from now on."""
    s = _settings()
    with errors(s), engine_session(s, "keys") as engine:
        who, _ = operator(s)
        info = revoke_key(open_registered(s, engine=engine), who, name)
    typer.echo(f"revoked API key {info.name} ({info.key_id})")


def serve(
    host: Annotated[str | None, typer.Option(help="address (default: setting api.host)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default: setting api.port)")] = None,
    workers: Annotated[int, typer.Option(help="processes; one per core in production")] = 1,
) -> None:
    """Run the HTTP ingestion API (POST /v1/events, the pull API, /metrics; docs/api.md)."""
    from auditlog.api.app import serve as run

    s = _settings()
    with errors(s):
        run(s, host, port, workers)
