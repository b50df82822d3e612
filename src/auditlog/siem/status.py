"""What the Export & SIEM page shows: the destinations, delivery status per destination, and
dead letters.

All read as the reader role (no secrets are selected).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from auditlog.siem.destinations import list_destinations

STATUS_SQL = sa.text("""
SELECT d.name AS destination, d.transport, d.format, d.endpoint, d.enabled,
       c.stream AS category, c.position AS delivered_seq, c.delivered_at AS last_delivered_at,
       h.head_seq,
       (SELECT e.recorded_at FROM events e WHERE e.category = c.stream AND e.seq > c.position
        ORDER BY e.seq LIMIT 1) AS oldest_undelivered_at,
       coalesce(s.error_count, 0) AS errors, s.last_error, s.last_error_at, s.retry_at,
       s.heartbeat_at AS worker_seen_at, s.lease_holder AS worker, s.lease_since AS worker_since,
       k.delivered_at AS last_checkpoint_at,
       (SELECT count(*) FROM siem_dead_letters x WHERE x.destination_id = d.id) AS dead_letters
FROM siem_destinations d
JOIN siem_cursors c ON c.destination_id = d.id AND c.stream <> 'checkpoints'
LEFT JOIN siem_cursors k ON k.destination_id = d.id AND k.stream = 'checkpoints'
LEFT JOIN siem_state s ON s.destination_id = d.id
LEFT JOIN LATERAL (SELECT max(seq) AS head_seq FROM events WHERE category = c.stream) h ON true
WHERE d.removed_at IS NULL
ORDER BY d.name, c.stream
""")

DEAD_SQL = sa.text("""
SELECT x.id, d.name AS destination, x.stream, x.position, x.item_key, x.http_status, x.error,
       x.payload, x.created_at, r.redrives, r.redriven_at, r.last_redrive
FROM siem_dead_letters x JOIN siem_destinations d ON d.id = x.destination_id
LEFT JOIN LATERAL (
    SELECT count(*) AS redrives,
           max(attempted_at) FILTER (WHERE outcome = 'delivered') AS redriven_at,
           (array_agg(outcome ORDER BY id DESC))[1] AS last_redrive
    FROM siem_redrives WHERE dead_letter_id = x.id) r ON true
WHERE (CAST(:name AS text) IS NULL OR d.name = :name)
ORDER BY x.id DESC
LIMIT :limit
""")

DESTINATION_COLUMNS = ("name", "transport", "endpoint", "format", "enabled", "secret", "options")
STATUS_SCHEMA = {
    "destination": pl.String,
    "transport": pl.String,
    "format": pl.String,
    "endpoint": pl.String,
    "enabled": pl.Boolean,
    "category": pl.String,
    "delivered_seq": pl.Int64,
    "head_seq": pl.Int64,
    "lag_events": pl.Int64,
    "lag_seconds": pl.Float64,
    "last_delivered_at": pl.Datetime("us", "UTC"),
    "errors": pl.Int64,
    "last_error": pl.String,
    "last_error_at": pl.Datetime("us", "UTC"),
    "retry_at": pl.Datetime("us", "UTC"),
    "dead_letters": pl.Int64,
    "last_checkpoint_at": pl.Datetime("us", "UTC"),
    "worker_seen_at": pl.Datetime("us", "UTC"),
    "worker": pl.String,
    "worker_since": pl.Datetime("us", "UTC"),
}


def _frame(rows: list[dict[str, object]], schema: dict[str, Any]) -> pl.DataFrame:
    raw = {k: v for k, v in schema.items() if k not in ("lag_events", "lag_seconds")}
    raw["oldest_undelivered_at"] = pl.Datetime("us", "UTC")
    return pl.DataFrame(rows, schema=raw, orient="row") if rows else pl.DataFrame(schema=raw)


def destination_status(engine: Engine, now: datetime | None = None) -> pl.DataFrame:
    """One row per destination and category.

    Columns: destination, transport, format, endpoint, enabled, category, delivered_seq (last
    seq delivered), head_seq (newest seq stored), lag_events, lag_seconds (age of the oldest
    event not yet delivered; 0 when caught up), last_delivered_at, errors (failed attempts so
    far), last_error, last_error_at, retry_at (set while backing off), dead_letters,
    last_checkpoint_at, worker_seen_at (the worker's last heartbeat for it), worker and
    worker_since (which ``auditlog stream`` holds the destination's lease, since when; null
    when none does, though a killed worker's name stays until another takes over).
    """
    now = now or datetime.now(UTC)
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(STATUS_SQL).mappings()]
    frame = _frame(rows, STATUS_SCHEMA)
    age = (pl.lit(now) - pl.col("oldest_undelivered_at")).dt.total_microseconds() / 1e6
    return frame.with_columns(
        lag_events=(pl.col("head_seq").fill_null(0) - pl.col("delivered_seq")).clip(lower_bound=0),
        lag_seconds=age.fill_null(0.0).clip(lower_bound=0.0),
    ).select(list(STATUS_SCHEMA))


def dead_letters(engine: Engine, destination: str | None = None, limit: int = 1000) -> pl.DataFrame:
    """Items receivers rejected permanently, newest first (``payload`` as it was sent), with
    their re-drives: how many attempts, when one delivered it (null: not yet), the last
    attempt's outcome (``delivered`` / ``failed``, null when never re-driven)."""
    schema: dict[str, Any] = {
        "id": pl.Int64,
        "destination": pl.String,
        "stream": pl.String,
        "position": pl.Int64,
        "item_key": pl.String,
        "http_status": pl.Int64,
        "error": pl.String,
        "payload": pl.String,
        "created_at": pl.Datetime("us", "UTC"),
        "redrives": pl.Int64,
        "redriven_at": pl.Datetime("us", "UTC"),
        "last_redrive": pl.String,
    }
    with engine.connect() as conn:
        rows = [
            dict(r)
            for r in conn.execute(DEAD_SQL, {"name": destination, "limit": limit}).mappings()
        ]
    if not rows:
        return pl.DataFrame(schema=schema)
    return pl.DataFrame(rows, schema=schema, orient="row")


def destinations_frame(engine: Engine) -> pl.DataFrame:
    """The current destinations as their audit events show them: secret ``[redacted]`` (or
    null when there is none), a CA as its hash, ``options`` as text."""
    schema: dict[str, Any] = dict.fromkeys(DESTINATION_COLUMNS, pl.String) | {"enabled": pl.Boolean}
    rows = [d.redacted() for d in list_destinations(engine)]
    rows = [{**r, "options": str(r["options"])} for r in rows]
    return pl.DataFrame(rows, schema=schema)
