"""Shared by tests/test_retention.py and tests/test_archive.py: people, old events, runs."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from auditlog.access import Identity
from auditlog.integrity.keys import Signer
from auditlog.retention.policies import Retention
from auditlog.retention.run import RetentionRun, RunReport, archive_rows
from auditlog.settings import Settings
from auditlog.store import AuditLog
from tests.support.database import backdated
from tests.support.factories import valid

LEAD = Identity("lead@contoso.com")
LEAD2 = Identity("lead2@contoso.com")
AUDITOR = Identity("auditor@contoso.com")
MONTHS = [datetime(2022, m, 10, 12, tzinfo=UTC) for m in (1, 2, 3)]
ROLES = """
[roles.users]
"lead@contoso.com" = "compliance_lead"
"lead2@contoso.com" = "compliance_lead"
"auditor@contoso.com" = "auditor"
"""


def fill(
    log: AuditLog,
    per_month: int = 20,
    categories: tuple[str, ...] = ("user_activity",),
    months: list[datetime] = MONTHS,
) -> None:
    """Events recorded (server clock replaced) in each of ``months``; then a few recorded now."""
    at = {"t": months[0]}
    old = backdated(log, lambda: at["t"])
    for month in months:
        at["t"] = month
        old.record_many(
            [
                valid(category=c, occurred_at=month.isoformat(), details={"i": i})
                for c in categories
                for i in range(per_month)
            ]
        )
    log.record_many([valid(category=c) for c in categories for _ in range(3)])


def run(ret: Retention, settings: Settings) -> RunReport:
    return RetentionRun(ret.log, ret.settings, settings.store.home).run()


def hot_seqs(engine: Engine, category: str) -> list[int]:
    with engine.connect() as conn:
        stmt = sa.text("SELECT seq FROM events WHERE category = :c ORDER BY seq")
        return list(conn.execute(stmt, {"c": category}).scalars())


def archived_seqs(ret: Retention, category: str) -> list[int]:
    root = ret.settings.archive_root(ret.log.settings.store.home)
    with ret.engine.connect() as conn:
        rows = archive_rows(conn, category)
    seqs: list[int] = []
    for a in rows:
        if a.deleted_at is None:
            seqs += pl.read_parquet(root / a.path, columns=["seq"])["seq"].to_list()
    return seqs


def events(engine: Engine, action: str) -> list[dict[str, Any]]:
    stmt = sa.text(
        "SELECT event_id::text, outcome, actor, before, after, details FROM events "
        "WHERE action = :a ORDER BY category, seq"
    )
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(stmt, {"a": action}).mappings()]


def policy(
    ret: Retention, category: str = "user_activity", days: int = 365, archive_days: int = 3650
) -> None:
    ret.set_policy(LEAD, "compliance_lead", category, days, archive_days, "records schedule R-7")


def cli_environment(
    settings: Settings, signer: Signer, config_dir: Path, archive_dir: Path
) -> dict[str, str]:
    """Environment for the CLI (or the dashboard) on a test's database, as lead@contoso.com."""
    config = config_dir / "auditlog.toml"
    config.write_text(ROLES, "utf-8")
    return {
        "AUDITLOG_DATABASE_URL": str(settings.store.database_url),
        "AUDITLOG_HOME": str(settings.store.home),
        "AUDITLOG_SIGNING_KEY": signer.private_pem().decode(),
        "AUDITLOG_CONFIG": str(config),
        "AUDITLOG_USER": "lead@contoso.com",
        "AUDITLOG_RETENTION_ARCHIVE_DIR": str(archive_dir),
    }
