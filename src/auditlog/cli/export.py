"""``auditlog export``: CSV, NDJSON or an evidence bundle of the events the filters select.

Registered by :mod:`auditlog.cli.app`; nothing here holds logic the library does not.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from auditlog.access import local_identity
from auditlog.cli._common import log_session
from auditlog.db.server import connect
from auditlog.evidence.bundle import write_bundle
from auditlog.evidence.export import export_filename, write_export
from auditlog.query.filters import Filters
from auditlog.settings import load_settings

FORMATS = ("csv", "ndjson", "bundle")
CLI_CONTEXT = {"user_agent": "auditlog-cli"}

Opt = typer.Option
# The filter options, shared with `auditlog sample` (cli/sample.py).
ListOpt = Annotated[list[str] | None, Opt(help="repeatable")]
FromOpt = Annotated[str | None, Opt("--from", help="RFC 3339, inclusive")]
ToOpt = Annotated[str | None, Opt("--to", help="RFC 3339, exclusive")]
LastOpt = Annotated[str | None, Opt(help="15m, 1h, 24h, 7d, 30d, 90d or 1y")]
ActorOpt = Annotated[str | None, Opt(help="UPN, id, object id or display-name prefix")]
TextOpt = Annotated[str | None, Opt()]
TargetNameOpt = Annotated[str | None, Opt(help="substring")]
IpOpt = Annotated[str | None, Opt(help="address or CIDR network")]
QOpt = Annotated[str | None, Opt("--text", "-q", help="substring of before/after/details")]
_URL_KEYS = {"time_from": "from", "time_to": "to", "text": "q"}  # option -> URL parameter


def filters_of(**given: Any) -> Filters:
    """The Filters of the filter options given (by parameter name); None means not given."""
    params = {_URL_KEYS.get(k, k): v for k, v in given.items() if v is not None}
    return Filters.from_query_params(params)


def export(
    format: Annotated[str, Opt("--format", "-f", help="csv, ndjson or bundle (ZIP)")] = "csv",
    output: Annotated[
        str | None, Opt("--output", "-o", help="file; '-' = stdout (csv, ndjson)")
    ] = None,
    time_from: FromOpt = None,
    time_to: ToOpt = None,
    last: LastOpt = None,
    category: ListOpt = None,
    action: ListOpt = None,
    outcome: ListOpt = None,
    actor: ActorOpt = None,
    target_type: TextOpt = None,
    target_id: TextOpt = None,
    target_name: TargetNameOpt = None,
    ip: IpOpt = None,
    correlation_id: TextOpt = None,
    text: QOpt = None,
) -> None:
    """Export the events the filters select (all by default), in (category, seq) order.

    Every export is itself recorded as an export.downloaded event. A bundle is a ZIP of the
    CSV, the NDJSON and a signed manifest; check one with `auditlog verify --bundle FILE`.
    """
    if format not in FORMATS:
        raise typer.BadParameter(
            f"{format!r} is not one of {', '.join(FORMATS)}", param_hint="--format"
        )
    filters = filters_of(time_from=time_from, time_to=time_to, last=last, category=category,
                         action=action, outcome=outcome, actor=actor, target_type=target_type,
                         target_id=target_id, target_name=target_name, ip=ip,
                         correlation_id=correlation_id, text=text)  # fmt: skip
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
