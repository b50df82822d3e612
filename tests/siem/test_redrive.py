"""Re-driving dead letters end to end against a real HTTPS receiver: rejected item -> dead
letter -> receiver fixed -> re-drive (CLI and library) -> delivered, with its audit event."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine
from typer.testing import CliRunner

from auditlog.access import Identity
from auditlog.cli.app import app
from auditlog.errors import NotFound, PermissionDenied
from auditlog.siem.redrive import redrive
from auditlog.siem.status import dead_letters
from auditlog.siem.worker import drain_all
from auditlog.store import AuditLog
from tests.support.factories import valid
from tests.support.http_receiver import Receiver, Request
from tests.support.rsyslog import TlsFiles, make_tls_files
from tests.support.siem import ADMIN, add_as_admin

SECRET = "hec-token-redrive-0123456789"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


class PickyReceiver:
    """Rejects (400) any batch with a poison event while ``picky``; records what it accepted."""

    def __init__(self) -> None:
        self.picky = True
        self.accepted: list[dict[str, Any]] = []

    def __call__(self, req: Request) -> tuple[int, dict[str, str]]:
        batch = req.hec_events()
        if self.picky and any(e["event"].get("details", {}).get("poison") for e in batch):
            return 400, {}
        self.accepted.extend(batch)
        return 200, {}

    def poison_accepted(self) -> list[dict[str, Any]]:
        return [e for e in self.accepted if e["event"].get("details", {}).get("poison")]


@pytest.fixture
def picky(log: AuditLog, tls: TlsFiles) -> Iterator[PickyReceiver]:
    behaviour = PickyReceiver()
    with Receiver(tls, behaviour) as receiver:
        log.record_many([valid(details={"n": i}) for i in range(6)])
        log.record_many([valid(details={"poison": 1}), valid(details={"poison": 2})])
        add_as_admin(log, "splunk", "hec", receiver.url, "json", SECRET, ca_pem=tls.ca_pem, batch=4)
        assert drain_all(log.engine)
        assert dead_letters(log.engine).height == 2
        assert behaviour.poison_accepted() == []
        yield behaviour


def redrive_events(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT outcome, actor, details FROM events "
                "WHERE action = 'siem.dead_letters_redriven' ORDER BY seq"
            )
        ).mappings()
        return [dict(r) for r in rows]


def test_cli_redrive_delivers_dead_letters_once_the_receiver_is_fixed(
    log: AuditLog, picky: PickyReceiver, db_url: URL, tmp_path: Path
) -> None:
    env = {
        "AUDITLOG_DATABASE_URL": db_url.render_as_string(hide_password=False),
        "AUDITLOG_HOME": str(tmp_path / "home"),
        "AUDITLOG_USER": "ops@contoso.com",
    }
    cli = CliRunner()
    listing = cli.invoke(app, ["siem", "dead-letters", "splunk"], env=env).output
    ids = sorted(int(line.split()[0]) for line in listing.splitlines())
    assert len(ids) == 2

    still = cli.invoke(app, ["siem", "redrive", "splunk", "--id", str(ids[0])], env=env)
    assert still.exit_code == 1  # the receiver still rejects it
    assert "0 delivered, 1 failed" in still.output
    assert f"{ids[0]}: " in still.output
    assert "HTTP 400" in still.output

    picky.picky = False  # the receiver was fixed
    done = cli.invoke(app, ["siem", "redrive", "splunk", "--all", "--reason", "fixed"], env=env)
    assert done.exit_code == 0, done.output
    assert "re-drove 2 dead letter(s) to splunk: 2 delivered, 0 failed" in done.output
    assert sorted(e["event"]["details"]["poison"] for e in picky.poison_accepted()) == [1, 2]

    again = cli.invoke(app, ["siem", "redrive", "splunk", "--all"], env=env)
    assert "re-drove 0 dead letter(s)" in again.output  # nothing left to re-drive
    neither = cli.invoke(app, ["siem", "redrive", "splunk"], env=env)
    assert neither.exit_code == 1
    assert (
        neither.output.strip()
        == "error: give the dead letters to re-drive: --id N (repeatable) or --all"
    )

    dead = dead_letters(log.engine)
    assert dead.height == 2  # the dead letters themselves are kept as they were
    assert dead["redriven_at"].null_count() == 0
    assert sorted(dead["redrives"].to_list()) == [1, 2]
    failed, succeeded = redrive_events(log.engine)
    assert failed["outcome"] == "failure"
    assert failed["details"]["dead_letters"][0]["outcome"] == "failed"
    assert succeeded["outcome"] == "success"
    assert succeeded["actor"]["id"] == "ops@contoso.com"
    assert succeeded["details"]["reason"] == "fixed"
    assert sorted(d["id"] for d in succeeded["details"]["dead_letters"]) == ids
    assert {d["outcome"] for d in succeeded["details"]["dead_letters"]} == {"delivered"}


def test_only_an_admin_may_redrive_and_a_refusal_is_logged(
    log: AuditLog, picky: PickyReceiver
) -> None:
    picky.picky = False
    auditor = Identity("auditor@contoso.com")
    with pytest.raises(PermissionDenied):
        redrive(log, "splunk", auditor, "auditor")
    assert picky.poison_accepted() == []
    (refused,) = redrive_events(log.engine)
    assert refused["outcome"] == "denied"
    assert refused["actor"]["id"] == "auditor@contoso.com"
    with pytest.raises(NotFound, match="no dead letter 999999"):
        redrive(log, "splunk", ADMIN, "admin", [999999])
    done = redrive(log, "splunk", ADMIN, "admin")
    assert len(done.delivered) == 2
    assert not done.failed


def test_redrive_records_are_insert_only(
    log: AuditLog, picky: PickyReceiver, engine: Engine, admin_engine: Engine
) -> None:
    picky.picky = False
    redrive(log, "splunk", ADMIN, "admin")
    for stmt in ("UPDATE siem_redrives SET outcome = 'failed'", "DELETE FROM siem_redrives"):
        with pytest.raises(sa.exc.DBAPIError, match="permission denied"), engine.begin() as conn:
            conn.execute(sa.text(stmt))  # the writer has no such right
        with pytest.raises(sa.exc.DBAPIError, match="refused"), admin_engine.begin() as conn:
            conn.execute(sa.text(stmt))  # and the trigger refuses even a superuser
    with engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM siem_redrives")) == 2
    assert json.loads(dead_letters(log.engine)["payload"][0])["details"]["poison"] in (1, 2)
