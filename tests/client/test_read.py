"""The pull API through the client: events() across keyset pages, checkpoints, proofs."""

from __future__ import annotations

import uuid

import pytest

from auditlog.errors import ApiRefused
from tests.client.conftest import MakeClient
from tests.support.api import Api, event


def test_events_iterates_every_page_newest_first_with_the_chain_fields(
    api: Api, make_client: MakeClient
) -> None:
    run = str(uuid.uuid4())
    sent = make_client(api.url, api.key()).send_many(
        [event(correlation_id=run) for _ in range(25)] + [event()]
    )
    reader = make_client(api.url, api.key("siem", ["read"]))
    found = list(reader.events(correlation_id=run, limit=10))
    assert sorted(e["event_id"] for e in found) == sorted(r.event_id for r in sent[:25])
    by_id = {r.event_id: r for r in sent}
    assert all(e["entry_hash"] == by_id[e["event_id"]].entry_hash for e in found)
    times = [e["occurred_at"] for e in found]
    assert times == sorted(times, reverse=True)


def test_a_bad_filter_raises_the_problem_naming_it(api: Api, make_client: MakeClient) -> None:
    reader = make_client(api.url, api.key("siem", ["read"]))
    with pytest.raises(ApiRefused) as caught:
        list(reader.events(limit=0))
    assert caught.value.status == 422
    assert "limit" in caught.value.detail


def test_a_write_key_cannot_read_events(api: Api, make_client: MakeClient) -> None:
    with pytest.raises(ApiRefused) as caught:
        list(make_client(api.url, api.key()).events())
    assert caught.value.status == 403


def test_checkpoints_and_a_proof_once_a_checkpoint_covers_the_event(
    api: Api, make_client: MakeClient
) -> None:
    writer = make_client(api.url, api.key())
    receipt = writer.send(event())
    assert writer.proof(receipt.event_id) is None  # stored, not yet covered
    api.log.checkpoint()
    reader = make_client(api.url, api.key("siem", ["read"]))
    doc = reader.checkpoints()
    heads = {cp["category"]: cp for cp in doc["checkpoints"]}
    assert heads["configuration"]["seq"] >= receipt.seq
    assert doc["public_keys"]
    assert "configuration" in reader.checkpoint_notes()
    proof = writer.proof(receipt.event_id)
    assert proof is not None
    assert proof.startswith("c2sp.org/tlog-proof")
