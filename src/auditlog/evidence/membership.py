"""The bundle's membership proofs, checked (``proofs.ndjson``; see auditlog.evidence.proofs).

Each row listed must be proven, by its entry_hash as the row itself states it (in
events.ndjson), into the tree of a version-3 checkpoint of the manifest whose signature
holds: in format 2 by the audit path its tree's node table gives it (``merkle.TableCheck``,
each distinct node hashed once), in format 1 by the path on its own line. A row not listed
is counted as not proven; a row whose proof fails is a finding (``proof fails``), and so is
a node table holding a node twice or a node on no listed row's path.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from auditlog.errors import TimestampInvalid
from auditlog.evidence.proofs import PROOFS_FORMAT, PROOFS_NAME
from auditlog.integrity.checkpoints import Checkpoint, signature_ok
from auditlog.proofs.merkle import TableCheck, leaf_hash, path_nodes, verify_inclusion
from auditlog.proofs.timestamp import verify_timestamp

MANIFEST = "manifest.json"


def _trees(
    manifest: dict[str, Any], keys: Mapping[str, Ed25519PublicKey]
) -> dict[tuple[str, int], bytes]:
    """(category, size) -> root of every version-3 checkpoint whose signature holds."""
    out = {}
    for item in manifest.get("checkpoints", []):
        try:
            cp = Checkpoint.from_json(item)
        except (KeyError, TypeError, ValueError):
            continue  # reported by the checkpoint check
        if cp.root is not None and signature_ok(cp, keys):
            out[(cp.category, cp.seq)] = cp.root
    return out


def _entries(zf: zipfile.ZipFile, ndjson: str) -> dict[tuple[str, int], bytes]:
    out = {}
    with zf.open(ndjson) as fh:
        for line in fh:
            try:
                row = json.loads(line)
                out[(row["category"], int(row["seq"]))] = bytes.fromhex(row["entry_hash"])
            except (ValueError, KeyError, TypeError):
                continue  # a malformed row is the row check's finding
    return out


def check_proofs(
    zf: zipfile.ZipFile,
    manifest: dict[str, Any],
    keys: Mapping[str, Ed25519PublicKey],
    report: Any,
    ndjson: str,
) -> dict[str, int]:
    """Check every row's proof (either format); return the rows proven per category
    (findings on ``report``)."""
    if PROOFS_NAME not in zf.namelist():
        return {}
    trees, entries = _trees(manifest, keys), _entries(zf, ndjson)
    with zf.open(PROOFS_NAME) as fh:
        first = fh.readline()
        if _is_header(first):
            return _check_tables(_read_tables(fh, report), trees, entries, report)
        proven: dict[str, int] = {}
        for n, line in enumerate(itertools.chain([first], fh), start=1):
            why, where = _check_line(line, trees, entries)
            if why is None:
                continue  # its row is not in the bundle: the row check names that
            if why:
                report.add("proof fails", why, file=PROOFS_NAME, row=n, **where)
                continue
            proven[where["category"]] = proven.get(where["category"], 0) + 1
    return proven


def _is_header(line: bytes) -> bool:
    try:
        item = json.loads(line)
    except ValueError:
        return False
    return isinstance(item, dict) and item.get("format") == PROOFS_FORMAT


def _check_line(
    line: bytes, trees: dict[tuple[str, int], bytes], entries: dict[tuple[str, int], bytes]
) -> tuple[str | None, dict[str, Any]]:
    """('', where) when the line proves its row; the reason when not; None when it cannot be
    judged here (its row is missing, or its checkpoint's signature failed: both named apart)."""
    try:
        item = json.loads(line)
        cat, seq, size = str(item["category"]), int(item["seq"]), int(item["size"])
        proof = [bytes.fromhex(h) for h in item["proof"]]
    except (ValueError, KeyError, TypeError) as exc:
        return f"not a proof line ({exc})", {}
    where = {"category": cat, "seq": seq}
    root, entry = trees.get((cat, size)), entries.get((cat, seq))
    if root is None or entry is None:
        return None, where  # no trusted tree (the checkpoint check says why), or no such row
    if not verify_inclusion(seq - 1, size, leaf_hash(entry), proof, root):
        return f"does not prove {cat} seq {seq} in the tree of {size} entries", where
    return "", where


@dataclass
class _Table:
    """One tree's part of a format-2 proofs file: the rows listed (seq, line) and its nodes."""

    rows: list[tuple[int, int]] = field(default_factory=list)
    nodes: dict[tuple[int, int], bytes] = field(default_factory=dict)
    twice: set[tuple[int, int]] = field(default_factory=set)


def _read_tables(fh: IO[bytes], report: Any) -> dict[tuple[str, int], _Table]:
    """The format-2 lines after the header, by tree (category, size); an unreadable line is
    named (``proof fails``), a node listed twice is named and counts as absent."""
    tables: dict[tuple[str, int], _Table] = {}
    for n, line in enumerate(fh, start=2):
        try:
            item = json.loads(line)
            key = (_text(item["category"]), _whole(item["size"], 1))
            table = tables.setdefault(key, _Table())
            if "rows" in item:
                _add_rows(table, item["rows"], n)
            else:
                _add_nodes(table, item, key, report, n)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            report.add("proof fails", f"not a proof line ({exc})", file=PROOFS_NAME, row=n)
    for table in tables.values():
        for k in table.twice:
            table.nodes.pop(k, None)
    return tables


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{value!r} is not a string")
    return value


def _whole(value: Any, least: int = 0) -> int:
    if type(value) is not int or value < least:
        raise ValueError(f"{value!r} is not an integer >= {least}")
    return value


def _add_rows(table: _Table, runs: Any, line: int) -> None:
    last, seqs = table.rows[-1][0] if table.rows else 0, []
    for a, b in runs:
        if not last < _whole(a, 1) <= _whole(b, 1):
            raise ValueError(f"rows [{a}, {b}] do not ascend past seq {last}")
        seqs.append(range(a, b + 1))
        last = b
    table.rows.extend((s, line) for r in seqs for s in r)


def _add_nodes(table: _Table, item: Any, tree: tuple[str, int], report: Any, line: int) -> None:
    level, index = _whole(item["level"]), item["index"]
    raw = bytes.fromhex(_text(item["hashes"]))
    if not isinstance(index, list) or len(raw) != 32 * len(index):
        raise ValueError("index and hashes differ in length (32 bytes a node)")
    for k, i in enumerate(index):
        key = (level, _whole(i))
        if key in table.nodes:
            table.twice.add(key)
            why = f"the {tree[0]} tree of {tree[1]} entries lists node {key} twice"
            report.add("proof fails", why, file=PROOFS_NAME, row=line, category=tree[0])
        table.nodes[key] = raw[32 * k : 32 * k + 32]


def _check_tables(
    tables: dict[tuple[str, int], _Table],
    trees: dict[tuple[str, int], bytes],
    entries: dict[tuple[str, int], bytes],
    report: Any,
) -> dict[str, int]:
    """Each listed row's path, read from its tree's table, must lead to the signed root; a
    table must hold no node off the listed rows' paths. Rows proven per category."""
    proven: set[tuple[str, int]] = set()
    for (cat, size), table in sorted(tables.items()):
        root = trees.get((cat, size))
        if root is None:
            continue  # no trusted tree: the checkpoint check says why
        check = TableCheck(size, root, table.nodes)
        for seq, line in table.rows:
            entry = entries.get((cat, seq))
            if entry is None:
                continue  # no such row: the row check names that
            why = check.check(seq - 1, leaf_hash(entry))
            if why:
                msg = f"does not prove {cat} seq {seq} in the tree of {size} entries: {why}"
                report.add("proof fails", msg, file=PROOFS_NAME, row=line, category=cat, seq=seq)
            else:
                proven.add((cat, seq))
        _extra_nodes(cat, size, table, report)
    out: dict[str, int] = {}
    for cat, _ in proven:
        out[cat] = out.get(cat, 0) + 1
    return out


def _extra_nodes(cat: str, size: int, table: _Table, report: Any) -> None:
    used = path_nodes([s - 1 for s, _ in table.rows if s <= size], size)
    extra = sorted(k for k in table.nodes if k[0] >= len(used) or k[1] not in used[k[0]])
    if extra:
        why = (f"the {cat} tree of {size} entries lists {len(extra)} node(s) on no listed "
               f"row's path, the first (level {extra[0][0]}, index {extra[0][1]})")  # fmt: skip
        report.add("proof fails", why, file=PROOFS_NAME, category=cat)


def check_timestamps(
    manifest: dict[str, Any], anchors: Sequence[x509.Certificate] | None, report: Any
) -> tuple[int, int]:
    """(tokens checked and good, tokens present) of the bundled checkpoints; each token must
    prove its checkpoint's note text under one of ``anchors`` (none given: not checked)."""
    good = present = 0
    for item in manifest.get("checkpoints", []):
        stamps = item.get("timestamps") if isinstance(item, dict) else None
        if not isinstance(stamps, list):
            continue
        try:
            cp = Checkpoint.from_json(item)
        except (KeyError, TypeError, ValueError):
            continue
        for stamp in stamps:
            present += 1
            if anchors is None:
                continue
            try:
                token = base64.b64decode(stamp["token"], validate=True)
                verify_timestamp(token, cp.message(), anchors)
            except (KeyError, TypeError, ValueError, binascii.Error) as exc:
                why = f"{cp.name()}: unreadable time-stamp ({exc})"
                report.add(
                    "bad time-stamp", why, file="manifest.json", category=cp.category, seq=cp.seq
                )
            except TimestampInvalid as exc:
                why = f"{cp.name()}: the time-stamp token does not prove it: {exc.reason}"
                report.add(
                    "bad time-stamp", why, file="manifest.json", category=cp.category, seq=cp.seq
                )
            else:
                good += 1
    return good, present
