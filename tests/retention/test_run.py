"""The retention pass: archive-then-purge, the purge function's own checks, deletion refused
everywhere else, verification across a purged prefix, and kill-safety."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from auditlog.archive.files import verify_archive
from auditlog.integrity.database import verify_database
from auditlog.retention.policies import Retention
from auditlog.retention.run import archive_rows
from auditlog.settings import Settings
from auditlog.store import AuditLog
from tests.support.factories import valid
from tests.support.retention import (
    LEAD,
    archived_seqs,
    events,
    fill,
    hot_seqs,
    policy,
    run,
)


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
        # the floor raised (by the database owner) above the policy: the purge refuses
        ("floor", "younger than the retention floor of 3650 days"),
    ],
)
def test_the_purge_function_checks_prefix_age_hold_and_hashes_itself(
    ret: Retention, setup: str, message: str, admin_engine: Engine
) -> None:
    fill(ret.log, per_month=5, months=[datetime(2022, 1, 10, 12, tzinfo=UTC)])
    if setup != "no_policy":
        policy(ret)
    if setup == "floor":
        with admin_engine.begin() as conn:
            conn.execute(sa.text("UPDATE retention_rules SET floor_days = 3650"))
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
