"""The background mode: enqueue, flush, close, and the bounded queue's clear refusal."""

from __future__ import annotations

from concurrent.futures import wait

import pytest

from auditlog.errors import ApiRefused, ApiUnavailable, ClientClosed, ClientQueueFull
from tests.client.conftest import MakeClient
from tests.client.helpers import Blackhole, Counting, closed_port, stored
from tests.support.api import Api, event


def test_enqueued_events_are_sent_in_batches_and_each_future_has_its_receipt(
    api: Api, make_client: MakeClient
) -> None:
    counting = Counting()
    client = make_client(api.url, api.key("bulk", rate=1e6, burst=10**6), transport=counting)
    futures = [client.enqueue(event(target={"type": "policy", "id": f"p{i}"})) for i in range(1200)]
    client.flush(timeout=60)
    receipts = [f.result(0) for f in futures]
    assert len(counting.statuses) <= 4  # batches of up to 500, not 1,200 requests
    rows = stored(api)
    assert sorted(r.event_id for r in receipts) == sorted(r.event_id for r in rows)
    assert len({r.event_id for r in rows}) == 1200


def test_an_invalid_event_fails_only_its_own_future(api: Api, make_client: MakeClient) -> None:
    client = make_client(api.url, api.key())
    good = [client.enqueue(event()) for _ in range(3)]
    bad = client.enqueue(event(actor={"type": "robot", "id": "r"}))
    client.flush(timeout=30)
    assert all(f.result(0).seq for f in good)
    error = bad.exception(0)
    assert isinstance(error, ApiRefused)
    assert error.status == 422
    assert [e["field"] for e in error.errors] == ["actor.type"]
    assert "actor.type" in str(error)
    assert len(stored(api)) == 3


def test_a_full_queue_refuses_with_the_count_and_what_to_do(make_client: MakeClient) -> None:
    hole = Blackhole().start()
    client = make_client(hole.url, "alk_x_y", batch_size=1, max_queue=3, retries=0, timeout=60)
    in_flight = client.enqueue(event())
    assert hole.received.wait(10)  # the thread sent it and waits for an answer
    waiting = [client.enqueue(event()) for _ in range(3)]
    with pytest.raises(ClientQueueFull) as caught:
        client.enqueue(event())
    assert (caught.value.waiting, caught.value.max_queue) == (3, 3)
    assert "3 events waiting" in str(caught.value)
    assert "flush()" in str(caught.value)
    hole.stop()  # the connection drops: the batch fails, then the rest find nobody there
    done, _ = wait([in_flight, *waiting], timeout=30)
    assert len(done) == 4
    assert all(isinstance(f.exception(0), ApiUnavailable) for f in done)


def test_close_sends_what_is_queued_and_refuses_more(api: Api, make_client: MakeClient) -> None:
    client = make_client(api.url, api.key(), linger=5.0)
    futures = [client.enqueue(event()) for _ in range(10)]
    client.close()  # does not wait the linger out
    assert all(f.done() and f.exception() is None for f in futures)
    assert len(stored(api)) == 10
    with pytest.raises(ClientClosed, match="open a new AuditLogClient"):
        client.enqueue(event())


def test_the_client_is_a_context_manager_that_flushes_on_exit(
    api: Api, make_client: MakeClient
) -> None:
    with make_client(api.url, api.key()) as client:
        future = client.enqueue(event())
    assert future.result(0).event_id == stored(api)[0].event_id


def test_an_unreachable_service_fails_the_futures_not_the_producer(
    make_client: MakeClient,
) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    client = make_client(url, "alk_x_y", retries=1, backoff=0.01)
    futures = [client.enqueue(event()) for _ in range(3)]
    client.flush(timeout=30)
    assert all(isinstance(f.exception(0), ApiUnavailable) for f in futures)


def test_flush_gives_up_after_its_timeout_naming_what_is_unanswered(
    make_client: MakeClient,
) -> None:
    hole = Blackhole().start()
    client = make_client(hole.url, "alk_x_y", retries=0, timeout=60)
    client.enqueue(event())
    with pytest.raises(TimeoutError, match=r"1 event\(s\) still unanswered"):
        client.flush(timeout=0.5)
    hole.stop()
    client.flush(timeout=30)
