"""What the Retention page shows, as frames and figures: impact preview, history, archives.

month_counts(engine, category)        -> (frame, now): events per month, in table / archived
impact_frame(counts, now, days, archive_days, held) -> frame (month, fate, events)   pure
impact(engine, category, days, archive_days, held)  -> the same, from the database
impact_totals(frame)                  -> {fate: events}                            pure
impact_figure(frame)                  -> stacked bars of events per month by fate
is_held(holds, category)              -> whether a legal hold stands on the category
policy_history(engine, limit)         -> retention events, newest first, from the audit log
archives_frame(engine, category)      -> one row per archive with its state
downloadable(archives)                -> the rows of archives whose file is still kept
policies_frame(policies), holds_frame(holds), proposals_frame(proposals)
find_archive(engine, category, month) -> ArchiveRow
export_archive(log, root, who, category, month, fmt, out) -> rows   (verified, logged)
download_archive(log, root, who, category, month, fmt) -> (bytes, file name)  (the same)
download_event(who, archive, fmt, rows, sha256, file) -> the export.downloaded event
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from auditlog.access import Identity
from auditlog.archive.export import write_csv, write_parquet
from auditlog.archive.files import file_sha256, require_valid, verify_archive
from auditlog.errors import InvalidPolicy, NotFound
from auditlog.model import new_event
from auditlog.retention.records import Hold, Policy, Proposal
from auditlog.retention.run import ArchiveRow, archive_rows
from auditlog.store import AuditLog

FATES: dict[str, str] = {
    "kept in the table": "#9e9e9e",
    "moved to an archive": "#1f77b4",
    "kept in an archive": "#aec7e8",
    "deleted for good": "#d62728",
}
HISTORY_ACTIONS = (
    "retention.policy_changed",
    "retention.policy_change_proposed",
    "retention.policy_change_approved",
    "retention.policy_change_rejected",
    "retention.legal_hold_placed",
    "retention.legal_hold_lifted",
)
_COUNT_SCHEMA: dict[str, Any] = {
    "month": pl.Date,
    "place": pl.String,
    "events": pl.Int64,
    "last_recorded_at": pl.Datetime("us", "UTC"),
}
_HOT = sa.text(
    "SELECT date_trunc('month', recorded_at AT TIME ZONE 'UTC')::date AS month, count(*), "
    "max(recorded_at) FROM events WHERE category = :c GROUP BY 1 ORDER BY 1"
)
_ARCHIVED = sa.text(
    "SELECT month, row_count, last_recorded_at FROM archives WHERE category = :c "
    "AND purged_at IS NOT NULL AND deleted_at IS NULL ORDER BY month"
)


def month_counts(engine: Engine, category: str) -> tuple[pl.DataFrame, datetime]:
    """Events of ``category`` per month (UTC, by recorded_at): in the table, or archived."""
    with engine.connect() as conn:
        now = conn.execute(sa.text("SELECT now()")).scalar_one()
        hot = [(m, "table", n, last) for m, n, last in conn.execute(_HOT, {"c": category})]
        arc = [(m, "archive", n, last) for m, n, last in conn.execute(_ARCHIVED, {"c": category})]
    frame = pl.DataFrame(hot + arc, schema=_COUNT_SCHEMA, orient="row")
    return frame, now


def impact_frame(
    counts: pl.DataFrame, now: datetime, days: int, archive_days: int, held: bool = False
) -> pl.DataFrame:
    """What a pass would do under ``days`` / ``archive_days``: events per month and fate.

    The rules of :mod:`auditlog.retention_run`: a month leaves the table once all of it is
    older than ``days`` (and no legal hold stands); its archive is deleted once its newest
    event is older than ``days + archive_days``.
    """
    now = now.astimezone(UTC)
    keep = pl.lit(now - timedelta(days=days))
    drop = pl.lit(now - timedelta(days=days + archive_days))
    month_end = pl.col("month").dt.offset_by("1mo").cast(pl.Datetime("us", "UTC"))
    deleted = (pl.col("last_recorded_at") < drop) & pl.lit(not held)
    leaves = (month_end <= keep) & pl.lit(not held)
    in_table = (
        pl.when(~leaves)
        .then(pl.lit("kept in the table"))
        .when(deleted)
        .then(pl.lit("deleted for good"))
        .otherwise(pl.lit("moved to an archive"))
    )
    archived = (
        pl.when(deleted).then(pl.lit("deleted for good")).otherwise(pl.lit("kept in an archive"))
    )
    fate = pl.when(pl.col("place") == "table").then(in_table).otherwise(archived)
    return (
        counts.with_columns(fate=fate)
        .group_by("month", "fate")
        .agg(pl.col("events").sum())
        .sort("month", "fate")
    )


def impact(
    engine: Engine, category: str, days: int, archive_days: int, held: bool = False
) -> pl.DataFrame:
    """:func:`impact_frame` of ``category`` as it stands in the database now."""
    counts, now = month_counts(engine, category)
    return impact_frame(counts, now, days, archive_days, held)


def impact_totals(frame: pl.DataFrame) -> dict[str, int]:
    """Events of an :func:`impact_frame` per fate, in the order of :data:`FATES`."""
    totals = dict(frame.group_by("fate").agg(pl.col("events").sum()).iter_rows())
    return {fate: int(totals[fate]) for fate in FATES if fate in totals}


def is_held(holds: Sequence[Hold], category: str) -> bool:
    """Whether any of ``holds`` stands on ``category`` (then nothing of it is purged)."""
    return any(h.category == category for h in holds)


def impact_figure(frame: pl.DataFrame) -> go.Figure:
    """Stacked bars: events per month (UTC) by what the setting would do with them."""
    fig = go.Figure()
    for fate, colour in FATES.items():
        part = frame.filter(pl.col("fate") == fate)
        if part.height:
            fig.add_bar(
                x=part["month"].to_list(),
                y=part["events"].to_list(),
                name=fate,
                marker_color=colour,
            )
    fig.update_layout(
        barmode="stack",
        xaxis_title="month recorded (UTC)",
        yaxis_title="events",
        legend_title_text="under this setting",
        margin={"t": 30},
    )
    return fig


def policy_history(engine: Engine, limit: int = 500) -> pl.DataFrame:
    """Retention changes, approvals, refusals and holds, newest first, read from the log."""
    stmt = sa.text(
        "SELECT recorded_at, action, outcome, coalesce(actor->>'upn', actor->>'id') AS actor, "
        "details->>'category' AS category, before::text AS before, after::text AS after, "
        "details->>'reason' AS reason, details->>'refused' AS refused, "
        "details->>'change_id' AS change_id, seq FROM events "
        "WHERE category = 'configuration' AND action = ANY(:a) ORDER BY seq DESC LIMIT :n"
    )
    with engine.connect() as conn:
        rows = conn.execute(stmt, {"a": list(HISTORY_ACTIONS), "n": limit}).all()
    schema: dict[str, Any] = {
        "recorded_at": pl.Datetime("us", "UTC"),
        "action": pl.String,
        "outcome": pl.String,
        "actor": pl.String,
        "category": pl.String,
        "before": pl.String,
        "after": pl.String,
        "reason": pl.String,
        "refused": pl.String,
        "change_id": pl.String,
        "seq": pl.Int64,
    }
    return pl.DataFrame([tuple(r) for r in rows], schema=schema, orient="row")


def archives_frame(engine: Engine, category: str | None = None) -> pl.DataFrame:
    """One row per archive (chain order): range, rows, state, size, file and its hash."""
    with engine.connect() as conn:
        rows = archive_rows(conn, category)
    data = [
        {
            "id": a.id,
            "category": a.category,
            "month": f"{a.month:%Y-%m}",
            "first_seq": a.first_seq,
            "last_seq": a.last_seq,
            "rows": a.row_count,
            "state": a.state,
            "bytes": a.size,
            "created_at": a.created_at,
            "purged_at": a.purged_at,
            "deleted_at": a.deleted_at,
            "path": a.path,
            "file_sha256": a.file_sha256.hex(),
        }
        for a in rows
    ]
    schema: dict[str, Any] = {
        "id": pl.Int64,
        "category": pl.String,
        "month": pl.String,
        "first_seq": pl.Int64,
        "last_seq": pl.Int64,
        "rows": pl.Int64,
        "state": pl.String,
        "bytes": pl.Int64,
        "created_at": pl.Datetime("us", "UTC"),
        "purged_at": pl.Datetime("us", "UTC"),
        "deleted_at": pl.Datetime("us", "UTC"),
        "path": pl.String,
        "file_sha256": pl.String,
    }
    return pl.DataFrame(data, schema=schema)


def downloadable(archives: pl.DataFrame) -> pl.DataFrame:
    """The rows of an :func:`archives_frame` whose file is kept (not deleted after its period)."""
    return archives.filter(pl.col("state") != "deleted")


def policies_frame(policies: Mapping[str, Policy | None]) -> pl.DataFrame:
    """The policy in force per category (days null: no policy, kept forever)."""
    rows = [
        {
            "category": cat,
            "days": p.days if p else None,
            "archive_days": p.archive_days if p else None,
            "effective_at": p.effective_at if p else None,
            "proposed_by": p.proposed_by if p else None,
            "approved_by": p.approved_by if p else None,
            "reason": p.reason if p else None,
        }
        for cat, p in policies.items()
    ]
    schema: dict[str, Any] = {
        "category": pl.String,
        "days": pl.Int64,
        "archive_days": pl.Int64,
        "effective_at": pl.Datetime("us", "UTC"),
        "proposed_by": pl.String,
        "approved_by": pl.String,
        "reason": pl.String,
    }
    return pl.DataFrame(rows, schema=schema)


def holds_frame(holds: Sequence[Hold]) -> pl.DataFrame:
    schema: dict[str, Any] = {
        "id": pl.Int64,
        "category": pl.String,
        "case_name": pl.String,
        "reason": pl.String,
        "placed_by": pl.String,
        "placed_at": pl.Datetime("us", "UTC"),
    }
    return pl.DataFrame([asdict(h) for h in holds], schema=schema)


def proposals_frame(proposals: Sequence[Proposal]) -> pl.DataFrame:
    schema: dict[str, Any] = {
        "change_id": pl.String,
        "category": pl.String,
        "days": pl.Int64,
        "archive_days": pl.Int64,
        "reason": pl.String,
        "proposed_by": pl.String,
        "proposed_at": pl.Datetime("us", "UTC"),
    }
    return pl.DataFrame([asdict(p) for p in proposals], schema=schema)


# --- downloads and exports of archives ---------------------------------------------------

EXPORT_FORMATS = ("csv", "parquet")


def find_archive(engine: Engine, category: str, month: str) -> ArchiveRow:
    """The archive of ``category`` for ``month`` (``YYYY-MM``).

    Raises
    ------
    NotFound
        No such archive, or its file was deleted after its archive period.
    """
    with engine.connect() as conn:
        rows = [a for a in archive_rows(conn, category) if f"{a.month:%Y-%m}" == month]
    if not rows:
        raise NotFound(
            f"no archive of {category} for {month}; list them with `auditlog archive list`"
        )
    if rows[0].deleted_at is not None:
        raise NotFound(
            f"the {category} archive of {month} was deleted on "
            f"{rows[0].deleted_at:%Y-%m-%d}, after its archive period"
        )
    return rows[0]


def export_archive(
    log: AuditLog, root: Path, who: Identity, category: str, month: str, fmt: str, out: Path
) -> int:
    """Verify an archive, write its events to ``out`` as CSV or Parquet (one column per
    field), and log ``export.downloaded``; return the row count.

    Raises
    ------
    InvalidPolicy
        ``fmt`` is not csv or parquet.
    IntegrityFailure
        The archive does not verify (naming the first bad row); nothing is written.
    """
    if fmt not in EXPORT_FORMATS:
        raise InvalidPolicy("format", f"{fmt!r} is not one of {', '.join(EXPORT_FORMATS)}")
    a = find_archive(log.engine, category, month)
    path = root / a.path
    # Signed by this installation's key: an archive re-signed by anyone else is refused.
    require_valid(verify_archive(path, {log.signer.key_id: log.signer.public}))
    if fmt == "csv":
        with open(out, "w", encoding="utf-8", newline="") as fh:
            rows = write_csv(path, fh)
    else:
        rows = write_parquet(path, out)
    log.record(download_event(who, a, fmt, rows, file_sha256(out), out.name))
    return rows


def download_archive(
    log: AuditLog, root: Path, who: Identity, category: str, month: str, fmt: str = "parquet"
) -> tuple[bytes, str]:
    """The dashboard's archive download: :func:`export_archive` (verified, then logged, as the
    CLI's ``auditlog archive export``) into a temporary file; return (its bytes, file name).

    Raises
    ------
    IntegrityFailure
        The archive does not verify (naming the first bad row); nothing is handed out or logged.
    NotFound
        No such archive, or its file was deleted after its archive period.
    """
    name = f"{category}-{month}.{fmt}"
    with tempfile.TemporaryDirectory(prefix="auditlog-archive-") as tmp:
        out = Path(tmp) / name
        export_archive(log, root, who, category, month, fmt, out)
        return out.read_bytes(), name


def download_event(
    who: Identity, a: ArchiveRow, fmt: str, rows: int, sha256: bytes, file: str
) -> dict[str, Any]:
    """The ``export.downloaded`` event of an archive download or export."""
    return new_event(
        action="export.downloaded",
        actor=who.actor(),
        target={"type": "archive", "id": a.path, "name": f"{a.category} {a.month:%Y-%m}"},
        details={
            "source": "archive",
            "category": a.category,
            "month": f"{a.month:%Y-%m}",
            "format": fmt,
            "rows": rows,
            "file": file,
            "sha256": sha256.hex(),
            "first_seq": a.first_seq,
            "last_seq": a.last_seq,
        },
    )
