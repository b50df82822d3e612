"""Checkpoints to stamp, the stamping worker's login, and a superuser's edits of stored tokens."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from auditlog.db.server import make_engine
from auditlog.store import AuditLog
from tests.support.factories import valid

GOV, USERS = "governance", "user_activity"


def stream_engine(db_url: URL) -> Engine:
    """The stamping worker's engine: logs in as auditlog_stream (group auditlog_streamer)."""
    return make_engine(db_url.set(username="auditlog_stream"), "stream")


def make_checkpoints(log: AuditLog, category: str = GOV, rounds: int = 2) -> None:
    """``rounds`` version-3 checkpoints more on ``category``: two events, then a signed head."""
    for i in range(rounds):
        log.record_many([valid(category=category, details={"i": i, "j": j}) for j in range(2)])
        log.checkpoint([category])


def stamp_rows(engine: Engine) -> list[tuple[int, int, str, bytes]]:
    """(id, checkpoint_id, tsa_url, token) of every stored token, in id order."""
    query = "SELECT id, checkpoint_id, tsa_url, token FROM checkpoint_timestamps ORDER BY id"
    with engine.connect() as conn:
        return [(i, c, u, bytes(t)) for i, c, u, t in conn.execute(sa.text(query))]


def as_superuser(admin: Engine, *statements: str) -> None:
    """Run ``statements`` on the tokens' table with its guard triggers off (a superuser can)."""
    trigger = "checkpoint_timestamps_no_update_delete"
    with admin.begin() as conn:
        conn.exec_driver_sql(f"ALTER TABLE checkpoint_timestamps DISABLE TRIGGER {trigger}")
        for statement in statements:
            conn.exec_driver_sql(statement)
        conn.exec_driver_sql(f"ALTER TABLE checkpoint_timestamps ENABLE ALWAYS TRIGGER {trigger}")


def swap_tokens(admin: Engine, first: int, second: int) -> None:
    """Swap the tokens (and their times) of two stored rows, as an attacker with the database."""
    as_superuser(
        admin,
        "UPDATE checkpoint_timestamps t SET token = o.token, gen_time = o.gen_time "
        "FROM checkpoint_timestamps o "
        f"WHERE (t.id, o.id) IN (({first}, {second}), ({second}, {first}))",
    )
