"""AuditLogClient.send / send_many against the real service: receipts, batches, event ids,
and the problems it raises (never retried)."""

from __future__ import annotations

import uuid

import pytest

from auditlog.client import AuditLogClient
from auditlog.errors import ApiRefused, InvalidEvent
from auditlog.model import AuditEvent
from tests.client.conftest import MakeClient, Start
from tests.client.helpers import Counting, stored
from tests.support.api import Api, event


def test_send_returns_the_receipt_of_the_stored_row(api: Api, make_client: MakeClient) -> None:
    receipt = make_client(api.url, api.key()).send(event())
    row = api.rows(
        "SELECT category, seq, entry_hash FROM events WHERE event_id = :e", e=receipt.event_id
    )[0]
    assert (receipt.category, receipt.seq) == (row.category, row.seq)
    assert receipt.entry_hash == bytes(row.entry_hash).hex()
    assert receipt.duplicate is False
    assert receipt.recorded_at


def test_an_event_without_an_id_gets_a_uuid4_that_is_stored(
    api: Api, make_client: MakeClient
) -> None:
    ev = event()
    receipt = make_client(api.url, api.key()).send(ev)
    assert uuid.UUID(receipt.event_id).version == 4
    assert "event_id" not in ev  # the caller's dict is left alone
    assert [r.event_id for r in stored(api)] == [receipt.event_id]


def test_an_audit_event_model_is_sent_like_a_dict(api: Api, make_client: MakeClient) -> None:
    model = AuditEvent.model_validate(event())
    receipt = make_client(api.url, api.key()).send(model)
    assert [r.event_id for r in stored(api)] == [receipt.event_id]


def test_send_many_sends_one_request_per_batch_and_keeps_the_order(
    api: Api, make_client: MakeClient
) -> None:
    counting = Counting()
    client = make_client(api.url, api.key(), batch_size=4, transport=counting)
    events = [event(target={"type": "policy", "id": f"p{i}"}) for i in range(10)]
    receipts = client.send_many(events)
    assert counting.statuses == [201, 201, 201]
    first = receipts[0].seq
    assert [r.seq for r in receipts] == list(range(first, first + 10))
    assert [r.event_id for r in receipts] == [r.event_id for r in stored(api)]


def test_sending_the_same_events_again_answers_the_original_receipts(
    api: Api, make_client: MakeClient
) -> None:
    client = make_client(api.url, api.key())
    events = [event(event_id=str(uuid.uuid4())) for _ in range(3)]
    first = client.send_many(events)
    again = client.send_many(events)
    assert all(r.duplicate for r in again)
    assert [(r.event_id, r.seq, r.entry_hash) for r in again] == [
        (r.event_id, r.seq, r.entry_hash) for r in first
    ]
    assert len(stored(api)) == 3


def test_invalid_events_raise_the_problem_with_field_paths_across_batches(
    api: Api, make_client: MakeClient
) -> None:
    counting = Counting()
    client = make_client(api.url, api.key(), batch_size=2, transport=counting)
    events = [event(), event(), event(), event(actor={"type": "robot", "id": "r"})]
    with pytest.raises(ApiRefused) as caught:
        client.send_many(events)
    problem = caught.value
    assert problem.status == 422
    assert problem.title == "Invalid events"
    assert [(e["index"], e["field"]) for e in problem.errors] == [(3, "actor.type")]
    assert "actor.type" in str(problem)
    assert "nothing was stored" in problem.detail
    # the first request went through
    assert [r.event_id for r in problem.stored] == [r.event_id for r in stored(api)]
    assert counting.statuses == [201, 422]  # a 422 is not retried
    assert len(problem.stored) == 2


def test_partial_stores_the_valid_events_and_names_the_rest_by_global_index(
    api: Api, make_client: MakeClient
) -> None:
    client = make_client(api.url, api.key(), batch_size=2)
    events = [event(), event(outcome="maybe"), event(), event(occurred_at="now"), event()]
    answer = client.send_many(events, partial=True)
    assert sorted(answer.receipts) == [0, 2, 4]
    assert answer.refused == [1, 3]
    assert {(e.index, e.field) for e in answer.rejected} == {(1, "outcome"), (3, "occurred_at")}
    assert sorted(r.event_id for r in answer.receipts.values()) == sorted(
        r.event_id for r in stored(api)
    )


def test_a_reused_event_id_with_other_content_raises_409_once(
    api: Api, make_client: MakeClient
) -> None:
    counting = Counting()
    client = make_client(api.url, api.key(), transport=counting)
    eid = str(uuid.uuid4())
    client.send(event(event_id=eid))
    with pytest.raises(ApiRefused) as caught:
        client.send(event(event_id=eid, outcome="failure"))
    assert caught.value.status == 409
    assert eid in caught.value.detail
    assert counting.statuses == [201, 409]


@pytest.mark.parametrize(
    ("token", "status"),
    [("alk_nosuchkey_" + "x" * 43, 401), (None, 403)],
    ids=["unknown key", "read-only key"],
)
def test_a_refused_key_raises_its_status_without_a_retry(
    api: Api, make_client: MakeClient, token: str | None, status: int
) -> None:
    counting = Counting()
    client = make_client(api.url, token or api.key("siem", ["read"]), transport=counting)
    with pytest.raises(ApiRefused) as caught:
        client.send(event())
    assert caught.value.status == status
    assert caught.value.detail
    assert counting.statuses == [status]
    assert stored(api) == []


def test_a_batch_over_the_service_cap_raises_413_naming_the_setting(
    start_api: Start, make_client: MakeClient
) -> None:
    api = start_api(api={"max_batch_events": 3})
    client = make_client(api.url, api.key(), batch_size=5)
    with pytest.raises(ApiRefused) as caught:
        client.send_many([event() for _ in range(5)])
    assert caught.value.status == 413
    assert "api.max_batch_events" in caught.value.detail


def test_a_value_that_is_not_json_is_refused_before_anything_is_sent(api: Api) -> None:
    client = AuditLogClient(api.url, api.key())
    with client, pytest.raises(InvalidEvent, match="event 1"):
        client.send_many([event(), event(details={"n": float("nan")})])
    assert stored(api) == []


@pytest.mark.parametrize(
    ("url", "key", "option", "message"),
    [
        ("ftp://x", "k", {}, "base_url"),
        ("http://x", " ", {}, "api_key"),
        ("http://x", "k", {"batch_size": 0}, "batch_size"),
        ("http://x", "k", {"retries": -1}, "retries"),
    ],
)
def test_misconfiguration_is_a_value_error_naming_the_option(
    url: str, key: str, option: dict[str, int], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        AuditLogClient(url, key, **option)  # type: ignore[arg-type]
