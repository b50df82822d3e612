"""Retries against the real service: a lost response, 429 and 503 with Retry-After, an
unreachable service; and the Retry-After / backoff rules themselves."""

from __future__ import annotations

import random
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from sqlalchemy.engine import URL

from auditlog.client import retry_after
from auditlog.client.retry import MAX_BACKOFF, backoff_delay
from auditlog.db.server import make_engine
from auditlog.errors import ApiUnavailable
from tests.client.conftest import MakeClient, Start
from tests.client.helpers import Counting, Proxy, closed_port, stored, unix_proxy_for
from tests.support.api import Api, event


def _lossy(api: Api, drop: int) -> Proxy:
    host, port = api.url.removeprefix("http://").split(":")
    return Proxy(("127.0.0.1", 0), (host, int(port)), drop_answers=drop).start()


def test_a_lost_response_is_retried_and_the_event_stored_once(
    api: Api, make_client: MakeClient
) -> None:
    proxy = _lossy(api, drop=1)
    counting = Counting()
    client = make_client(proxy.url, api.key(), transport=counting, backoff=0.01)
    receipt = client.send(event())
    assert counting.statuses == [None, 200]  # the first answer never arrived
    assert receipt.duplicate is True  # the retry was answered with the original receipt
    assert [(r.event_id, r.seq) for r in stored(api)] == [(receipt.event_id, receipt.seq)]
    proxy.stop()


def test_a_batch_whose_responses_are_lost_twice_is_stored_once(
    api: Api, make_client: MakeClient
) -> None:
    proxy = _lossy(api, drop=2)
    client = make_client(proxy.url, api.key(), backoff=0.01)
    receipts = client.send_many([event() for _ in range(20)])
    assert proxy.connections == 3
    assert sorted(r.event_id for r in receipts) == sorted(r.event_id for r in stored(api))
    assert len(stored(api)) == 20
    proxy.stop()


def test_429_is_retried_after_the_seconds_retry_after_names(
    api: Api, make_client: MakeClient
) -> None:
    counting = Counting()
    client = make_client(api.url, api.key(rate=1, burst=1), transport=counting)
    client.send(event())
    start = time.monotonic()
    client.send(event())
    assert counting.statuses == [201, 429, 201]
    assert time.monotonic() - start >= 1.0  # Retry-After: 1
    assert len(stored(api)) == 2


def test_429_without_retries_left_raises_with_the_problem_and_retry_after(
    api: Api, make_client: MakeClient
) -> None:
    client = make_client(api.url, api.key(rate=1, burst=1), retries=0)
    client.send(event())
    with pytest.raises(ApiUnavailable) as caught:
        client.send(event())
    assert caught.value.retry_after == 1
    assert caught.value.problem is not None
    assert caught.value.problem["status"] == 429
    assert "1 attempt" in str(caught.value)
    assert "over its rate" in str(caught.value)


def test_a_retry_after_longer_than_max_wait_ends_the_retries_at_once(
    api: Api, make_client: MakeClient
) -> None:
    counting = Counting()
    client = make_client(api.url, api.key(rate=0.01, burst=1), max_wait=5, transport=counting)
    client.send(event())
    with pytest.raises(ApiUnavailable, match="more than max_wait") as caught:
        client.send(event())
    assert counting.statuses == [201, 429]
    assert caught.value.retry_after is not None
    assert caught.value.retry_after > 5


def test_503_while_the_database_is_down_is_retried_after_its_retry_after(
    start_api: Start, make_client: MakeClient, db_url: URL
) -> None:
    proxy, socket_dir = unix_proxy_for(str(db_url.query["host"]))
    writer = make_engine(
        db_url.set(username="auditlog_ingest", query={"host": socket_dir}), "writer"
    )
    api = start_api(writer=writer)
    counting = Counting()
    client = make_client(api.url, api.key(), transport=counting)
    client.send(event())
    proxy.go_down()
    threading.Timer(1.0, proxy.come_back).start()
    start = time.monotonic()
    receipt = client.send(event())
    assert counting.statuses[:2] == [201, 503]
    assert counting.statuses[-1] == 201
    assert time.monotonic() - start >= 5  # the service's Retry-After for the database
    assert receipt.event_id in {r.event_id for r in stored(api)}
    proxy.stop()
    writer.dispose()


def test_an_unreachable_service_raises_after_every_retry(make_client: MakeClient) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    counting = Counting()
    client = make_client(url, "alk_x_y", retries=2, backoff=0.01, transport=counting)
    with pytest.raises(ApiUnavailable) as caught:
        client.send(event())
    assert counting.statuses == [None, None, None]
    assert caught.value.attempts == 3
    assert caught.value.problem is None
    assert url in str(caught.value)
    assert "ConnectError" in str(caught.value)
    assert "stores each once" in str(caught.value)


NOW = datetime(2026, 12, 4, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("3", 3.0),
        (" 120 ", 120.0),
        (format_datetime(NOW + timedelta(seconds=10), usegmt=True), 10.0),
        ("Fri, 04 Dec 2026 12:00:30 GMT", 30.0),
        (format_datetime(NOW - timedelta(hours=1), usegmt=True), 0.0),
        ("soon", None),
        ("-5", None),
        ("1.5", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_reads_seconds_and_http_dates_and_ignores_the_rest(
    header: str | None, seconds: float | None
) -> None:
    assert retry_after(header, NOW) == seconds


def test_the_server_s_retry_after_wins_over_the_backoff_with_a_little_jitter() -> None:
    rng = random.Random(1)
    waits = [backoff_delay(1, 0.2, 4.0, rng) for _ in range(200)]
    assert all(4.0 <= w <= 4.4 for w in waits)
    assert len(set(waits)) > 100  # spread: clients told the same second do not all come back


def test_backoff_grows_exponentially_with_full_jitter_up_to_a_cap() -> None:
    rng = random.Random(2)
    for attempt in range(1, 12):
        waits = [backoff_delay(attempt, 0.2, None, rng) for _ in range(100)]
        assert all(0 <= w <= min(MAX_BACKOFF, 0.2 * 2 ** (attempt - 1)) for w in waits)
    assert max(backoff_delay(5, 0.2, None, rng) for _ in range(100)) > 1.6
