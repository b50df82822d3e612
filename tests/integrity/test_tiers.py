"""Honest labels: each chain's tier as the database holds it (own key, witnesses, TSA)."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from auditlog.integrity.tiers import ChainTier, chain_tiers
from auditlog.store import AuditLog
from tests.support.factories import valid


def test_a_signed_chain_is_tamper_detecting_and_carries_its_note(
    log: AuditLog, reader_engine: Engine
) -> None:
    log.record_many([valid(category="governance") for _ in range(3)])
    tiers = {t.category: t for t in chain_tiers(reader_engine)}
    gov = tiers["governance"]
    assert gov.tiers == ["tamper-detecting (signed by the log's own key)"]
    assert gov.note is not None
    assert gov.note.startswith("auditlog.local/governance\n3\n")
    assert tiers["configuration"].tiers == ["not yet signed"]


def test_witnessed_and_timestamped_tiers_say_how_many_by_whom_and_when() -> None:
    when = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    tier = ChainTier("governance", None, None, (("w1", when), ("w2", when)), 40, 3, 3,
                     ("https://tsa.example", when, 40))  # fmt: skip
    assert tier.tiers == [
        "witnessed (2 of 3, below the quorum of 3; seq 40, cosigned 2026-12-04 12:00 UTC)",
        "timestamped (by https://tsa.example, 2026-12-04 12:00:00 UTC, seq 40)",
    ]


def test_a_stored_time_stamp_shows_as_timestamped(
    log: AuditLog, reader_engine: Engine, admin_engine: Engine
) -> None:
    log.record_many([valid(category="governance") for _ in range(3)])
    with admin_engine.begin() as conn:  # a token row as the stamping worker stores it
        conn.execute(sa.text(
            "INSERT INTO checkpoint_timestamps (checkpoint_id, tsa_url, token, gen_time)"
            " SELECT id, 'https://tsa.example', '\\x30'::bytea, now() FROM checkpoints"
            " WHERE category = 'governance'"
        ))  # fmt: skip
    gov = next(t for t in chain_tiers(reader_engine) if t.category == "governance")
    assert gov.stamp is not None
    assert gov.tiers[1].startswith("timestamped (by https://tsa.example")
