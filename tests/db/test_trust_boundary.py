"""The trust boundary: what each application credential can and cannot do, tried for real.

Every forgery here is attempted with the credential the attacker would really hold: the ingest
login (the platform's write credential), the dashboard login, the retention administrator and
the key administrator. PostgreSQL must refuse each one (docs/integrity.md, threat model).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, assume, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy.engine import URL, Engine

from auditlog.db.server import make_engine
from auditlog.errors import AppendRefused, InvalidEvent, SigningKeyRefused
from auditlog.integrity.database import verify_database
from auditlog.integrity.keyadmin import register_key, retire_key
from auditlog.integrity.keys import Signer, public_pem
from auditlog.model import utc_text
from auditlog.settings import Settings
from auditlog.store import AuditLog, prepare
from tests.support.database import reader_of
from tests.support.factories import json_values, valid
from tests.support.hostile import HOSTILE
from tests.support.retention import LEAD

LOGINS = {
    "ingest": ("auditlog_ingest", "writer"),
    "dashboard": ("auditlog_dashboard", "dashboard"),
    "retention": ("auditlog_retention_admin", "retention"),
    "keys": ("auditlog_key_admin", "keys"),
    "stream": ("auditlog_stream", "stream"),
}


@pytest.fixture
def as_role(db_url: URL) -> Iterator[Any]:
    """``as_role(name)``: an engine logged in as that login role, acting as its group (one
    per role for the test)."""
    made: dict[str, Engine] = {}

    def make(name: str) -> Engine:
        if name not in made:
            login, role = LOGINS[name]
            made[name] = make_engine(db_url.set(username=login), role)  # type: ignore[arg-type]
        return made[name]

    yield make
    for engine in made.values():
        engine.dispose()


def head(conn: sa.Connection, category: str) -> tuple[int, bytes, datetime | None]:
    row = conn.execute(
        sa.text("SELECT seq, entry_hash, recorded_at FROM auditlog_chain_head(:c)"),
        {"c": category},
    ).one()
    return int(row[0]), bytes(row[1]), row[2]


def forged_row(
    settings: Settings,
    conn: sa.Connection,
    *,
    category: str = "configuration",
    seq: int | None = None,
    prev: bytes | None = None,
    recorded_at: datetime | None = None,
    **event: Any,
) -> dict[str, Any]:
    """A row computed exactly as the writer computes it (JCS record, SHA-256 link, recorded
    now, inside ``conn``'s transaction), extending the chain head: correct in every way the
    caller does not change."""
    h_seq, h_hash, _ = head(conn, category)
    seq = h_seq + 1 if seq is None else seq
    prev = h_hash if prev is None else prev
    recorded = recorded_at or conn.scalar(sa.text("SELECT clock_timestamp()"))
    p = prepare(valid(category=category, **event), settings)
    rec_text = utc_text(recorded)
    record = p.record_text(False, rec_text, seq)
    t = p.texts
    return {
        "category": category,
        "seq": seq,
        "event_id": p.event_id,
        "action": p.event.action,
        "outcome": p.event.outcome,
        "occurred_at": t["occurred_at"][1:-1],
        "occurred_offset": int(t["occurred_offset"]),
        "recorded_at": rec_text,
        "clock_skew": False,
        "actor": t["actor"],
        "target": t["target"],
        "before": None if p.event.before is None else t["before"],
        "after": None if p.event.after is None else t["after"],
        "source_ip": p.event.source_ip,
        "user_agent": p.event.user_agent,
        "correlation_id": p.event.correlation_id,
        "details": t["details"],
        "prev_hash": prev,
        "entry_hash": hashlib.sha256(prev + record.encode()).digest(),
        "record": record,
    }


JSONB = ("actor", "target", "before", "after", "details")
APPEND = ("record", "prev_hash", "entry_hash")  # what a writer sends; the rest is derived


def insert_sql(columns: tuple[str, ...]) -> sa.TextClause:
    values = (f"CAST(:{c} AS jsonb)" if c in JSONB else f":{c}" for c in columns)
    return sa.text(f"INSERT INTO events ({', '.join(columns)}) VALUES ({', '.join(values)})")


def rehash(row: dict[str, Any]) -> None:
    """Make entry_hash right for the row's (changed) record and prev_hash."""
    row["entry_hash"] = hashlib.sha256(row["prev_hash"] + row["record"].encode()).digest()


def forge(
    engine: Engine,
    settings: Settings,
    change: Callable[[dict[str, Any]], None] | None = None,
    columns: tuple[str, ...] = APPEND,
    **kw: Any,
) -> str | None:
    """In one transaction of ``engine``: build a correct next row, apply ``change`` to it and
    INSERT its ``columns``. The database's refusal, or None when the row was stored."""
    try:
        with engine.begin() as conn:
            row = forged_row(settings, conn, **kw)
            if change:
                change(row)
            conn.execute(insert_sql(columns), {c: row[c] for c in columns})
    except sa.exc.DBAPIError as exc:
        return str(exc.orig).splitlines()[0]
    return None


def seq_of(engine: Engine, category: str = "configuration") -> int:
    with engine.connect() as conn:
        return head(conn, category)[0]


# --- the append check, as the ingest credential -----------------------------------------


def test_a_correct_row_inserted_by_hand_is_accepted(log: AuditLog, as_role: Any) -> None:
    """The check is not a blanket refusal: a row that really extends the chain goes in."""
    log.record(valid())
    ingest = as_role("ingest")
    assert forge(ingest, log.settings) is None
    assert seq_of(ingest) == 2


def test_backdated_recorded_at_is_refused(log: AuditLog, as_role: Any) -> None:
    log.record(valid())
    when = datetime(2020, 1, 1, tzinfo=UTC)
    assert "recorded_at" in (forge(as_role("ingest"), log.settings, recorded_at=when) or "")


def test_recorded_at_in_the_future_is_refused(log: AuditLog, as_role: Any) -> None:
    future = datetime.now(UTC) + timedelta(minutes=5)
    assert "recorded_at" in (forge(as_role("ingest"), log.settings, recorded_at=future) or "")


def test_recorded_at_before_the_chain_head_is_refused(log: AuditLog, as_role: Any) -> None:
    log.record(valid())
    ingest = as_role("ingest")
    with ingest.connect() as conn:
        _, _, head_at = head(conn, "configuration")
    assert head_at is not None
    earlier = head_at - timedelta(microseconds=1)
    assert "recorded_at" in (forge(ingest, log.settings, recorded_at=earlier) or "")


def test_a_writer_whose_clock_is_replaced_is_refused_and_stores_nothing(log: AuditLog) -> None:
    """The library's own clock replacement (demo data, tests) does not get past the check
    with the ingest credential: one clear AppendRefused, nothing of the batch stored."""
    old = AuditLog(log.engine, log.settings, signer=log.signer,
                   clock=lambda: datetime(2021, 6, 1, tzinfo=UTC))  # fmt: skip
    with pytest.raises(AppendRefused, match="recorded_at"):
        old.record_many([valid(), valid()])
    assert seq_of(log.engine) == 0


def test_a_gap_in_seq_is_refused(log: AuditLog, as_role: Any) -> None:
    log.record(valid())
    ingest = as_role("ingest")
    assert "does not extend the chain" in (forge(ingest, log.settings, seq=3) or "")


def test_a_row_at_an_old_seq_is_refused(log: AuditLog, as_role: Any) -> None:
    log.record_many([valid(), valid()])
    message = forge(as_role("ingest"), log.settings, seq=1, prev=bytes(32)) or ""
    assert "duplicate key" in message or "does not extend" in message


def test_a_wrong_prev_hash_is_refused(log: AuditLog, as_role: Any) -> None:
    log.record(valid())
    other = hashlib.sha256(b"elsewhere").digest()
    assert "prev_hash" in (forge(as_role("ingest"), log.settings, prev=other) or "")


def test_a_wrong_entry_hash_is_refused(log: AuditLog, as_role: Any) -> None:
    def wrong(row: dict[str, Any]) -> None:
        row["entry_hash"] = hashlib.sha256(b"anything").digest()

    assert "entry_hash" in (forge(as_role("ingest"), log.settings, wrong) or "")


# Each column set to a value other than the record's (the hashes stay right for the record).
COLUMN_LIES: dict[str, Any] = {
    "action": "policy.deleted",
    "outcome": "failure",
    "occurred_at": "2001-01-01T00:00:00.000000Z",
    "occurred_offset": -300,
    "clock_skew": True,
    "actor": json.dumps({"type": "user", "id": "someone-else"}),
    "target": json.dumps({"type": "policy", "id": "other", "name": None}),
    "before": json.dumps({"enabled": True}),
    "after": json.dumps({"enabled": False}),
    "source_ip": "198.51.100.1",
    "user_agent": "forged",
    "correlation_id": "forged",
    "details": json.dumps({"forged": True}),
    "event_id": "00000000-0000-4000-8000-000000000000",
    "category": "governance",
    "seq": 99,
    "recorded_at": "2020-01-01T00:00:00.000000Z",
}


@pytest.mark.parametrize("column", sorted(COLUMN_LIES))
def test_a_row_that_sets_a_column_itself_is_refused(
    log: AuditLog, as_role: Any, column: str
) -> None:
    """Columns come from the hashed record only: one given beside it (false, or even true)
    is refused, so no column can say other than what was hashed."""

    def lie(row: dict[str, Any]) -> None:
        row[column] = COLUMN_LIES[column]

    ingest = as_role("ingest")
    with_column = (*APPEND, column)
    full = {"user_agent": "ua", "correlation_id": "c-1"}  # every column of the row is set
    lied = forge(ingest, log.settings, lie, with_column, **full)
    truthful = forge(ingest, log.settings, None, with_column, **full)
    assert "derived from the hashed record" in (lied or "")
    assert "derived from the hashed record" in (truthful or "")
    assert seq_of(ingest) == 0


def test_every_column_of_a_hand_inserted_row_equals_its_record(log: AuditLog, as_role: Any) -> None:
    ingest = as_role("ingest")
    assert forge(ingest, log.settings, user_agent="ua-1", correlation_id="c-9") is None
    report = verify_database(reader_of(ingest))
    assert report.ok, report.problems
    with reader_of(ingest).connect() as conn:
        ua, corr = conn.execute(
            sa.text("SELECT user_agent, correlation_id FROM events ORDER BY seq DESC LIMIT 1")
        ).one()
    assert (ua, corr) == ("ua-1", "c-9")


def test_a_record_with_an_extra_or_missing_field_is_refused(log: AuditLog, as_role: Any) -> None:
    def extra(row: dict[str, Any]) -> None:
        row["record"] = row["record"].replace('"user_agent":', '"zz":1,"user_agent":')
        rehash(row)

    def missing(row: dict[str, Any]) -> None:
        row["record"] = row["record"].replace(',"user_agent":null', "")
        rehash(row)

    ingest = as_role("ingest")
    for change in (extra, missing):
        assert "exactly the hashed fields" in (forge(ingest, log.settings, change) or "")


# --- least privilege: what each login cannot touch ---------------------------------------


def attempt(engine: Engine, sql: str, params: dict[str, Any] | None = None) -> str | None:
    """Run ``sql``; the database's refusal, or None if it was allowed (rolled back)."""
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(sql), params or {})
            conn.rollback()
    except sa.exc.DBAPIError as exc:
        return str(exc.orig).splitlines()[0]
    return None


KEY = {"k": "forged-key", "pem": b"not a key"}
INGEST_FORBIDDEN = [
    "INSERT INTO signing_keys (key_id, public_key) VALUES (:k, :pem)",
    "SELECT * FROM signing_keys",
    "SELECT * FROM purge_anchors",
    "INSERT INTO retention_policies (category, days, archive_days, change_id, proposed_by, reason)"
    " VALUES ('user_activity', 1, 0, gen_random_uuid(), 'x', 'r')",
    "SELECT * FROM retention_policies",
    "INSERT INTO archives (category, month, first_seq, last_seq, row_count, first_prev_hash,"
    " last_entry_hash, first_recorded_at, last_recorded_at, path, file_sha256,"
    " manifest_sha256, bytes) VALUES ('user_activity', '2020-01-01', 1, 1, 1,"
    " '\\x00'::bytea, '\\x00'::bytea, now(), now(), '/nowhere', '\\x00'::bytea,"
    " '\\x00'::bytea, 1)",
    "SELECT * FROM archives",
    "SELECT auditlog_purge(1, 'k', '\\x00'::bytea)",
    "INSERT INTO legal_holds (category, case_name, reason, placed_by)"
    " VALUES ('user_activity', 'c', 'r', 'x')",
    "INSERT INTO retention_rules DEFAULT VALUES",
    "UPDATE retention_rules SET floor_days = 1",
    "SET ROLE auditlog_retention",
    "SET ROLE auditlog_keyadmin",
    "SET ROLE auditlog_owner",
    "SET session_replication_role = replica",
    "ALTER TABLE events DISABLE TRIGGER events_append_check",
    "DROP TRIGGER events_append_check ON events",
    "UPDATE events SET action = 'x'",
    "DELETE FROM events",
    "TRUNCATE events",
]


@pytest.mark.parametrize("sql", INGEST_FORBIDDEN)
def test_the_ingest_credential_is_refused(sql: str, log: AuditLog, as_role: Any) -> None:
    log.record(valid())
    assert attempt(as_role("ingest"), sql, KEY) is not None


@pytest.mark.parametrize("sql", [s for s in INGEST_FORBIDDEN if not s.startswith("SELECT *")])
def test_the_dashboard_credential_is_refused(sql: str, log: AuditLog, as_role: Any) -> None:
    log.record(valid())
    assert attempt(as_role("dashboard"), sql, KEY) is not None


def test_the_dashboard_reads_and_appends_its_own_events_through_the_check(
    log: AuditLog, as_role: Any, settings: Settings
) -> None:
    dashboard = as_role("dashboard")
    AuditLog(dashboard, settings, signer=log.signer).record(valid(category="user_activity"))
    with reader_of(dashboard).connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM events")).scalar() == 1
    when = datetime(2020, 1, 1, tzinfo=UTC)
    assert "recorded_at" in (forge(dashboard, settings, recorded_at=when) or "")


@pytest.mark.parametrize("name", ["retention", "keys", "stream"])
def test_every_login_appends_only_through_the_check(name: str, log: AuditLog, as_role: Any) -> None:
    when = datetime(2020, 1, 1, tzinfo=UTC)
    assert "recorded_at" in (forge(as_role(name), log.settings, recorded_at=when) or "")


def test_only_the_key_administrator_registers_keys(
    log: AuditLog, as_role: Any, settings: Settings
) -> None:
    stranger = Signer.generate()
    pem = public_pem(stranger.public).encode()
    sql = "INSERT INTO signing_keys (key_id, public_key) VALUES (:k, :pem)"
    for name in ("ingest", "dashboard", "retention", "stream"):
        assert attempt(as_role(name), sql, {"k": stranger.key_id, "pem": pem}) is not None
    with pytest.raises(SigningKeyRefused, match="not registered"):
        AuditLog(log.engine, settings, signer=stranger)
    assert attempt(as_role("keys"), sql, {"k": stranger.key_id, "pem": pem}) is None


def test_the_retention_administrator_cannot_change_keys_or_the_floor(
    as_role: Any, log: AuditLog
) -> None:
    ret = as_role("retention")
    assert attempt(ret, "INSERT INTO signing_keys (key_id, public_key) VALUES (:k, :pem)", KEY)
    assert attempt(ret, "UPDATE retention_rules SET floor_days = 1")
    assert attempt(ret, "UPDATE retention_policies SET days = 1")


# --- retention, enforced by the database ---------------------------------------------------


def _policy_sql(days: int, change_id: str = "gen_random_uuid()", approved: str = "NULL") -> str:
    return (
        "INSERT INTO retention_policies (category, days, archive_days, change_id, proposed_by,"
        f" approved_by, reason) VALUES ('user_activity', {days}, 0, {change_id}, 'alice',"
        f" {approved}, 'r')"
    )


def test_a_policy_below_the_database_floor_is_refused(as_role: Any) -> None:
    ret = as_role("retention")
    assert "retention floor of 365 days" in (attempt(ret, _policy_sql(1)) or "")
    assert attempt(ret, _policy_sql(365)) is None


def test_two_person_approval_is_enforced_by_the_database(
    as_role: Any, admin_engine: Engine
) -> None:
    ret = as_role("retention")
    with admin_engine.begin() as conn:
        conn.exec_driver_sql("UPDATE retention_rules SET require_approval = true")
    assert "second person" in (attempt(ret, _policy_sql(400)) or "")
    cid = "'7a0f4a4e-0000-4000-8000-000000000001'::uuid"
    with ret.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO retention_proposals (change_id, category, days, archive_days,"
                f" reason, proposed_by) VALUES ({cid}, 'user_activity', 400, 0, 'r', 'alice')"
            )
        )
    assert "not been approved" in (attempt(ret, _policy_sql(400, cid, "'bob'")) or "")
    self_approval = (
        f"INSERT INTO retention_decisions (change_id, decision, decided_by) VALUES ({cid},"
        " 'approved', 'alice')"
    )
    assert "cannot approve their own" in (attempt(ret, self_approval) or "")
    with ret.begin() as conn:
        conn.execute(sa.text(self_approval.replace("'alice')", "'bob')")))
    assert "someone other" in (attempt(ret, _policy_sql(400, cid, "'carol'")) or "")
    assert "differs from what" in (attempt(ret, _policy_sql(500, cid, "'bob'")) or "")
    assert attempt(ret, _policy_sql(400, cid, "'bob'")) is None


def test_the_session_replication_trick_is_superuser_only(as_role: Any) -> None:
    for name in LOGINS:
        assert "permission denied" in (
            attempt(as_role(name), "SET session_replication_role = replica") or ""
        )


def test_writer_cannot_call_the_internal_functions(as_role: Any) -> None:
    ingest = as_role("ingest")
    assert attempt(ingest, "SELECT auditlog_append_check()") is not None
    assert attempt(ingest, "SELECT auditlog_purge(1, 'k', '\\x00'::bytea)") is not None


def test_reader_credential_cannot_append(log: AuditLog, db_url: URL) -> None:
    reader = make_engine(db_url.set(username="auditlog_dashboard"), "reader")
    try:
        assert "permission denied" in (forge(reader, log.settings) or "")
    finally:
        reader.dispose()


def test_a_retired_key_signs_no_more_checkpoints_whoever_inserts_them(
    log: AuditLog, as_role: Any, admin_engine: Engine
) -> None:
    """Retirement is enforced on the checkpoints table itself, even for a superuser's insert
    (the guard is ENABLE ALWAYS); the library refuses to open a log with that key."""
    log.record(valid())
    keys = AuditLog(as_role("keys"), log.settings, signer=log.signer)
    other = Signer.generate()
    register_key(keys, other.public, LEAD)
    retire_key(keys, other.key_id, LEAD, "compromised")
    with admin_engine.connect() as conn:
        cp = conn.execute(sa.text("SELECT * FROM checkpoints LIMIT 1")).mappings().one()
    insert = (
        "INSERT INTO checkpoints (category, seq, entry_hash, signed_at, key_id, signature)"
        " VALUES (:category, :seq, :entry_hash, :signed_at, :k, :signature)"
    )
    refusal = attempt(admin_engine, insert, {**cp, "k": other.key_id})
    assert "was retired" in (refusal or "")
    with pytest.raises(SigningKeyRefused, match="retired"):
        AuditLog(log.engine, log.settings, signer=other)


@hypothesis_settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    delta=st.sampled_from([0, 0, -1, 1, 2, -1000]),
    late=st.sampled_from([None, None, -400 * 86400.0, -1.0, 60.0]),
    prev=st.sampled_from(["head", "head", "zero", "other"]),
    details=st.dictionaries(st.text(max_size=8), json_values, max_size=3),
    hostile=st.sampled_from(HOSTILE),
)
def test_a_hand_built_row_is_stored_only_when_it_extends_the_chain(
    log: AuditLog,
    as_role: Any,
    delta: int,
    late: float | None,
    prev: str,
    details: dict[str, Any],
    hostile: str,
) -> None:
    """The whole class of hand-built rows, with hostile content: seq off by any amount, a
    recorded_at from anywhere but this transaction's clock, any other prev_hash. Exactly the
    rows that extend the chain are stored, and the log verifies after every attempt."""
    content: dict[str, Any] = {"details": details, "user_agent": hostile[:512] or None}
    try:
        prepare(valid(**content), log.settings)
    except InvalidEvent:
        assume(False)  # content the library refuses cannot be hand-built through it either
    ingest = as_role("ingest")
    if seq_of(ingest) == 0:
        log.record(valid())
    before = seq_of(ingest)
    with ingest.connect() as conn:
        head_hash = head(conn, "configuration")[1]
    prev_hash = {"head": head_hash, "zero": bytes(32), "other": hashlib.sha256(b"x").digest()}
    when = None if late is None else datetime.now(UTC) + timedelta(seconds=late)
    refusal = forge(
        ingest,
        log.settings,
        seq=before + 1 + delta,
        prev=prev_hash[prev],
        recorded_at=when,
        **content,
    )
    valid_row = delta == 0 and late is None and prev == "head"
    assert (refusal is None) == valid_row, refusal
    assert seq_of(ingest) == before + valid_row
    assert verify_database(reader_of(ingest)).ok
