"""``auditlog verify``: the database, an evidence bundle (``--bundle``) or an archive
(``--archive``); every problem named by its row, exit 1 when anything does not hold."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from auditlog.archive.files import verify_archive
from auditlog.cli._common import engine_session, trusted_keys
from auditlog.cli._common import settings as _settings
from auditlog.db.server import connect
from auditlog.evidence.verify import BundleReport, verify_bundle
from auditlog.integrity.database import db_public_keys, verify_database


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
        _verify_bundle(bundle, public_key)
    if archive is not None:
        _verify_archive(archive, public_key)
    with engine_session(_settings(), "reader") as engine:
        report = verify_database(engine, trusted_keys(public_key))
    for cat, res in report.chains.items():
        span = f"seq {res.first_seq}..{res.last_seq}" if res.rows else "empty"
        state = "FAIL" if res.problem else "ok"
        typer.echo(f"{state:4} {cat}: {res.rows} rows ({span}), {res.checkpoints} checkpoints")
    for problem in report.problems:
        typer.echo(f"FAIL {problem}", err=True)
    typer.echo("verified: all chains intact" if report.ok else "verification FAILED")
    raise typer.Exit(0 if report.ok else 1)


def _verify_bundle(bundle: Path, public_key: list[Path] | None) -> NoReturn:
    """Check an evidence bundle with nothing but the bundle; name the first bad row (exit 1)."""
    report = verify_bundle(bundle, trusted_keys(public_key))
    print_report(report, bundle)
    raise typer.Exit(0 if report.ok else 1)


def print_report(report: BundleReport, path: Path) -> None:
    """The verification outcome, one line per chain and per problem."""
    m = report.manifest or {}
    who = (m.get("exported_by") or {}).get("upn") or (m.get("exported_by") or {}).get("id")
    typer.echo(
        f"bundle {path}: exported {m.get('exported_at', '?')} by {who or '?'}; {report.rows} rows"
    )
    for cat, st in report.chains.items():
        state = "FAIL" if any(p.category == cat for p in report.problems) else "ok"
        span = f"seq {st.runs[0][0]}..{st.runs[-1][1]} in {len(st.runs)} run(s)" if st.runs else "-"
        typer.echo(
            f"{state:4} {cat}: {st.rows} rows ({span}); {st.checkpoints} signed "
            f"checkpoint(s) match, vouching for {st.covered} rows"
        )
    for problem in report.problems:
        typer.echo(f"FAIL {problem}", err=True)
    if not report.key_pinned:
        typer.echo(
            "note: the public key was taken from the bundle itself; pin the key you "
            "obtained out of band (auditlog keys export-public) with --public-key",
            err=True,
        )
    typer.echo("verified: bundle intact" if report.ok else "verification FAILED")


def _archive_keys(public_key: list[Path] | None) -> dict[str, Ed25519PublicKey] | None:
    """Keys given on the command line, else the installation's (None if unreachable)."""
    if public_key:
        return trusted_keys(public_key)
    try:
        engine = connect(_settings(), "reader")
        try:
            with engine.connect() as conn:
                return db_public_keys(conn.connection.driver_connection)
        finally:
            engine.dispose()
    except Exception:  # an offline check: say the signature was not checked
        return None


def _verify_archive(file: Path, public_key: list[Path] | None) -> NoReturn:
    """``auditlog verify --archive FILE``: the manifest, then every row; exit 1 naming the
    first bad row (or the file) when anything is wrong."""
    check = verify_archive(file, _archive_keys(public_key))
    m = check.manifest or {}
    span = f"seq {check.first_seq}..{check.last_seq}" if check.rows else "no rows"
    typer.echo(
        f"archive {check.path.name}: {check.category} {m.get('month', '')} {span}, "
        f"{check.rows} rows; manifest signature: {check.signature}"
    )
    for note in check.notes:
        typer.echo(f"note: {note}")
    if check.problem is not None:
        typer.echo(f"FAIL {check.problem}", err=True)
        typer.echo("verification FAILED")
        raise typer.Exit(1)
    if check.signature == "not checked":
        typer.echo("note: signature not checked; give --public-key to pin the signing key")
    typer.echo("verified: archive intact")
    raise typer.Exit(0)
