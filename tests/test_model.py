"""Event validation: every bad input names its field and reason; the log's own events come
from one factory over one vocabulary, and every action the log writes is in it."""

from __future__ import annotations

import ast
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL

from auditlog.apikeys.admin import create_key, revoke_key, rotate_key
from auditlog.apikeys.refusals import Refusal, refusal_event
from auditlog.db.server import make_engine
from auditlog.errors import InvalidEvent, PermissionDenied
from auditlog.evidence.export import export_event
from auditlog.integrity.keyadmin import register_key, retire_key
from auditlog.integrity.keys import Signer
from auditlog.model import (
    ACTIONS,
    CATEGORIES,
    canonical_ip,
    new_event,
    parse_event,
    parse_timestamp,
)
from auditlog.retention.policies import Retention
from auditlog.retention.records import retention_engine
from auditlog.retention.rules import change_database_rules
from auditlog.retention.run import STEP_ACTIONS, ArchiveRow, step_event
from auditlog.retention.view import download_event
from auditlog.selfaudit import SelfAudit
from auditlog.settings import RetentionSettings, Settings
from auditlog.siem.destinations import (
    Destination,
    add_destination,
    change_destination,
    remove_destination,
)
from auditlog.siem.redrive import redrive
from auditlog.store import AuditLog
from tests.support.factories import valid
from tests.support.retention import AUDITOR, LEAD, LEAD2


def test_valid_event_keeps_offset_and_generates_event_id() -> None:
    ev = parse_event(valid())
    assert ev.occurred_at.utcoffset() == timedelta(seconds=3600)
    assert ev.event_id is not None


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        ({"occurred_at": "2026-11-28T09:15:02"}, "occurred_at", "explicit offset"),
        ({"occurred_at": "now"}, "occurred_at", "RFC 3339"),
        ({"occurred_at": "infinity"}, "occurred_at", "RFC 3339"),
        ({"occurred_at": "2026-02-30T10:00:00Z"}, "occurred_at", "not a real date"),
        ({"occurred_at": "yesterday at noon"}, "occurred_at", "RFC 3339"),
        ({"occurred_at": 1700000000}, "occurred_at", "RFC 3339 string"),
        ({"category": "billing"}, "category", "configuration"),
        ({"outcome": "maybe"}, "outcome", "success"),
        ({"source_ip": "300.1.1.1"}, "source_ip", "not an IPv4 or IPv6"),
        ({"source_ip": "10.0.0.0/8"}, "source_ip", "not an IPv4 or IPv6"),
        ({"source_ip": "010.1.1.1"}, "source_ip", "not an IPv4 or IPv6"),
        ({"source_ip": "fe80::1%eth0"}, "source_ip", "not an IPv4 or IPv6"),
        ({"action": "PolicyUpdated"}, "action", "dotted lower-case verb"),
        ({"action": "policy"}, "action", "dotted lower-case verb"),
        ({"action": "policy.updated\n"}, "action", "dotted lower-case verb"),
        ({"actor": {"type": "user"}}, "actor", "at least one of id, upn"),
        ({"actor": {"type": "robot", "id": "x"}}, "actor.type", "user"),
        ({"target": {"type": "policy"}}, "target.id", "required"),
        ({"before": ["not", "an", "object"]}, "before", "dict"),
        ({"extra_field": 1}, "extra_field", "not permitted"),
        ({"event_id": "not-a-uuid"}, "event_id", "UUID"),
    ],
)
def test_bad_input_names_field_and_reason(changes: dict[str, Any], field: str, reason: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        parse_event(valid(**changes))
    assert info.value.field == field
    assert reason.lower() in info.value.reason.lower()


def test_missing_required_field_is_named() -> None:
    event = valid()
    del event["outcome"]
    with pytest.raises(InvalidEvent, match="outcome"):
        parse_event(event)


def test_json_text_that_is_not_an_object_is_rejected() -> None:
    with pytest.raises(InvalidEvent, match="JSON object"):
        parse_event("[1, 2]")
    with pytest.raises(InvalidEvent, match="not valid JSON"):
        parse_event("{broken")


def test_timestamp_keeps_microseconds_and_truncates_nanoseconds() -> None:
    ts = parse_timestamp("2026-11-28T09:15:02.123456789-05:30")
    assert ts.microsecond == 123456
    assert ts.utcoffset() == timedelta(seconds=-(5 * 3600 + 30 * 60))


def test_lower_case_z_and_t_are_accepted() -> None:
    assert parse_timestamp("2026-11-28t09:15:02z").utcoffset() == timedelta(0)


def test_ip_addresses_are_stored_in_canonical_form() -> None:
    assert canonical_ip("2001:DB8::1") == "2001:0db8:0000:0000:0000:0000:0000:0001"
    assert canonical_ip("::ffff:192.0.2.1") == "0000:0000:0000:0000:0000:ffff:c000:0201"
    assert canonical_ip("192.0.2.1") == "192.0.2.1"


# --- the log's own events: new_event over ACTIONS --------------------------------------------

SRC = Path(__file__).resolve().parents[1] / "src" / "auditlog"
LEAD_ACTOR = {"type": "user", "id": "lead@contoso.com"}
POLICY = {"type": "retention_policy", "id": "governance", "name": "governance retention"}


def test_new_event_takes_its_category_from_the_vocabulary_and_is_accepted_as_an_event() -> None:
    ev = new_event(action="retention.archived", actor=LEAD_ACTOR, target=POLICY, details={"a": 1})
    assert ev["category"] == ACTIONS["retention.archived"].category == "governance"
    parsed = parse_event(ev)
    assert (parsed.action, parsed.outcome) == ("retention.archived", "success")
    assert parsed.details == {"a": 1}


def test_new_event_refuses_an_action_not_in_the_vocabulary_naming_it() -> None:
    with pytest.raises(InvalidEvent) as info:
        new_event(action="policy.updated", actor=LEAD_ACTOR, target=POLICY)
    assert info.value.field == "action"
    assert "'policy.updated'" in info.value.reason
    assert "auditlog.model.ACTIONS" in info.value.reason


def test_new_event_occurred_at_comes_from_the_injected_clock_unless_given() -> None:
    at = datetime(2026, 11, 28, 9, 15, 2, 123456, tzinfo=timezone(timedelta(hours=1)))
    ticked = new_event(action="user.login", actor=LEAD_ACTOR, target=POLICY, clock=lambda: at)
    given = new_event(
        action="user.login",
        actor=LEAD_ACTOR,
        target=POLICY,
        occurred_at=at,
        clock=lambda: datetime(1999, 1, 1, tzinfo=UTC),
    )
    assert ticked["occurred_at"] == given["occurred_at"] == "2026-11-28T08:15:02.123456Z"


def test_new_event_leaves_out_optional_fields_given_as_none_and_keeps_the_rest() -> None:
    ev = new_event(
        action="dashboard.viewed",
        actor=LEAD_ACTOR,
        target=POLICY,
        outcome="denied",
        source_ip="192.0.2.7",
        user_agent=None,
        correlation_id="c-1",
        event_id=uuid.UUID(int=7),
    )
    assert {"user_agent", "before", "after"}.isdisjoint(ev)
    assert (ev["outcome"], ev["source_ip"], ev["correlation_id"]) == ("denied", "192.0.2.7", "c-1")
    assert ev["event_id"] == str(uuid.UUID(int=7))


def test_every_vocabulary_entry_is_a_dotted_verb_with_a_category_and_a_description() -> None:
    for name, spec in ACTIONS.items():
        parse_event(valid(action=name, category=spec.category))
        assert spec.name == name
        assert spec.category in CATEGORIES
        assert spec.description.strip()


def _hand_built(path: Path) -> list[str]:
    """Where ``path`` builds an event dict itself or keeps its own clock: what it should not."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef) and node.name == "_now" and node.args.args[:1] == []:
            found.append(f"{path.name}:{node.lineno} def _now()")
        if isinstance(node, ast.Dict):
            keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
            # a stored row read back (it has recorded_at) is not a new event
            if {"action", "occurred_at", "actor"} <= keys and "recorded_at" not in keys:
                found.append(f"{path.name}:{node.lineno} event dict")
    return found


def test_no_module_builds_the_logs_own_events_by_hand() -> None:
    # demo.py makes sample producer events, not the log's own; model.py holds the factory
    skip = {SRC / "model.py", SRC / "demo.py"}
    found = [hit for p in sorted(SRC.rglob("*.py")) if p not in skip for hit in _hand_built(p)]
    assert found == []


def _policy_events(log: AuditLog, home: Path) -> None:
    """Every retention policy and legal hold event: changes, proposals, decisions, a refusal."""
    direct = Retention(log, RetentionSettings(archive_dir=home))
    direct.set_policy(LEAD, "compliance_lead", "governance", 400, 400, "audit finding 7")
    with pytest.raises(PermissionDenied):
        direct.set_policy(AUDITOR, "auditor", "governance", 400, 400, "not mine to set")
    direct.place_hold(LEAD, "compliance_lead", "governance", "case-1", "litigation")
    direct.lift_hold(LEAD, "compliance_lead", "governance", "case-1", "settled")
    two = Retention(log, RetentionSettings(archive_dir=home, require_approval=True))
    first = two.set_policy(LEAD, "compliance_lead", "governance", 500, 500, "longer").proposal
    assert first is not None
    two.approve(LEAD2, "compliance_lead", first.change_id)
    second = two.set_policy(LEAD, "compliance_lead", "governance", 600, 600, "longest").proposal
    assert second is not None
    two.reject(LEAD2, "compliance_lead", second.change_id, "too long")


def _archive(at: datetime) -> ArchiveRow:
    h = bytes(32)
    return ArchiveRow(
        1,
        "governance",
        date(2022, 1, 1),
        1,
        5,
        5,
        h,
        h,
        at,
        at,
        "governance/2022-01.parquet",
        h,
        h,
        100,
        at,
        None,
        at,
        None,
        None,
        at,
        None,
    )


def _other_events(log: AuditLog) -> None:
    """The retention run's steps, downloads and exports, SIEM changes, the dashboard's own."""
    a = _archive(datetime(2023, 3, 1, tzinfo=UTC))
    log.record_many([step_event(a, kind, a.created_at) for kind in STEP_ACTIONS])
    log.record(download_event(LEAD, a, "csv", 5, bytes(32), "governance-2022-01.csv"))
    log.record(export_event(LEAD_ACTOR, "denied", {"format": "csv"}, "refused"))
    dest = Destination("siem-a", "syslog-tcp", "127.0.0.1:514", "rfc5424", {"hostname": "h"})
    add_destination(log, dest, LEAD, "admin")
    change_destination(log, "siem-a", LEAD, "admin", enabled=False)
    with pytest.raises(PermissionDenied):  # a refused re-drive is logged as denied
        redrive(log, "siem-a", LEAD, "auditor")
    remove_destination(log, "siem-a", LEAD, "admin", reason="replaced")
    audit = SelfAudit(log, LEAD)
    audit.login("compliance_lead")
    audit.viewed("timeline", "Timeline", {})


def _key_and_rule_events(log: AuditLog, db_url: URL) -> None:
    """The key administrator's register/retire, the database owner's rule change."""
    keys = make_engine(db_url.set(username="auditlog_key_admin"), "keys")
    owner = make_engine(db_url, "admin")
    try:
        admin_log = AuditLog(keys, log.settings, signer=log.signer)
        other = Signer.generate()
        register_key(admin_log, other.public, LEAD)
        retire_key(admin_log, other.key_id, LEAD, "rotated")
        _, _, event = change_database_rules(owner, LEAD, floor_days=400)
        assert event is not None
        log.record(event)
    finally:
        keys.dispose()
        owner.dispose()


def _api_key_events(log: AuditLog, db_url: URL) -> None:
    """An API key's life (created, rotated, revoked, as the key administrator) and a refused
    use (as the ingestion service writes it)."""
    keys = make_engine(db_url.set(username="auditlog_key_admin"), "keys")
    try:
        admin_log = AuditLog(keys, log.settings, signer=log.signer)
        create_key(admin_log, LEAD, "svc", ["read"])
        rotate_key(admin_log, LEAD, "svc")
        revoke_key(admin_log, LEAD, "svc")
    finally:
        keys.dispose()
    log.record(refusal_event(Refusal("unknown", path="/v1/events"), {}))


def test_every_action_the_log_writes_is_in_the_vocabulary_and_every_entry_is_written(
    db_url: URL, log: AuditLog, settings: Settings, signer: Signer, tmp_path: Path
) -> None:
    ret_engine = retention_engine(db_url.set(username="auditlog_retention_admin"))
    try:
        _policy_events(AuditLog(ret_engine, settings, signer=signer), tmp_path / "archives")
    finally:
        ret_engine.dispose()
    _other_events(log)
    _key_and_rule_events(log, db_url)
    _api_key_events(log, db_url)
    with log.engine.connect() as conn:
        written = set(conn.execute(sa.text("SELECT DISTINCT action, category FROM events")).all())
    assert written == {(name, spec.category) for name, spec in ACTIONS.items()}


def test_every_action_is_documented_with_its_category_in_operations_md() -> None:
    doc = (SRC.parents[1] / "docs" / "operations.md").read_text()
    for name, spec in ACTIONS.items():
        assert f"| `{name}` | {spec.category} |" in doc
