"""POST /v1/events against the real server: receipts, batches, idempotency, scopes."""

from __future__ import annotations

import json
import uuid

from tests.support.api import Api, event


def _stored(api: Api) -> int:
    return int(api.rows("SELECT count(*) FROM events WHERE action = 'policy.updated'")[0][0])


def test_a_receipt_matches_the_stored_row_and_links_its_proof(api: Api) -> None:
    r = api.post(api.key(), event())
    assert r.status_code == 201
    receipt = r.json()["receipts"][0]
    row = api.rows(
        "SELECT category, seq, entry_hash, recorded_at FROM events WHERE event_id = :e",
        e=receipt["event_id"],
    )[0]
    assert (receipt["category"], receipt["seq"]) == (row.category, row.seq)
    assert receipt["entry_hash"] == bytes(row.entry_hash).hex()
    assert receipt["recorded_at"].startswith(row.recorded_at.strftime("%Y-%m-%dT%H:%M:%S"))
    assert receipt["duplicate"] is False
    assert receipt["proof"] == f"/v1/events/{receipt['event_id']}/proof"


def test_a_json_array_and_ndjson_are_batches_with_receipts_in_order(api: Api) -> None:
    token = api.key()
    batch = [event(target={"type": "policy", "id": f"p{i}"}) for i in range(5)]
    r = api.post(token, batch)
    assert r.status_code == 201
    assert [x["index"] for x in r.json()["receipts"]] == list(range(5))
    lines = "\n".join(json.dumps(e) for e in batch[:3]) + "\n\n" + json.dumps(batch[3]) + "\r\n"
    r = api.post(token, None, content=lines, headers={"Content-Type": "application/x-ndjson"})
    assert r.status_code == 201, r.text
    assert len(r.json()["receipts"]) == 4
    assert _stored(api) == 9
    seqs = [x[0] for x in api.rows("SELECT seq FROM events WHERE category = 'configuration'")]
    assert sorted(seqs) == list(range(1, len(seqs) + 1))


def test_the_same_event_again_answers_its_original_receipt_with_200(api: Api) -> None:
    token = api.key()
    ev = event(event_id=str(uuid.uuid4()))
    first = api.post(token, ev).json()["receipts"][0]
    again = api.post(token, ev)
    assert again.status_code == 200
    repeat = again.json()["receipts"][0]
    assert repeat["duplicate"] is True
    assert {k: v for k, v in repeat.items() if k != "duplicate"} == {
        k: v for k, v in first.items() if k != "duplicate"
    }
    assert _stored(api) == 1


def test_the_same_event_id_with_other_content_is_409_naming_the_event(api: Api) -> None:
    token = api.key()
    eid = str(uuid.uuid4())
    api.post(token, event(event_id=eid))
    r = api.post(token, event(event_id=eid, outcome="failure"))
    assert r.status_code == 409
    assert r.headers["content-type"] == "application/problem+json"
    assert eid in r.json()["detail"]
    assert "new event_id" in r.json()["detail"]
    assert _stored(api) == 1


def test_an_invalid_event_names_index_and_field_and_stores_nothing(api: Api) -> None:
    batch = [event(), event(actor={"type": "robot", "id": "x"}), event(occurred_at="now")]
    r = api.post(api.key(), batch)
    assert r.status_code == 422
    problem = r.json()
    assert problem["status"] == 422
    assert problem["type"].endswith("invalid-events")
    fields = {(e["index"], e["field"]) for e in problem["errors"]}
    assert (1, "actor.type") in fields
    assert (2, "occurred_at") in fields
    assert all(e["reason"] for e in problem["errors"])
    assert _stored(api) == 0


def test_partial_stores_the_valid_events_and_names_the_rest(api: Api) -> None:
    batch = [event(), event(outcome="maybe"), event()]
    r = api.post(api.key(), batch, params={"partial": "true"})
    assert r.status_code == 201
    body = r.json()
    assert [x["index"] for x in body["receipts"]] == [0, 2]
    assert [(e["index"], e["field"]) for e in body["rejected"]] == [(1, "outcome")]
    assert _stored(api) == 2


def test_a_retried_request_with_an_idempotency_key_stores_each_event_once(api: Api) -> None:
    token = api.key()
    batch = [event(target={"type": "policy", "id": f"p{i}"}) for i in range(3)]
    headers = {"Idempotency-Key": "order-7781"}
    first = api.post(token, batch, headers=headers)
    retry = api.post(token, batch, headers=headers)
    assert (first.status_code, retry.status_code) == (201, 200)
    assert [r["event_id"] for r in first.json()["receipts"]] == [
        r["event_id"] for r in retry.json()["receipts"]
    ]
    assert all(r["duplicate"] for r in retry.json()["receipts"])
    assert _stored(api) == 3
    other = api.post(token, batch, headers={"Idempotency-Key": "order-7782"})
    assert other.status_code == 201
    assert _stored(api) == 6


def test_the_same_idempotency_key_from_another_api_key_is_another_request(api: Api) -> None:
    headers = {"Idempotency-Key": "k1"}
    a = api.post(api.key("a"), [event()], headers=headers).json()["receipts"][0]
    b = api.post(api.key("b"), [event()], headers=headers).json()["receipts"][0]
    assert a["event_id"] != b["event_id"]
    assert _stored(api) == 2


def test_a_write_key_for_one_category_cannot_write_another(api: Api) -> None:
    token = api.key("policy-svc", ["write:configuration"])
    assert api.post(token, event()).status_code == 201
    r = api.post(token, [event(), event(category="governance", action="approval.decided")])
    assert r.status_code == 403
    assert "'governance'" in r.json()["detail"]
    assert "event 1" in r.json()["detail"]
    assert _stored(api) == 1


def test_a_read_key_cannot_post(api: Api) -> None:
    r = api.post(api.key("siem", ["read"]), event())
    assert r.status_code == 403
    assert _stored(api) == 0


def test_an_unknown_media_type_is_415(api: Api) -> None:
    r = api.post(api.key(), None, content=b"<event/>", headers={"Content-Type": "text/xml"})
    assert r.status_code == 415
    assert "application/x-ndjson" in r.json()["detail"]


def test_other_events_under_a_used_idempotency_key_are_409_not_stored(api: Api) -> None:
    token = api.key()
    headers = {"Idempotency-Key": "order-1"}
    assert api.post(token, [event()], headers=headers).status_code == 201
    r = api.post(token, [event(outcome="failure")], headers=headers)
    assert r.status_code == 409
    assert _stored(api) == 1
