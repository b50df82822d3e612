"""The bundle's membership proofs, checked (``proofs.ndjson``; see auditlog.evidence.proofs).

Each line must prove its row's entry_hash (as the row itself states it, in events.ndjson)
into the tree of a version-3 checkpoint of the manifest whose signature holds. A row without
a line is counted as not proven; a line that fails is a finding (``proof fails``).
"""

from __future__ import annotations

import base64
import binascii
import json
import zipfile
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from auditlog.errors import TimestampInvalid
from auditlog.evidence.proofs import PROOFS_NAME
from auditlog.integrity.checkpoints import Checkpoint, signature_ok
from auditlog.proofs.merkle import leaf_hash, verify_inclusion
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
    """Check every proof line; return the rows proven per category (findings on ``report``)."""
    if PROOFS_NAME not in zf.namelist():
        return {}
    trees, entries = _trees(manifest, keys), _entries(zf, ndjson)
    proven: dict[str, int] = {}
    with zf.open(PROOFS_NAME) as fh:
        for n, line in enumerate(fh, start=1):
            why, where = _check_line(line, trees, entries)
            if why is None:
                continue  # its row is not in the bundle: the row check names that
            if why:
                report.add("proof fails", why, file=PROOFS_NAME, row=n, **where)
                continue
            proven[where["category"]] = proven.get(where["category"], 0) + 1
    return proven


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
