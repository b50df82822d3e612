"""Time-stamp tokens travel in bundles with their checkpoints and are checked there against
the TSA's anchor: a moved token is named, a bundle without an anchor says it did not check."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import URL, Engine

from auditlog.evidence.bundle import write_bundle
from auditlog.evidence.verify import verify_bundle
from auditlog.integrity.keys import Signer
from auditlog.proofs.stamping import Stamper, stamp_round
from auditlog.settings import ExportSettings
from auditlog.store import AuditLog
from tests.support.factories import ACTOR
from tests.support.stamps import GOV, make_checkpoints, stamp_rows, stream_engine, swap_tokens
from tests.support.tsa import LocalTSA

LIMITS = ExportSettings(max_export_rows=10_000)


@pytest.fixture
def tsa() -> Iterator[LocalTSA]:
    with LocalTSA() as running:
        yield running


@pytest.fixture
def stream(db_url: URL) -> Iterator[Engine]:
    engine = stream_engine(db_url)
    yield engine
    engine.dispose()


def stamped_bundle(
    log: AuditLog, stream: Engine, tsa: LocalTSA, reader: Engine, path: Path
) -> Path:
    make_checkpoints(log, GOV, 3)
    stamp_round(stream, Stamper(tsa.url, (tsa.anchor,), timeout=5.0))
    write_bundle(reader, path, log=log, actor=ACTOR, limits=LIMITS)
    return path


def test_a_bundle_carries_each_checkpoints_tokens_and_they_verify_under_the_anchor(
    log: AuditLog, stream: Engine, tsa: LocalTSA, reader_engine: Engine, tmp_path: Path,
    signer: Signer,
) -> None:  # fmt: skip
    path = stamped_bundle(log, stream, tsa, reader_engine, tmp_path / "b.zip")
    keys = {signer.key_id: signer.public}
    checked = verify_bundle(path, keys, [tsa.anchor])
    assert checked.ok, checked.problems
    good, present = checked.stamps
    assert present >= 3
    assert good == present
    unchecked = verify_bundle(path, keys)
    assert unchecked.ok
    assert unchecked.stamps == (0, present)


def test_a_token_moved_to_another_checkpoint_is_named_in_the_bundle(
    log: AuditLog, stream: Engine, tsa: LocalTSA, reader_engine: Engine, tmp_path: Path,
    admin_engine: Engine, signer: Signer,
) -> None:  # fmt: skip
    make_checkpoints(log, GOV, 3)
    stamp_round(stream, Stamper(tsa.url, (tsa.anchor,), timeout=5.0))
    rows = stamp_rows(stream)
    swap_tokens(admin_engine, rows[0][0], rows[1][0])
    path = tmp_path / "b.zip"
    write_bundle(reader_engine, path, log=log, actor=ACTOR, limits=LIMITS)
    report = verify_bundle(path, {signer.key_id: signer.public}, [tsa.anchor])
    assert [p.kind for p in report.problems] == ["bad time-stamp", "bad time-stamp"]
    assert "does not prove" in report.problems[0].message
