"""Hostile bodies get a clear problem each, never a traceback, and never hold up others; 32
concurrent clients leave gapless chains whose rows match their receipts."""

from __future__ import annotations

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine

from auditlog.integrity.database import verify_database
from tests.support.api import Api, event

Start = Any


def _raw(ev: dict[str, Any], details: str) -> str:
    """``ev`` as JSON text with ``details`` spliced in as written (not re-encoded)."""
    text = json.dumps({k: v for k, v in ev.items() if k != "details"})
    return text[:-1] + f', "details": {details}}}'


def _problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = r.json()
    assert "Traceback" not in r.text
    assert body["status"] == status
    return body


def test_deep_nesting_names_the_event_and_the_path(api: Api) -> None:
    token = api.key()
    deep = _raw(event(), '{"a": ' * 40 + "1" + "}" * 40)
    body = _problem(api.post(token, None, content=f"[{json.dumps(event())}, {deep}]"), 422)
    assert body["errors"][0]["index"] == 1
    assert body["errors"][0]["field"].startswith("details.a.a")
    very = "[" * 200_000 + "]" * 200_000
    body = _problem(api.post(token, None, content=very), 422)
    assert body["errors"][0]["index"] == 0
    assert "nesting deeper" in body["detail"]


def test_huge_numbers_are_refused_by_field(api: Api) -> None:
    token = api.key()
    for number, field in (
        ("1" + "0" * 100_000, "event"),
        ("1e999", "details"),
        ("123456789012345678901234567890", "details"),
    ):
        body = _problem(api.post(token, None, content=_raw(event(), f'{{"n": {number}}}')), 422)
        assert body["errors"][0]["field"] == field


def test_a_duplicate_key_is_refused_naming_it(api: Api) -> None:
    text = json.dumps(event())[:-1] + ', "outcome": "failure"}'
    body = _problem(api.post(api.key(), None, content=text), 422)
    assert ("outcome", "duplicate key") in {(e["field"], e["reason"]) for e in body["errors"]}


def test_invalid_utf8_is_400_naming_the_byte(api: Api) -> None:
    good = json.dumps(event()).encode()
    body = _problem(api.post(api.key(), None, content=good[:20] + b"\xff" + good[20:]), 400)
    assert body["offset"] == 20
    assert "UTF-8" in body["detail"]


def test_malformed_json_is_400_naming_line_column_and_offset(api: Api) -> None:
    token = api.key()
    text = "[\n" + json.dumps(event()) + ",\n  {oops}\n]"
    body = _problem(api.post(token, None, content=text), 400)
    assert (body["line"], body["column"]) == (3, 4)
    assert text[body["offset"]] == "o"
    nd = json.dumps(event()) + "\n" + json.dumps(event())[:-1] + "\n"
    body = _problem(
        api.post(token, None, content=nd, headers={"Content-Type": "application/x-ndjson"}), 400
    )
    assert body["line"] == 2


def test_a_nul_character_is_refused_by_field(api: Api) -> None:
    body = _problem(api.post(api.key(), event(details={"note": "a\u0000b"})), 422)
    assert body["errors"][0]["field"].startswith("details")


def test_a_body_over_the_cap_is_413_before_it_is_parsed(start_api: Start) -> None:
    api = start_api(api={"max_body_bytes": 10_000, "max_batch_events": 5})
    token = api.key()
    body = _problem(api.post(token, None, content=b"[" + b" " * 20_000 + b"]"), 413)
    assert "api.max_body_bytes" in body["detail"]

    def chunks() -> Any:  # no Content-Length: the cap is checked while it streams
        for _ in range(100):
            yield b" " * 1000

    _problem(
        api.client(token).post(
            "/v1/events", content=chunks(), headers={"Content-Type": "application/json"}
        ),
        413,
    )
    body = _problem(api.post(token, [event() for _ in range(6)]), 413)
    assert "api.max_batch_events" in body["detail"]


def test_a_slow_body_times_out_while_other_clients_are_served(start_api: Start) -> None:
    api = start_api(api={"read_timeout_s": 1.5})
    token = api.key()
    host, port = api.url.removeprefix("http://").split(":")
    slow = socket.create_connection((host, int(port)))
    slow.sendall(
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {token}\r\nContent-Length: 1000\r\n\r\n".encode()
        + b'{"category": '
    )
    started = time.monotonic()
    fast = [api.post(token, event()).status_code for _ in range(5)]
    assert fast == [201] * 5
    assert time.monotonic() - started < 1.5
    slow.settimeout(10)
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += slow.recv(4096)
    slow.close()
    assert answer.startswith(b"HTTP/1.1 408")
    assert time.monotonic() - started >= 1.4


@pytest.mark.slow
def test_32_concurrent_clients_leave_gapless_chains_matching_their_receipts(
    api: Api, reader_engine: Engine
) -> None:
    token = api.key()
    cats = [
        ("configuration", "policy.updated"),
        ("governance", "approval.decided"),
        ("user_activity", "user.login"),
    ]
    barrier = threading.Barrier(32)

    def client(n: int) -> list[dict[str, Any]]:
        with httpx.Client(
            base_url=api.url, headers={"Authorization": f"Bearer {token}"}, timeout=60
        ) as c:
            barrier.wait()
            out = []
            for i in range(10):
                cat, action = cats[(n + i) % 3]
                r = c.post("/v1/events", json=event(category=cat, action=action))
                assert r.status_code == 201, r.text
                out.extend(r.json()["receipts"])
            return out

    with ThreadPoolExecutor(32) as pool:
        receipts = [x for batch in pool.map(client, range(32)) for x in batch]
    assert len(receipts) == 320
    rows = {
        r.event_id: r
        for r in api.rows("SELECT event_id::text, category, seq, entry_hash FROM events")
    }
    for rc in receipts:
        row = rows[rc["event_id"]]
        assert (row.category, row.seq, bytes(row.entry_hash).hex()) == (
            rc["category"],
            rc["seq"],
            rc["entry_hash"],
        )
    for cat, _ in cats:
        seqs = sorted(r.seq for r in rows.values() if r.category == cat)
        assert seqs == list(range(1, len(seqs) + 1))
    assert verify_database(reader_engine).ok
