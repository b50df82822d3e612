"""`auditlog timestamp [--once|--status]` and `auditlog verify --tsa-anchor PEM`, run as a user
runs them, against a real local TSA: stamped checkpoints verify; a swapped token or a token
from a TSA not under the anchor fails verify as a bad time-stamp; a TSA that is down is an
error line, shown again by --status, and the next round retries."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from auditlog.settings import Settings
from auditlog.store import AuditLog
from tests.support.cli import make_cli
from tests.support.stamps import GOV, make_checkpoints, stamp_rows, swap_tokens
from tests.support.tsa import LocalTSA


@pytest.fixture
def tsa() -> Iterator[LocalTSA]:
    with LocalTSA() as running:
        yield running


@pytest.fixture
def cli(settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tsa: LocalTSA) -> Any:
    monkeypatch.setenv("AUDITLOG_TIMESTAMPS_URL", tsa.url)
    monkeypatch.setenv("AUDITLOG_TIMESTAMPS_ANCHOR", str(tsa.anchor_pem))
    monkeypatch.setenv("AUDITLOG_TIMESTAMPS_TIMEOUT_SECONDS", "5")
    return make_cli(settings, monkeypatch, tmp_path)


def test_once_stamps_every_checkpoint_and_verify_checks_the_tokens_under_the_anchor(
    cli: Any, log: AuditLog, tsa: LocalTSA
) -> None:
    make_checkpoints(log, GOV, 2)
    stamped = cli("timestamp", "--once")
    assert stamped.exit_code == 0, stamped.output
    assert "stamped 2 checkpoint(s); 0 waiting" in stamped.stdout

    checked = cli("verify", "--tsa-anchor", str(tsa.anchor_pem))

    assert checked.exit_code == 0, checked.output
    assert f"ok   time-stamps: 2 of 2 token(s) verify under {tsa.anchor_pem}" in checked.stdout
    line = next(x for x in checked.stdout.splitlines() if x.startswith(f"time {GOV}:"))
    assert "newest stamped checkpoint seq 4 count 2, TSA time " in line
    assert "(by CN=tsa of CN=Local Test TSA; " in line
    assert "verified: all chains intact" in checked.stdout


def test_verify_without_the_anchor_says_the_tokens_were_not_checked(
    cli: Any, log: AuditLog
) -> None:
    make_checkpoints(log, GOV, 1)
    assert cli("timestamp", "--once").exit_code == 0
    result = cli("verify")
    assert result.exit_code == 0, result.output
    assert "1 time-stamp token(s) were not checked; give --tsa-anchor PEM" in result.stderr
    assert "stored, not checked" in result.stdout


def test_verify_fails_on_a_token_swapped_to_another_checkpoint(
    cli: Any, log: AuditLog, admin_engine: Engine, tsa: LocalTSA
) -> None:
    make_checkpoints(log, GOV, 2)
    assert cli("timestamp", "--once").exit_code == 0
    (first, *_), (second, *_) = stamp_rows(admin_engine)
    swap_tokens(admin_engine, first, second)

    result = cli("verify", "--tsa-anchor", str(tsa.anchor_pem))

    assert result.exit_code == 1
    assert "FAIL time-stamps: 0 of 2 token(s) verify" in result.stdout
    assert f"FAIL {GOV} seq 2: bad time-stamp: " in result.stderr
    assert "message imprint is not the SHA-256 of the message" in result.stderr
    assert "verification FAILED" in result.stdout


def test_verify_fails_on_tokens_of_a_tsa_that_is_not_under_the_anchor(
    cli: Any, log: AuditLog, tsa: LocalTSA
) -> None:
    make_checkpoints(log, GOV, 1)
    assert cli("timestamp", "--once").exit_code == 0
    with LocalTSA(name="Other TSA") as other:
        result = cli("verify", "--tsa-anchor", str(other.anchor_pem))
    assert result.exit_code == 1
    assert "bad time-stamp" in result.stderr
    assert "signature or signer certificate" in result.stderr


def test_a_tsa_that_is_down_is_an_error_line_that_status_shows_and_the_next_round_retries(
    cli: Any, log: AuditLog, tsa: LocalTSA
) -> None:
    make_checkpoints(log, GOV, 2)
    tsa.http_status = 503
    failed = cli("timestamp", "--once")
    assert failed.exit_code == 1
    assert "stamped 0 checkpoint(s); 2 waiting" in failed.stdout
    assert "answered HTTP 503" in failed.stderr
    assert "retried next round" in failed.stderr
    assert "Traceback" not in failed.output

    shown = cli("timestamp", "--status")
    assert shown.exit_code == 0, shown.output
    assert "0 token(s) stored; 2 checkpoint(s) waiting" in shown.stdout
    assert f"TSA {tsa.url}: last stamp never" in shown.stdout
    assert "FAILING, 1 round(s) in a row" in shown.stdout
    assert "HTTP 503" in shown.stdout

    tsa.http_status = 200
    assert cli("timestamp", "--once").exit_code == 0
    after = cli("timestamp", "--status").stdout
    assert "2 token(s) stored; 0 checkpoint(s) waiting" in after
    assert "; ok (an earlier error at" in after
    assert f"{GOV}: newest stamped checkpoint seq 4 count 2, TSA time " in after


def test_timestamp_without_a_configured_tsa_names_the_setting(
    cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AUDITLOG_TIMESTAMPS_URL")
    result = cli("timestamp", "--once")
    assert result.exit_code == 1
    assert "error: setting timestamps.url (AUDITLOG_TIMESTAMPS_URL) is unset" in result.stderr


def test_an_unreadable_anchor_file_is_one_error_line(cli: Any, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.pem"
    result = cli("verify", "--tsa-anchor", str(missing))
    assert result.exit_code == 1
    assert f"error: time-stamp trust anchors {missing}" in result.stderr
    assert "Traceback" not in result.output
