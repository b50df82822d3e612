"""The stored tree: appends keep it, proofs read from it check against the entries' own
tree, and a retention purge leaves it whole."""

from __future__ import annotations

import random

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from auditlog.integrity.keys import Signer
from auditlog.proofs.merkle import (
    leaf_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)
from auditlog.proofs.tree import STORED_LEVEL, TreeReader
from auditlog.retention.policies import Retention
from auditlog.settings import Settings
from auditlog.store import AuditLog, _driver
from tests.support.factories import valid
from tests.support.retention import fill, hot_seqs, policy, run


def entries(engine: Engine, category: str) -> list[bytes]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT entry_hash FROM events WHERE category = :c ORDER BY seq"),
            {"c": category},
        )
        return [bytes(h) for h in rows.scalars()]


def stored_nodes(engine: Engine, category: str) -> dict[tuple[int, int], bytes]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT level, idx, hash FROM merkle_nodes WHERE category = :c"),
            {"c": category},
        )
        return {(lv, i): bytes(h) for lv, i, h in rows}


def reader(engine: Engine, category: str):  # type: ignore[no-untyped-def]
    conn = engine.connect()
    return conn, TreeReader(_driver(conn).cursor(), category)


def fill_batches(log: AuditLog, sizes: list[int], category: str = "governance") -> None:
    for n in sizes:
        if n == 1:
            log.record(valid(category=category))
        else:
            log.record_many([valid(category=category) for _ in range(n)])


def test_appends_store_every_complete_subtree_of_256_leaves_and_more(
    log: AuditLog, admin_engine: Engine
) -> None:
    fill_batches(log, [1, 300, 1, 1, 255, 2000, 1])
    leaves = [leaf_hash(e) for e in entries(admin_engine, "governance")]
    n = len(leaves)
    nodes = stored_nodes(admin_engine, "governance")
    expected = {
        (level, i) for level in range(STORED_LEVEL, n.bit_length()) for i in range(n >> level)
    }
    assert set(nodes) == expected
    for (level, i), h in nodes.items():
        assert h == root_of(leaves[i << level : (i + 1) << level])


def test_two_writers_taking_turns_keep_one_tree(
    log: AuditLog,
    engine: Engine,
    settings: Settings,
    signer: Signer,
    admin_engine: Engine,
) -> None:
    other = AuditLog(engine, settings, signer=signer)
    for k in range(6):
        fill_batches(log if k % 2 else other, [130, 1])
    leaves = [leaf_hash(e) for e in entries(admin_engine, "governance")]
    conn, tree = reader(admin_engine, "governance")
    with conn:
        assert tree.root(len(leaves)) == root_of(leaves)
    for (level, i), h in stored_nodes(admin_engine, "governance").items():
        assert h == root_of(leaves[i << level : (i + 1) << level])


def test_inclusion_and_consistency_proofs_read_from_the_store_verify(
    log: AuditLog, reader_engine: Engine
) -> None:
    fill_batches(log, [700, 1, 600])
    leaves = [leaf_hash(e) for e in entries(reader_engine, "governance")]
    n = len(leaves)
    rng = random.Random(7)
    conn, tree = reader(reader_engine, "governance")
    with conn:
        for size in (1, 255, 256, 257, 700, 1000, n):
            root = tree.root(size)
            assert root == root_of(leaves[:size])
            for i in {0, size - 1, rng.randrange(size)}:
                assert verify_inclusion(i, size, leaves[i], tree.inclusion(i, size), root)
        for old, new in [(1, n), (256, 257), (300, 1024), (511, n), (n, n)]:
            proof = tree.consistency(old, new)
            assert verify_consistency(old, new, root_of(leaves[:old]), root_of(leaves[:new]), proof)


def test_a_tree_past_the_head_is_not_made_up(log: AuditLog, reader_engine: Engine) -> None:
    fill_batches(log, [10])
    conn, tree = reader(reader_engine, "governance")
    with conn, pytest.raises(KeyError, match="not all stored"):
        tree.root(11)


def test_a_purge_keeps_the_tree_and_appends_go_on_extending_it(
    ret: Retention, settings: Settings, admin_engine: Engine
) -> None:
    fill(ret.log, per_month=150)  # 450 backdated, then 3 now: the purge cuts tile 1 in two
    before = [leaf_hash(e) for e in entries(admin_engine, "user_activity")]
    policy(ret)
    run(ret, settings)
    assert hot_seqs(admin_engine, "user_activity")[0] == 451
    ret.log.record_many([valid(category="user_activity") for _ in range(300)])
    after = before + [leaf_hash(e) for e in entries(admin_engine, "user_activity")[3:]]
    conn, tree = reader(admin_engine, "user_activity")
    with conn:
        n = len(after)
        assert tree.root(len(before)) == root_of(before)
        assert tree.root(n) == root_of(after)
        for i in (0, 300, 449, 450, n - 1):  # purged leaves are proven by their kept hashes
            assert verify_inclusion(i, n, after[i], tree.inclusion(i, n), root_of(after))
        proof = tree.consistency(100, n)
        assert verify_consistency(100, n, root_of(after[:100]), root_of(after), proof)
    for (level, i), h in stored_nodes(admin_engine, "user_activity").items():
        assert h == root_of(after[i << level : (i + 1) << level])


@pytest.mark.parametrize("statement", [
    "UPDATE merkle_nodes SET hash = sha256(hash)",
    "DELETE FROM merkle_nodes",
    "TRUNCATE merkle_nodes",
    "UPDATE merkle_purged_leaves SET entry_hashes = entry_hashes",
    "DELETE FROM merkle_purged_leaves",
    "INSERT INTO merkle_purged_leaves VALUES ('governance', 1, sha256(''))",
])  # fmt: skip
def test_the_writer_cannot_change_the_tree(log: AuditLog, engine: Engine, statement: str) -> None:
    fill_batches(log, [300])
    with pytest.raises(sa.exc.DBAPIError), engine.begin() as conn:
        conn.exec_driver_sql(statement)


def test_verify_names_a_stored_tree_node_that_does_not_match_the_entries(
    log: AuditLog, admin_engine: Engine
) -> None:
    from auditlog.integrity.database import verify_database

    fill_batches(log, [600])
    assert verify_database(admin_engine).ok
    with admin_engine.begin() as conn:  # the superuser, past the table's own guard
        conn.exec_driver_sql("ALTER TABLE merkle_nodes DISABLE TRIGGER ALL")
        conn.exec_driver_sql(
            "UPDATE merkle_nodes SET hash = sha256(hash) WHERE level = 8 AND idx = 1"
        )
        for trigger in ("merkle_nodes_no_update_delete", "merkle_nodes_no_truncate"):
            conn.exec_driver_sql(f"ALTER TABLE merkle_nodes ENABLE ALWAYS TRIGGER {trigger}")
    report = verify_database(admin_engine)
    problem = report.chains["governance"].problem
    assert problem is not None
    assert problem.kind == "tree node wrong"
    assert problem.seq == 512
    assert "level 8, index 1" in problem.message


def test_the_readers_audit_paths_are_the_rfcs_for_every_leaf_and_size(
    log: AuditLog, reader_engine: Engine
) -> None:
    from auditlog.proofs.merkle import inclusion_proof

    fill_batches(log, [600])
    leaves = [leaf_hash(e) for e in entries(reader_engine, "governance")]

    def node(level: int, index: int) -> bytes:
        return root_of(leaves[index << level : (index + 1) << level])

    conn, tree = reader(reader_engine, "governance")
    with conn:
        for size in (1, 2, 3, 255, 256, 257, 300, 511, 512, 513, 600):
            tree.prefetch_for(list(range(size)), size)
            for i in sorted({0, 1, size // 2, size - 2, size - 1} & set(range(size))):
                assert tree.inclusion(i, size) == inclusion_proof(i, size, node), (i, size)


def test_a_node_the_writer_plants_before_its_subtree_exists_is_named_and_never_proven(
    log: AuditLog, engine: Engine, admin_engine: Engine
) -> None:
    """The writer may insert nodes (its appends add them): one planted ahead of time is kept
    (insert-only), so verify names it and a proof through it is refused, not handed out."""
    from auditlog.errors import IntegrityFailure
    from auditlog.integrity.database import verify_database
    from auditlog.proofs.prove import inclusion

    for idx, level in [(0, 8), (3, 9)]:  # every complete subtree is due; both will be
        with engine.begin() as conn:  # as auditlog_ingest
            conn.execute(
                sa.text(
                    "INSERT INTO merkle_nodes (category, level, idx, hash)"
                    " VALUES ('governance', :lv, :i, sha256('forged'))"
                ),
                {"lv": level, "i": idx},
            )
    ids = [r.event_id for r in log.record_many([valid(category="governance") for _ in range(300)])]
    log.checkpoint()
    problem = verify_database(admin_engine).chains["governance"].problem
    assert problem is not None
    assert (problem.kind, problem.seq) == ("tree node wrong", 256)
    with admin_engine.connect() as conn, pytest.raises(IntegrityFailure, match="does not prove"):
        inclusion(conn.connection.driver_connection, ids[-1])  # its path holds node (8, 0)


def test_the_readers_node_table_holds_each_leafs_audit_path_and_the_signed_root(
    log: AuditLog, reader_engine: Engine
) -> None:
    from auditlog.proofs.merkle import path_nodes

    fill_batches(log, [600])
    stored = entries(reader_engine, "governance")
    rnd = random.Random(5)
    conn, tree = reader(reader_engine, "governance")
    with conn:
        for size in (1, 2, 3, 256, 257, 300, 512, 600):
            picks = sorted({*rnd.sample(range(size), min(size, 40)), size - 1})
            levels: dict[int, dict[int, bytes]] = {}
            root = tree.audit_table(picks, size, levels.__setitem__)
            assert root == tree.root(size)
            assert [set(levels[lv]) for lv in sorted(levels)] == path_nodes(picks, size)
            assert all(list(nodes) == sorted(nodes) for nodes in levels.values())
            for i in picks:
                path = [levels[lv][(i >> lv) ^ 1] for lv in sorted(levels)
                        if (i >> lv) ^ 1 in levels[lv]]  # fmt: skip
                assert path == tree.inclusion(i, size), (i, size)
            # given the leaves' entries (as a bundle holds them): the same table and root
            given = {i: stored[i] for i in picks}
            again: dict[int, dict[int, bytes]] = {}
            fresh = TreeReader(tree.cur, "governance")
            assert fresh.audit_table(picks, size, again.__setitem__, given) == root
            assert again == levels
