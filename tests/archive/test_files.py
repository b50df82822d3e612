"""Archives stay evidence: signed manifests, verification naming the first bad row, exports
(CSV and Parquet) that verify from the file alone, and the archive commands."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from auditlog.archive.export import EXPORT_COLUMNS, write_csv
from auditlog.archive.files import SCHEMA, manifest_path, verify_archive
from auditlog.columns import CSV_COLUMNS
from auditlog.errors import IntegrityFailure, NotFound
from auditlog.evidence.verify import csv_record
from auditlog.integrity.keys import Signer
from auditlog.integrity.verifier import ChainVerifier
from auditlog.retention.policies import Retention
from auditlog.retention.view import archives_frame, export_archive
from auditlog.settings import RetentionSettings, Settings
from tests.support.database import backdated
from tests.support.factories import valid
from tests.support.retention import LEAD, MONTHS, events, fill, policy, run


@pytest.fixture
def stored(ret: Retention) -> list[dict[str, Any]]:
    """user_activity seq 1..60 (Jan-Mar 2022) as stored, captured before they are purged."""
    fill(ret.log, categories=("user_activity",))
    with ret.engine.connect() as conn:
        rows = (
            conn.execute(
                sa.text(
                    "SELECT seq, event_id::text, prev_hash, entry_hash, record FROM events "
                    "WHERE category = 'user_activity' AND seq <= 60 ORDER BY seq"
                )
            )
            .mappings()
            .all()
        )
    return [dict(r) for r in rows]


@pytest.fixture
def archived(ret: Retention, settings: Settings, stored: list[dict[str, Any]]) -> Path:
    """The January 2022 archive after a pass (its rows purged from the table)."""
    policy(ret)
    run(ret, settings)
    root = ret.settings.archive_root(settings.store.home)
    return root / "user_activity" / "2022-01" / "user_activity-2022-01.parquet"


def keys(signer: Signer) -> dict[str, Any]:
    return {signer.key_id: signer.public}


def rewrite(path: Path, change: Any) -> None:
    """Apply ``change(frame) -> frame`` to an archive file in place (a tamperer's edit)."""
    table = pq.read_table(path)
    frame = change(pl.from_arrow(table))
    pq.write_table(frame.to_arrow().cast(SCHEMA), path)


def test_archive_holds_its_rows_and_a_signed_manifest_of_their_range(
    archived: Path, stored: list[dict[str, Any]], signer: Signer
) -> None:
    manifest = json.loads(manifest_path(archived).read_text("utf-8"))
    assert (manifest["first_seq"], manifest["last_seq"], manifest["row_count"]) == (1, 20, 20)
    assert manifest["first_prev_hash"] == "00" * 32
    assert manifest["last_entry_hash"] == bytes(stored[19]["entry_hash"]).hex()
    (entry,) = manifest["files"]
    assert entry["sha256"] == hashlib.sha256(archived.read_bytes()).hexdigest()
    assert pq.ParquetFile(archived).metadata.row_group(0).column(0).compression == "ZSTD"
    frame = pl.read_parquet(archived)
    assert frame["record"].to_list() == [r["record"] for r in stored[:20]]
    check = verify_archive(archived, keys(signer))
    assert (check.ok, check.signature, check.rows) == (True, "valid", 20)


def test_verify_names_the_first_row_whose_record_was_altered(archived: Path) -> None:
    rewrite(
        archived,
        lambda f: f.with_columns(
            record=pl.when(pl.col("seq") == 7)
            .then(pl.col("record").str.replace("policy.updated", "policy.deleted"))
            .otherwise(pl.col("record"))
        ),
    )
    problem = verify_archive(archived).problem
    assert problem is not None
    assert (problem.seq, problem.kind) == (7, "content changed")


def test_verify_names_a_removed_row(archived: Path) -> None:
    rewrite(archived, lambda f: f.filter(pl.col("seq") != 7))
    problem = verify_archive(archived).problem
    assert (problem.seq, problem.kind) == (7, "row missing")  # type: ignore[union-attr]


def test_verify_names_a_typed_column_that_disagrees_with_the_record(archived: Path) -> None:
    rewrite(
        archived,
        lambda f: f.with_columns(
            action=pl.when(pl.col("seq") == 9)
            .then(pl.lit("user.login"))
            .otherwise(pl.col("action"))
        ),
    )
    problem = verify_archive(archived).problem
    assert (problem.seq, problem.kind) == (9, "content changed")  # type: ignore[union-attr]
    assert "action" in problem.message  # type: ignore[union-attr]


def test_verify_catches_rows_cut_from_the_end_by_the_manifest(archived: Path) -> None:
    rewrite(archived, lambda f: f.filter(pl.col("seq") <= 18))
    problem = verify_archive(archived).problem
    assert problem.kind == "manifest mismatch"  # type: ignore[union-attr]
    assert "seq 1..18" in problem.message  # type: ignore[union-attr]


def test_verify_rejects_a_manifest_signed_by_another_key(archived: Path) -> None:
    other = Signer.generate()
    check = verify_archive(archived, keys(other))
    assert check.problem.kind == "bad signature"  # type: ignore[union-attr]


def test_an_archive_without_its_manifest_still_has_its_chain_checked(
    archived: Path, tmp_path: Path
) -> None:
    lone = tmp_path / "lone.parquet"
    shutil.copy(archived, lone)
    check = verify_archive(lone)
    assert check.ok
    assert check.rows == 20
    assert "no manifest" in check.notes[0]


def test_csv_export_is_the_evidence_csv_and_verifies_from_the_file_alone(
    archived: Path, stored: list[dict[str, Any]]
) -> None:
    out = io.StringIO()
    assert write_csv(archived, out) == 20
    header, *rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert tuple(header) == EXPORT_COLUMNS == CSV_COLUMNS
    verifier = ChainVerifier("user_activity")
    for cells in rows:
        assert verifier.feed(csv_record(cells)), verifier.result.problem
    assert [c[header.index("event_id")] for c in rows] == [s["event_id"] for s in stored[:20]]


def test_csv_cells_that_look_like_formulas_are_neutralised(
    ret: Retention, settings: Settings, tmp_path: Path
) -> None:
    old = backdated(ret.log, lambda: MONTHS[0])
    old.record(
        valid(
            category="user_activity",
            user_agent='=HYPERLINK("http://x")',
            occurred_at="2022-01-10T07:00:00-05:00",
        )
    )
    policy(ret)
    run(ret, settings)
    out = tmp_path / "x.csv"
    export_archive(
        ret.log,
        ret.settings.archive_root(settings.store.home),
        LEAD,
        "user_activity",
        "2022-01",
        "csv",
        out,
    )
    with out.open(encoding="utf-8", newline="") as fh:
        (row,) = csv.DictReader(fh)
    assert row["user_agent"] == '\'=HYPERLINK("http://x")'
    assert row["occurred_offset"] == "'-300"


def test_parquet_export_has_one_column_per_field_and_is_logged(
    archived: Path, ret: Retention, settings: Settings, tmp_path: Path
) -> None:
    out = tmp_path / "jan.parquet"
    rows = export_archive(
        ret.log,
        ret.settings.archive_root(settings.store.home),
        LEAD,
        "user_activity",
        "2022-01",
        "parquet",
        out,
    )
    frame = pl.read_parquet(out)
    assert rows == frame.height == 20
    assert tuple(frame.columns) == EXPORT_COLUMNS
    assert frame["seq"].to_list() == list(range(1, 21))
    (logged,) = events(ret.engine, "export.downloaded")
    assert logged["details"]["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert (logged["details"]["month"], logged["details"]["rows"]) == ("2022-01", 20)


def test_export_refuses_a_tampered_archive_and_a_deleted_one(
    archived: Path, ret: Retention, settings: Settings, tmp_path: Path
) -> None:
    rewrite(archived, lambda f: f.filter(pl.col("seq") != 3))
    root = ret.settings.archive_root(settings.store.home)
    with pytest.raises(IntegrityFailure, match="seq 3: row missing"):
        export_archive(ret.log, root, LEAD, "user_activity", "2022-01", "csv", tmp_path / "x")
    with pytest.raises(NotFound, match="no archive of user_activity for 2021-12"):
        export_archive(ret.log, root, LEAD, "user_activity", "2021-12", "csv", tmp_path / "x")


def test_archive_commands_list_export_and_verify(
    archived: Path, cli_env: dict[str, str], tmp_path: Path
) -> None:
    from auditlog.cli.app import app

    runner = CliRunner()
    listed = runner.invoke(app, ["archive", "list"], env=cli_env)
    assert "user_activity 2022-01  seq 1..20  20 rows  purged" in listed.output
    out = tmp_path / "jan.csv"
    exported = runner.invoke(
        app,
        [
            "archive",
            "export",
            "--category",
            "user_activity",
            "--month",
            "2022-01",
            "--format",
            "csv",
            "--out",
            str(out),
        ],
        env=cli_env,
    )
    assert exported.exit_code == 0, exported.output
    assert len(out.read_text("utf-8").splitlines()) == 21
    good = runner.invoke(app, ["verify", "--archive", str(archived)], env=cli_env)
    assert good.exit_code == 0
    assert "verified: archive intact" in good.output
    assert "manifest signature: valid" in good.output
    rewrite(archived, lambda f: f.filter(pl.col("seq") != 5))
    bad = runner.invoke(app, ["verify", "--archive", str(archived)], env=cli_env)
    assert bad.exit_code == 1
    assert "FAIL user_activity seq 5: row missing" in bad.output


def test_archives_frame_lists_each_archive_with_its_state(archived: Path, ret: Retention) -> None:
    frame = archives_frame(ret.engine, "user_activity")
    assert frame.select("month", "first_seq", "last_seq", "rows", "state").rows() == [
        ("2022-01", 1, 20, 20, "purged"),
        ("2022-02", 21, 40, 20, "purged"),
        ("2022-03", 41, 60, 20, "purged"),
    ]


def test_archived_rows_read_back_equal_the_stored_rows(
    archived: Path, stored: list[dict[str, Any]]
) -> None:
    table = pq.read_table(archived, columns=["seq", "prev_hash", "entry_hash"])
    got = [(r["seq"], r["prev_hash"], r["entry_hash"]) for r in table.to_pylist()]
    want = [(r["seq"], bytes(r["prev_hash"]), bytes(r["entry_hash"])) for r in stored[:20]]
    assert got == want
    assert pa.types.is_fixed_size_binary(table.schema.field("entry_hash").type)


def test_retention_settings_place_archives_under_home_by_default(tmp_path: Path) -> None:
    assert RetentionSettings().archive_root(tmp_path) == tmp_path / "archives"
