"""Answers that are not receipts for what was sent (a replayed answer, a wrong base_url, a
short list) are refused, never handed on as proof that an event was stored."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from auditlog.errors import ApiRefused
from tests.client.conftest import MakeClient
from tests.client.helpers import Canned
from tests.support.api import Api, event


def _real_answer(api: Api, token: str, events: list[dict[str, Any]]) -> bytes:
    response = httpx.post(
        f"{api.url}/v1/events",
        json=events,
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 201
    return response.content


FIRST = event(event_id=str(uuid.uuid4()))


@pytest.mark.parametrize(
    ("sent", "why"),
    [
        ([event()], "receipt 0 is not for the event sent at 0"),
        ([FIRST, event()], "1 receipts for 2 events"),
    ],
    ids=["a receipt for another event", "a receipt missing"],
)
def test_a_replayed_answer_is_refused(
    api: Api, make_client: MakeClient, sent: list[dict[str, Any]], why: str
) -> None:
    token = api.key()
    replay = Canned(201, _real_answer(api, token, [FIRST]))
    client = make_client(replay.url, token)
    with pytest.raises(ApiRefused, match=why) as caught:
        client.send_many(sent)
    assert caught.value.title == "Not an audit log answer"
    replay.stop()


def test_a_page_that_is_not_the_api_is_refused_naming_base_url(make_client: MakeClient) -> None:
    page = Canned(200, b"<html>welcome</html>", "text/html")
    with pytest.raises(ApiRefused, match="is base_url the audit log API"):
        make_client(page.url, "alk_x_y").send(event())
    page.stop()


def test_an_error_page_that_is_not_a_problem_is_reported_with_its_text(
    make_client: MakeClient,
) -> None:
    page = Canned(404, b"<html>no such page</html>", "text/html")
    with pytest.raises(ApiRefused, match="no such page") as caught:
        make_client(page.url, "alk_x_y").send(event())
    assert caught.value.status == 404
    page.stop()
