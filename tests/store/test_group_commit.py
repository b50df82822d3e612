"""Group commit on a real PostgreSQL: concurrent callers coalesced into one transaction per
chain lock hold, receipts only after the commit, a failed group failing only its own requests.

Groups are made deterministic by holding a chain's advisory lock from a superuser session: the
committer's first group blocks on it, everything submitted meanwhile queues, and releasing the
lock lets the queue go as the next group(s).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from auditlog.db.server import make_engine
from auditlog.errors import (
    ConfigError,
    DatabaseUnavailable,
    EventConflict,
    WriterBusy,
    WriterClosed,
)
from auditlog.integrity.database import verify_database
from auditlog.integrity.keys import Signer
from auditlog.settings import Settings
from auditlog.store import AuditLog, Receipt, prepare
from tests.support.database import reader_of
from tests.support.factories import valid

CATEGORIES = ("configuration", "governance", "user_activity")


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 20.0) -> None:
    """Poll until ``condition`` holds (a bound against a hang, not a timing assertion)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


@contextmanager
def chain_held(admin: Engine, category: str = "configuration") -> Iterator[sa.Connection]:
    """Hold ``category``'s chain lock (the writers' advisory lock) until the block ends."""
    with admin.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.exec_driver_sql(f"SELECT pg_advisory_lock(hashtext('auditlog:{category}'))")
        try:
            yield conn
        finally:
            conn.exec_driver_sql(f"SELECT pg_advisory_unlock(hashtext('auditlog:{category}'))")


def occupy(log: AuditLog) -> Future[list[Receipt]]:
    """Submit one event and wait until the committer has taken it (its group is under way):
    whatever is submitted next queues for the following group."""
    groups = log.commit_stats().groups
    first = log.submit([prepare(valid(details={"first": True}), log.settings)])

    def taken() -> bool:
        stats = log.commit_stats()
        return stats.groups == groups + 1 and stats.queued == 0

    wait_for(taken, "the committer to take it")
    return first


def stored(engine: Engine) -> dict[str, tuple[Any, ...]]:
    """event_id -> (category, seq, entry_hash, recorded_at) of every stored row."""
    with engine.connect() as conn:
        got = conn.exec_driver_sql(
            "SELECT event_id::text, category, seq, entry_hash, recorded_at FROM events"
        ).all()
    return {r[0]: (r[1], r[2], bytes(r[3]), r[4]) for r in got}


def seqs(engine: Engine, category: str) -> list[int]:
    with engine.connect() as conn:
        got = conn.execute(
            sa.text("SELECT seq FROM events WHERE category = :c ORDER BY seq"), {"c": category}
        )
        return [int(s) for s in got.scalars()]


def run_threads(n: int, target: Callable[[int], None]) -> list[BaseException]:
    """Run ``target(i)`` in ``n`` threads at once; the errors they raised."""
    errors: list[BaseException] = []
    start = threading.Barrier(n)

    def run(i: int) -> None:
        try:
            start.wait()
            target(i)
        except BaseException as exc:  # reported to the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a caller hung"
    return errors


def as_stored(r: Receipt) -> tuple[Any, ...]:
    return (r.category, r.seq, r.entry_hash, r.recorded_at)


# --- many callers ------------------------------------------------------------------------


def test_thirty_two_threads_leave_gapless_chains_whose_rows_match_every_receipt(
    log: AuditLog,
) -> None:
    receipts: list[Receipt] = []

    def caller(i: int) -> None:
        for j in range(15):
            cat = CATEGORIES[(i + j) % 3]
            receipts.append(log.record(valid(category=cat, details={"t": i, "j": j})))

    assert run_threads(32, caller) == []
    rows = stored(log.engine)
    assert len(receipts) == len(rows) == 32 * 15
    for r in receipts:
        assert not r.duplicate
        assert rows[r.event_id] == as_stored(r), r
    for cat in CATEGORIES:
        assert seqs(log.engine, cat) == list(range(1, 32 * 5 + 1))
    assert verify_database(reader_of(log.engine)).ok
    stats = log.commit_stats()
    assert (stats.requests, stats.events, stats.queued) == (32 * 15, 32 * 15, 0)


def test_sixteen_threads_are_coalesced_into_fewer_transactions_than_events(log: AuditLog) -> None:
    def caller(i: int) -> None:
        for _ in range(40):
            log.record(valid(details={"i": i}))

    assert run_threads(16, caller) == []
    stats = log.commit_stats()
    assert stats.events == 16 * 40
    # each caller waits for its receipt, so a group holds at most 16; while one commits the
    # other callers queue: far fewer transactions than events
    assert stats.groups <= stats.events // 2, stats
    assert seqs(log.engine, "configuration") == list(range(1, 16 * 40 + 1))


def test_a_lone_caller_waits_for_nobody_each_record_is_its_own_transaction(log: AuditLog) -> None:
    for i in range(5):
        assert log.record(valid(details={"i": i})).seq == i + 1
    assert log.commit_stats().groups == 5


def test_requests_queued_while_a_group_commits_go_as_the_next_group(
    log: AuditLog, admin_engine: Engine
) -> None:
    with chain_held(admin_engine):
        first = occupy(log)
        later = [log.submit([prepare(valid(details={"n": n}), log.settings)]) for n in range(15)]
        assert log.commit_stats().queued == 15
        # nothing is answered while the group waits for the chain lock
        assert not first.done()
        assert not any(f.done() for f in later)
    assert [f.result(30)[0].seq for f in [first, *later]] == list(range(1, 17))
    assert log.commit_stats().groups == 2


def test_receipts_of_one_request_come_in_input_order_across_categories(log: AuditLog) -> None:
    events = [valid(category=CATEGORIES[i % 3], details={"i": i}) for i in range(9)]
    receipts = log.submit([prepare(e, log.settings) for e in events]).result(30)
    assert [r.category for r in receipts] == [e["category"] for e in events]
    assert [r.seq for r in receipts] == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert all(r.recorded_at is not None for r in receipts)


# --- receipts only after the commit ------------------------------------------------------


def test_a_receipt_is_given_only_after_its_row_is_committed(
    log: AuditLog, admin_engine: Engine
) -> None:
    with chain_held(admin_engine) as conn:
        future = occupy(log)
        # the committer is in its transaction, waiting on the lock: no receipt, no row yet
        wait_for(lambda: _waits_on_lock(conn), "the committer to wait on the chain lock")
        assert not future.done()
        assert stored(admin_engine) == {}
    (receipt,) = future.result(30)
    assert stored(admin_engine)[receipt.event_id] == as_stored(receipt)


def _waits_on_lock(conn: sa.Connection) -> bool:
    return bool(
        conn.exec_driver_sql(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = 'auditlog_ingest' "
            "AND datname = current_database() AND wait_event_type = 'Lock'"
        ).scalar_one()
    )


def test_a_concurrent_reader_always_finds_the_row_of_a_receipt(
    log: AuditLog, reader_engine: Engine
) -> None:
    missing: list[str] = []

    def caller(i: int) -> None:
        for _ in range(25):
            r = log.record(valid(details={"i": i}))
            with reader_engine.connect() as conn:
                found = conn.execute(
                    sa.text("SELECT seq FROM events WHERE event_id = :e"), {"e": r.event_id}
                ).scalar()
            if found != r.seq:
                missing.append(r.event_id)

    assert run_threads(8, caller) == []
    assert missing == []


# --- a failed group fails exactly its own requests ---------------------------------------


def test_a_conflicting_request_in_a_group_fails_alone_while_its_group_mates_are_stored(
    log: AuditLog, admin_engine: Engine
) -> None:
    taken = log.record(valid(details={"v": 1}))
    forged = valid(event_id=taken.event_id, details={"v": 2})  # the same id, other content
    innocent = [[valid(details={"n": n, "k": k}) for k in range(n + 1)] for n in range(6)]
    with chain_held(admin_engine):
        occupy(log)
        good = [log.submit([prepare(e, log.settings) for e in req]) for req in innocent[:3]]
        bad = log.submit([prepare(forged, log.settings)])
        good += [log.submit([prepare(e, log.settings) for e in req]) for req in innocent[3:]]
    with pytest.raises(EventConflict, match=taken.event_id) as info:
        bad.result(30)
    assert "details differs" in str(info.value)
    answered = [f.result(30) for f in good]
    rows = stored(log.engine)
    for receipts, request in zip(answered, innocent, strict=True):
        assert len(receipts) == len(request)
        assert all(rows[r.event_id] == as_stored(r) for r in receipts)
    assert rows[taken.event_id] == as_stored(taken)  # the stored event is untouched
    assert seqs(log.engine, "configuration") == list(range(1, len(rows) + 1))
    assert log.commit_stats().splits >= 1


def test_one_event_id_with_two_contents_in_one_group_fails_only_the_later_request(
    log: AuditLog, admin_engine: Engine
) -> None:
    eid = str(uuid.uuid4())
    with chain_held(admin_engine):
        occupy(log)
        earlier = log.submit([prepare(valid(event_id=eid, details={"v": 1}), log.settings)])
        mate = log.submit([prepare(valid(details={"mate": 1}), log.settings)])
        later = log.submit([prepare(valid(event_id=eid, details={"v": 2}), log.settings)])
    (kept,) = earlier.result(30)
    with pytest.raises(EventConflict, match=eid):
        later.result(30)
    assert mate.result(30)[0].seq > 1
    assert stored(log.engine)[eid] == as_stored(kept)


def test_a_failing_request_stores_none_of_its_events_and_its_mates_all_of_theirs(
    log: AuditLog, admin_engine: Engine
) -> None:
    taken = log.record(valid(details={"v": 1}))
    fresh = valid(event_id=str(uuid.uuid4()))
    with chain_held(admin_engine):
        occupy(log)
        mixed = log.submit(
            [prepare(fresh, log.settings), prepare(valid(event_id=taken.event_id), log.settings)]
        )
        mate = log.submit([prepare(valid(details={"mate": 1}), log.settings)])
    with pytest.raises(EventConflict, match=taken.event_id):
        mixed.result(30)
    (kept,) = mate.result(30)
    rows = stored(log.engine)
    assert fresh["event_id"] not in rows  # all or nothing within a request
    assert rows[kept.event_id] == as_stored(kept)
    assert len(rows) == 3  # taken, the occupying event, the mate


def test_the_same_event_in_two_requests_of_one_group_gets_one_receipt(
    log: AuditLog, admin_engine: Engine
) -> None:
    event = valid(event_id=str(uuid.uuid4()), details={"same": True})
    before = log.record(valid(details={"stored": "earlier"}))
    again = valid(event_id=before.event_id, details={"stored": "earlier"})
    with chain_held(admin_engine):
        occupy(log)
        one = log.submit([prepare(event, log.settings)])
        two = log.submit([prepare(event, log.settings)])
        repeat = log.submit([prepare(again, log.settings)])
    (a,), (b,), (c,) = one.result(30), two.result(30), repeat.result(30)
    assert not a.duplicate
    assert b.duplicate
    assert a._replace(duplicate=True) == b
    assert stored(log.engine)[a.event_id] == as_stored(a)
    # a repeat of an event stored before: the stored row's receipt, its recorded_at too
    assert c == before._replace(duplicate=True)
    assert len(stored(log.engine)) == 3


# --- database unavailable, close ---------------------------------------------------------


def test_database_down_fails_every_waiting_caller_then_the_committer_recovers(
    log: AuditLog, admin_engine: Engine, pg_server_url: sa.URL
) -> None:
    name = log.engine.url.database
    server = make_engine(pg_server_url.set(database="postgres"), "admin")
    with server.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        try:
            with chain_held(admin_engine):
                first = occupy(log)
                queued = [log.submit([prepare(valid(), log.settings)]) for _ in range(4)]
                conn.exec_driver_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
                conn.exec_driver_sql(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    f"WHERE usename = 'auditlog_ingest' AND datname = '{name}'"
                )
                for future in [first, *queued]:
                    with pytest.raises(DatabaseUnavailable, match="database is unavailable"):
                        future.result(30)
        finally:
            conn.exec_driver_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    server.dispose()
    assert stored(admin_engine) == {}
    assert log.record(valid()).seq == 1  # the same AuditLog, the same committer
    assert seqs(admin_engine, "configuration") == [1]
    assert verify_database(reader_of(log.engine)).ok


def test_close_with_callers_waiting_fails_them_cleanly(
    engine: Engine, settings: Settings, signer: Signer, admin_engine: Engine
) -> None:
    log = AuditLog(engine, settings, signer=signer)
    outcomes: list[BaseException | Receipt] = []

    def caller() -> None:
        try:
            outcomes.append(log.record(valid()))
        except BaseException as exc:  # what the test asserts
            outcomes.append(exc)

    with chain_held(admin_engine):
        first = occupy(log)
        callers = [threading.Thread(target=caller) for _ in range(4)]
        for t in callers:
            t.start()
        wait_for(lambda: log.commit_stats().queued == 4, "four queued callers")
        closing = threading.Thread(target=log.close)
        closing.start()
        for t in callers:
            t.join(30)
        assert len(outcomes) == 4
        assert all(isinstance(o, WriterClosed) for o in outcomes)
        assert "nothing of them was stored" in str(outcomes[0])
        assert not first.done()  # the group under way is not abandoned
    closing.join(30)
    assert not closing.is_alive()
    assert first.result(0)[0].seq == 1
    with pytest.raises(WriterClosed):
        log.record(valid())
    assert log.submit([prepare(valid(), settings)]).exception(0).__class__ is WriterClosed
    assert seqs(admin_engine, "configuration") == [1]


# --- bounds ------------------------------------------------------------------------------


def test_a_group_holds_at_most_group_max_events_but_a_larger_request_goes_whole(
    engine: Engine, settings: Settings, signer: Signer, admin_engine: Engine
) -> None:
    log = AuditLog(engine, settings.replace(store={"group_max_events": 2}), signer=signer)
    with chain_held(admin_engine):
        occupy(log)
        singles = [log.submit([prepare(valid(), settings)]) for _ in range(5)]
        big = log.submit([prepare(valid(), settings) for _ in range(3)])
    assert [len(f.result(30)) for f in [*singles, big]] == [1, 1, 1, 1, 1, 3]
    assert log.commit_stats().groups == 1 + 3 + 1  # the occupier; (2, 2, 1); the big one
    assert seqs(engine, "configuration") == list(range(1, 10))


def test_a_group_holds_at_most_group_max_bytes(
    engine: Engine, settings: Settings, signer: Signer, admin_engine: Engine
) -> None:
    size = prepare(valid(), settings).size()
    log = AuditLog(engine, settings.replace(store={"group_max_bytes": 2 * size}), signer=signer)
    with chain_held(admin_engine):
        occupy(log)
        futures = [log.submit([prepare(valid(), settings)]) for _ in range(4)]
    assert all(len(f.result(30)) == 1 for f in futures)
    assert log.commit_stats().groups == 1 + 2


def test_a_full_queue_refuses_submit_and_blocks_record_until_there_is_room(
    engine: Engine, settings: Settings, signer: Signer, admin_engine: Engine
) -> None:
    log = AuditLog(engine, settings.replace(store={"queue_max_events": 3}), signer=signer)
    done: list[Receipt] = []
    with chain_held(admin_engine):
        occupy(log)
        queued = [log.submit([prepare(valid(), settings)]) for _ in range(3)]
        refused = log.submit([prepare(valid(), settings)])
        busy = refused.exception(0)
        assert isinstance(busy, WriterBusy)
        assert "queue_max_events" in str(busy)
        assert busy.status == 503
        waiting = threading.Thread(target=lambda: done.append(log.record(valid())))
        waiting.start()
        waiting.join(0.3)
        assert waiting.is_alive()
        assert log.commit_stats().queued == 3  # it waits outside the queue
    waiting.join(30)
    assert [f.result(30)[0].seq for f in queued] == [2, 3, 4]
    assert done[0].seq == 5
    assert seqs(engine, "configuration") == [1, 2, 3, 4, 5]


def test_group_caps_below_one_are_refused_naming_the_setting(settings: Settings) -> None:
    with pytest.raises(ConfigError, match=r"store\.queue_max_events: must be at least 1"):
        settings.replace(store={"queue_max_events": 0})
