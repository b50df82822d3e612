"""Stamping checkpoints with a real RFC 3161 TSA on loopback, and checking the stored tokens:
stamped checkpoints verify; a swapped, re-signed or foreign token is found; a TSA that is down
is retried, its error shown, and nothing is half-written."""

from __future__ import annotations

import hashlib
import socket
import threading
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from auditlog.db.server import make_engine
from auditlog.errors import ConfigError
from auditlog.integrity.stamped import KIND, check_stamps
from auditlog.proofs.stamping import (
    Round,
    Stamper,
    run_stamper,
    stamp_round,
    stamp_status,
    waiting,
)
from auditlog.settings import TimestampSettings, load_settings
from auditlog.store import AuditLog
from tests.support.stamps import (
    GOV,
    USERS,
    as_superuser,
    make_checkpoints,
    stamp_rows,
    stream_engine,
    swap_tokens,
)
from tests.support.tsa import LocalTSA


@pytest.fixture
def tsa() -> Iterator[LocalTSA]:
    with LocalTSA() as running:
        yield running


@pytest.fixture
def stream(db_url: URL) -> Iterator[Engine]:
    engine = stream_engine(db_url)
    yield engine
    engine.dispose()


def stamper(tsa: LocalTSA) -> Stamper:
    return Stamper(tsa.url, (tsa.anchor,), timeout=5.0)


def messages(engine: Engine) -> dict[int, bytes]:
    """checkpoint id -> the note text a token must be for, of every version-3 checkpoint."""
    with engine.connect() as conn:
        return {cid: cp.message() for cid, cp in waiting(conn)}


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/"


def test_a_round_stores_for_every_version_3_checkpoint_a_token_over_its_note_text(
    log: AuditLog, stream: Engine, tsa: LocalTSA
) -> None:
    make_checkpoints(log, GOV, 2)
    make_checkpoints(log, USERS, 1)
    notes = messages(stream)
    assert len(notes) == 3

    done = stamp_round(stream, stamper(tsa))

    assert (done.stamped, done.waiting, done.error) == (3, 0, None)
    rows = stamp_rows(stream)
    assert sorted(cid for _, cid, _, _ in rows) == sorted(notes)
    for _, cid, url, token in rows:
        assert url == tsa.url
        assert tsa.openssl_verifies(token, notes[cid])  # an independent verifier agrees
    sent = [body for _, body in tsa.queries]
    assert all(hashlib.sha256(note).digest() in b"".join(sent) for note in notes.values())


def test_a_later_round_stamps_only_the_checkpoints_added_since(
    log: AuditLog, stream: Engine, tsa: LocalTSA
) -> None:
    make_checkpoints(log, GOV, 2)
    stamp_round(stream, stamper(tsa))
    assert stamp_round(stream, stamper(tsa)).stamped == 0
    make_checkpoints(log, GOV, 1)
    assert stamp_round(stream, stamper(tsa)).stamped == 1
    assert len(tsa.queries) == 3
    assert len(stamp_rows(stream)) == 3


def test_stamped_checkpoints_verify_and_the_newest_per_chain_carries_the_tsa_time(
    log: AuditLog, stream: Engine, reader_engine: Engine, tsa: LocalTSA
) -> None:
    make_checkpoints(log, GOV, 2)
    make_checkpoints(log, USERS, 1)
    stamp_round(stream, stamper(tsa))

    check = check_stamps(reader_engine, [tsa.anchor])

    assert check.ok
    assert check.checked
    assert check.tokens == 3
    assert set(check.newest) == {GOV, USERS}
    gov = check.newest[GOV]
    with reader_engine.connect() as conn:
        top = conn.scalar(
            sa.text("SELECT max(seq) FROM checkpoints WHERE category = :c"), {"c": GOV}
        )
        when = conn.scalar(
            sa.text(
                "SELECT t.gen_time FROM checkpoint_timestamps t JOIN checkpoints c "
                "ON c.id = t.checkpoint_id WHERE c.category = :c AND c.seq = :s"
            ),
            {"c": GOV, "s": top},
        )
    assert (gov.seq, gov.gen_time, gov.tsa_url) == (top, when, tsa.url)
    assert gov.tsa is not None
    assert "Local Test TSA" in gov.tsa


def test_a_token_moved_to_another_checkpoint_is_found_as_a_bad_time_stamp(
    log: AuditLog, stream: Engine, reader_engine: Engine, admin_engine: Engine, tsa: LocalTSA
) -> None:
    make_checkpoints(log, GOV, 2)
    stamp_round(stream, stamper(tsa))
    (first, *_), (second, *_) = stamp_rows(stream)
    swap_tokens(admin_engine, first, second)

    check = check_stamps(reader_engine, [tsa.anchor])

    assert [p.kind for p in check.problems] == [KIND, KIND]
    assert {p.category for p in check.problems} == {GOV}
    assert all("message imprint" in p.message for p in check.problems)
    assert GOV not in check.newest  # neither checkpoint is vouched for any more


def test_a_token_re_signed_by_another_certificate_of_the_tsa_ca_without_the_eku_is_found(
    log: AuditLog, stream: Engine, reader_engine: Engine, admin_engine: Engine, tsa: LocalTSA
) -> None:
    make_checkpoints(log, GOV, 1)
    stamp_round(stream, stamper(tsa))
    ((row, _, _, token),) = stamp_rows(stream)
    forged = tsa.resign(token, eku=False).hex()
    as_superuser(
        admin_engine, f"UPDATE checkpoint_timestamps SET token = '\\x{forged}' WHERE id = {row}"
    )

    (problem,) = check_stamps(reader_engine, [tsa.anchor]).problems

    assert problem.kind == KIND
    assert "signature or signer certificate" in problem.message


def test_a_token_from_a_tsa_not_under_the_anchor_is_found(
    log: AuditLog, stream: Engine, reader_engine: Engine, tsa: LocalTSA
) -> None:
    make_checkpoints(log, GOV, 2)
    with LocalTSA(name="Rogue TSA") as rogue:
        assert stamp_round(stream, stamper(rogue)).stamped == 2

    check = check_stamps(reader_engine, [tsa.anchor])

    assert check.tokens == 2
    assert len(check.problems) == 2
    assert all("signature or signer certificate" in p.message for p in check.problems)


def test_the_worker_stores_no_token_that_does_not_chain_to_its_configured_anchor(
    log: AuditLog, stream: Engine, tsa: LocalTSA
) -> None:
    make_checkpoints(log, GOV, 1)
    with LocalTSA(name="Rogue TSA") as rogue:
        done = stamp_round(stream, Stamper(rogue.url, (tsa.anchor,)))
    assert done.stamped == 0
    assert done.waiting == 1
    assert done.error is not None
    assert "time-stamp token refused" in done.error
    assert stamp_rows(stream) == []


def test_a_tsa_that_is_down_is_retried_next_round_with_its_error_shown_and_nothing_stored(
    log: AuditLog, stream: Engine, reader_engine: Engine
) -> None:
    make_checkpoints(log, GOV, 2)
    down = Stamper(closed_port_url(), (), timeout=2.0)

    first = stamp_round(stream, down)
    second = stamp_round(stream, down)

    assert (first.stamped, first.waiting) == (second.stamped, second.waiting) == (0, 2)
    assert first.error is not None
    assert down.url in first.error
    assert "could not be reached" in first.error
    assert stamp_rows(stream) == []
    status = stamp_status(reader_engine)
    (state,) = status.tsas
    assert (state.tsa_url, state.failures, state.last_success_at) == (down.url, 2, None)
    assert state.last_error == second.error
    assert state.last_error_at is not None
    assert (status.tokens, status.waiting, status.newest) == (0, 2, [])


def test_a_tsa_failing_midway_leaves_the_stamped_ones_whole_and_the_rest_waiting(
    log: AuditLog, stream: Engine, reader_engine: Engine, tsa: LocalTSA
) -> None:
    make_checkpoints(log, GOV, 3)
    assert stamp_round(stream, stamper(tsa), limit=1).stamped == 1
    tsa.http_status = 503

    failed = stamp_round(stream, stamper(tsa))

    assert (failed.stamped, failed.waiting) == (0, 2)
    assert failed.error is not None
    assert "HTTP 503" in failed.error
    assert len(stamp_rows(stream)) == 1
    assert check_stamps(reader_engine, [tsa.anchor]).ok
    tsa.http_status = 200
    recovered = stamp_round(stream, stamper(tsa))
    assert (recovered.stamped, recovered.waiting, recovered.error) == (2, 0, None)
    (state,) = stamp_status(reader_engine).tsas
    assert state.failures == 0
    assert state.last_success_at is not None
    assert state.last_error == failed.error  # the last error stays visible


def test_a_proxy_page_instead_of_a_reply_is_an_error_and_stores_nothing(
    log: AuditLog, stream: Engine, tsa: LocalTSA
) -> None:
    make_checkpoints(log, GOV, 1)
    tsa.body = b"<html>please sign in</html>"
    done = stamp_round(stream, stamper(tsa))
    assert done.error is not None
    assert "not a token for this request" in done.error
    assert stamp_rows(stream) == []


def test_two_workers_racing_keep_one_token_per_checkpoint(
    log: AuditLog, stream: Engine, tsa: LocalTSA
) -> None:
    make_checkpoints(log, GOV, 3)
    ids = sorted(messages(stream))
    rounds = [threading.Thread(target=stamp_round, args=(stream, stamper(tsa))) for _ in range(2)]
    for worker in rounds:
        worker.start()
    for worker in rounds:
        worker.join()
    assert sorted(cid for _, cid, _, _ in stamp_rows(stream)) == ids
    assert len(ids) == 3


def test_a_stored_gen_time_other_than_the_tokens_is_found(
    log: AuditLog, stream: Engine, reader_engine: Engine, admin_engine: Engine, tsa: LocalTSA
) -> None:
    make_checkpoints(log, GOV, 1)
    stamp_round(stream, stamper(tsa))
    as_superuser(
        admin_engine, "UPDATE checkpoint_timestamps SET gen_time = gen_time - interval '1 day'"
    )
    (problem,) = check_stamps(reader_engine, [tsa.anchor]).problems
    assert problem.kind == KIND
    assert "is not the token's genTime" in problem.message


def test_a_token_whose_checkpoint_was_deleted_is_found(
    log: AuditLog, stream: Engine, reader_engine: Engine, admin_engine: Engine, tsa: LocalTSA
) -> None:
    make_checkpoints(log, GOV, 1)
    stamp_round(stream, stamper(tsa))
    as_superuser(
        admin_engine,
        "SET LOCAL session_replication_role = replica",  # skips the foreign key's check
        "UPDATE checkpoint_timestamps SET checkpoint_id = 999999",
    )
    (problem,) = check_stamps(reader_engine, [tsa.anchor]).problems
    assert problem.kind == KIND
    assert "999999, which does not exist" in problem.message


def test_without_anchors_tokens_are_counted_and_not_checked(
    log: AuditLog, stream: Engine, reader_engine: Engine, admin_engine: Engine, tsa: LocalTSA
) -> None:
    make_checkpoints(log, GOV, 2)
    stamp_round(stream, stamper(tsa))
    (first, *_), (second, *_) = stamp_rows(stream)
    swap_tokens(admin_engine, first, second)
    check = check_stamps(reader_engine, None)
    assert (check.checked, check.tokens, check.problems) == (False, 2, [])
    assert check.newest[GOV].tsa is None


def test_stored_tokens_cannot_be_changed_or_deleted_by_the_worker_login(
    log: AuditLog, stream: Engine, tsa: LocalTSA
) -> None:
    make_checkpoints(log, GOV, 1)
    stamp_round(stream, stamper(tsa))
    for statement in (
        "UPDATE checkpoint_timestamps SET gen_time = now()",
        "DELETE FROM checkpoint_timestamps",
        "TRUNCATE checkpoint_timestamps",
    ):
        with pytest.raises(sa.exc.DBAPIError), stream.begin() as conn:
            conn.exec_driver_sql(statement)
    assert len(stamp_rows(stream)) == 1


def test_the_ingest_login_can_neither_read_nor_add_tokens(engine: Engine) -> None:
    for statement in (
        "SELECT count(*) FROM checkpoint_timestamps",
        "INSERT INTO timestamp_state (tsa_url) VALUES ('http://x/')",
    ):
        with pytest.raises(sa.exc.DBAPIError, match="permission denied"), engine.begin() as conn:
            conn.exec_driver_sql(statement)


def test_the_stamper_needs_a_url_and_an_anchor_and_says_which_setting(tsa: LocalTSA) -> None:
    with pytest.raises(ConfigError, match=r"timestamps\.url \(AUDITLOG_TIMESTAMPS_URL\)"):
        Stamper.of(TimestampSettings(anchor=tsa.anchor_pem))
    with pytest.raises(ConfigError, match=r"timestamps\.anchor \(AUDITLOG_TIMESTAMPS_ANCHOR\)"):
        Stamper.of(TimestampSettings(url=tsa.url))
    made = Stamper.of(TimestampSettings(url=tsa.url, anchor=tsa.anchor_pem, timeout_seconds=3))
    assert (made.url, made.anchors, made.timeout) == (tsa.url, (tsa.anchor,), 3.0)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"AUDITLOG_TIMESTAMPS_URL": "ftp://tsa/"}, r"timestamps\.url .* not an http"),
        ({"AUDITLOG_TIMESTAMPS_URL": "http://tsa/ x"}, r"timestamps\.url .* not an http"),
        ({"AUDITLOG_TIMESTAMPS_TIMEOUT_SECONDS": "0"}, r"timeout_seconds .* above 0"),
        ({"AUDITLOG_TIMESTAMPS_POLL_SECONDS": "-1"}, r"poll_seconds must be above 0"),
    ],
)
def test_bad_timestamp_settings_are_refused_naming_the_setting(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(env)


def test_the_worker_runs_rounds_until_stopped_and_retries_after_a_failed_round(
    log: AuditLog, stream: Engine, tsa: LocalTSA
) -> None:
    make_checkpoints(log, GOV, 2)
    tsa.http_status = 503
    seen: list[Round] = []
    stop = threading.Event()

    def on_round(outcome: Round) -> None:
        seen.append(outcome)
        tsa.http_status = 200  # the TSA is back for the next round
        if outcome.stamped:
            stop.set()

    worker = threading.Thread(target=run_stamper, args=(stream, stamper(tsa), 0.05, stop, on_round))
    worker.start()
    worker.join(timeout=30)

    assert not worker.is_alive()
    assert seen[0].error is not None
    assert "HTTP 503" in seen[0].error
    assert (seen[-1].stamped, seen[-1].waiting, seen[-1].error) == (2, 0, None)
    assert len(stamp_rows(stream)) == 2


def test_the_worker_survives_a_database_out_of_reach_and_says_so(tsa: LocalTSA) -> None:
    port = closed_port_url().rsplit(":", 1)[1].strip("/")
    gone = make_engine(f"postgresql+psycopg://auditlog_stream@127.0.0.1:{port}/auditlog", "stream")
    seen: list[Round] = []
    stop = threading.Event()

    def on_round(outcome: Round) -> None:
        seen.append(outcome)
        if len(seen) == 2:
            stop.set()

    try:
        run_stamper(gone, stamper(tsa), 0.01, stop, on_round)
    finally:
        gone.dispose()
    assert [(r.stamped, r.waiting) for r in seen] == [(0, -1), (0, -1)]
    assert all(r.error is not None and r.error.startswith("the database: ") for r in seen)
