"""Who may call: 401 and 403 for keys, 429 per key; every refused use is an audit event, and
repeats within a minute are counted, not logged one by one."""

from __future__ import annotations

import time
from typing import Any

import pytest

from auditlog.apikeys.admin import revoke_key
from auditlog.apikeys.refusals import Refusal, Refusals
from tests.support.api import ADMIN, Api, event
from tests.support.siem import wait_until


def _refusals(api: Api, n: int) -> list[dict[str, Any]]:
    """The refusal events once there are ``n`` (they are written in the background)."""
    wait_until(lambda: len(api.refusals()) >= n, timeout=10)
    time.sleep(0.3)  # nothing more is coming
    return api.refusals()


def test_no_key_is_401_with_a_bearer_challenge_and_is_recorded(api: Api) -> None:
    r = api.post(None, event())
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert r.headers["content-type"] == "application/problem+json"
    assert [d["reason"] for d in _refusals(api, 1)] == ["missing"]


@pytest.mark.parametrize(
    "token",
    [
        "alk_0123456789abcdef_" + "A" * 43,  # well-formed, no such key
        "not-a-key",
        "alk_0123456789abcdef_short",
    ],
)
def test_an_unknown_key_is_401_and_recorded_as_unknown(api: Api, token: str) -> None:
    r = api.post(token, event())
    assert r.status_code == 401
    assert "not known" in r.json()["detail"]
    found = _refusals(api, 1)
    assert [d["reason"] for d in found] == ["unknown"]
    rows = api.rows(
        "SELECT outcome, category, actor->>'id' FROM events WHERE action = 'apikey.refused'"
    )
    assert tuple(rows[0]) == ("denied", "user_activity", "unknown-api-key")


def test_a_forged_secret_for_a_real_key_id_is_refused_and_names_that_key(api: Api) -> None:
    token = api.key("billing")
    forged = token[:-43] + ("B" * 43 if not token.endswith("B" * 43) else "C" * 43)
    assert api.post(forged, event()).status_code == 401
    assert [d["reason"] for d in _refusals(api, 1)] == ["wrong_secret"]
    rows = api.rows("SELECT target->>'name' FROM events WHERE action = 'apikey.refused'")
    assert rows[0][0] == "billing"


def test_a_revoked_key_is_refused(api: Api) -> None:
    token = api.key("billing")
    assert api.post(token, event()).status_code == 201
    revoke_key(api.keys_log, ADMIN, "billing")
    r = api.post(token, event())
    assert r.status_code == 401
    assert "revoked" in r.json()["detail"]
    assert [d["reason"] for d in _refusals(api, 1)] == ["revoked"]


def test_a_key_from_an_address_outside_its_allow_list_is_403(api: Api) -> None:
    token = api.key("office", allow=["10.0.0.0/8"])
    r = api.post(token, event())
    assert r.status_code == 403
    assert "127.0.0.1" in r.json()["detail"]
    assert [d["reason"] for d in _refusals(api, 1)] == ["ip_not_allowed"]
    assert api.post(api.key("local", allow=["127.0.0.0/8"]), event()).status_code == 201


def test_x_forwarded_for_counts_only_from_a_trusted_proxy(start_api: Any) -> None:
    untrusted = start_api()
    token = untrusted.key("office", allow=["10.9.8.7"])
    spoofed = {"X-Forwarded-For": "10.9.8.7"}
    assert untrusted.post(token, event(), headers=spoofed).status_code == 403
    proxied = start_api(api={"trusted_proxies": ["127.0.0.1/32"]})
    assert proxied.post(token, event(), headers=spoofed).status_code == 201
    chained = {"X-Forwarded-For": "10.9.8.7, 192.0.2.1"}  # the client put the first hop in
    assert proxied.post(token, event(), headers=chained).status_code == 403


def test_wrong_scope_is_recorded(api: Api) -> None:
    token = api.key("siem", ["read"])
    assert api.post(token, event()).status_code == 403
    assert [d["reason"] for d in _refusals(api, 1)] == ["wrong_scope"]


def test_a_flood_of_refusals_writes_one_event_per_key_and_reason(api: Api) -> None:
    for _ in range(30):
        assert api.post("alk_0123456789abcdef_" + "A" * 43, event()).status_code == 401
    for _ in range(5):
        api.post(None, event())
    found = _refusals(api, 2)
    assert sorted(d["reason"] for d in found) == ["missing", "unknown"]


def test_repeats_are_summarised_once_their_minute_is_over() -> None:
    now = [1000.0]
    refusals = Refusals(clock=lambda: now[0])
    r = Refusal("unknown", path="/v1/events")
    assert len(refusals.refused(r)) == 1
    assert all(refusals.refused(r) == [] for _ in range(41))
    assert refusals.due() == []
    now[0] += 60
    (summary,) = refusals.due()
    assert summary["details"]["repeats"] == 41
    assert summary["outcome"] == "denied"
    assert refusals.due() == []
    assert len(refusals.refused(r)) == 1  # a new minute opens a new bucket


def test_a_key_over_its_rate_gets_429_with_retry_after(api: Api) -> None:
    token = api.key("slow", rate=0.5, burst=2)
    assert api.post(token, [event(), event()]).status_code == 201
    r = api.post(token, event())
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) >= 1
    assert "slow" in r.json()["detail"]
    other = api.key("fast")
    assert api.post(other, event()).status_code == 201  # per key
