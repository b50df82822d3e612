"""RFC 9162 trees: proofs generated from perfect subtrees check against a naive recursion."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from auditlog.proofs.merkle import (
    EMPTY_ROOT,
    CompactRange,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    perfect_cover,
    root_of,
    verify_consistency,
    verify_inclusion,
)


def mth(leaves: list[bytes]) -> bytes:
    """The RFC's definition, literally."""
    if not leaves:
        return EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def leaves_of(n: int) -> list[bytes]:
    return [leaf_hash(hashlib.sha256(str(i).encode()).digest()) for i in range(n)]


def source(leaves: list[bytes]):  # type: ignore[no-untyped-def]
    def node(level: int, index: int) -> bytes:
        lo = index << level
        assert lo + (1 << level) <= len(leaves), "asked for a subtree beyond the tree"
        return mth(leaves[lo : lo + (1 << level)])

    return node


def flip(b: bytes) -> bytes:
    return bytes([b[0] ^ 1]) + b[1:]


def test_hashes_are_domain_separated_as_rfc_9162_says() -> None:
    entry = bytes(range(32))
    assert leaf_hash(entry) == hashlib.sha256(b"\x00" + entry).digest()
    assert node_hash(b"a", b"b") == hashlib.sha256(b"\x01ab").digest()
    assert root_of([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()


@given(st.integers(min_value=0, max_value=300))
def test_the_root_and_the_compact_range_agree_with_the_recursion(n: int) -> None:
    leaves = leaves_of(n)
    cr = CompactRange()
    for leaf in leaves:
        cr.append(leaf)
    assert root_of(leaves) == mth(leaves) == cr.root()
    assert CompactRange(n, cr.nodes).root() == cr.root()


def test_the_compact_range_reports_each_perfect_subtree_once_it_is_complete() -> None:
    leaves = leaves_of(37)
    cr, done = CompactRange(), []
    for leaf in leaves:
        done += cr.append(leaf)
    expected = {
        (level, i)
        for level in range(6)
        for i in range(37 >> level)  # the complete subtrees of each level
    }
    assert {(lv, i) for lv, i, _ in done} == expected
    for level, i, h in done:
        assert h == mth(leaves[i << level : (i + 1) << level])


def test_a_compact_range_refuses_an_edge_of_the_wrong_shape() -> None:
    with pytest.raises(ValueError, match="3 edge subtrees"):
        CompactRange(7, [EMPTY_ROOT])


@given(st.integers(min_value=1, max_value=200), st.data())
def test_inclusion_proofs_verify_and_any_change_fails(n: int, data: st.DataObject) -> None:
    leaves = leaves_of(n)
    root = mth(leaves)
    i = data.draw(st.integers(min_value=0, max_value=n - 1))
    proof = inclusion_proof(i, n, source(leaves))
    assert verify_inclusion(i, n, leaves[i], proof, root)
    assert not verify_inclusion(i, n, flip(leaves[i]), proof, root)
    assert not verify_inclusion(i, n, leaves[i], proof, flip(root))
    if proof:
        j = data.draw(st.integers(min_value=0, max_value=len(proof) - 1))
        bad = [*proof[:j], flip(proof[j]), *proof[j + 1 :]]
        assert not verify_inclusion(i, n, leaves[i], bad, root)
        assert not verify_inclusion(i, n, leaves[i], proof[:-1], root)
    assert not verify_inclusion(i, n, leaves[i], [*proof, root], root)
    if n > 1:
        other = (i + 1) % n
        assert not verify_inclusion(other, n, leaves[i], proof, root) or leaves[other] == leaves[i]
    assert not verify_inclusion(n, n, leaves[i], proof, root)


@given(st.integers(min_value=1, max_value=200), st.data())
def test_consistency_proofs_verify_and_a_rewritten_prefix_fails(
    n: int, data: st.DataObject
) -> None:
    m = data.draw(st.integers(min_value=1, max_value=n))
    leaves = leaves_of(n)
    old_root, new_root = mth(leaves[:m]), mth(leaves)
    proof = consistency_proof(m, n, source(leaves))
    assert verify_consistency(m, n, old_root, new_root, proof)
    assert not verify_consistency(m, n, flip(old_root), new_root, proof)
    assert not verify_consistency(m, n, old_root, flip(new_root), proof)
    # a fork: the same sizes, one old leaf rewritten and the new tree rebuilt over it
    k = data.draw(st.integers(min_value=0, max_value=m - 1))
    forked = [*leaves[:k], flip(leaves[k]), *leaves[k + 1 :]]
    fork_proof = consistency_proof(m, n, source(forked))
    assert not verify_consistency(m, n, old_root, mth(forked), fork_proof)
    if proof:
        j = data.draw(st.integers(min_value=0, max_value=len(proof) - 1))
        bad = [*proof[:j], flip(proof[j]), *proof[j + 1 :]]
        assert not verify_consistency(m, n, old_root, new_root, bad)


def test_consistency_from_the_empty_tree_and_to_the_same_tree() -> None:
    leaves = leaves_of(5)
    assert consistency_proof(0, 5, source(leaves)) == []
    assert verify_consistency(0, 5, EMPTY_ROOT, mth(leaves), [])
    assert verify_consistency(5, 5, mth(leaves), mth(leaves), [])
    assert not verify_consistency(5, 5, mth(leaves), mth(leaves[:4]), [])
    assert not verify_consistency(3, 5, mth(leaves[:3]), mth(leaves), [])
    assert not verify_consistency(6, 5, mth(leaves), mth(leaves), [])


def test_the_rfc_6962_reference_root_of_the_first_leaves() -> None:
    # certificate-transparency's reference vectors: leaves are the data blocks below
    data = [b"", b"\x00", b"\x10", b"\x20\x21", b"\x30\x31", b"\x40\x41\x42\x43",
            bytes(range(0x50, 0x58)), bytes(range(0x60, 0x70))]  # fmt: skip
    leaves = [hashlib.sha256(b"\x00" + d).digest() for d in data]
    assert root_of(leaves).hex() == (
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
    )
    assert root_of(leaves[:1]).hex() == (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    )


def test_perfect_cover_splits_a_range_into_aligned_subtrees() -> None:
    assert perfect_cover(0, 13) == [(3, 0), (2, 2), (0, 12)]
    assert perfect_cover(8, 13) == [(2, 2), (0, 12)]
    assert perfect_cover(5, 5) == []
