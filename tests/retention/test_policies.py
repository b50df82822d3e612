"""Retention on a real PostgreSQL: policies, approval, legal holds, archive-then-purge, the
purge function's own checks, deletion refused everywhere else, and kill-safety of the pass."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine
from typer.testing import CliRunner

from auditlog.archive.files import verify_archive
from auditlog.errors import InvalidPolicy, NotFound, PermissionDenied, RetentionRefused
from auditlog.integrity.database import verify_database
from auditlog.integrity.keys import Signer
from auditlog.retention.policies import Retention
from auditlog.retention.records import (
    retention_engine,
)
from auditlog.retention.run import archive_rows
from auditlog.retention.view import impact, policy_history
from auditlog.settings import RetentionSettings, Settings, load_settings
from auditlog.store import AuditLog
from tests.support.factories import valid
from tests.support.retention import (
    AUDITOR,
    LEAD,
    LEAD2,
    archived_seqs,
    cli_environment,
    events,
    fill,
    hot_seqs,
    policy,
    run,
)

# --- fixtures and helpers ----------------------------------------------------------------


@pytest.fixture
def ret_engine(db_url: URL) -> Iterator[Engine]:
    """Logs in as auditlog_app and acts as auditlog_retention, like the CLI."""
    engine = retention_engine(db_url.set(username="auditlog_app"))
    yield engine
    engine.dispose()


@pytest.fixture
def ret_log(ret_engine: Engine, settings: Settings, signer: Signer) -> AuditLog:
    return AuditLog(ret_engine, settings, signer=signer)


@pytest.fixture
def rs(tmp_path: Path) -> RetentionSettings:
    return RetentionSettings(archive_dir=tmp_path / "archives")


@pytest.fixture
def ret(ret_log: AuditLog, rs: RetentionSettings) -> Retention:
    return Retention(ret_log, rs)


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


def test_placing_and_lifting_a_hold_are_logged(ret: Retention) -> None:
    ret.place_hold(LEAD, "compliance_lead", "governance", "Contoso v. Fabrikam", "litigation")
    with pytest.raises(RetentionRefused, match="already on legal hold"):
        ret.place_hold(LEAD, "compliance_lead", "governance", "Contoso v. Fabrikam", "again")
    assert [h.case_name for h in ret.holds()] == ["Contoso v. Fabrikam"]
    ret.lift_hold(LEAD2, "compliance_lead", "governance", "Contoso v. Fabrikam", "settled")
    assert ret.holds() == []
    (placed,) = events(ret.engine, "retention.legal_hold_placed")
    (lifted,) = events(ret.engine, "retention.legal_hold_lifted")
    assert placed["details"]["case_name"] == "Contoso v. Fabrikam"
    assert (placed["after"], lifted["after"]) == ({"held": True}, {"held": False})
    assert lifted["details"]["reason"] == "settled"


def test_purge_under_legal_hold_does_nothing_but_archiving_proceeds(
    ret: Retention, settings: Settings
) -> None:
    fill(ret.log)
    policy(ret)
    ret.place_hold(LEAD, "compliance_lead", "user_activity", "Case 42", "preserve")
    before = hot_seqs(ret.engine, "user_activity")
    report = run(ret, settings)
    assert hot_seqs(ret.engine, "user_activity") == before
    assert len(report.categories["user_activity"].archived) == 3
    assert report.categories["user_activity"].purged == []
    assert events(ret.engine, "retention.purged") == []
    ret.lift_hold(LEAD, "compliance_lead", "user_activity", "Case 42", "released")
    run(ret, settings)
    assert hot_seqs(ret.engine, "user_activity") == list(range(61, 64))


# --- archive, then purge -------------------------------------------------------------------


def test_run_archives_past_retention_purges_it_and_the_rest_still_verifies(
    ret: Retention, settings: Settings, admin_engine: Engine
) -> None:
    fill(ret.log, categories=("user_activity", "governance"))
    policy(ret)
    report = run(ret, settings)
    assert report.categories["user_activity"].archived == [
        "user_activity-2022-01",
        "user_activity-2022-02",
        "user_activity-2022-03",
    ]
    assert report.categories["governance"].policy is None
    assert hot_seqs(ret.engine, "user_activity") == [61, 62, 63]
    assert archived_seqs(ret, "user_activity") == list(range(1, 61))
    assert len(hot_seqs(ret.engine, "governance")) > 60  # no policy: kept
    result = verify_database(admin_engine)
    assert result.ok, result.problems
    assert result.chains["user_activity"].first_seq == 61
    purged = events(ret.engine, "retention.purged")
    assert [(e["details"]["first_seq"], e["details"]["last_seq"]) for e in purged] == [
        (1, 20),
        (21, 40),
        (41, 60),
    ]
    assert [e["details"]["rows"] for e in events(ret.engine, "retention.archived")] == [20] * 3


def test_running_twice_changes_nothing_the_second_time(ret: Retention, settings: Settings) -> None:
    fill(ret.log)
    policy(ret)
    run(ret, settings)
    with ret.engine.connect() as conn:
        state = conn.execute(sa.text("SELECT count(*), max(seq) FROM events")).one()
    again = run(ret, settings)
    assert not again.changed
    with ret.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*), max(seq) FROM events")).one() == state


def test_months_not_wholly_past_retention_stay(ret: Retention, settings: Settings) -> None:
    fill(ret.log)
    now = datetime.now(UTC)
    days = (now - datetime(2022, 3, 1, tzinfo=UTC)).days - 5  # March 2022 not wholly past
    policy(ret, days=days)
    run(ret, settings)
    assert hot_seqs(ret.engine, "user_activity")[0] == 41


def test_archives_past_their_archive_period_are_deleted_and_that_is_logged(
    ret: Retention, settings: Settings
) -> None:
    fill(ret.log)
    policy(ret, days=365, archive_days=0)
    run(ret, settings)
    assert archived_seqs(ret, "user_activity") == []
    assert not any(
        (ret.settings.archive_root(settings.store.home) / "user_activity").rglob("*.parquet")
    )
    deleted = events(ret.engine, "retention.archive_deleted")
    assert [e["details"]["month"] for e in deleted] == ["2022-01", "2022-02", "2022-03"]


def test_impact_preview_counts_what_a_setting_would_do(
    ret: Retention, reader_engine: Engine
) -> None:
    fill(ret.log)
    frame = impact(reader_engine, "user_activity", 365, 3650)
    moved = frame.filter(pl.col("fate") == "moved to an archive")
    assert moved["events"].to_list() == [20, 20, 20]
    kept = frame.filter(pl.col("fate") == "kept in the table")["events"].sum()
    assert kept == 3
    held = impact(reader_engine, "user_activity", 365, 0, held=True)
    assert held["fate"].unique().to_list() == ["kept in the table"]


# --- the purge function and the deletion boundary ------------------------------------------


@pytest.mark.parametrize("who", ["engine", "reader_engine", "ret_engine"])
def test_a_direct_delete_fails_for_every_application_role(
    request: pytest.FixtureRequest, log: AuditLog, who: str
) -> None:
    log.record(valid())
    engine: Engine = request.getfixturevalue(who)
    for stmt in (
        "DELETE FROM events",
        "TRUNCATE events",
        "SET ROLE auditlog_purger",
        "DELETE FROM purge_anchors",
        "UPDATE archives SET purged_at = now()",
    ):
        with (
            pytest.raises(sa.exc.DBAPIError, match=r"permission denied|refused"),
            engine.begin() as conn,
        ):
            conn.execute(sa.text(stmt))
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM events")).scalar_one() == 1


def test_an_archive_is_marked_deleted_only_after_its_period_and_its_range_never_changes(
    ret: Retention, settings: Settings
) -> None:
    fill(ret.log)
    policy(ret)
    run(ret, settings)
    for stmt, why in (
        ("UPDATE archives SET deleted_at = now()", "within its archive period"),
        ("UPDATE archives SET purged_at = NULL", "permission denied"),
        ("UPDATE archives SET purged_event = gen_random_uuid()", "already recorded"),
        ("DELETE FROM archives", "permission denied"),
    ):
        with pytest.raises(sa.exc.DBAPIError, match=why), ret.engine.begin() as conn:
            conn.execute(sa.text(stmt))


def test_only_the_retention_role_may_call_the_purge_function(engine: Engine) -> None:
    with pytest.raises(sa.exc.DBAPIError, match="permission denied"), engine.begin() as conn:
        conn.execute(sa.text("SELECT auditlog_purge(1, 'k', '\\x00'::bytea)"))


def _register(
    ret: Retention, first: int, last: int, month: str = "2022-01-01", last_hash: bytes | None = None
) -> int:
    """Register an archive row for ``user_activity`` seq first..last (no file needed)."""
    with ret.engine.begin() as conn:
        prev, entry, t0, t1 = conn.execute(
            sa.text(
                "SELECT (SELECT prev_hash FROM events WHERE category = 'user_activity' "
                "AND seq = :f),"
                " (SELECT entry_hash FROM events WHERE category = 'user_activity' AND seq = :l),"
                " (SELECT recorded_at FROM events WHERE category = 'user_activity' AND seq = :f),"
                " (SELECT recorded_at FROM events WHERE category = 'user_activity' AND seq = :l)"
            ),
            {"f": first, "l": last},
        ).one()
        return int(
            conn.execute(
                sa.text(
                    "INSERT INTO archives (category, month, first_seq, last_seq, row_count, "
                    "first_prev_hash, last_entry_hash, first_recorded_at, last_recorded_at, path, "
                    "file_sha256, manifest_sha256, bytes) "
                    "VALUES ('user_activity', :m, :f, :l, :n, :p, "
                    ":h, :t0, :t1, 'x.parquet', :z, :z, 0) RETURNING id"
                ),
                {
                    "m": month,
                    "f": first,
                    "l": last,
                    "n": last - first + 1,
                    "p": prev,
                    "h": last_hash or entry,
                    "t0": t0,
                    "t1": t1,
                    "z": bytes(32),
                },
            ).scalar_one()
        )


def _purge(ret: Retention, archive_id: int) -> None:
    with ret.engine.begin() as conn:
        conn.execute(
            sa.text("SELECT auditlog_purge(:a, 'k', :s)"), {"a": archive_id, "s": bytes(64)}
        )


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("recent", "not past its 365 days of retention"),
        ("not_prefix", "not a chain prefix"),
        ("held", "under legal hold"),
        ("wrong_hash", "hashes differ"),
        ("no_policy", "has no retention policy"),
    ],
)
def test_the_purge_function_checks_prefix_age_hold_and_hashes_itself(
    ret: Retention, setup: str, message: str
) -> None:
    fill(ret.log, per_month=5, months=[datetime(2022, 1, 10, 12, tzinfo=UTC)])
    if setup != "no_policy":
        policy(ret)
    first, last = {"recent": (1, 8), "not_prefix": (2, 5)}.get(setup, (1, 5))
    if setup == "held":
        ret.place_hold(LEAD, "compliance_lead", "user_activity", "Case 1", "preserve")
    archive_id = _register(ret, first, last, last_hash=bytes(32) if setup == "wrong_hash" else None)
    with pytest.raises(sa.exc.DBAPIError, match=message):
        _purge(ret, archive_id)
    assert hot_seqs(ret.engine, "user_activity") == list(range(1, 9))


def test_verify_accounts_for_the_purged_prefix_and_catches_any_other_missing_row(
    ret: Retention, settings: Settings, admin_engine: Engine
) -> None:
    fill(ret.log)
    policy(ret)
    run(ret, settings)
    with admin_engine.begin() as conn:  # a superuser posing as the purger, outside the function
        conn.execute(sa.text("SET LOCAL ROLE auditlog_purger"))
        conn.execute(sa.text("DELETE FROM events WHERE category = 'user_activity' AND seq = 62"))
    (problem,) = verify_database(admin_engine).problems
    assert (problem.category, problem.seq, problem.kind) == ("user_activity", 62, "row missing")


def test_verify_rejects_a_purge_anchor_whose_signature_does_not_verify(
    ret: Retention, settings: Settings, admin_engine: Engine
) -> None:
    fill(ret.log)
    policy(ret)
    run(ret, settings)
    with admin_engine.begin() as conn:
        conn.execute(
            sa.text("ALTER TABLE purge_anchors DISABLE TRIGGER purge_anchors_no_update_delete")
        )
        conn.execute(
            sa.text("UPDATE purge_anchors SET signature = :s WHERE seq = 40"), {"s": bytes(64)}
        )
    (problem,) = verify_database(admin_engine).problems
    assert (problem.seq, problem.kind) == (40, "bad anchor")


# --- the command line, and killing the pass ------------------------------------------------


@pytest.fixture
def cli_env(
    settings: Settings, signer: Signer, tmp_path: Path, rs: RetentionSettings
) -> dict[str, str]:
    return cli_environment(settings, signer, tmp_path, rs.archive_dir)  # type: ignore[arg-type]


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


KILL_POINTS = [
    "archive_writing",
    "archive_written",
    "archive_registered",
    "archived_logged",
    "purged",
    "purged_logged",
]


def _run_until(env: dict[str, str], point: str | None) -> None:
    """`retention run` in a subprocess: SIGKILL it at ``point``, or let it finish."""
    cmd = [sys.executable, "-m", "auditlog", "retention", "run"]
    extra = {"AUDITLOG_TEST_PAUSE_AT": point} if point else {}
    with subprocess.Popen(
        cmd,
        env={**os.environ, **env, **extra},
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    ) as proc:
        if point is None:
            _out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            return
        deadline, line = time.monotonic() + 60, ""
        while time.monotonic() < deadline and "paused at" not in line:
            line = proc.stderr.readline()  # type: ignore[union-attr]
            assert line or proc.poll() is None, f"exited before {point}"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert f"paused at {point}" in line


def _every_event_in_one_place(ret: Retention, total: int, strict: bool) -> None:
    hot, kept = hot_seqs(ret.engine, "user_activity"), archived_seqs(ret, "user_activity")
    assert sorted(set(hot) | set(kept)) == list(range(1, total + 1))  # never lost
    assert len(kept) == len(set(kept))  # in at most one archive
    if strict:
        assert not set(hot) & set(kept)  # never in two places


@pytest.mark.slow
def test_a_pass_killed_at_any_point_resumes_and_loses_or_duplicates_nothing(
    ret: Retention, settings: Settings, cli_env: dict[str, str], admin_engine: Engine
) -> None:
    fill(ret.log)
    policy(ret)
    total = len(hot_seqs(ret.engine, "user_activity"))
    for point in KILL_POINTS:
        _run_until(cli_env, point)
        _every_event_in_one_place(ret, total, strict=False)
    _run_until(cli_env, None)
    _every_event_in_one_place(ret, total, strict=True)
    assert hot_seqs(ret.engine, "user_activity") == [61, 62, 63]
    report = verify_database(admin_engine)
    assert report.ok, report.problems
    root = ret.settings.archive_root(settings.store.home)
    with ret.engine.connect() as conn:
        rows = archive_rows(conn, "user_activity")
    assert [a.state for a in rows] == ["purged"] * 3
    for a in rows:
        assert verify_archive(root / a.path, {ret.log.signer.key_id: ret.log.signer.public}).ok
    for action in ("retention.archived", "retention.purged"):
        logged = [e["details"]["month"] for e in events(ret.engine, action)]
        assert logged == ["2022-01", "2022-02", "2022-03"]  # each step logged exactly once
    assert not list(root.rglob("*.partial"))


# --- the Retention page --------------------------------------------------------------------


@pytest.fixture
def page_env(monkeypatch: pytest.MonkeyPatch, cli_env: dict[str, str]) -> Iterator[None]:
    """The dashboard on this test's database with the Retention page in its menu."""
    import streamlit as st

    from ui import nav

    spec = nav.PageSpec(
        "retention", "pages/retention.py", "Retention", ":material/inventory_2:", "Govern"
    )
    if all(p.key != "retention" for p in nav.PAGES):
        monkeypatch.setattr(nav, "PAGES", [*nav.PAGES, spec])
    for key, value in cli_env.items():
        monkeypatch.setenv(key, value)
    yield
    st.cache_data.clear()
    st.cache_resource.clear()


def _page(user: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("AUDITLOG_USER", user)
    at = AppTest.from_file(
        str(Path(__file__).resolve().parents[2] / "app.py"), default_timeout=30
    ).run()
    return at.switch_page("pages/retention.py").run()


def test_page_lets_a_compliance_lead_change_a_policy_after_previewing_its_impact(
    page_env: None, ret: Retention, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(ret.log)
    at = _page("lead@contoso.com", monkeypatch)
    assert not at.exception
    assert not at.error
    next(s for s in at.selectbox if s.label == "Category" and s.key == "policy.category").set_value(
        "user_activity"
    ).run()
    next(n for n in at.number_input if n.label.startswith("Keep in the table")).set_value(400)
    next(n for n in at.number_input if n.label.startswith("Then keep")).set_value(3650)
    at.run()
    assert any("60 moved to an archive" in c.value for c in at.caption)
    next(t for t in at.text_area if t.label.startswith("Reason")).set_value("schedule R-7")
    next(b for b in at.button if b.label == "Apply").click().run()
    assert not at.error, [e.value for e in at.error]
    assert ret.policies()["user_activity"].state() == {"days": 400, "archive_days": 3650}  # type: ignore[union-attr]
    (changed,) = events(ret.engine, "retention.policy_changed")
    assert changed["actor"]["id"] == "lead@contoso.com"


def test_page_is_read_only_for_an_auditor(
    page_env: None, ret: Retention, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(ret.log)
    policy(ret)
    run(ret, settings)
    at = _page("auditor@contoso.com", monkeypatch)
    assert not at.exception
    assert not at.error
    assert "Read-only" in at.info[0].value
    assert not [b for b in at.button if b.label in ("Apply", "Propose for approval")]
    assert not at.form_submit_button  # no hold or approval forms
    history = next(d.value for d in at.dataframe if "refused" in d.value.columns)
    assert list(history["action"]) == ["retention.policy_changed"]
    assert not at.get("download_button")  # only once the archive has verified
    next(b for b in at.button if b.label == "Verify and prepare the download").click().run()
    assert not at.error, [e.value for e in at.error]
    assert at.get("download_button")  # archives are downloadable by any role
    (logged,) = events(ret.engine, "export.downloaded")
    assert logged["actor"]["id"] == "auditor@contoso.com"


def test_page_refuses_to_hand_out_a_tampered_archive(
    page_env: None, ret: Retention, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(ret.log)
    policy(ret)
    run(ret, settings)
    at = _page("auditor@contoso.com", monkeypatch)
    chosen = next(s for s in at.selectbox if s.label == "Download an archive").value
    path = ret.settings.archive_root(settings.store.home) / chosen
    path.write_bytes(path.read_bytes()[:-100])  # a damaged or edited file
    next(b for b in at.button if b.label == "Verify and prepare the download").click().run()
    assert not at.exception
    assert "does not verify, so it is not handed out" in at.error[0].value
    assert not at.get("download_button")
    assert events(ret.engine, "export.downloaded") == []
