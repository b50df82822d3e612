"""A node table (many leaves' audit paths, each distinct node once): the paths it gives are
RFC 9162's, checking all leaves through it judges each exactly as on its own, a forged node
breaks exactly the leaves whose path holds it, and the stand-alone verifier's copy agrees."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from hypothesis import given
from hypothesis import strategies as st

from auditlog.evidence import verify_bundle as vb
from auditlog.proofs import merkle

Table = dict[tuple[int, int], bytes]


def tree(size: int) -> tuple[list[bytes], Callable[[int, int], bytes]]:
    leaves = [merkle.leaf_hash(hashlib.sha256(str(i).encode()).digest()) for i in range(size)]

    def node(level: int, index: int) -> bytes:
        """Node (level, index) as merkle.path_nodes defines it (cut by the right edge)."""
        return merkle.root_of(leaves[index << level : min((index + 1) << level, size)])

    return leaves, node


def table_of(indexes: set[int], size: int, node: Callable[[int, int], bytes]) -> Table:
    levels = merkle.path_nodes(indexes, size)
    return {(lv, i): node(lv, i) for lv, ids in enumerate(levels) for i in ids}


def path_from(table: Table, index: int, size: int) -> list[bytes]:
    """The audit path a verifier reads from the table by position alone."""
    path, level = [], 0
    while (size - 1) >> level:
        sib = (index >> level) ^ 1
        if sib <= (size - 1) >> level:
            path.append(table[(level, sib)])
        level += 1
    return path


def on_path(index: int, size: int, key: tuple[int, int]) -> bool:
    level, i = key
    return level < ((size - 1).bit_length()) and (index >> level) ^ 1 == i


subsets = st.integers(1, 90).flatmap(
    lambda n: st.tuples(st.just(n), st.sets(st.integers(0, n - 1), min_size=1))
)


@given(subsets)
def test_the_table_gives_every_leaf_the_rfcs_audit_path(case: tuple[int, set[int]]) -> None:
    size, indexes = case
    _, node = tree(size)
    table = table_of(indexes, size, node)
    for i in indexes:
        assert path_from(table, i, size) == merkle.inclusion_proof(i, size, node)
    needed = {(lv, s) for i in indexes for lv in range(64) for s in [(i >> lv) ^ 1]
              if (size - 1) >> lv and s <= (size - 1) >> lv}  # fmt: skip
    assert set(table) == needed


@given(subsets, st.data())
def test_checking_through_a_table_judges_each_leaf_as_on_its_own(
    case: tuple[int, set[int]], data: st.DataObject
) -> None:
    size, indexes = case
    leaves, node = tree(size)
    root = merkle.root_of(leaves)
    table = table_of(indexes, size, node)
    tamper: bool = data.draw(st.booleans())
    if table and tamper:  # forge one node, or take one away
        key = data.draw(st.sampled_from(sorted(table)))
        if data.draw(st.booleans()):
            table[key] = hashlib.sha256(table[key]).digest()
        else:
            del table[key]
    order = data.draw(st.permutations(sorted(indexes)))
    lib, alone = merkle.TableCheck(size, root, table), vb.TableCheck(size, root, table)
    for i in order:
        own = all(k in table for k in table_of({i}, size, node)) and merkle.verify_inclusion(
            i, size, leaves[i], path_from(table, i, size), root
        )
        assert (lib.check(i, leaves[i]) == "") == own
        assert alone.check(i, leaves[i]) == lib.check(i, leaves[i]) or not own


def test_a_forged_node_breaks_exactly_the_leaves_whose_path_holds_it() -> None:
    size = 300
    leaves, node = tree(size)
    root = merkle.root_of(leaves)
    indexes = set(range(size))
    table = table_of(indexes, size, node)
    # (5, 9) and (3, 37) are cut by the right edge: leaves 288..299 and 296..299
    for key in [(0, 7), (3, 5), (5, 9), (3, 37), (8, 0)]:
        assert key in table
        forged = dict(table)
        forged[key] = hashlib.sha256(b"forged").digest()
        check = merkle.TableCheck(size, root, forged)
        failed = {i for i in sorted(indexes) if check.check(i, leaves[i])}
        assert failed == {i for i in indexes if on_path(i, size, key)}, key
        assert failed


def test_a_missing_node_is_named_and_a_leaf_outside_the_tree_refused() -> None:
    size = 20
    leaves, node = tree(size)
    table = table_of({3}, size, node)
    del table[(1, 0)]
    check = merkle.TableCheck(size, merkle.root_of(leaves), table)
    assert check.check(3, leaves[3]) == "node (level 1, index 0) is not in the node table"
    assert "outside the tree of 20 leaves" in check.check(20, leaves[3])
    assert "outside" in check.check(-1, leaves[3])


def test_a_tree_of_one_leaf_needs_no_node() -> None:
    leaf = merkle.leaf_hash(b"\x01" * 32)
    assert merkle.path_nodes([0], 1) == []
    assert merkle.TableCheck(1, leaf, {}).check(0, leaf) == ""
    assert merkle.TableCheck(1, leaf, {}).check(0, merkle.leaf_hash(b"\x02" * 32))


@given(subsets)
def test_the_stand_alone_path_nodes_agree(case: tuple[int, set[int]]) -> None:
    size, indexes = case
    assert vb.path_nodes(indexes, size) == merkle.path_nodes(indexes, size)
