"""Merkle trees over a chain's entries, as RFC 9162 section 2.1 defines them.

Standard library only: the bundle's stand-alone verifier carries the same rules.

The tree of a category has one leaf per entry in seq order (leaf index = seq - 1) and hashes

    leaf  = SHA-256(0x00 || entry_hash)          (the entry's 32-byte entry_hash)
    node  = SHA-256(0x01 || left || right)
    MTH({}) = SHA-256("")

A *perfect subtree* ``(level, index)`` covers leaves ``[index * 2**level, (index + 1) * 2**level)``;
every hash a proof needs is a combination of perfect subtrees (:func:`perfect_cover`), which is
what the store keeps (docs/integrity.md, section 8).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence

EMPTY_ROOT = hashlib.sha256(b"").digest()
NodeSource = Callable[[int, int], bytes]  # (level, index) of a perfect subtree -> its hash


def leaf_hash(entry: bytes) -> bytes:
    """The leaf hash of one entry (its 32-byte entry_hash)."""
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The hash of an interior node."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_of(leaves: Sequence[bytes]) -> bytes:
    """MTH over leaf hashes (not entries), by the RFC's recursion."""
    if not leaves:
        return EMPTY_ROOT
    level = list(leaves)
    # bottom-up pairing equals the recursion: an odd node is carried up unchanged
    while len(level) > 1:
        nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def perfect_cover(lo: int, hi: int) -> list[tuple[int, int]]:
    """The perfect subtrees ``(level, index)`` whose concatenation is ``[lo, hi)``, left to
    right, as the RFC's recursion splits a range that starts on a subtree boundary."""
    out: list[tuple[int, int]] = []
    while lo < hi:
        n = hi - lo
        size = 1 << (n.bit_length() - 1)  # the largest power of two <= n
        while lo % size:  # lo must be aligned to the subtree it starts
            size >>= 1
        out.append((size.bit_length() - 1, lo // size))
        lo += size
    return out


def range_hash(lo: int, hi: int, node: NodeSource) -> bytes:
    """MTH of leaves ``[lo, hi)`` for a range the RFC's recursion produces (``lo`` aligned to
    the largest power of two below ``hi - lo``), from perfect subtree hashes."""
    parts = [node(level, index) for level, index in perfect_cover(lo, hi)]
    if not parts:
        return EMPTY_ROOT
    h = parts[-1]
    for left in reversed(parts[:-1]):
        h = node_hash(left, h)
    return h


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose hashes form the inclusion proof of leaf ``index`` in a tree of
    ``size`` leaves (RFC 9162 2.1.3.1), bottom first."""
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is outside a tree of {size} leaves")
    out: list[tuple[int, int]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            out.append((lo + k, hi))
            hi = lo + k
        else:
            out.append((lo, lo + k))
            lo += k
    return out[::-1]


def consistency_ranges(old: int, new: int) -> list[tuple[int, int]]:
    """The leaf ranges whose hashes form the consistency proof from ``old`` to ``new`` leaves
    (RFC 9162 2.1.4.1), in proof order. Empty when old is 0 or equal to new."""
    if not 0 <= old <= new:
        raise ValueError(f"no consistency proof from {old} to {new} leaves")
    if old in (0, new):
        return []
    out: list[tuple[int, int]] = []
    lo, hi, whole = 0, new, True
    while True:
        m = old - lo
        if m == hi - lo:
            if not whole:
                out.append((lo, hi))
            break
        k = _split(hi - lo)
        if m <= k:
            out.append((lo + k, hi))
            hi = lo + k
        else:
            out.append((lo, lo + k))
            lo, whole = lo + k, False
    return out[::-1]


def inclusion_proof(index: int, size: int, node: NodeSource) -> list[bytes]:
    """The audit path of leaf ``index`` in the tree of ``size`` leaves."""
    return [range_hash(lo, hi, node) for lo, hi in inclusion_ranges(index, size)]


def consistency_proof(old: int, new: int, node: NodeSource) -> list[bytes]:
    """The consistency proof from the tree of ``old`` leaves to the tree of ``new``."""
    return [range_hash(lo, hi, node) for lo, hi in consistency_ranges(old, new)]


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 2.1.3.2: is ``leaf`` (a leaf hash) at ``index`` in the tree with ``root``?"""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def verify_consistency(
    old: int, new: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 2.1.4.2: does the tree of ``new`` leaves with ``new_root`` extend the tree of
    ``old`` leaves with ``old_root``? (Any tree extends the empty one.)"""
    if not 0 <= old <= new:
        return False
    if old == 0:
        return not proof and (new > 0 or new_root == EMPTY_ROOT) and old_root == EMPTY_ROOT
    if old == new:
        return not proof and old_root == new_root
    if not proof:
        return False
    path = list(proof)
    if old & (old - 1) == 0:  # old is a power of two: its root is the first node
        path.insert(0, old_root)
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == old_root and sr == new_root


class CompactRange:
    """The right edge of a growing tree: the perfect subtrees that make up ``[0, size)``
    (at most one per level, largest first). Appending a leaf completes zero or more new
    perfect subtrees, which :meth:`append` returns so a store can keep them."""

    __slots__ = ("nodes", "size")

    def __init__(self, size: int = 0, nodes: Sequence[bytes] = ()) -> None:
        if len(nodes) != size.bit_count():
            raise ValueError(f"a tree of {size} leaves has {size.bit_count()} edge subtrees")
        self.size = size
        self.nodes = list(nodes)

    @staticmethod
    def edge(size: int) -> list[tuple[int, int]]:
        """``(level, index)`` of the edge subtrees of a tree of ``size`` leaves, largest first."""
        return perfect_cover(0, size)

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add one leaf hash; return ``(level, index, hash)`` of each perfect subtree it
        completed, the leaf itself (level 0) first."""
        index = self.size
        done = [(0, index, leaf)]
        h, level = leaf, 0
        while (index >> level) & 1:  # a left sibling of the same level is waiting
            h = node_hash(self.nodes.pop(), h)
            level += 1
            done.append((level, index >> level, h))
        self.nodes.append(h)
        self.size += 1
        return done

    def root(self) -> bytes:
        """MTH of the leaves so far."""
        if not self.nodes:
            return EMPTY_ROOT
        h = self.nodes[-1]
        for left in reversed(self.nodes[:-1]):
            h = node_hash(left, h)
        return h


# --- many leaves of one tree: the node table of a bundle's proofs (docs/evidence.md) ---------
#
# Node (level, index) of the tree of ``size`` leaves is the MTH of leaves
# [index * 2**level, min((index + 1) * 2**level, size)), for index * 2**level < size: a perfect
# subtree, or on the right edge what of it there is. The audit path of leaf m is, level by
# level from 0 while (size - 1) >> level, the node (level, (m >> level) ^ 1) where that
# exists (a node without a sibling is carried up unchanged): the RFC's path, bottom first.


def path_nodes(indexes: Iterable[int], size: int) -> list[set[int]]:
    """Per level (0 first), the indices of the nodes on the audit paths of the leaves
    ``indexes`` (each < ``size``) in the tree of ``size`` leaves: the node table they need."""
    out: list[set[int]] = []
    held, level = set(indexes), 0
    while (size - 1) >> level:
        last = (size - 1) >> level
        out.append({i ^ 1 for i in held if i ^ 1 <= last})
        held = {i >> 1 for i in held}
        level += 1
    return out


class TableCheck:
    """Inclusion of many leaves in one signed tree, every audit path read from one node table
    ``(level, index) -> hash``. Each leaf is judged exactly as on its own (RFC 9162 2.1.3.2
    over the path the table gives it); a node that a checked path already carried to the
    root is remembered, so a path that reaches it with the same hash stops there: with many
    leaves of a range, each distinct node is hashed about once."""

    def __init__(self, size: int, root: bytes, table: Mapping[tuple[int, int], bytes]) -> None:
        self.size, self.root, self.table = size, root, table
        self.known: dict[tuple[int, int], bytes] = {}  # nodes shown to lead to the root

    def check(self, index: int, leaf: bytes) -> str:
        """``""`` when ``leaf`` (a leaf hash) at ``index`` leads to the root; else why not."""
        size, table, known = self.size, self.table, self.known
        if not 0 <= index < size:
            return f"leaf index {index} is outside the tree of {size} leaves"
        h, i, level, walked = leaf, index, 0, []
        while (size - 1) >> level:
            got = known.get((level, i))
            if got is not None:
                if got != h:
                    return "does not lead to the signed root"
                break
            walked.append(((level, i), h))
            if (i ^ 1) <= (size - 1) >> level:
                sib = table.get((level, i ^ 1))
                if sib is None:
                    return f"node (level {level}, index {i ^ 1}) is not in the node table"
                h = node_hash(sib, h) if i & 1 else node_hash(h, sib)
            level, i = level + 1, i >> 1
        else:
            if h != self.root:
                return "does not lead to the signed root"
        known.update(walked)
        return ""
