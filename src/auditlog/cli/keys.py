"""``auditlog checkpoint`` (sign the chain heads), ``auditlog checkpoint export`` (the newest
checkpoints, for an auditor to keep), ``auditlog keys export-public``, and the key
administrator's ``keys register`` / ``keys retire`` (each an audit event)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from cryptography.hazmat.primitives import serialization

from auditlog.cli._common import engine_session, errors, log_session, operator
from auditlog.cli._common import settings as _settings
from auditlog.integrity.kept import export_checkpoints, export_notes
from auditlog.integrity.keyadmin import open_registered, register_key, retire_key
from auditlog.integrity.keys import key_id_of, load_public_key, load_signer, public_pem
from auditlog.model import CATEGORIES
from auditlog.proofs.note import vkey

keys_app = typer.Typer(help="Checkpoint signing keys.", no_args_is_help=True)
checkpoint_app = typer.Typer(
    help="Sign the chain heads; `export` writes the newest checkpoints for an auditor to keep.",
    invoke_without_command=True,
)


@checkpoint_app.callback()
def checkpoint(ctx: typer.Context) -> None:
    """Sign the head of every chain not yet covered by a checkpoint (run it periodically)."""
    if ctx.invoked_subcommand is not None:
        return
    with errors(), log_session(_settings()) as log:
        signed = log.checkpoint()
    for cp in signed:
        typer.echo(f"signed {cp.category} seq {cp.seq} count {cp.count} {cp.entry_hash.hex()}")


@checkpoint_app.command("export")
def checkpoint_export(
    out: Annotated[
        Path | None, typer.Option(help="write them here instead of standard output")
    ] = None,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="note: C2SP checkpoint notes (signed text); json: every field and the keys",
        ),
    ] = "note",
) -> None:
    """The newest signed checkpoint of each chain, as C2SP checkpoint notes (or JSON): keep
    them outside the database and later check the log with `auditlog verify --since FILE`."""
    if fmt not in ("note", "json"):
        typer.echo(f"error: --format must be note or json, not {fmt!r}", err=True)
        raise typer.Exit(2)
    with errors(), engine_session(_settings(), "reader") as engine:
        doc = export_checkpoints(engine)
        notes, legacy = export_notes(doc) if fmt == "note" else ("", [])
    text = json.dumps(doc, indent=2, sort_keys=True) + "\n" if fmt == "json" else notes
    for cat in legacy:
        typer.echo(
            f"note: {cat}'s newest checkpoint is version 1 or 2 (no note form); "
            "sign its head (`auditlog checkpoint`) or use --format json",
            err=True,
        )
    if out is None:
        typer.echo(text, nl=False)
        return
    try:
        out.write_text(text, "utf-8")
    except OSError as exc:
        typer.echo(f"error: cannot write {out}: {exc.strerror or exc}", err=True)
        raise typer.Exit(1) from None
    for cp in doc["checkpoints"]:
        typer.echo(f"kept {cp['category']} seq {cp['seq']} count {cp.get('count', '-')}")
    typer.echo(f"wrote {out}: {len(doc['checkpoints'])} checkpoint(s)")


@keys_app.command("export-public")
def keys_export_public() -> None:
    """Print the public key that verifies this installation's checkpoints (PEM)."""
    typer.echo(public_pem(load_signer(_settings()).public), nl=False)


@keys_app.command("vkeys")
def keys_vkeys() -> None:
    """Print this installation's note verifier key (C2SP vkey) for each chain's origin: what
    a witness is configured with (`auditlog witness serve --log VKEY`)."""
    s = _settings()
    public = load_signer(s).public
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    for cat in CATEGORIES:
        typer.echo(vkey(f"{s.store.origin}/{cat}", raw))


@keys_app.command("register")
def keys_register(
    public_key: Annotated[
        Path | None,
        typer.Option("--public-key", help="PEM public key to register (default: this host's)"),
    ] = None,
) -> None:
    """Register a checkpoint signing key (key administrator credential; logged keys.registered)."""
    s = _settings()
    with errors():
        public = load_public_key(public_key.read_bytes()) if public_key else load_signer(s).public
        who, _ = operator(s)
        with engine_session(s, "keys") as engine:
            new = register_key(open_registered(s, engine=engine), public, who)
    state = "registered" if new else "already registered"
    typer.echo(f"{state}: signing key {key_id_of(public)}")


@keys_app.command("retire")
def keys_retire(
    key_id: Annotated[str, typer.Argument(help="the key id to retire")],
    reason: Annotated[str, typer.Option("--reason", help="why (required; recorded in the log)")],
) -> None:
    """Retire a signing key: the database refuses its checkpoints (logged keys.retired)."""
    s = _settings()
    with errors():
        who, _ = operator(s)
        with engine_session(s, "keys") as engine:
            retire_key(open_registered(s, engine=engine), key_id, who, reason)
    typer.echo(f"retired: signing key {key_id}")
