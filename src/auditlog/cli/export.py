"""``auditlog export`` and ``auditlog verify --bundle``: thin commands over export/bundle.

Registered by :mod:`auditlog.cli`; nothing here holds logic the library does not.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from auditlog.access import local_identity
from auditlog.db.server import connect
from auditlog.evidence.bundle import write_bundle
from auditlog.evidence.export import export_filename, write_export
from auditlog.evidence.verify import BundleReport, verify_bundle
from auditlog.integrity.keys import key_id_of, load_public_key
from auditlog.query.filters import Filters
from auditlog.settings import load_settings

FORMATS = ("csv", "ndjson", "bundle")
CLI_CONTEXT = {"user_agent": "auditlog-cli"}

Opt = typer.Option
ListOpt = Annotated[list[str] | None, Opt(help="repeatable")]


def export(
    format: Annotated[str, Opt("--format", "-f", help="csv, ndjson or bundle (ZIP)")] = "csv",
    output: Annotated[
        str | None, Opt("--output", "-o", help="file; '-' = stdout (csv, ndjson)")
    ] = None,
    time_from: Annotated[str | None, Opt("--from", help="RFC 3339, inclusive")] = None,
    time_to: Annotated[str | None, Opt("--to", help="RFC 3339, exclusive")] = None,
    last: Annotated[str | None, Opt(help="15m, 1h, 24h, 7d, 30d, 90d or 1y")] = None,
    category: ListOpt = None,
    action: ListOpt = None,
    outcome: ListOpt = None,
    actor: Annotated[str | None, Opt(help="UPN, id, object id or display-name prefix")] = None,
    target_type: Annotated[str | None, Opt()] = None,
    target_id: Annotated[str | None, Opt()] = None,
    target_name: Annotated[str | None, Opt(help="substring")] = None,
    ip: Annotated[str | None, Opt(help="address or CIDR network")] = None,
    correlation_id: Annotated[str | None, Opt()] = None,
    text: Annotated[
        str | None, Opt("--text", "-q", help="substring of before/after/details")
    ] = None,
) -> None:
    """Export the events the filters select (all by default), in (category, seq) order.

    Every export is itself recorded as an export.downloaded event. A bundle is a ZIP of the
    CSV, the NDJSON and a signed manifest; check one with `auditlog verify --bundle FILE`.
    """
    if format not in FORMATS:
        raise typer.BadParameter(
            f"{format!r} is not one of {', '.join(FORMATS)}", param_hint="--format"
        )
    given = {"from": time_from, "to": time_to, "last": last, "category": category,
             "action": action, "outcome": outcome, "actor": actor, "target_type": target_type,
             "target_id": target_id, "target_name": target_name, "ip": ip,
             "correlation_id": correlation_id, "q": text}  # fmt: skip
    filters = Filters.from_query_params({k: v for k, v in given.items() if v is not None})
    if output == "-" and format == "bundle":
        raise typer.BadParameter("a bundle must be written to a file", param_hint="--output")
    target = output or export_filename(format)
    rows, sha, seq = _run_export(format, target, filters)
    where = "stdout" if target == "-" else target
    typer.echo(
        f"exported {rows} rows to {where}; sha256 {sha}; "
        f"recorded as export.downloaded (user_activity seq {seq})",
        err=True,
    )


def _run_export(fmt: str, target: str, filters: Filters) -> tuple[int, str, int]:
    from auditlog.cli.app import log_session  # the command line's writer, closed on exit

    settings = load_settings()
    kwargs: dict[str, Any] = {
        "actor": local_identity(settings.dashboard.user).actor(),
        "context": CLI_CONTEXT,
        "limits": settings.export,
    }
    reader = connect(settings, "reader")
    try:
        with log_session(settings) as log:
            if fmt == "bundle":
                res = write_bundle(reader, Path(target), filters, log=log, **kwargs)
                return res.rows, res.sha256, res.receipt.seq if res.receipt else 0
            return _write_file(reader, target, filters, fmt, log=log, **kwargs)
    except BaseException:
        if target != "-":
            Path(target).unlink(missing_ok=True)  # never leave a partial export behind
        raise
    finally:
        reader.dispose()


def _write_file(
    reader: Any, target: str, filters: Filters, fmt: str, **kw: Any
) -> tuple[int, str, int]:
    if target == "-":
        res = write_export(reader, sys.stdout.buffer, filters, fmt, **kw)  # type: ignore[arg-type]
    else:
        with open(target, "wb") as out:
            res = write_export(reader, out, filters, fmt, **kw)  # type: ignore[arg-type]
    return res.rows, res.sha256, res.receipt.seq if res.receipt else 0


def load_keys(paths: list[Path] | None) -> dict[str, Any] | None:
    """Trusted public keys (PEM files) by key id; None when no file was given."""
    if not paths:
        return None
    keys = [load_public_key(p.read_bytes()) for p in paths]
    return {key_id_of(k): k for k in keys}


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


def verify_bundle_command(
    bundle: Annotated[Path, typer.Argument(help="the evidence bundle (ZIP)")],
    public_key: Annotated[
        list[Path] | None, Opt(help="trusted public key PEM (repeatable); pins the key")
    ] = None,
) -> None:
    """Check an evidence bundle with nothing but the bundle; name the first bad row (exit 1)."""
    report = verify_bundle(bundle, load_keys(public_key))
    print_report(report, bundle)
    raise typer.Exit(0 if report.ok else 1)
