"""Reading evidence back: CSV rows in record form, and checking a bundle with nothing else.

Public API::

    csv_record(cells) -> dict            one CSV data row in record form (undoes the escape)
    unescape(cell) -> str                the formula escape, undone
    verify_bundle(path, public_keys=None) -> BundleReport(problems, chains, rows, ...)
    BundleProblem(kind, message, file, row, category, seq)   str() is one readable line

Every problem names where it is: the file, the data row (1 = the first row after the CSV
header), and the category and seq of the entry. Kinds: ``not a bundle``, ``forged manifest``,
``missing file``, ``unexpected file``, ``file corrupt``, ``file changed``, ``malformed file``,
``malformed row``, ``content changed``, ``rows reordered``, ``link broken``, ``row deleted``,
``row inserted``, ``rows truncated``, ``files differ``, ``bad signature``,
``checkpoint mismatch``. The algorithm is written out in docs/evidence.md.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from auditlog.columns import CSV_COLUMNS, CSV_KINDS, LEGACY_CSV_COLUMNS
from auditlog.evidence.bundle import (
    CSV_NAME,
    MANIFEST,
    NDJSON_NAME,
    NDJSON_TAIL,
    SIGNATURE,
    VERIFIER,
    manifest_message,
)
from auditlog.evidence.membership import check_proofs, check_timestamps
from auditlog.evidence.proofs import PROOFS_NAME
from auditlog.integrity.checkpoints import Checkpoint, signature_ok
from auditlog.integrity.keys import key_id_of, load_public_key
from auditlog.integrity.rule import ZERO_HASH, record_bytes, record_seq
from auditlog.model import deep_path

MAX_PROBLEMS = 50
# Deeper than any event the log accepts (max_json_depth is at most 256) and than rows stored
# before that bound typically are; shallow enough that decoding and canonicalising never
# reach Python's recursion limit.
MAX_DEPTH = 600
_TOO_DEEP = "nests too deeply to canonicalise in this verifier"
MAX_SAFE_INT = 2**53 - 1
_REQUIRED = ("files", "chains", "checkpoints", "public_keys")


# --- a CSV row in record form ---------------------------------------------------------------


def unescape(cell: str) -> str:
    """Undo the formula escape: drop one leading ``'``."""
    return cell[1:] if cell.startswith("'") else cell


def _json_number(text: str) -> int | float:
    # JCS numbers are IEEE doubles; an integer beyond +-(2**53-1) can only be a float's value.
    value = int(text)
    return value if -MAX_SAFE_INT <= value <= MAX_SAFE_INT else float(text)


def _decode(kind: str, cell: str) -> Any:
    if kind == "nullable":
        return None if cell == "" else unescape(cell)
    if cell == "":
        raise ValueError("is empty")
    cell = unescape(cell)
    if kind == "int":
        return int(cell)
    if kind == "bool":
        if cell not in ("true", "false"):
            raise ValueError(f"{cell[:20]!r} is not true or false")
        return cell == "true"
    if kind == "hex" and (len(cell) != 64 or cell.strip("0123456789abcdef")):
        raise ValueError("is not 64 lower-case hex digits")
    return _json_cell(cell) if kind == "json" else cell


def _json_cell(cell: str) -> Any:
    """A JSON cell's value; ValueError when it nests deeper than :data:`MAX_DEPTH` (checked on
    the text, so a hostile bundle cannot make the decoder recurse without bound)."""
    if cell.count("[") + cell.count("{") > MAX_DEPTH and deep_path(cell, MAX_DEPTH) is not None:
        raise ValueError(f"nests deeper than {MAX_DEPTH} levels, more than this verifier reads")
    return json.loads(cell, parse_int=_json_number)


def csv_record(cells: list[str], columns: Sequence[str] = CSV_COLUMNS) -> dict[str, Any]:
    """One CSV data row in record form (the shape of ``integrity.row_to_record``).

    ``columns`` is the file's header: :data:`~auditlog.columns.CSV_COLUMNS`, or the legacy
    one without ``source`` (files written before it existed). Raises ValueError naming the
    column when a cell cannot be read.
    """
    if len(cells) != len(columns):
        raise ValueError(f"has {len(cells)} cells, expected {len(columns)}")
    out = {}
    for name, cell in zip(columns, cells, strict=True):
        kind = CSV_KINDS[name]
        try:
            out[name] = _decode(kind, cell)
        except ValueError as exc:
            raise ValueError(f"column {name}: {exc}") from None
    if out.get("source", "") is None:  # ``null``: the record has no source member
        del out["source"]
    return out


# --- the report -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BundleProblem:
    """One thing wrong with a bundle: the kind, why, and where (file, row, category, seq)."""

    kind: str
    message: str
    file: str | None = None
    row: int | None = None
    category: str | None = None
    seq: int | None = None

    def __str__(self) -> str:
        where = self.file or "bundle"
        if self.row:
            where += f" row {self.row}"
        if self.category:
            where += f" ({self.category}{f' seq {self.seq}' if self.seq is not None else ''})"
        return f"{where}: {self.kind}: {self.message}"


@dataclass
class ChainSummary:
    """One category's rows in the bundle, and what vouches for them."""

    rows: int = 0
    runs: list[list[int]] = field(default_factory=list)  # [first_seq, last_seq, first_row]
    checkpoints: int = 0  # signed checkpoints that match an exported row
    covered: int = 0  # rows a matching checkpoint vouches for through the chain links
    failed: bool = False
    watch: set[int] = field(default_factory=set)  # checkpointed seqs
    hashes: dict[int, bytes] = field(default_factory=dict)  # entry_hash at watched seqs
    link: bytes = b""  # entry_hash of the last accepted row

    def accept(self, seq: int, entry: bytes, row: int) -> None:
        if self.runs and self.runs[-1][1] + 1 == seq:
            self.runs[-1][1] = seq
        else:
            self.runs.append([seq, seq, row])
        self.rows += 1
        self.link = entry
        if seq in self.watch:
            self.hashes[seq] = entry

    def row_of(self, seq: int) -> int | None:
        """The data row holding ``seq``, if the bundle has it."""
        run = next((r for r in self.runs if r[0] <= seq <= r[1]), None)
        return None if run is None else run[2] + seq - run[0]


@dataclass
class BundleReport:
    """The outcome of :func:`verify_bundle`; ``ok`` when ``problems`` is empty."""

    problems: list[BundleProblem] = field(default_factory=list)
    chains: dict[str, ChainSummary] = field(default_factory=dict)
    rows: int = 0
    key_pinned: bool = False
    manifest: dict[str, Any] | None = None
    proven: dict[str, int] = field(default_factory=dict)  # rows with a membership proof
    stamps: tuple[int, int] = (0, 0)  # time-stamp tokens (checked good, present)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, kind: str, message: str, **where: Any) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(BundleProblem(kind, message, **where))


# --- manifest, signature, files ----------------------------------------------------------------


def _read_manifest(zf: zipfile.ZipFile, report: BundleReport) -> bytes | None:
    try:
        body = zf.read(MANIFEST)
        manifest = _json_cell(body.decode("utf-8"))
    except (KeyError, ValueError, zipfile.BadZipFile) as exc:
        report.add("forged manifest", f"missing or not JSON ({exc})", file=MANIFEST)
        return None
    missing = [k for k in _REQUIRED if not isinstance(manifest, dict) or k not in manifest]
    if missing:
        report.add("forged manifest", f"lacks {', '.join(missing)}", file=MANIFEST)
        return None
    report.manifest = manifest
    return body


def _manifest_keys(manifest: dict[str, Any], report: BundleReport) -> dict[str, Ed25519PublicKey]:
    keys = {}
    for key_id, pem in manifest["public_keys"].items():
        try:
            key = load_public_key(pem)
        except ValueError as exc:
            report.add("forged manifest", f"public key {key_id}: {exc}", file=MANIFEST)
            continue
        if key_id_of(key) != key_id:
            report.add("forged manifest", f"key {key_id} has another key id", file=MANIFEST)
            continue
        keys[key_id] = key
    return keys


def _check_signature(
    zf: zipfile.ZipFile, body: bytes, keys: Mapping[str, Ed25519PublicKey], report: BundleReport
) -> None:
    try:
        sig = _json_cell(zf.read(SIGNATURE).decode("utf-8"))
        digest, key_id, raw = sig["manifest_sha256"], sig["key_id"], bytes.fromhex(sig["signature"])
    except (KeyError, ValueError, TypeError) as exc:
        report.add("forged manifest", f"signature missing or unreadable ({exc})", file=SIGNATURE)
        return
    key = keys.get(key_id)
    if hashlib.sha256(body).hexdigest() != digest:
        report.add("forged manifest", "changed after it was signed", file=MANIFEST)
    elif key is None:
        who = "a key that is not pinned" if report.key_pinned else "a key not in the manifest"
        report.add("forged manifest", f"signed with {who} ({key_id})", file=SIGNATURE)
    else:
        try:
            key.verify(raw, manifest_message(digest, key_id))
        except InvalidSignature:
            report.add("forged manifest", "the manifest signature does not verify", file=SIGNATURE)


def _check_files(zf: zipfile.ZipFile, manifest: dict[str, Any], report: BundleReport) -> bool:
    """File hashes against the manifest; False when a data file cannot be read at all."""
    names = set(zf.namelist())
    allowed = {CSV_NAME, NDJSON_NAME, MANIFEST, SIGNATURE, VERIFIER, PROOFS_NAME}
    for name in sorted(names - allowed):
        report.add("unexpected file", "not part of an evidence bundle", file=name)
    readable = True
    # the verifier and the proofs are optional (older bundles have none), hashed when there
    optional = [n for n in (VERIFIER, PROOFS_NAME) if n in names]
    for name in (CSV_NAME, NDJSON_NAME, *optional):
        sha = hashlib.sha256()
        try:
            with zf.open(name) as fh:
                while chunk := fh.read(1 << 20):
                    sha.update(chunk)
        except KeyError:
            report.add("missing file", "the bundle does not contain it", file=name)
            readable = False
            continue
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            report.add("file corrupt", f"cannot be read from the ZIP ({exc})", file=name)
            readable = False
            continue
        if sha.hexdigest() != manifest["files"].get(name, {}).get("sha256"):
            report.add("file changed", "its SHA-256 differs from the manifest", file=name)
    return readable


# --- the rows ---------------------------------------------------------------------------------


def _written_at(rec: dict[str, Any], prev: bytes, entry: bytes) -> int | None:
    """The seq this row's hash was computed with, when that is a nearby other seq."""
    for delta in range(1, 65):
        for cand in (rec["seq"] - delta, rec["seq"] + delta):
            rb = record_bytes({**rec, "seq": cand})
            if cand >= 1 and hashlib.sha256(prev + rb).digest() == entry:
                return int(cand)
    return None


class _RowCheck:
    """One pass over events.csv and events.ndjson side by side."""

    def __init__(self, manifest: dict[str, Any], report: BundleReport) -> None:
        self.report, self.chains = report, report.chains
        self.last_cat: str | None = None
        self.nd_failed = self.cross_failed = False
        self.columns: Sequence[str] = CSV_COLUMNS
        self.watch: dict[str, set[int]] = {}
        for cp in manifest["checkpoints"]:
            if isinstance(cp, dict) and isinstance(cp.get("seq"), int):
                self.watch.setdefault(str(cp.get("category")), set()).add(cp["seq"])

    def run(self, zf: zipfile.ZipFile) -> None:
        text = io.TextIOWrapper(
            zf.open(CSV_NAME), encoding="utf-8", errors="surrogateescape", newline=""
        )
        with text, zf.open(NDJSON_NAME) as nd:
            reader = csv.reader(text, strict=True)
            header = tuple(next(reader, []))
            if header not in (CSV_COLUMNS, LEGACY_CSV_COLUMNS):
                want = ",".join(CSV_COLUMNS)
                self.report.add("malformed file", f"the header is not {want}", file=CSV_NAME)
                return
            self.columns = header
            i = 0
            try:
                for i, cells in enumerate(reader, start=1):
                    self.row(i, cells, nd.readline())
            except csv.Error as exc:
                self.report.add("malformed row", f"not valid CSV ({exc})", file=CSV_NAME, row=i + 1)
                return
            self.report.rows = i
            if nd.readline() and not (self.nd_failed or self.cross_failed):
                self.report.add(
                    "files differ", f"more rows than {CSV_NAME} ({i})", file=NDJSON_NAME, row=i + 1
                )

    def row(self, i: int, cells: list[str], line: bytes) -> None:
        try:
            rec = csv_record(cells, self.columns)
            rb = record_bytes(rec)
        except (ValueError, UnicodeEncodeError) as exc:  # surrogates: bytes that are not UTF-8
            self.report.add("malformed row", str(exc), file=CSV_NAME, row=i)
            self.ndjson(i, line, None, b"")
            return
        except RecursionError:  # a safety net below MAX_DEPTH (a deep value with floats)
            self.report.add("malformed row", _TOO_DEEP, file=CSV_NAME, row=i)
            self.ndjson(i, line, None, b"")
            return
        try:
            ok = self.chain(i, rec, rb)
        except RecursionError:  # re-hashing at nearby seqs, on the same safety net
            st = self.chains[rec["category"]]
            ok = self._fail(st, "malformed row", _TOO_DEEP, i, rec)
        self.ndjson(i, line, rec if ok else None, rb)

    def _fail(self, st: ChainSummary, kind: str, msg: str, i: int, rec: dict[str, Any]) -> bool:
        st.failed = True
        self.report.add(kind, msg, file=CSV_NAME, row=i, category=rec["category"], seq=rec["seq"])
        return False

    def chain(self, i: int, rec: dict[str, Any], rb: bytes) -> bool:
        """Order, entry_hash and link of one row; the first problem fails its category."""
        cat, seq = rec["category"], rec["seq"]
        st = self.chains.get(cat)
        if st is None:
            st = self.chains[cat] = ChainSummary(watch=self.watch.get(cat, set()))
        elif cat != self.last_cat and not st.failed:
            return self._fail(st, "rows reordered", f"resumes after {self.last_cat}", i, rec)
        self.last_cat = cat
        if st.failed:
            return False
        prev, entry = bytes.fromhex(rec["prev_hash"]), bytes.fromhex(rec["entry_hash"])
        last = st.runs[-1][1] if st.runs else None
        if last is not None and seq <= last:
            return self._fail(st, "rows reordered", f"comes after seq {last}", i, rec)
        if hashlib.sha256(prev + rb).digest() != entry:
            moved = _written_at(rec, prev, entry)
            if moved is not None:
                return self._fail(st, "rows reordered", f"was written at seq {moved}", i, rec)
            why = "entry_hash does not match the row's values: a value was altered"
            return self._fail(st, "content changed", why, i, rec)
        linked = ZERO_HASH if seq == 1 else st.link if last == seq - 1 else prev
        if prev != linked:
            why = f"prev_hash is not the entry_hash of seq {seq - 1}: a row before was replaced"
            return self._fail(st, "link broken", why, i, rec)
        st.accept(seq, entry, i)
        return True

    def ndjson(self, i: int, line: bytes, rec: dict[str, Any] | None, rb: bytes) -> None:
        """Line ``i`` must hash to its own entry_hash and be the same entry as CSV row ``i``."""
        if self.nd_failed:
            return
        m = NDJSON_TAIL.search(line.rstrip(b"\n"))
        record = line[: m.start()] + b"}" if m else b""
        if not line:
            self.nd_failed = True
            self.report.add("files differ", f"ends before {CSV_NAME}", file=NDJSON_NAME, row=i)
        elif m is None or hashlib.sha256(bytes.fromhex(m[1].decode()) + record).digest() != (
            bytes.fromhex(m[2].decode())
        ):
            self.nd_failed = True
            why = "the line's entry_hash does not match its record"
            seq = record_seq(record)
            self.report.add("content changed", why, file=NDJSON_NAME, row=i, seq=seq)
        elif rec is not None and not self.cross_failed and record != rb:
            self.cross_failed = True
            why = f"not the entry in {CSV_NAME} row {i}"
            seq = record_seq(record)
            self.report.add("files differ", why, file=NDJSON_NAME, row=i, seq=seq)


# --- after the pass: ranges and checkpoints ----------------------------------------------------


def _seqs(runs: list[list[int]]) -> Iterator[int]:
    for r in runs:
        yield from range(r[0], r[1] + 1)


def _first_difference(seen: list[list[int]], listed: list[list[int]]) -> tuple[str, int] | None:
    """("inserted", seq) or ("deleted", seq): the lowest seq in one list of runs only."""
    a, b = _seqs(seen), _seqs(listed)
    x, y = next(a, None), next(b, None)
    while x is not None or y is not None:
        if x == y:
            x, y = next(a, None), next(b, None)
        elif y is None or (x is not None and x < y):
            return "inserted", x  # type: ignore[return-value]
        else:
            return "deleted", y
    return None


def _compare_runs(cat: str, st: ChainSummary, listed: Any, report: BundleReport) -> None:
    """The rows present against the manifest's seq ranges: deleted, inserted, truncated."""
    seen = [r[:2] for r in st.runs]
    diff = None if seen == listed else _first_difference(seen, listed)
    if diff is None:
        return
    kind, seq = diff
    where = {"file": CSV_NAME, "category": cat, "seq": seq}
    if kind == "inserted":
        report.add(
            "row inserted", "not in the manifest's exported ranges", row=st.row_of(seq), **where
        )
        return
    after = next((r for r in st.runs if r[0] > seq), None)
    if after is None:
        final = st.runs[-1][2] + st.runs[-1][1] - st.runs[-1][0] if st.runs else None
        why = f"seq {seq}..{listed[-1][1]} listed in the manifest are missing after this row"
        report.add("rows truncated", why, row=final, **where)
        return
    end = min(next(r[1] for r in listed if r[0] <= seq <= r[1]), after[0] - 1)
    span = f"seq {seq}" if end == seq else f"seq {seq}..{end}"
    report.add(
        "row deleted",
        f"{span} listed in the manifest is absent (it belongs before row {after[2]})",
        row=after[2],
        **where,
    )


def _checkpoint(item: Any) -> Checkpoint:
    return Checkpoint.from_json(item)


def _check_checkpoints(
    manifest: dict[str, Any], keys: Mapping[str, Ed25519PublicKey], report: BundleReport
) -> None:
    """Signatures; entry_hash at each checkpointed seq in the bundle; rows they vouch for."""
    vouched: dict[str, list[int]] = {}
    for item in manifest["checkpoints"]:
        try:
            cp = _checkpoint(item)
        except (KeyError, TypeError, ValueError) as exc:
            report.add("forged manifest", f"unreadable checkpoint ({exc})", file=MANIFEST)
            continue
        where = {"category": cp.category, "seq": cp.seq}
        st = report.chains.get(cp.category)
        if not signature_ok(cp, keys):
            why = "unknown key " + cp.key_id if cp.key_id not in keys else "does not verify"
            report.add("bad signature", f"checkpoint signature: {why}", file=MANIFEST, **where)
        elif st is not None and cp.seq in st.hashes:
            if st.hashes[cp.seq] != cp.entry_hash:
                why = "entry_hash differs from the signed checkpoint"
                report.add(
                    "checkpoint mismatch", why, file=CSV_NAME, row=st.row_of(cp.seq), **where
                )
            else:
                st.checkpoints += 1
                vouched.setdefault(cp.category, []).append(cp.seq)
    for cat, seqs in vouched.items():
        st = report.chains[cat]
        for first, last, _ in st.runs:
            inside = [s for s in seqs if first <= s <= last]
            st.covered += max(inside) - first + 1 if inside else 0


def _explain_file_change(report: BundleReport) -> None:
    """A changed file with no row to blame: say that every value still verifies."""
    blamed = {p.file for p in report.problems if p.kind != "file changed"}
    for n, p in enumerate(report.problems):
        if p.kind == "file changed" and p.file not in blamed:
            why = (
                f"{p.message}; yet every row's values still verify, so the change is in "
                "quoting, line endings or encoding, not in a value"
            )
            report.problems[n] = BundleProblem(p.kind, why, p.file)


def verify_bundle(
    path: str | Path | IO[bytes],
    public_keys: Mapping[str, Ed25519PublicKey] | None = None,
    tsa_anchors: Sequence[x509.Certificate] | None = None,
) -> BundleReport:
    """Check an evidence bundle using nothing but its own bytes (and pinned keys, if given).

    Checks the file hashes against the manifest, the manifest's signature, every row's
    entry_hash, the links inside contiguous runs, row order, the rows against the manifest's
    seq ranges (deleted, inserted, truncated), events.ndjson against events.csv, and the
    checkpoints' signatures and hashes. ``public_keys`` (key_id -> key) pins the trusted
    keys; without it the keys in the manifest are used, which proves integrity only against
    someone who cannot replace the keys as well.
    """
    report = BundleReport(key_pinned=public_keys is not None)
    try:
        zf = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        report.add("not a bundle", f"cannot be opened as a ZIP file ({exc})")
        return report
    with zf:
        body = _read_manifest(zf, report)
        if body is None or report.manifest is None:
            return report
        manifest = report.manifest
        keys = dict(public_keys) if public_keys is not None else _manifest_keys(manifest, report)
        _check_signature(zf, body, keys, report)
        if _check_files(zf, manifest, report):
            _RowCheck(manifest, report).run(zf)
            chains = manifest["chains"] if isinstance(manifest["chains"], dict) else {}
            for cat in sorted(set(chains) | set(report.chains)):
                st = report.chains.setdefault(cat, ChainSummary())
                if not st.failed:
                    _compare_runs(cat, st, chains.get(cat, {}).get("runs", []), report)
            _check_checkpoints(manifest, keys, report)
            report.proven = check_proofs(zf, manifest, keys, report, NDJSON_NAME)
            report.stamps = check_timestamps(manifest, tsa_anchors, report)
            _explain_file_change(report)
    return report
