"""Database errors reach a command-line user as one line naming the cause and what was
committed, never a traceback: a full disk, a terminated session and a statement timeout,
each produced by a real PostgreSQL (a test-only trigger a superuser installs in the test's
own database, never a migration), and an embedded server that is not running."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from auditlog.cli._common import database_error
from auditlog.db.server import embedded_server_down
from auditlog.errors import DatabaseUnavailable
from auditlog.settings import Settings, load_settings
from tests.support.cli import make_cli
from tests.support.factories import valid

AFTER = 200  # rows stored before the trigger strikes


def install_failure(admin: Engine, body: str, definer: bool = False) -> None:
    """A statement trigger on events that runs ``body`` once more than AFTER rows exist
    (as the superuser that installs it, when ``definer``)."""
    security = "SECURITY DEFINER" if definer else ""
    with admin.begin() as conn:
        conn.exec_driver_sql(f"""
            CREATE FUNCTION test_fail_after() RETURNS trigger LANGUAGE plpgsql {security} AS $$
            BEGIN
              IF (SELECT count(*) FROM events) > {AFTER} THEN {body} END IF;
              RETURN NULL;
            END $$;
            CREATE TRIGGER test_fail_after AFTER INSERT ON events
              FOR EACH STATEMENT EXECUTE FUNCTION test_fail_after();
        """)


def count(admin: Engine) -> int:
    with admin.connect() as conn:
        return int(conn.exec_driver_sql("SELECT count(*) FROM events").scalar_one())


@pytest.fixture
def ingest(settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    src = tmp_path / "in.ndjson"
    src.write_text("".join(json.dumps(valid()) + "\n" for _ in range(500)), "utf-8")
    cli = make_cli(settings, monkeypatch, tmp_path)
    return lambda: cli("ingest", str(src), "--batch-size", "100")


def one_line(result: Any) -> str:
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, lines
    return str(lines[0])


def test_a_full_disk_is_named_with_what_was_stored_before_it(
    ingest: Any, admin_engine: Engine
) -> None:
    install_failure(
        admin_engine,
        "RAISE EXCEPTION 'could not extend file \"base/16384/16385\": No space left on device' "
        "USING ERRCODE = 'disk_full';",
    )
    line = one_line(ingest())
    assert line == (
        f"error: stored {AFTER} before the error: the database disk is full "
        '(could not extend file "base/16384/16385": No space left on device)'
    )
    assert count(admin_engine) == AFTER


def test_a_terminated_session_is_named_with_what_was_stored_before_it(
    ingest: Any, admin_engine: Engine
) -> None:
    install_failure(admin_engine, "PERFORM pg_terminate_backend(pg_backend_pid());", True)
    assert one_line(ingest()) == (
        f"error: stored {AFTER} before the error: the connection to the database was lost: "
        "the server ended the session"
    )
    assert count(admin_engine) == AFTER


def test_a_statement_timeout_is_named_with_what_was_stored_before_it(
    ingest: Any, admin_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_failure(admin_engine, "PERFORM pg_sleep(5);")
    monkeypatch.setenv("PGOPTIONS", "-c statement_timeout=1500")  # libpq: every new session
    line = one_line(ingest())
    assert line == (
        f"error: stored {AFTER} before the error: a statement ran past the statement timeout "
        "and was cancelled (canceling statement due to statement timeout)"
    )
    assert count(admin_engine) == AFTER


def test_other_commands_name_a_database_error_in_one_line(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, admin_engine: Engine
) -> None:
    cli = make_cli(settings, monkeypatch, tmp_path)
    assert cli("demo", "--events", "20").exit_code == 0
    with admin_engine.begin() as conn:  # a test-only loss of a privilege
        conn.exec_driver_sql("REVOKE SELECT ON siem_destinations FROM auditlog_writer")
    assert one_line(cli("siem", "list")) == (
        "error: the database refused the statement, SQLSTATE 42501 "
        "(permission denied for table siem_destinations)"
    )


def test_an_embedded_server_that_stopped_is_named_with_how_to_restart_it(
    tmp_path: Path, pg_server_url: URL
) -> None:
    stopped = load_settings(env={}, store={"home": tmp_path / "home"})
    (tmp_path / "home" / "pgdata").mkdir(parents=True)
    (tmp_path / "home" / "pgdata" / "postmaster.pid").write_text("999999999\n/x\n", "utf-8")
    message = database_error(DatabaseUnavailable("connection refused"), stopped)
    pgdata = (tmp_path / "home" / "pgdata").resolve()
    assert message.endswith(
        f"; the embedded PostgreSQL in {pgdata} is not running; start it again with "
        "`auditlog db upgrade` (any auditlog command that connects starts it), then retry"
    )
    # a server that runs (the tests' own) gets no such hint, nor does a configured URL
    running = Path(str(pg_server_url.query["host"])).parent
    assert embedded_server_down(load_settings(env={}, store={"home": running})) is None
    url = {"home": tmp_path / "home", "database_url": "postgresql://h/db"}
    assert embedded_server_down(load_settings(env={}, store=url)) is None


def test_writer_sessions_see_the_real_cause_not_a_generic_one(admin_engine: Engine) -> None:
    with pytest.raises(sa.exc.DBAPIError) as info, admin_engine.connect() as conn:
        conn.exec_driver_sql("SELECT 1/0")
    assert database_error(info.value, load_settings(env={}, store={"database_url": "x://"})) == (
        "the database refused the statement, SQLSTATE 22012 (division by zero)"
    )
