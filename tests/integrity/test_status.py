"""What the Integrity page shows: verification frames, newest checkpoints and public keys."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from sqlalchemy.engine import Engine

from auditlog.errors import PermissionDenied
from auditlog.integrity.keys import Signer, public_pem
from auditlog.integrity.status import (
    chains_frame,
    latest_checkpoints,
    problems_frame,
    public_keys,
    verify_as,
)
from auditlog.settings import Settings, load_settings
from auditlog.store import AuditLog
from tests.support.factories import tamper, valid


def test_verify_as_needs_a_role_and_frames_an_intact_log(
    log: AuditLog, reader_engine: Engine
) -> None:
    log.record_many([valid(), valid(), valid(category="governance")])
    with pytest.raises(PermissionDenied, match=r"integrity\.verify"):
        verify_as(reader_engine, None)
    report = verify_as(reader_engine, "auditor")
    chains = chains_frame(report).filter(pl.col("rows") > 0).sort("category")
    assert chains.select("category", "rows", "first seq", "last seq", "state").rows() == [
        ("configuration", 2, 1, 2, "intact"),
        ("governance", 1, 1, 1, "intact"),
    ]
    assert problems_frame(report).is_empty()


def test_problems_frame_names_the_tampered_row(
    log: AuditLog, reader_engine: Engine, admin_engine: Engine
) -> None:
    log.record_many([valid(), valid(), valid()])
    tamper(admin_engine, "UPDATE events SET details = '{\"x\": 1}' WHERE seq = 2")
    report = verify_as(reader_engine, "auditor")
    problems = problems_frame(report)
    assert problems.select("category", "seq").rows() == [("configuration", 2)]
    state = chains_frame(report).filter(category="configuration")["state"].item()
    assert state.startswith("BROKEN: ")


def test_latest_checkpoints_show_the_newest_per_category(
    log: AuditLog, reader_engine: Engine, signer: Signer
) -> None:
    assert latest_checkpoints(reader_engine).is_empty()
    log.record_many([valid(), valid(category="governance")])
    log.checkpoint()
    log.record(valid())
    log.checkpoint()
    frame = latest_checkpoints(reader_engine).sort("category")
    assert frame.select("category", "seq").rows() == [("configuration", 2), ("governance", 1)]
    assert set(frame["key_id"]) == {signer.key_id}
    assert all(len(h) == 64 for h in frame["entry_hash"])
    assert frame.schema["signed_at"] == pl.Datetime("us", "UTC")


def test_public_keys_list_the_current_key_first_and_older_ones_after(
    log: AuditLog, reader_engine: Engine, signer: Signer, settings: Settings, tmp_path: Path
) -> None:
    log.record(valid())
    log.checkpoint()
    url = settings.store.database_url
    # Without a readable key file, the registered keys stand in (none is "current").
    keyless = settings.replace(store={"home": tmp_path / "keyless"})
    assert [(k, c) for k, _, c in public_keys(reader_engine, keyless)] == [(signer.key_id, False)]
    env = {"AUDITLOG_SIGNING_KEY": signer.private_pem().decode()}
    same = load_settings(env=env, store={"home": tmp_path / "same", "database_url": url})
    [(key_id, pem, current)] = public_keys(reader_engine, same)
    assert (key_id, current) == (signer.key_id, True)
    assert pem.strip() == public_pem(signer.public).strip()
    new = Signer.generate()
    env = {"AUDITLOG_SIGNING_KEY": new.private_pem().decode()}
    mine = load_settings(env=env, store={"home": tmp_path / "other", "database_url": url})
    keys = public_keys(reader_engine, mine)
    assert [(k, c) for k, _, c in keys] == [(new.key_id, True), (signer.key_id, False)]


def test_chains_frame_of_an_empty_report_is_empty() -> None:
    from auditlog.integrity.verifier import VerifyReport

    assert_frame_equal(chains_frame(VerifyReport()), pl.DataFrame())
