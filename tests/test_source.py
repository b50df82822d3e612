"""The event's source (the API key that submitted it): set by the log, never by the producer,
checked for shape, and hashed only when there is one, so rows without it hash as they always
did (docs/integrity.md, section 2)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
import rfc8785

from auditlog.errors import InvalidEvent
from auditlog.integrity.rule import ZERO_HASH, record_bytes
from auditlog.settings import Settings
from auditlog.store import prepare, prepare_many
from tests.support.factories import valid

KEY = {"type": "api_key", "id": "k-7f3a", "name": "Billing service"}
RECORDED = "2026-11-28T08:15:03.000001Z"
FIXED = valid(event_id="33089cef-4e14-5561-880b-ec22cc67531a", correlation_id="chg-1")
# SHA-256(32 zero bytes || JCS(record)) of FIXED at seq 42, computed by the code as it was
# before events had a source: the hash of a row without one must never change.
FIXED_HASH = "401f82decd9b14bedd1525b9b7812721f922a5d873939a19f01f0db2765b21c3"


def test_an_event_without_a_source_hashes_exactly_as_before(settings: Settings) -> None:
    text = prepare(FIXED, settings).record_text(False, RECORDED, 42)
    assert '"source"' not in text.replace('"source_ip"', "")
    assert hashlib.sha256(ZERO_HASH + text.encode()).hexdigest() == FIXED_HASH
    # and the rule, applied to the record's values, gives the same bytes
    assert record_bytes(json.loads(text)) == text.encode()
    assert record_bytes(json.loads(text) | {"source": None}) == text.encode()


def test_an_event_with_a_source_hashes_its_source_between_seq_and_source_ip(
    settings: Settings,
) -> None:
    text = prepare(FIXED, settings, source=KEY).record_text(False, RECORDED, 42)
    record = json.loads(text)
    assert record["source"] == KEY
    assert text.encode() == rfc8785.dumps(record) == record_bytes(record)
    keys = list(json.loads(text, object_pairs_hook=dict))
    assert keys[keys.index("seq") + 1 : keys.index("seq") + 3] == ["source", "source_ip"]
    assert hashlib.sha256(ZERO_HASH + text.encode()).hexdigest() != FIXED_HASH


@pytest.mark.parametrize("as_json", [False, True])
@pytest.mark.parametrize("value", [KEY, None, "k-7f3a"])
def test_a_producer_cannot_set_the_source(settings: Settings, as_json: bool, value: Any) -> None:
    raw: Any = valid(source=value)
    with pytest.raises(InvalidEvent) as err:
        prepare(json.dumps(raw) if as_json else raw, settings)
    assert err.value.problems == [
        ("source", "set by the log from the API key that submitted it; a producer cannot send it")
    ]


def test_a_producer_source_is_refused_even_when_the_log_sets_one(settings: Settings) -> None:
    """The log's source does not launder a producer's: the event is refused, not merged."""
    with pytest.raises(InvalidEvent, match=r"^source: set by the log"):
        prepare(valid(source={**KEY, "name": "someone else"}), settings, source=KEY)


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ({"type": "api_key", "id": "k"}, "exactly the keys type, id and name"),
        ({**KEY, "scope": "all"}, "exactly the keys type, id and name"),
        ({**KEY, "id": 7}, "id must be a string, not int"),
        ({**KEY, "name": None}, "name must be a string, not NoneType"),
        ({**KEY, "type": "API key"}, "not a short lower-case identifier"),
        ({**KEY, "type": ""}, "not a short lower-case identifier"),
        ({**KEY, "type": "a" * 33}, "not a short lower-case identifier"),
        ({**KEY, "id": ""}, "id must be 1 to 128 characters, not 0"),
        ({**KEY, "name": "n" * 257}, "name must be 1 to 256 characters, not 257"),
        ({**KEY, "name": "a\x00b"}, "NUL character"),
        ({**KEY, "name": "a\udc00b"}, "not valid Unicode"),
        (["api_key", "k", "n"], "must be a mapping, not list"),
    ],
)
def test_a_malformed_source_is_named_with_its_reason(
    settings: Settings, source: Any, reason: str
) -> None:
    with pytest.raises(InvalidEvent) as err:
        prepare(valid(), settings, source=source)
    assert err.value.field == "source"
    assert reason in err.value.reason


def test_a_malformed_source_refuses_the_whole_batch_at_once(settings: Settings) -> None:
    with pytest.raises(InvalidEvent, match=r"^source: "):
        prepare_many([valid(), valid()], settings, source={**KEY, "id": ""})


def test_prepare_many_gives_every_event_of_the_batch_its_source(settings: Settings) -> None:
    good, bad = prepare_many([valid(), {"category": "nope"}, valid()], settings, source=KEY)
    assert list(bad) == [1]
    for p in good:
        assert json.loads(p.record_text(False, RECORDED, 1))["source"] == KEY


def test_a_non_ascii_source_name_is_hashed_as_utf8_jcs(settings: Settings) -> None:
    key = {**KEY, "name": "Zahlungsdienst Zoë ✓"}
    text = prepare(valid(), settings, source=key).record_text(False, RECORDED, 3)
    assert text.encode() == rfc8785.dumps(json.loads(text))
