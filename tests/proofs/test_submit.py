"""The log submits its checkpoints to real witnesses (`auditlog witness serve` on loopback),
as the `auditlog_stream` login: durably, from the size each witness cosigned, recovering
from 409, backing off from a witness that is down, storing only verified cosignatures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from auditlog.db.server import make_engine
from auditlog.errors import ConfigError
from auditlog.integrity.keys import Signer
from auditlog.integrity.witnessed import check_witnessed, witness_keys
from auditlog.proofs.submit import (
    LEASE_CLASS,
    Submitter,
    Target,
    configured_witnesses,
    quorum_of,
    witness_status,
)
from auditlog.proofs.witness import load_witness_key, witness_vkey
from auditlog.settings import Settings, WitnessSettings
from auditlog.store import AuditLog
from tests.support.factories import valid
from tests.support.witness import Witnesses, WitnessProcess, log_vkeys

GOV = "governance"
FAST = WitnessSettings(retry_min_seconds=60, retry_max_seconds=600, timeout_seconds=5)


@pytest.fixture
def witnesses(tmp_path: Path, signer: Signer) -> Iterator[Witnesses]:
    made = Witnesses(tmp_path / "witnesses", log_vkeys("auditlog.local", signer))
    made.tmp.mkdir()
    yield made
    made.stop_all()


@pytest.fixture
def stream(db_url: URL) -> Iterator[Engine]:
    """The submitter's login, auditlog_stream (group auditlog_streamer)."""
    engine = make_engine(db_url.set(username="auditlog_stream"), "stream")
    yield engine
    engine.dispose()


@pytest.fixture
def every5(engine: Engine, settings: Settings, signer: Signer) -> AuditLog:
    return AuditLog(engine, settings.replace(store={"checkpoint_every": 5}), signer=signer)


def fill(log: AuditLog, batches: int) -> None:
    for b in range(batches):
        log.record_many([valid(category=GOV, details={"b": b, "i": i}) for i in range(5)])


def target(w: WitnessProcess, vkey: str | None = None) -> Target:
    return Target(w.name, w.url, vkey or w.vkey)


class Clock:
    def __init__(self, now: float = 2_000_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def cosignatures(admin: Engine) -> list[tuple[Any, ...]]:
    with admin.connect() as conn:
        return list(
            conn.execute(
                sa.text(
                    "SELECT c.seq, w.witness FROM witness_cosignatures w JOIN checkpoints c"
                    " ON c.id = w.checkpoint_id ORDER BY c.seq, w.witness"
                )
            )
        )


def state(admin: Engine, witness: str) -> dict[str, Any]:
    with admin.connect() as conn:
        row = conn.execute(
            sa.text("SELECT * FROM witness_state WHERE witness = :w AND category = :c"),
            {"w": witness, "c": GOV},
        )
        return dict(row.mappings().one())


# --- configuration ------------------------------------------------------------------------


def test_configured_witnesses_take_the_name_from_the_vkey(tmp_path: Path) -> None:
    key = witness_vkey("witness.example/w1", load_witness_key(tmp_path / "w"))
    targets = configured_witnesses(WitnessSettings(servers=(f"{key} https://w.example:7380",)))
    assert targets == [Target("witness.example/w1", "https://w.example:7380", key)]


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ("just-one-part", "is not '<vkey> <url>'"),
        ("name+00000000+AAAA https://w", "entry 1: vkey"),
        ("{key} ftp://w.example", "is not an http:// or https:// URL"),
        ("{log} https://w.example", "not a witness cosignature key"),
    ],
)
def test_a_bad_witness_entry_is_refused_naming_it(
    tmp_path: Path, signer: Signer, entry: str, reason: str
) -> None:
    key = witness_vkey("w1", load_witness_key(tmp_path / "w"))
    text = entry.format(key=key, log=log_vkeys("auditlog.local", signer)[0])
    with pytest.raises(ConfigError, match=r"witness\.servers entry 1") as caught:
        configured_witnesses(WitnessSettings(servers=(text,)))
    assert reason in str(caught.value)


def test_quorum_zero_means_every_witness() -> None:
    assert quorum_of(WitnessSettings(), 3) == 3
    assert quorum_of(WitnessSettings(quorum=2), 3) == 2


# --- submitting ---------------------------------------------------------------------------


def test_every_new_checkpoint_is_cosigned_and_the_cosignature_stored(
    every5: AuditLog, stream: Engine, admin_engine: Engine, witnesses: Witnesses
) -> None:
    fill(every5, 2)
    w = witnesses.make("witness.example/w1")
    with Submitter(stream, [target(w)], FAST) as submitter:
        [outcome] = submitter.run_pass()
    assert (outcome.cosigned, outcome.error) == ((5, 10), None)
    assert cosignatures(admin_engine) == [(5, w.name), (10, w.name)]
    assert state(admin_engine, w.name)["cosigned_size"] == 10
    keys = witness_keys([w.vkey])
    [chain], problems = check_witnessed(admin_engine, keys, 1, [GOV])
    assert problems == []
    assert chain.cosigned is not None
    assert chain.cosigned.seq == 10


def test_progress_is_durable_across_restarts_and_the_next_proof_starts_there(
    every5: AuditLog, stream: Engine, admin_engine: Engine, witnesses: Witnesses
) -> None:
    fill(every5, 2)
    w = witnesses.make("witness.example/w1")
    with Submitter(stream, [target(w)], FAST) as first:
        first.run_pass()
    fill(every5, 1)
    with Submitter(stream, [target(w)], FAST) as second:  # a new worker process
        [outcome] = second.run_pass()
        assert outcome.cosigned == (15,)
        assert second.run_pass()[0].cosigned == ()
    assert w.refusals() == []  # it never sent old 0 again: no 409
    assert [seq for seq, _ in cosignatures(admin_engine)] == [5, 10, 15]


def test_a_409_is_recovered_from_the_size_the_witness_names(
    every5: AuditLog, stream: Engine, admin_engine: Engine, witnesses: Witnesses
) -> None:
    fill(every5, 2)
    w = witnesses.make("witness.example/w1")
    with Submitter(stream, [target(w)], FAST) as submitter:
        submitter.run_pass()
        with admin_engine.begin() as conn:  # the log's state is lost (restored from a backup)
            conn.execute(sa.text("UPDATE witness_state SET cosigned_size = 0"))
        fill(every5, 1)
        [outcome] = submitter.run_pass()
    # checkpoint 5 is behind the witness (at 10): skipped; 10 again and 15 from there
    assert (outcome.cosigned, outcome.error) == ((10, 15), None)
    assert any("409" in line and "at 10" in line for line in w.refusals())
    assert state(admin_engine, w.name)["cosigned_size"] == 15


def test_a_witness_that_is_down_is_retried_after_a_backoff_and_the_error_is_visible(
    every5: AuditLog, stream: Engine, admin_engine: Engine, witnesses: Witnesses
) -> None:
    fill(every5, 1)
    w = witnesses.make("witness.example/w1", start=False)
    clock = Clock()
    with Submitter(stream, [target(w)], FAST, clock=clock) as submitter:
        [down] = submitter.run_pass()
        assert down.error is not None
        assert w.url in down.error
        seen = state(admin_engine, w.name)
        assert (seen["error_count"], seen["cosigned_size"]) == (1, 0)
        assert seen["retry_at"].timestamp() >= clock.now + 30  # 60 s, jittered by half
        [lag] = witness_status(stream, [w.name], clock=lambda: clock.now + 7)
        assert (lag.newest_seq, lag.cosigned_seq, lag.lag_seq) == (5, 0, 5)
        assert lag.last_error == down.error
        assert "last error" in lag.line()
        w.start()
        assert submitter.run_pass()[0].skipped is not None  # still backing off
        clock.now += 601
        [up] = submitter.run_pass()
    assert (up.cosigned, up.error) == ((5,), None)
    assert (
        state(admin_engine, w.name)["error_count"],
        state(admin_engine, w.name)["retry_at"],
    ) == (
        0,
        None,
    )
    [lag] = witness_status(stream, [w.name])
    assert (lag.lag_seq, lag.lag_seconds) == (0, 0.0)


def test_a_cosignature_from_another_key_is_not_stored(
    every5: AuditLog, stream: Engine, admin_engine: Engine, witnesses: Witnesses, tmp_path: Path
) -> None:
    fill(every5, 1)
    w = witnesses.make("witness.example/w1")
    impostor = witness_vkey(w.name, load_witness_key(tmp_path / "other"))  # same name
    with Submitter(stream, [target(w, impostor)], FAST) as submitter:
        [outcome] = submitter.run_pass()
    assert outcome.error is not None
    assert "no valid cosignature" in outcome.error
    assert cosignatures(admin_engine) == []
    assert state(admin_engine, w.name)["cosigned_size"] == 0


def test_two_workers_do_not_both_submit_to_one_witness(
    every5: AuditLog, stream: Engine, admin_engine: Engine, witnesses: Witnesses
) -> None:
    fill(every5, 1)
    w = witnesses.make("witness.example/w1")
    with Submitter(stream, [target(w)], FAST) as first, Submitter(stream, [target(w)], FAST) as b:
        assert first.take_lease(w.name)
        [outcome] = b.run_pass()
        assert outcome.skipped == "another worker holds this witness's lease"
        assert cosignatures(admin_engine) == []
        first.close()  # its lease connection closes: the lease is free
        assert b.run_pass()[0].cosigned == (5,)


def test_a_worker_that_lost_its_lease_stores_nothing(
    every5: AuditLog, stream: Engine, admin_engine: Engine, witnesses: Witnesses
) -> None:
    fill(every5, 1)
    w = witnesses.make("witness.example/w1")
    with Submitter(stream, [target(w)], FAST) as submitter:
        assert submitter.take_lease(w.name)
        with admin_engine.begin() as conn:  # its lease connection is killed
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_locks"
                    " WHERE locktype = 'advisory' AND classid = :k"
                ),
                {"k": LEASE_CLASS},
            )
        [outcome] = submitter.run_pass()
    assert outcome.error is not None
    assert "lost its lease" in outcome.error
    assert cosignatures(admin_engine) == []


def test_quorum_two_of_three_holds_with_one_witness_down(
    every5: AuditLog, stream: Engine, admin_engine: Engine, witnesses: Witnesses
) -> None:
    fill(every5, 1)
    w1, w2 = witnesses.make("w.example/1"), witnesses.make("w.example/2")
    w3 = witnesses.make("w.example/3", start=False)
    with Submitter(stream, [target(w) for w in (w1, w2, w3)], FAST) as submitter:
        outcomes = {o.witness: o for o in submitter.run_pass()}
    assert outcomes[w1.name].cosigned == outcomes[w2.name].cosigned == (5,)
    assert outcomes[w3.name].error is not None
    keys = witness_keys([w1.vkey, w2.vkey, w3.vkey])
    [chain], problems = check_witnessed(admin_engine, keys, 2, [GOV])
    assert problems == []
    assert chain.valid == (w1.name, w2.name)
    _, problems = check_witnessed(admin_engine, keys, 3, [GOV])
    assert [p.kind for p in problems] == ["not witnessed"]
    assert "carries 2 valid cosignature(s)" in problems[0].message


def test_a_witness_past_the_logs_newest_checkpoint_is_an_error_not_silence(
    every5: AuditLog, stream: Engine, admin_engine: Engine, witnesses: Witnesses
) -> None:
    fill(every5, 2)
    w = witnesses.make("witness.example/w1")
    with Submitter(stream, [target(w)], FAST) as submitter:
        submitter.run_pass()
        with admin_engine.begin() as conn:  # a superuser removes the newest checkpoint
            for table in ("witness_cosignatures", "checkpoints"):
                conn.exec_driver_sql(
                    f"ALTER TABLE {table} DISABLE TRIGGER {table}_no_update_delete"
                )
            conn.exec_driver_sql("DELETE FROM witness_state")
            conn.exec_driver_sql("DELETE FROM witness_cosignatures")
            conn.exec_driver_sql("DELETE FROM checkpoints WHERE seq = 10")
        [outcome] = submitter.run_pass()
    assert outcome.error is not None
    assert "has cosigned tree size 10, past the log's newest checkpoint (seq 5)" in outcome.error
    assert state(admin_engine, w.name)["last_error"] == outcome.error
