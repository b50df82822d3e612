"""The append-only store on a real PostgreSQL: chains, idempotency, refusals, bad input."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from typing import Any

import psycopg
import pytest
import rfc8785
import sqlalchemy as sa
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from auditlog.columns import HASHED_FIELDS
from auditlog.errors import BatchRejected, EventConflict, InvalidEvent
from auditlog.integrity.checkpoints import signature_ok
from auditlog.integrity.database import db_checkpoints, verify_database
from auditlog.integrity.keys import Signer
from auditlog.integrity.rule import row_to_record
from auditlog.settings import Settings, load_settings
from auditlog.store import ACTOR_KEYS, NOTIFY_CHANNEL, AuditLog, prepare
from tests.support.database import reader_of
from tests.support.factories import json_values, valid


def count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.exec_driver_sql("SELECT count(*) FROM events").scalar_one())


def rows(engine: Engine, category: str) -> list[Any]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                sa.text(
                    "SELECT seq, prev_hash, entry_hash FROM events WHERE category = :c ORDER BY seq"
                ),
                {"c": category},
            ).all()
        )


def test_first_entry_starts_chain_at_seq_1_with_zero_prev_hash(log: AuditLog) -> None:
    receipt = log.record(valid())
    assert receipt.seq == 1
    ((seq, prev, entry),) = rows(log.engine, "configuration")
    assert (seq, bytes(prev), bytes(entry)) == (1, bytes(32), receipt.entry_hash)


def test_each_category_is_its_own_gapless_chain(log: AuditLog) -> None:
    cats = ["configuration", "governance", "user_activity"] * 5
    log.record_many([valid(category=c) for c in cats])
    for cat in set(cats):
        chain = rows(log.engine, cat)
        assert [r.seq for r in chain] == [1, 2, 3, 4, 5]
        for before, after in itertools.pairwise(chain):
            assert bytes(after.prev_hash) == bytes(before.entry_hash)


def test_entry_hash_is_sha256_of_prev_hash_and_jcs_record(log: AuditLog) -> None:
    import hashlib

    import rfc8785

    log.record(valid(details={"ratio": 0.5, "name": "Zoë", "n": [1, 2.0, None]}))
    with log.engine.connect() as conn:
        row = conn.exec_driver_sql("SELECT * FROM events").mappings().one()
    record = row_to_record(row)
    # the rule: source is a member only when the event has one (this one, recorded
    # in-process, has none)
    assert "source" not in record
    body = {k: record[k] for k in HASHED_FIELDS if k != "source"}
    expected = hashlib.sha256(bytes(row["prev_hash"]) + rfc8785.dumps(body)).digest()
    assert bytes(row["entry_hash"]) == expected


def test_repeated_event_id_with_same_content_is_stored_once(log: AuditLog) -> None:
    ev = valid(event_id=str(uuid.uuid4()))
    first = log.record(ev)
    again = log.record(dict(ev))
    assert again.duplicate
    assert again.seq == first.seq
    assert count(log.engine) == 1


def test_repeated_event_id_within_one_batch_is_stored_once(log: AuditLog) -> None:
    ev = valid(event_id=str(uuid.uuid4()))
    receipts = log.record_many([ev, dict(ev)])
    assert [r.duplicate for r in receipts] == [False, True]
    assert count(log.engine) == 1


def test_repeated_event_id_with_different_content_is_an_error(log: AuditLog) -> None:
    eid = str(uuid.uuid4())
    log.record(valid(event_id=eid))
    with pytest.raises(EventConflict, match=eid):
        log.record(valid(event_id=eid, outcome="failure"))
    assert count(log.engine) == 1


def test_large_batch_with_some_stored_events_stores_only_the_new_ones(log: AuditLog) -> None:
    # Over CHUNK events: the first attempt takes all as new, the unique index refuses the
    # repeats, and the careful second attempt answers them from the store.
    events = [valid(event_id=str(uuid.uuid4()), category="governance") for _ in range(2_500)]
    stored = log.record_many(events[1_200:1_300])
    receipts = log.record_many(events)
    assert [r.duplicate for r in receipts] == [1_200 <= i < 1_300 for i in range(2_500)]
    assert [r.seq for r in receipts[1_200:1_300]] == [r.seq for r in stored]
    assert sorted(r.seq for r in receipts if not r.duplicate) == list(range(101, 2_501))
    assert count(log.engine) == 2_500
    assert [r.seq for r in rows(log.engine, "governance")] == list(range(1, 2_501))
    assert verify_database(reader_of(log.engine)).ok


def test_large_batch_repeating_a_stored_event_with_other_content_stores_nothing(
    log: AuditLog,
) -> None:
    events = [valid(event_id=str(uuid.uuid4())) for _ in range(1_500)]
    log.record(events[1_400])
    events[1_400] = {**events[1_400], "outcome": "failure"}
    with pytest.raises(EventConflict, match=events[1_400]["event_id"]):
        log.record_many(events)
    assert count(log.engine) == 1


BAD_INPUTS = [
    ({"occurred_at": "2026-11-28T09:15:02"}, "occurred_at"),
    ({"occurred_at": "now"}, "occurred_at"),
    ({"occurred_at": "infinity"}, "occurred_at"),
    ({"category": "finance"}, "category"),
    ({"outcome": "ok"}, "outcome"),
    ({"source_ip": "1.2.3"}, "source_ip"),
    ({"user_agent": "curl\x00/8"}, "user_agent"),
    ({"details": {"note": "a\x00b"}}, "details"),
    ({"details": {"k\x00": 1}}, "details"),
    ({"after": {"nested": [{"deep": "\x00"}]}}, "after"),
    ({"actor": {"type": "user", "upn": "a\x00@b.c"}}, "actor"),
    ({"details": {"big": 2**60}}, "details"),
    ({"details": {"a": {1: 2, "b": 3}}}, "details"),
    ({"details": {"lone": "\ud800"}}, "details"),
    ({"before": {"blob": "x" * 70_000}}, "before"),
    ({"after": {"blob": "é" * 40_000}}, "after"),  # 40,000 characters, 80,000 UTF-8 bytes
    ({"details": {"blob": "é" * 140_000}}, "event"),
    ({"details": {"blob": "x" * 300_000}}, "event"),
    ({"action": "Policy Updated"}, "action"),
]


@pytest.mark.parametrize(("changes", "field"), BAD_INPUTS)
def test_bad_input_is_rejected_by_field_and_store_is_unchanged(
    log: AuditLog, changes: dict[str, Any], field: str
) -> None:
    log.record(valid())
    head = rows(log.engine, "configuration")
    with pytest.raises(InvalidEvent) as info:
        log.record(valid(**changes))
    assert info.value.field == field
    assert rows(log.engine, "configuration") == head


def test_nul_error_names_the_path_inside_the_json(log: AuditLog) -> None:
    with pytest.raises(InvalidEvent, match=r"nested\[0\]\.deep.*NUL"):
        log.record(valid(after={"nested": [{"deep": "\x00"}]}))


def test_batch_with_one_bad_event_names_it_and_stores_nothing(log: AuditLog) -> None:
    batch = [valid(), valid(source_ip="999.1.1.1"), valid()]
    with pytest.raises(BatchRejected) as info:
        log.record_many(batch)
    assert list(info.value.errors) == [1]
    assert "event 1: source_ip" in str(info.value)
    assert count(log.engine) == 0


def test_clock_skew_is_accepted_but_flagged(log: AuditLog) -> None:
    log.record(valid(occurred_at="2020-01-01T00:00:00Z"))
    log.record(valid())  # 2026-11-28: within the skew window only on that day; compare below
    with log.engine.connect() as conn:
        flags = conn.exec_driver_sql(
            "SELECT clock_skew, abs(extract(epoch FROM recorded_at - occurred_at)) > 300 "
            "FROM events ORDER BY seq"
        ).all()
    assert flags[0] == (True, True)
    assert flags[1][0] == flags[1][1]


def test_commit_sends_a_notify_to_followers(log: AuditLog, db_url: sa.URL) -> None:
    dsn = db_url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
        log.record(valid(category="governance"))
        note = next(listener.notifies(timeout=5))
    assert note.payload == '{"category": "governance", "seq": 1}'


def test_checkpoint_is_signed_for_a_new_chain_head(log: AuditLog) -> None:
    receipt = log.record(valid())
    with reader_of(log.engine).connect() as conn:
        cp = db_checkpoints(conn.connection.driver_connection, "configuration")
    assert [(c.seq, c.entry_hash) for c in cp] == [(1, receipt.entry_hash)]
    assert signature_ok(cp[0], {log.signer.key_id: log.signer.public})


def test_eight_concurrent_writers_leave_a_gapless_valid_chain(
    engine: Engine, settings: Settings, signer: Signer
) -> None:
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        log = AuditLog(engine, settings, signer=signer)
        try:
            for i in range(10):
                log.record_many([valid(details={"w": n, "i": i, "j": j}) for j in range(3)])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert [r.seq for r in rows(engine, "configuration")] == list(range(1, 241))
    assert verify_database(reader_of(engine)).ok


# --- immutability: enforced by the database ----------------------------------------------

REFUSED_AS_APP = [
    "UPDATE events SET outcome = 'failure'",
    "DELETE FROM events",
    "TRUNCATE events",
    "ALTER TABLE events DISABLE TRIGGER ALL",
    "ALTER TABLE events DISABLE TRIGGER events_no_update_delete",
    "DROP TABLE events",
    "UPDATE checkpoints SET seq = 0",
    "DELETE FROM checkpoints",
    "INSERT INTO purge_anchors (category, seq, entry_hash) VALUES ('governance', 5, '\\x00')",
    "SET ROLE auditlog_owner",
    "SET ROLE auditlog_purger",
]


@pytest.mark.parametrize("statement", REFUSED_AS_APP)
def test_application_role_cannot_change_or_remove_entries(log: AuditLog, statement: str) -> None:
    log.record(valid())
    with pytest.raises(sa.exc.DBAPIError) as info, log.engine.begin() as conn:
        conn.exec_driver_sql(statement)
    assert isinstance(
        info.value.orig,
        psycopg.errors.InsufficientPrivilege | psycopg.errors.RaiseException,
    ), info.value
    assert count(log.engine) == 1


def test_reader_role_cannot_insert(reader_engine: Engine, log: AuditLog) -> None:
    with (
        pytest.raises(sa.exc.ProgrammingError, match="permission denied"),
        reader_engine.begin() as c,
    ):
        c.exec_driver_sql("INSERT INTO signing_keys (key_id, public_key) VALUES ('x', '\\x00')")


def test_superuser_in_replica_mode_still_cannot_update(log: AuditLog, admin_engine: Engine) -> None:
    log.record(valid())
    with admin_engine.begin() as conn:
        conn.exec_driver_sql("SET session_replication_role = replica")
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            conn.exec_driver_sql("UPDATE events SET outcome = 'failure'")


def test_superuser_cannot_truncate_or_delete_without_altering_triggers(
    log: AuditLog, admin_engine: Engine
) -> None:
    log.record(valid())
    for stmt in ("DELETE FROM events", "TRUNCATE events"):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), admin_engine.begin() as c:
            c.exec_driver_sql(stmt)
    assert count(log.engine) == 1


def test_repeat_with_a_large_float_is_a_duplicate_not_a_conflict(log: AuditLog) -> None:
    ev = valid(event_id=str(uuid.uuid4()), details={"big": 1e21, "small": 1e-7, "x": 0.1})
    first = log.record(ev)
    again = log.record(dict(ev))
    assert again.duplicate
    assert again.seq == first.seq


# --- the store's field texts are JCS ----------------------------------------------------

# ASCII, with quotes, backslashes and control characters: the fast path (C encoder and
# f-strings). Any text in display_name and floats in ``after`` take the checked path.
_text = st.text(st.characters(codec="ascii"), max_size=12)
_maybe_text = st.none() | _text
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | _text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_text, children, max_size=3),
    max_leaves=10,
)


@hyp_settings(max_examples=500, deadline=None)
@given(
    actor=st.fixed_dictionaries(
        {"type": st.sampled_from(["user", "service"]), "id": _text.filter(bool)},
        optional={
            "display_name": _maybe_text | st.text(max_size=8),
            "upn": _maybe_text,
            "tenant_id": _maybe_text,
        },
    ),
    target=st.fixed_dictionaries(
        {"type": _text.filter(bool), "id": _text.filter(bool)},
        optional={"name": _maybe_text},
    ),
    details=st.dictionaries(_text, _json, max_size=4),
    after=st.none() | st.dictionaries(_text, _json | json_values, max_size=3),
    user_agent=_maybe_text,
    correlation_id=_maybe_text,
)
def test_prepared_record_is_the_rfc8785_form_of_the_record(
    actor: dict[str, Any],
    target: dict[str, Any],
    details: dict[str, Any],
    after: dict[str, Any] | None,
    user_agent: str | None,
    correlation_id: str | None,
) -> None:
    raw = valid(
        actor=actor,
        target=target,
        details=details,
        after=after,
        user_agent=user_agent,
        correlation_id=correlation_id,
        event_id=str(uuid.uuid4()),
    )
    try:
        p = prepare(raw, load_settings(env={}))
    except InvalidEvent:
        return  # NUL characters and the like: refused, never hashed
    record = {
        "action": raw["action"],
        "actor": {k: actor.get(k) for k in ACTOR_KEYS} | {"resolved": False},
        "after": after,
        "before": raw["before"],
        "category": raw["category"],
        "clock_skew": True,
        "correlation_id": correlation_id,
        "details": details,
        "event_id": raw["event_id"],
        "occurred_at": "2026-11-28T08:15:02.123456Z",
        "occurred_offset": 60,
        "outcome": raw["outcome"],
        "recorded_at": "2026-11-28T10:00:00.000000Z",
        "seq": 42,
        "source_ip": raw["source_ip"],
        "target": {"type": target["type"], "id": target["id"], "name": target.get("name")},
        "user_agent": user_agent,
    }
    text = p.record_text(True, "2026-11-28T10:00:00.000000Z", 42)
    assert text.encode("utf-8") == rfc8785.dumps(record)


def test_sign_heads_every_leaves_no_head_unsigned_for_long(
    engine: Engine, settings: Settings, signer: Signer
) -> None:
    """A process that appends now and then (the dashboard) signs its heads on a timer."""
    rare = AuditLog(engine, settings.replace(store={"checkpoint_every": 1000}), signer=signer)
    rare.record(valid())  # the first row of a chain is signed at once
    second = rare.record(valid())  # not due: 1 row, well within checkpoint_seconds
    auditor = reader_of(engine)

    def newest() -> int:
        with auditor.connect() as conn:
            return int(conn.exec_driver_sql("SELECT max(seq) FROM checkpoints").scalar_one())

    assert newest() == 1
    rare.sign_heads_every(0.1)
    deadline = time.monotonic() + 10
    while newest() < second.seq and time.monotonic() < deadline:
        time.sleep(0.05)
    rare.close()
    assert newest() == second.seq
