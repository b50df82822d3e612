"""Splunk HEC indexer acknowledgement against a real HTTPS receiver that numbers ackIds per
channel and can delay or withhold them: the cursor moves only on the acknowledgement."""

from __future__ import annotations

import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator

import pytest

from auditlog.errors import InvalidDestination
from auditlog.siem.status import destination_status
from auditlog.siem.transports import hec_ack_url
from auditlog.siem.worker import Streamer, drain_all
from auditlog.store import AuditLog
from tests.support.factories import valid
from tests.support.http_receiver import Receiver
from tests.support.rsyslog import TlsFiles, make_tls_files
from tests.support.siem import add_as_admin, stored_items, wait_until

SECRET = "hec-token-ack-0123456789"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def receiver(tls: TlsFiles) -> Iterator[Receiver]:
    with Receiver(tls, acks=True) as r:
        yield r


def delivered_seq(log: AuditLog) -> int:
    status = destination_status(log.engine).filter(category="configuration")
    return int(status["delivered_seq"][0])


def event_keys(receiver: Receiver) -> Counter[str]:
    return Counter(
        e["fields"]["auditlog_key"]
        for r in receiver.received()
        for e in r.hec_events()
        if e["sourcetype"].endswith(":event")
    )


def test_the_cursor_moves_only_when_splunk_acknowledges_the_batch(
    log: AuditLog, receiver: Receiver, tls: TlsFiles
) -> None:
    released = threading.Event()
    receiver.acked = lambda _channel, _ack_id: released.is_set()
    log.record_many([valid() for _ in range(10)])
    add_as_admin(log, "splunk", "hec", receiver.url, "json", SECRET, ca_pem=tls.ca_pem, ack=True)
    streamer = Streamer(log.engine, poll_seconds=0.1, reload_seconds=0.5).start()
    try:
        assert wait_until(lambda: len(receiver.ack_polls) >= 3, timeout=15)
        assert len(event_keys(receiver)) == 11  # 10 + destination_added: sent, not indexed
        assert delivered_seq(log) == 0
        time.sleep(0.3)
        assert delivered_seq(log) == 0  # still waiting, still polling
        released.set()
        assert wait_until(lambda: delivered_seq(log) == 11, timeout=10)
    finally:
        streamer.close()
    (first, *_) = receiver.received()
    channel = first.headers["X-Splunk-Request-Channel"]
    for poll in receiver.ack_polls:
        assert urllib.parse.parse_qs(urllib.parse.urlsplit(poll.path).query)["channel"] == [channel]
        assert poll.path.startswith("/services/collector/ack?")
        assert poll.headers["Authorization"] == f"Splunk {SECRET}"
    assert set(event_keys(receiver).values()) == {1}  # acknowledged in time: sent once


def test_an_ack_that_never_comes_times_out_and_the_batch_is_sent_again(
    log: AuditLog, receiver: Receiver, tls: TlsFiles
) -> None:
    receiver.acked = lambda _channel, ack_id: ack_id >= 1  # the first batch is lost in Splunk
    log.record_many([valid() for _ in range(5)])
    add_as_admin(
        log,
        "splunk",
        "hec",
        receiver.url,
        "json",
        SECRET,
        ca_pem=tls.ca_pem,
        ack=True,
        ack_timeout=1.0,
    )
    streamer = Streamer(log.engine, poll_seconds=0.1, reload_seconds=0.5).start()
    try:
        assert wait_until(lambda: delivered_seq(log) == 6, timeout=20)
    finally:
        streamer.close()
    first, second = [r for r in receiver.received() if r.ack_id is not None][:2]
    assert (first.ack_id, second.ack_id) == (0, 1)
    assert second.at - first.at >= 1.0  # after the ack timeout
    assert second.body == first.body  # the same batch again
    resent = {e["fields"]["auditlog_key"] for e in second.hec_events()}
    assert resent >= {i.key for i in stored_items(log, [])}
    assert set(event_keys(receiver).values()) == {2}  # at least once: resent, never lost
    assert all(
        p.headers["X-Splunk-Request-Channel"] == first.headers["X-Splunk-Request-Channel"]
        for p in receiver.received()
    )
    (row,) = destination_status(log.engine).filter(category="configuration").rows(named=True)
    assert row["errors"] == 1
    assert "ackId 0 was not acknowledged within 1s" in row["last_error"]


def test_a_token_without_acknowledgement_is_named_and_nothing_counts_as_delivered(
    log: AuditLog, tls: TlsFiles
) -> None:
    log.record_many([valid() for _ in range(3)])
    with Receiver(tls) as plain:  # answers 200 without an ackId, as a token without acks
        add_as_admin(log, "splunk", "hec", plain.url, "json", SECRET, ca_pem=tls.ca_pem, ack=True)
        assert not drain_all(log.engine, timeout=10)
    (row,) = destination_status(log.engine).filter(category="configuration").rows(named=True)
    assert row["delivered_seq"] == 0
    assert "does not have indexer acknowledgement enabled" in row["last_error"]


@pytest.mark.parametrize(
    ("url", "ack"),
    [
        ("https://s.example.com:8088/services/collector/event", "https://s.example.com:8088"),
        ("https://s.example.com/services/collector", "https://s.example.com"),
        ("https://s.example.com/splunk/services/collector/raw", "https://s.example.com/splunk"),
        ("https://s.example.com/hec", "https://s.example.com"),
    ],
)
def test_ack_endpoint_is_on_the_event_endpoints_server(url: str, ack: str) -> None:
    assert hec_ack_url(url, "c-1") == f"{ack}/services/collector/ack?channel=c-1"


def test_ack_options_are_for_hec_only_and_bounded(log: AuditLog) -> None:
    with pytest.raises(InvalidDestination, match=r"options\.ack: indexer acknowledgement"):
        add_as_admin(log, "s", "syslog-tcp", "127.0.0.1:514", ack=True)
    with pytest.raises(InvalidDestination, match=r"options\.ack_timeout: 0\.1 is outside"):
        add_as_admin(
            log,
            "h",
            "hec",
            "https://s.example.com/services/collector",
            "json",
            SECRET,
            ack=True,
            ack_timeout=0.1,
        )
