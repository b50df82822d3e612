"""The pull API for read keys: events as NDJSON pages, checkpoints, inclusion proofs."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import rfc8785

from auditlog.proofs.note import parse_inclusion
from tests.support.api import Api, event


def _lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def test_events_come_as_ndjson_records_whose_hashes_check(api: Api) -> None:
    api.post(api.key(), [event(target={"type": "policy", "id": f"p{i}"}) for i in range(3)])
    r = api.client(api.key("siem", ["read"])).get("/v1/events")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/x-ndjson"
    rows = _lines(r.text)
    assert [r["action"] for r in rows].count("policy.updated") == 3  # and the keys' creation
    for row in rows:
        prev, entry = bytes.fromhex(row.pop("prev_hash")), bytes.fromhex(row.pop("entry_hash"))
        assert hashlib.sha256(prev + rfc8785.dumps(row)).digest() == entry


def test_pages_follow_the_next_cursor_newest_first_without_repeats(api: Api) -> None:
    token = api.key()
    for i in range(5):
        api.post(token, event(occurred_at=f"2026-12-0{i + 1}T10:00:00Z"))
    reader = api.client(api.key("siem", ["read"]))
    seen: list[str] = []
    params: dict[str, str] = {"limit": "2", "action": "policy.updated"}
    for _ in range(5):
        r = reader.get("/v1/events", params=params)
        assert r.status_code == 200
        seen += [row["occurred_at"] for row in _lines(r.text)]
        if "x-next-cursor" not in r.headers:
            break
        assert 'rel="next"' in r.headers["link"]
        params["cursor"] = r.headers["x-next-cursor"]
    assert seen == sorted(seen, reverse=True)
    assert len(seen) == len(set(seen)) == 5


def test_the_timelines_filters_apply(api: Api) -> None:
    token = api.key()
    api.post(token, [event(), event(category="governance", action="approval.decided")])
    reader = api.client(api.key("siem", ["read"]))
    rows = _lines(reader.get("/v1/events", params={"category": "governance"}).text)
    assert [r["category"] for r in rows] == ["governance"]


def test_a_bad_filter_is_422_naming_it(api: Api) -> None:
    reader = api.client(api.key("siem", ["read"]))
    for params, field in (
        ({"outcome": "maybe"}, "outcome"),
        ({"limit": "0"}, "limit"),
        ({"cursor": "garbage"}, "cursor"),
    ):
        r = reader.get("/v1/events", params=params)
        assert r.status_code == 422
        assert field in r.json()["detail"]


def test_a_write_key_cannot_read(api: Api) -> None:
    writer = api.client(api.key())
    assert writer.get("/v1/events").status_code == 403
    assert writer.get("/v1/checkpoints").status_code == 403


def test_checkpoints_are_served_as_signed_notes(api: Api) -> None:
    reader = api.client(api.key("siem", ["read"]))
    api.post(api.key(), event())
    api.log.checkpoint()
    head = api.rows("SELECT max(seq) FROM events WHERE category = 'configuration'")[0][0]
    r = reader.get("/v1/checkpoints")
    assert r.status_code == 200
    assert f"auditlog.local/configuration\n{head}\n" in r.text
    doc = reader.get("/v1/checkpoints", params={"format": "json"}).json()
    assert [c["category"] for c in doc["checkpoints"]] == ["configuration"]


def test_a_proof_is_202_until_a_checkpoint_covers_the_event_then_the_tlog_proof(
    start_api: Any,
) -> None:
    api = start_api(store={"checkpoint_every": 1000, "checkpoint_seconds": 3600})
    token = api.key("writer", ["write:configuration"])
    api.post(token, event())  # the first append signs a checkpoint at once
    receipt = api.post(token, event()).json()["receipts"][0]
    client = api.client(token)
    r = client.get(receipt["proof"])
    assert r.status_code == 202
    assert r.headers["retry-after"] == "3600"
    api.log.checkpoint()
    r = client.get(receipt["proof"])
    assert r.status_code == 200
    proof = parse_inclusion(r.text)
    assert proof.index == receipt["seq"] - 1
    assert proof.extra == bytes.fromhex(receipt["entry_hash"])


def test_a_proof_needs_read_or_write_scope_on_the_events_category(api: Api) -> None:
    receipt = api.post(api.key(), event()).json()["receipts"][0]
    other = api.client(api.key("gov", ["write:governance"]))
    assert other.get(receipt["proof"]).status_code == 403
    reader = api.client(api.key("siem", ["read"]))
    assert reader.get("/v1/events/00000000-0000-4000-8000-000000000000/proof").status_code == 404
    assert reader.get("/v1/events/nope/proof").status_code == 422
