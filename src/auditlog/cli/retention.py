"""``auditlog retention ...`` and ``auditlog archive ...``.

Registered by :mod:`auditlog.cli.app`. The person acting is the local operator
(``AUDITLOG_USER``, else the OS user) with the role ``auditlog.toml`` gives them (see
:mod:`auditlog.access`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, NamedTuple

import typer

from auditlog.access import Identity, Role
from auditlog.cli._common import open_log, operator
from auditlog.model import CATEGORIES
from auditlog.retention.policies import Retention
from auditlog.retention.records import connect_retention
from auditlog.retention.run import RetentionRun
from auditlog.retention.view import EXPORT_FORMATS, archives_frame, export_archive
from auditlog.settings import Settings, load_settings

retention_app = typer.Typer(
    help="Retention policies, legal holds, and the archive-then-purge pass.", no_args_is_help=True
)
archive_app = typer.Typer(help="Archives of events past retention.", no_args_is_help=True)


class _Session(NamedTuple):
    ret: Retention
    settings: Settings
    who: Identity
    role: Role | None


@contextmanager
def _session() -> Iterator[_Session]:
    """The settings (read once), the operator and their role, and Retention acting as
    ``auditlog_retention``; its connections are closed when the command ends."""
    settings = load_settings()
    engine = connect_retention(settings)
    try:
        ret = Retention(open_log(settings, engine), settings.retention)
        yield _Session(ret, settings, *operator(settings))
    finally:
        engine.dispose()


def _check_category(category: str) -> str:
    if category not in CATEGORIES:
        raise typer.BadParameter(f"{category!r}: use one of {', '.join(CATEGORIES)}")
    return category


Category = Annotated[str, typer.Argument(help=", ".join(CATEGORIES), callback=_check_category)]
Reason = Annotated[str, typer.Option("--reason", help="why (required; recorded in the log)")]
Case = Annotated[str, typer.Option(help="the legal case or matter")]


@retention_app.command("run")
def run_command(
    category: Annotated[list[str] | None, typer.Option(help="only these categories")] = None,
) -> None:
    """Archive every whole month past retention, verify it, purge it, expire old archives.

    Safe to run twice (the second run changes nothing) and safe to kill: the next run resumes.
    """
    with _session() as (ret, settings, _, _role):
        report = RetentionRun(ret.log, ret.settings, settings.store.home).run(
            category or CATEGORIES
        )
    for rep in report.categories.values():
        typer.echo(rep.summary())
    typer.echo("retention pass done" if report.changed else "nothing to do")


@retention_app.command("set")
def set_command(
    category: Category,
    days: Annotated[int, typer.Option(help="keep events this many days in the table")],
    reason: Reason,
    archive_days: Annotated[
        int | None, typer.Option(help="then keep archives this many days (default: unchanged)")
    ] = None,
) -> None:
    """Set (or, when approval is required, propose) a category's retention policy."""
    with _session() as (ret, _, who, role):
        current = ret.policies()[category]
        if archive_days is None and current is None:
            raise typer.BadParameter(
                "give --archive-days: how long archives are kept after their events leave the table"
            )
        keep = archive_days if archive_days is not None else current.archive_days  # type: ignore[union-attr]
        change = ret.set_policy(who, role, category, days, keep, reason)
    if change.applied:
        typer.echo(f"{category}: {days} days, then {keep} days archived (in force now)")
    else:
        typer.echo(
            f"{category}: change {change.proposal.change_id} proposed; it takes effect "  # type: ignore[union-attr]
            "when another compliance lead runs `auditlog retention approve`"
        )


@retention_app.command("approve")
def approve_command(
    change_id: Annotated[str, typer.Argument(help="the pending change's id")],
    note: Annotated[str, typer.Option(help="a note for the log")] = "",
) -> None:
    """Approve another compliance lead's pending change; it takes effect now."""
    with _session() as (ret, _, who, role):
        policy = ret.approve(who, role, change_id, note)
    typer.echo(
        f"{policy.category}: {policy.days} days, then {policy.archive_days} days "
        f"archived (approved by {who.user}, in force now)"
    )


@retention_app.command("reject")
def reject_command(
    change_id: Annotated[str, typer.Argument(help="the pending change's id")], reason: Reason
) -> None:
    """Reject a pending change; it never takes effect."""
    with _session() as (ret, _, who, role):
        p = ret.reject(who, role, change_id, reason)
    typer.echo(f"{p.category}: change {change_id} rejected")


@retention_app.command("hold")
def hold_command(
    category: Category,
    case: Case,
    reason: Reason,
) -> None:
    """Place a legal hold: nothing of the category is purged until it is released."""
    with _session() as (ret, _, who, role):
        hold = ret.place_hold(who, role, category, case, reason)
    typer.echo(f"{category}: on legal hold for case {hold.case_name!r}")


@retention_app.command("release")
def release_command(
    category: Category,
    case: Case,
    reason: Reason,
) -> None:
    """Lift a legal hold."""
    with _session() as (ret, _, who, role):
        ret.lift_hold(who, role, category, case, reason)
    typer.echo(f"{category}: legal hold for case {case!r} lifted")


@retention_app.command("list")
def list_command() -> None:
    """Policies in force, pending changes and legal holds."""
    with _session() as (ret, _, _who, _role):
        policies, pending, holds = ret.policies(), ret.pending(), ret.holds()
    rs = ret.settings
    typer.echo(
        f"bounds: {rs.min_days}..{rs.max_days} days; approval "
        f"{'required' if rs.require_approval else 'not required'}"
    )
    for cat, p in policies.items():
        text = (
            f"{p.days} days, then {p.archive_days} days archived (since "
            f"{p.effective_at:%Y-%m-%d}, by {p.approved_by or p.proposed_by}: {p.reason})"
            if p
            else "no policy: kept forever"
        )
        typer.echo(f"policy  {cat}: {text}")
    for x in pending:
        typer.echo(
            f"pending {x.change_id} {x.category}: {x.days} days, then {x.archive_days} "
            f"archived, proposed by {x.proposed_by}: {x.reason}"
        )
    for h in holds:
        typer.echo(
            f"hold    {h.category}: case {h.case_name!r} by {h.placed_by} since "
            f"{h.placed_at:%Y-%m-%d}: {h.reason}"
        )


@archive_app.command("list")
def archive_list_command(
    category: Annotated[str | None, typer.Option(help="only this category")] = None,
) -> None:
    """Every archive: category, month, seq range, rows, state and file."""
    with _session() as (ret, _, _who, _role):
        frame = archives_frame(ret.engine, category)
    if frame.is_empty():
        typer.echo("no archives")
    for a in frame.iter_rows(named=True):
        typer.echo(
            f"{a['category']:13} {a['month']}  seq {a['first_seq']}..{a['last_seq']}  "
            f"{a['rows']} rows  {a['state']:8}  {a['path']}"
        )


@archive_app.command("export")
def archive_export_command(
    category: Annotated[str, typer.Option(callback=_check_category)],
    month: Annotated[str, typer.Option(help="YYYY-MM")],
    fmt: Annotated[str, typer.Option("--format", help="csv or parquet")] = "csv",
    out: Annotated[Path | None, typer.Option(help="default <category>-<month>.<format>")] = None,
) -> None:
    """Verify an archive and export its events (one column per field); the export is logged."""
    if fmt not in EXPORT_FORMATS:
        raise typer.BadParameter(f"--format {fmt!r}: use csv or parquet")
    out = out or Path(f"{category}-{month}.{fmt}")
    with _session() as (ret, settings, who, _role):
        root = settings.retention.archive_root(settings.store.home)
        rows = export_archive(ret.log, root, who, category, month, fmt, out)
    typer.echo(f"exported {rows} events to {out}")
