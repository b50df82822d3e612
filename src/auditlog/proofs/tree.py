"""The stored Merkle tree of a chain: reading subtree hashes, and keeping them as rows append.

Level 0 is the entries (their entry_hash, from ``events`` or, for a purged prefix, from
``merkle_purged_leaves``); ``merkle_nodes`` keeps every complete subtree of
``2**STORED_LEVEL`` leaves and more. A hash below that level is computed from the entries of
its tile; a stored node that is missing (a database older than the tree) from its children.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import psycopg

from auditlog.proofs.merkle import (
    EMPTY_ROOT,
    CompactRange,
    consistency_ranges,
    inclusion_ranges,
    leaf_hash,
    node_hash,
    perfect_cover,
    range_hash,
)

STORED_LEVEL = 8  # subtrees of 256 leaves and more are stored
TILE = 1 << STORED_LEVEL
Cursor = psycopg.Cursor[Any]
Emit = Callable[[int, dict[int, bytes]], None]  # one level of a node table


class TreeReader:
    """Perfect-subtree hashes of one category's tree, read in few queries and memoised."""

    def __init__(self, cur: Cursor, category: str) -> None:
        self.cur, self.category = cur, category
        self._nodes: dict[tuple[int, int], bytes] = {}
        self._tiles: dict[int, list[bytes]] = {}
        self._levels: dict[int, list[list[bytes]]] = {}  # tile -> its low subtrees, by level
        self._partials: dict[tuple[int, int], bytes] = {}  # (lo, size) of right-edge subtrees
        self._all_up_to = -1  # prefetch_for loaded every stored node of a tree this large
        self._known: Mapping[int, bytes] = {}  # leaf index -> entry_hash a caller holds

    # --- reading -----------------------------------------------------------------------
    def prefetch(self, wanted: Iterable[tuple[int, int]]) -> None:
        """Load the stored nodes and the entry tiles that ``wanted`` subtrees need."""
        stored = [(lv, i) for lv, i in wanted if lv >= STORED_LEVEL and (lv, i) not in self._nodes]
        low = {(i << lv) // TILE for lv, i in wanted if lv < STORED_LEVEL}
        if stored:
            self.cur.execute(
                "SELECT level, idx, hash FROM merkle_nodes WHERE category = %s AND (level, idx)"
                " IN (SELECT * FROM unnest(%s::smallint[], %s::bigint[]))",
                (self.category, [lv for lv, _ in stored], [i for _, i in stored]),
            )
            for lv, i, h in self.cur.fetchall():
                self._nodes[(int(lv), int(i))] = bytes(h)
        self._load_tiles(sorted(t for t in low if t not in self._tiles))

    def _load_tiles(self, tiles: Sequence[int]) -> None:
        if not tiles:
            return
        # entries are seq = leaf index + 1; a tile is leaves [t*TILE, (t+1)*TILE). The tiles
        # go as runs of seqs, each one index range scan of the (category, seq) key: OFFSET 0
        # keeps the LATERAL subquery from being pulled up into a join, which the planner,
        # guessing a default selectivity for "seq BETWEEN", turns into a full scan (at 1M
        # rows ~800 ms for two runs). Binary results spare decoding each entry_hash's hex
        los, his = _seq_spans(tiles, self._known)
        self.cur.execute(
            "SELECT e.seq, e.entry_hash FROM unnest(%s::bigint[], %s::bigint[]) AS r(lo, hi),"
            " LATERAL (SELECT seq, entry_hash FROM events WHERE category = %s"
            " AND seq BETWEEN r.lo AND r.hi OFFSET 0) AS e",
            (los, his, self.category),
            binary=True,
        )
        found: dict[int, bytes] = {int(s) - 1: bytes(h) for s, h in self.cur.fetchall()}
        # a purged run starts at some seq of its tile and stays within it
        self.cur.execute(
            "SELECT p.first_seq, p.entry_hashes FROM unnest(%s::bigint[], %s::bigint[])"
            " AS r(lo, hi), LATERAL (SELECT first_seq, entry_hashes FROM merkle_purged_leaves"
            " WHERE category = %s AND first_seq BETWEEN r.lo AND r.hi OFFSET 0) AS p",
            (los, his, self.category),
            binary=True,
        )
        for first, blob in self.cur.fetchall():
            data = bytes(blob)
            for k in range(len(data) // 32):
                found.setdefault(int(first) - 1 + k, data[32 * k : 32 * k + 32])
        known = self._known
        for t in tiles:
            leaves = []
            for i in range(t * TILE, (t + 1) * TILE):
                entry = known.get(i) or found.get(i)
                if entry is None:
                    break
                leaves.append(leaf_hash(entry))
            self._tiles[t] = leaves

    def node(self, level: int, index: int) -> bytes:
        """The hash of the perfect subtree ``(level, index)``; KeyError if its leaves are not
        all in the log (yet)."""
        key = (level, index)
        if key in self._nodes:
            return self._nodes[key]
        if level < STORED_LEVEL:
            h = self._low(level, index)
        else:
            self.prefetch([(level - 1, 2 * index), (level - 1, 2 * index + 1)])
            h = node_hash(self.node(level - 1, 2 * index), self.node(level - 1, 2 * index + 1))
        self._nodes[key] = h
        return h

    def _low(self, level: int, index: int) -> bytes:
        lo = index << level
        tile = lo // TILE
        levels = self._tile_levels(tile)
        k = index - ((tile * TILE) >> level)
        if level >= len(levels) or k >= len(levels[level]):
            last = lo + (1 << level) - 1
            raise KeyError(f"{self.category}: leaves {lo}..{last} are not all stored")
        return levels[level][k]

    def _tile_levels(self, tile: int) -> list[list[bytes]]:
        """Every complete subtree below STORED_LEVEL in ``tile``, level by level (computed
        once a tile: a bundle's many paths cross the same low nodes)."""
        levels = self._levels.get(tile)
        if levels is None:
            if tile not in self._tiles:
                self._load_tiles([tile])
            part = self._tiles[tile]
            levels = [part]
            while len(part) > 1:
                part = [node_hash(part[i], part[i + 1]) for i in range(0, len(part) - 1, 2)]
                levels.append(part)
            self._levels[tile] = levels
        return levels

    def prefetch_for(self, indexes: Sequence[int], size: int) -> None:
        """Load, in a few queries, everything the inclusion proofs of ``indexes`` in the tree
        of ``size`` leaves need: every stored node below ``size`` and the tiles of the leaves
        and of the tree's right edge (for proofs of many rows, as a bundle has)."""
        tiles = {i // TILE for i in indexes} | {(size - 1) // TILE} if size else set()
        self._prefetch(tiles, size)

    def _prefetch(self, tiles: set[int], size: int) -> None:
        self.cur.execute(
            "SELECT level, idx, hash FROM merkle_nodes WHERE category = %s"
            " AND (idx + 1) * (1::bigint << level) <= %s",
            (self.category, size),
        )
        for lv, i, h in self.cur.fetchall():
            self._nodes[(int(lv), int(i))] = bytes(h)
        self._all_up_to = size
        self._load_tiles(sorted(t for t in tiles if t not in self._tiles))

    # --- what proofs need ------------------------------------------------------------------
    def hash_of(self, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        """MTH of each leaf range (as the RFC's recursion produces them)."""
        if max((hi for _, hi in ranges), default=0) > self._all_up_to:  # else all is loaded
            self.prefetch([c for lo, hi in ranges for c in perfect_cover(lo, hi)])
        return [range_hash(lo, hi, self.node) for lo, hi in ranges]

    def root(self, size: int) -> bytes:
        """The root of the tree of the first ``size`` leaves."""
        return self.hash_of([(0, size)])[0]

    def inclusion(self, index: int, size: int) -> list[bytes]:
        """The audit path of leaf ``index`` in the tree of ``size`` leaves (RFC 9162 2.1.3.1).

        Level by level: the sibling of the node holding the leaf, where it exists (a node
        without one is carried up unchanged); a sibling cut by the tree's right edge is the
        hash of what of it there is. The same path as the recursion, at a few dictionary
        lookups a level, for the many proofs of a bundle."""
        if not 0 <= index < size:
            raise ValueError(f"leaf index {index} is outside a tree of {size} leaves")
        if size > self._all_up_to:
            self.prefetch([c for r in inclusion_ranges(index, size) for c in perfect_cover(*r)])
        path, level = [], 0
        while (size - 1) >> level:
            sib = (index >> level) ^ 1
            lo = sib << level
            if lo < size:
                hi = lo + (1 << level)
                path.append(self.node(level, sib) if hi <= size else self._partial(lo, size))
            level += 1
        return path

    def _partial(self, lo: int, size: int) -> bytes:
        """MTH of leaves [lo, size): the right edge's incomplete subtree (memoised)."""
        key = (lo, size)
        if key not in self._partials:
            self._partials[key] = range_hash(lo, size, self.node)
        return self._partials[key]

    def subtree(self, level: int, index: int, size: int) -> bytes:
        """Node ``(level, index)`` of the tree of ``size`` leaves: the perfect subtree, or on
        the right edge the hash of what of it there is (``merkle.path_nodes``)."""
        lo = index << level
        return self.node(level, index) if lo + (1 << level) <= size else self._partial(lo, size)

    def audit_table(
        self,
        indexes: Sequence[int],
        size: int,
        emit: Emit,
        entries: Mapping[int, bytes] | None = None,
    ) -> bytes:
        """The node table of the audit paths of leaves ``indexes`` (sorted, each < ``size``)
        in the tree of ``size`` leaves, handed to ``emit(level, {index: hash})`` level by
        level, indices ascending (``merkle.path_nodes``); returns the root those paths lead
        to, computed from the leaves up (a caller compares it with the signed root: when it
        is equal, every path of the table checks). ``entries`` (leaf index -> entry_hash)
        are the leaves' entries as the caller holds them; the rest is read."""
        self._known = entries or {}
        self._prefetch(_tiles_needed(indexes, size, self._known), size)
        held = {i: self._leaf(i) for i in indexes}  # the leaves' ancestors at this level
        level = 0
        while (size - 1) >> level:
            last = (size - 1) >> level
            sibs = {s: held.get(s) or self.subtree(level, s, size)
                    for s in sorted({i ^ 1 for i in held if i ^ 1 <= last})}  # fmt: skip
            emit(level, sibs)
            up: dict[int, bytes] = {}
            for i in held:
                if i >> 1 not in up:
                    left = held.get(i & ~1) or sibs[i & ~1]
                    right = i | 1
                    up[i >> 1] = (
                        left if right > last else node_hash(left, held.get(right) or sibs[right])
                    )
            held, level = up, level + 1
        return held[0] if held else EMPTY_ROOT

    def _leaf(self, index: int) -> bytes:
        entry = self._known.get(index)
        if entry is not None:
            return leaf_hash(entry)
        leaves = self._tiles.get(index // TILE)
        if leaves is None or index % TILE >= len(leaves):
            raise KeyError(f"{self.category}: leaf {index} is not stored")
        return leaves[index % TILE]

    def consistency(self, old: int, new: int) -> list[bytes]:
        """The consistency proof from the tree of ``old`` leaves to that of ``new``."""
        return self.hash_of(consistency_ranges(old, new))

    def edge(self, size: int) -> CompactRange:
        """The compact range (right edge) of the tree of ``size`` leaves, to append to."""
        cover = perfect_cover(0, size)
        self.prefetch(cover)
        return CompactRange(size, [self.node(lv, i) for lv, i in cover])


def _tiles_needed(indexes: Sequence[int], size: int, known: Mapping[int, bytes]) -> set[int]:
    """The tiles whose entries the paths of ``indexes`` need beyond ``known``: those of the
    leaves not known, of each low sibling that no leaf of ``indexes`` is under (it is
    computed from its tile), and of the tree's right edge."""
    tiles = {(size - 1) // TILE} if size else set()
    tiles |= {i // TILE for i in indexes if i not in known}
    held, level = set(indexes), 0
    while level < STORED_LEVEL and (size - 1) >> level:
        last = (size - 1) >> level
        tiles |= {((i ^ 1) << level) // TILE for i in held if i ^ 1 <= last and i ^ 1 not in held}
        held, level = {i >> 1 for i in held}, level + 1
    return tiles


def _seq_spans(tiles: Sequence[int], known: Mapping[int, bytes]) -> tuple[list[int], list[int]]:
    """The seqs of ``tiles`` (ascending) whose entries are not ``known``, as [lo], [hi] runs."""
    lo: list[int] = []
    hi: list[int] = []
    for t in tiles:
        for i in range(t * TILE, (t + 1) * TILE):
            if i in known:
                continue
            if hi and hi[-1] == i:  # seq i + 1 follows the run's last seq
                hi[-1] = i + 1
            else:
                lo.append(i + 1)
                hi.append(i + 1)
    return lo, hi


def store_nodes(cur: Cursor, category: str, nodes: Sequence[tuple[int, int, bytes]]) -> None:
    """Insert completed subtrees of ``STORED_LEVEL`` and above. A node already there is
    left as it is (only a forged row can be there first; ``verify`` reports it)."""
    rows = [(lv, i, h) for lv, i, h in nodes if lv >= STORED_LEVEL]
    if not rows:
        return
    cur.execute(
        "INSERT INTO merkle_nodes (category, level, idx, hash)"
        " SELECT %s, * FROM unnest(%s::smallint[], %s::bigint[], %s::bytea[])"
        " ON CONFLICT DO NOTHING",
        (category, [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]),
    )


def build_trees(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """Store the nodes of the entries already in the log (a database from before the tree);
    return the leaves each chain's tree now holds. A chain whose prefix was purged before
    the tree existed has lost those leaves: it gets no tree (the count says -1), and its
    checkpoints stay without a root."""
    cur = conn.cursor()
    cur.execute("SELECT DISTINCT category FROM events ORDER BY 1")
    out: dict[str, int] = {}
    for (category,) in cur.fetchall():
        cur.execute("SELECT 1 FROM purge_anchors WHERE category = %s LIMIT 1", (category,))
        if cur.fetchone() is not None:
            out[category] = -1
            continue
        edge, pending = CompactRange(), []
        with conn.cursor(name="auditlog_build_tree") as rows:
            rows.execute(
                "SELECT entry_hash FROM events WHERE category = %s ORDER BY seq", (category,)
            )
            for (entry,) in rows:
                pending += edge.append(leaf_hash(bytes(entry)))[STORED_LEVEL:]
                if len(pending) >= 10_000:
                    store_nodes(cur, category, pending)
                    pending = []
        store_nodes(cur, category, pending)
        out[category] = edge.size
    return out


class TreeCheck:
    """Recomputes, from the entries as verification reads them, every node the store keeps;
    :meth:`first_wrong` names the first stored node that differs or is missing."""

    def __init__(self, edge: CompactRange) -> None:
        self.edge = edge
        self.nodes: list[tuple[int, int, bytes]] = []
        self.watch: set[int] = set()  # tree sizes whose root to keep (signed checkpoints)
        self.roots: dict[int, bytes] = {}

    def add(self, entry: bytes) -> None:
        done = self.edge.append(leaf_hash(entry))
        if len(done) > STORED_LEVEL:
            self.nodes.extend(done[STORED_LEVEL:])
        if self.edge.size in self.watch:
            self.roots[self.edge.size] = self.edge.root()

    def first_wrong(self, cur: Cursor, category: str) -> tuple[int, str] | None:
        """(last seq the node covers, what is wrong) of the first bad node, or None."""
        cur.execute("SELECT level, idx, hash FROM merkle_nodes WHERE category = %s", (category,))
        stored = {(int(lv), int(i)): bytes(h) for lv, i, h in cur.fetchall()}
        for level, index, h in sorted(self.nodes, key=lambda n: ((n[1] + 1) << n[0], n[0])):
            got = stored.get((level, index))
            if got != h:
                what = "missing" if got is None else "does not match the entries"
                return ((index + 1) << level, f"tree node (level {level}, index {index}) {what}")
        return None
