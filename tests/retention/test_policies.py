"""Retention policies on a real PostgreSQL: history, bounds, two-person approval, the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from auditlog.errors import InvalidPolicy, NotFound, PermissionDenied, RetentionRefused
from auditlog.retention.policies import Retention
from auditlog.retention.view import policy_history
from auditlog.settings import RetentionSettings, load_settings
from auditlog.store import AuditLog
from tests.support.retention import (
    AUDITOR,
    LEAD,
    LEAD2,
    events,
    policy,
)

# --- policies ------------------------------------------------------------------------------


def test_policy_change_is_logged_with_before_after_actor_and_reason(ret: Retention) -> None:
    policy(ret, days=400)
    ret.set_policy(LEAD2, "compliance_lead", "user_activity", 730, 365, "legal asked for 2 years")
    first, second = events(ret.engine, "retention.policy_changed")
    assert first["before"] is None
    assert first["after"] == {"days": 400, "archive_days": 3650}
    assert second["before"] == {"days": 400, "archive_days": 3650}
    assert second["after"] == {"days": 730, "archive_days": 365}
    assert second["actor"]["upn"] == "lead2@contoso.com"
    assert second["details"]["reason"] == "legal asked for 2 years"
    assert ret.policies()["user_activity"].days == 730  # type: ignore[union-attr]


def test_every_policy_version_is_kept_and_history_reads_from_the_log(
    ret: Retention, reader_engine: Engine
) -> None:
    for days in (400, 500, 600):
        policy(ret, days=days)
    with ret.engine.connect() as conn:
        kept = conn.execute(sa.text("SELECT days FROM retention_policies ORDER BY id")).scalars()
        assert list(kept) == [400, 500, 600]
    history = policy_history(reader_engine)
    assert history["action"].to_list() == ["retention.policy_changed"] * 3
    assert history["after"].str.json_path_match("$.days").to_list() == ["600", "500", "400"]


def test_policy_history_cannot_be_rewritten(ret: Retention) -> None:
    policy(ret)
    with (
        pytest.raises(sa.exc.DBAPIError, match=r"permission denied|append-only"),
        ret.engine.begin() as conn,
    ):
        conn.execute(sa.text("UPDATE retention_policies SET days = 1"))


def test_auditor_cannot_change_a_policy_and_the_attempt_is_logged_as_denied(
    ret: Retention,
) -> None:
    with pytest.raises(PermissionDenied, match="auditor"):
        ret.set_policy(AUDITOR, "auditor", "governance", 400, 365, "shorter please")
    (attempt,) = events(ret.engine, "retention.policy_changed")
    assert attempt["outcome"] == "denied"
    assert attempt["actor"]["upn"] == "auditor@contoso.com"
    assert attempt["details"]["attempted"] == {"days": 400, "archive_days": 365}
    assert ret.policies()["governance"] is None


def test_policy_below_the_floor_is_refused_with_a_clear_message(ret: Retention) -> None:
    with pytest.raises(InvalidPolicy) as info:
        ret.set_policy(LEAD, "compliance_lead", "governance", 30, 365, "save disk")
    assert info.value.field == "days"
    assert "30 days is below the floor of 365 days" in str(info.value)
    assert ret.policies()["governance"] is None


@pytest.mark.parametrize(
    ("days", "archive_days", "reason", "field"),
    [
        (4000, 0, "r", "days"),
        (400, -1, "r", "archive_days"),
        (400, 0, "  ", "reason"),
        ("400", 0, "r", "days"),
    ],
)
def test_out_of_bounds_or_unexplained_policies_are_refused(
    ret: Retention, days: Any, archive_days: int, reason: str, field: str
) -> None:
    with pytest.raises(InvalidPolicy) as info:
        ret.set_policy(LEAD, "compliance_lead", "governance", days, archive_days, reason)
    assert info.value.field == field


def test_floor_and_approval_come_from_auditlog_toml_and_env(tmp_path: Path) -> None:
    config = tmp_path / "auditlog.toml"
    config.write_text("[retention]\nmin_days = 730\nrequire_approval = true\n", "utf-8")
    env = {"AUDITLOG_CONFIG": str(config), "AUDITLOG_RETENTION_MAX_DAYS": "2000"}
    assert load_settings(env).retention == RetentionSettings(730, 2000, 3650, True)


def test_with_approval_a_change_waits_for_a_different_compliance_lead(
    ret_log: AuditLog, rs: RetentionSettings
) -> None:
    ret = Retention(ret_log, RetentionSettings(require_approval=True, archive_dir=rs.archive_dir))
    change = ret.set_policy(LEAD, "compliance_lead", "governance", 500, 365, "schedule R-9")
    assert not change.applied
    assert ret.policies()["governance"] is None
    with pytest.raises(PermissionDenied, match="different compliance lead"):
        ret.approve(LEAD, "compliance_lead", change.proposal.change_id)  # type: ignore[union-attr]
    with pytest.raises(PermissionDenied):
        ret.approve(AUDITOR, "auditor", change.proposal.change_id)  # type: ignore[union-attr]
    assert ret.policies()["governance"] is None
    applied = ret.approve(LEAD2, "compliance_lead", change.proposal.change_id)  # type: ignore[union-attr]
    assert (applied.days, applied.proposed_by, applied.approved_by) == (
        500,
        "lead@contoso.com",
        "lead2@contoso.com",
    )
    assert [e["outcome"] for e in events(ret.engine, "retention.policy_change_proposed")] == [
        "success"
    ]
    approvals = events(ret.engine, "retention.policy_change_approved")
    assert [e["outcome"] for e in approvals] == ["denied", "denied", "success"]
    (changed,) = events(ret.engine, "retention.policy_changed")
    assert changed["details"]["approved_by"] == "lead2@contoso.com"
    assert ret.pending() == []


def test_a_rejected_proposal_never_takes_effect_and_is_logged(
    ret_log: AuditLog, rs: RetentionSettings
) -> None:
    ret = Retention(ret_log, RetentionSettings(require_approval=True, archive_dir=rs.archive_dir))
    change = ret.set_policy(LEAD, "compliance_lead", "governance", 500, 365, "schedule R-9")
    with pytest.raises(RetentionRefused, match="already waiting"):
        ret.set_policy(LEAD2, "compliance_lead", "governance", 900, 365, "another")
    ret.reject(LEAD2, "compliance_lead", change.proposal.change_id, "too short")  # type: ignore[union-attr]
    assert ret.policies()["governance"] is None
    with pytest.raises(NotFound):
        ret.approve(LEAD2, "compliance_lead", change.proposal.change_id)  # type: ignore[union-attr]
    (rejected,) = events(ret.engine, "retention.policy_change_rejected")
    assert rejected["details"]["reason"] == "too short"


# --- legal holds ---------------------------------------------------------------------------


def test_cli_sets_lists_and_refuses_a_policy_below_the_floor(cli_env: dict[str, str]) -> None:
    from auditlog.cli.app import app

    runner = CliRunner()
    bad = runner.invoke(
        app,
        ["retention", "set", "governance", "--days", "10", "--archive-days", "0", "--reason", "x"],
        env=cli_env,
    )
    assert isinstance(bad.exception, InvalidPolicy)
    assert "below the floor of 365 days" in str(bad.exception)
    ok = runner.invoke(
        app,
        [
            "retention",
            "set",
            "governance",
            "--days",
            "400",
            "--archive-days",
            "365",
            "--reason",
            "schedule R-7",
        ],
        env=cli_env,
    )
    assert ok.exit_code == 0, ok.output
    listed = runner.invoke(app, ["retention", "list"], env=cli_env)
    assert "policy  governance: 400 days, then 365 days archived" in listed.output
    assert "policy  user_activity: no policy: kept forever" in listed.output
