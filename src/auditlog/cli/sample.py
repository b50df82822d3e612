"""``auditlog sample``: a reproducible random sample of the filtered events, as a bundle.

Registered by :mod:`auditlog.cli.app`; the rule and the drawing are in
:mod:`auditlog.evidence.sample`, the bundle in :mod:`auditlog.evidence.bundle`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from auditlog.access import local_identity
from auditlog.cli._common import errors, log_session
from auditlog.cli.export import (
    CLI_CONTEXT,
    ActorOpt,
    FromOpt,
    IpOpt,
    LastOpt,
    ListOpt,
    QOpt,
    TargetNameOpt,
    TextOpt,
    ToOpt,
    filters_of,
)
from auditlog.db.server import connect
from auditlog.evidence.bundle import BundleResult, write_bundle
from auditlog.evidence.sample import MAX_SAMPLE_SIZE, Sampling, sample_filename
from auditlog.query.filters import Filters
from auditlog.settings import Settings, load_settings

Opt = typer.Option


def sample(
    size: Annotated[int, Opt("--size", "-n", help=f"rows to draw, 1 to {MAX_SAMPLE_SIZE:,}")] = 25,
    seed: Annotated[
        str | None, Opt(help="text; drawn at random (and recorded) when omitted")
    ] = None,
    output: Annotated[str | None, Opt("--output", "-o", help="the bundle (ZIP) to write")] = None,
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
    """Draw a reproducible random sample of the events the filters select, as a bundle.

    Every matching event is ranked by SHA-256(seed || 0x00 || event_id) and the --size lowest
    are taken (all, when fewer match). The bundle verifies like any (`auditlog verify --bundle
    FILE`); its signed manifest records the population's size, the seed and the rule, so
    anyone can redraw the same sample. Recorded as an export.downloaded event (format sample).
    """
    settings = load_settings()
    with errors(settings):
        filters = filters_of(time_from=time_from, time_to=time_to, last=last, category=category,
                             action=action, outcome=outcome, actor=actor,
                             target_type=target_type, target_id=target_id,
                             target_name=target_name, ip=ip, correlation_id=correlation_id,
                             text=text)  # fmt: skip
        request = Sampling(size, seed)
        target = Path(output or sample_filename())
        res = _run(settings, target, filters, request)
    typer.echo(summary(res, target), err=True)


def summary(res: BundleResult, target: Path) -> str:
    """What the command says: where the file went, the population and the sample's size."""
    s = res.manifest["sample"]
    line = (
        f"sampled {s['size']:,} of {s['population']:,} rows (seed {s['seed']!r}, rule "
        f"{s['rule']}) to {target}; sha256 {res.sha256}; recorded as export.downloaded "
        f"(user_activity seq {res.receipt.seq if res.receipt else 0})"
    )
    if s["all_taken"]:
        line += f"\nthe population ({s['population']:,} rows) is not larger than --size "
        line += f"{s['size_requested']:,}: every row is taken"
    return line


def _run(settings: Settings, target: Path, filters: Filters, request: Sampling) -> BundleResult:
    kwargs: dict[str, Any] = {
        "actor": local_identity(settings.dashboard.user).actor(),
        "context": CLI_CONTEXT,
        "limits": settings.export,
        "sample": request,
    }
    reader = connect(settings, "reader")
    try:
        with log_session(settings) as log:
            return write_bundle(reader, target, filters, log=log, **kwargs)
    except BaseException:
        target.unlink(missing_ok=True)  # never leave a partial bundle behind
        raise
    finally:
        reader.dispose()
