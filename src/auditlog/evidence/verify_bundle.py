#!/usr/bin/env python3
"""verify_bundle.py: check an auditlog evidence bundle with the Python standard library only.

Usage::

    python3 verify_bundle.py BUNDLE.zip --public-key KEY.pem [--public-key ...]
                             [--witness-key KEY ...] [--quorum K] [--pure]

BUNDLE may be the ZIP or the directory it was unpacked into; run from inside that directory,
BUNDLE may be left out. Exit status: 0 when everything checked holds, 1 on a finding, 2 on a
usage error. One file, no dependencies: Ed25519 is written from RFC 8032 section 5.1.7 and JCS
from RFC 8785 here; the ``cryptography`` package, when importable, only makes signature checks
faster (``--pure`` forces the code in this file). The rules are docs/evidence.md section 5 and
docs/integrity.md; the Merkle functions (RFC 9162) are here for bundles that carry proofs.

Sections: JCS; Ed25519 and keys; Merkle trees; reading a bundle; the checks; the report.
A copy of this script inside a bundle proves nothing about itself: keep a trusted copy.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import csv
import hashlib
import io
import itertools
import json
import re
import sys
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

try:  # optional: only a faster path to the same verdicts
    from cryptography.exceptions import InvalidSignature as _InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ed25519 as _ed25519

    _fast: Any = _ed25519
except Exception:  # ImportError, or a broken binding: the standard library path
    _fast = None

CSV_NAME, NDJSON_NAME = "events.csv", "events.ndjson"
MANIFEST, SIGNATURE, SCRIPT = "manifest.json", "manifest.sig.json", "verify_bundle.py"
PROOFS = "proofs.ndjson"  # each row's RFC 9162 inclusion proof (docs/evidence.md)
PROOFS_FORMAT = "auditlog-proofs/2"  # its first line, when the paths share one node table
CSV_KINDS = {
    "category": "text", "seq": "int", "event_id": "text", "occurred_at": "text",
    "occurred_offset": "int", "recorded_at": "text", "clock_skew": "bool", "action": "text",
    "outcome": "text", "actor": "json", "target": "json", "source_ip": "nullable",
    "source": "source", "user_agent": "nullable", "correlation_id": "nullable",
    "before": "json", "after": "json", "details": "json", "prev_hash": "hex", "entry_hash": "hex",
}  # fmt: skip
CSV_COLUMNS = list(CSV_KINDS)
# Bundles written before events had a source have no such column; they verify all the same.
LEGACY_CSV_COLUMNS = [name for name in CSV_COLUMNS if name != "source"]
HASHED_FIELDS = sorted(set(CSV_KINDS) - {"prev_hash", "entry_hash"})
OPTIONAL_FIELDS = ("source",)  # a member of the record only when not null (integrity.md 2)
SOURCE_KEYS = {"type", "id", "name"}
NDJSON_TAIL = re.compile(rb',"prev_hash":"([0-9a-f]{64})","entry_hash":"([0-9a-f]{64})"\}$')
ZERO_HASH = bytes(32)
MAX_SAFE_INT = 2**53 - 1
MAX_DEPTH = 600  # deeper than any event the log accepts; docs/evidence.md section 5, step 4
MAX_PROBLEMS = 50
COMPLETENESS = ("row deleted", "row inserted", "rows truncated")

# --- JCS, RFC 8785 ------------------------------------------------------------------------------


def es_number(x: float) -> str:
    """ECMAScript Number::toString of a double (RFC 8785 section 3.2.2.3).

    ``repr`` gives the shortest digits that round-trip, which is what ECMAScript asks for;
    only the layout (plain, fraction, exponent) follows its own rules.
    """
    if x != x or x in (float("inf"), float("-inf")):
        raise ValueError("NaN and infinities are not JSON numbers")
    if x == 0:
        return "0"
    if x < 0:
        return "-" + es_number(-x)
    mantissa, _, exp = repr(x).partition("e")
    whole, _, frac = mantissa.partition(".")
    digits, n = whole + frac, len(whole) + int(exp or 0)
    stripped = digits.lstrip("0")
    n -= len(digits) - len(stripped)
    digits = stripped.rstrip("0")
    k = len(digits)
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * -n + digits
    e = n - 1
    sign = "+" if e >= 0 else "-"
    return digits[0] + ("." + digits[1:] if k > 1 else "") + "e" + sign + str(abs(e))


# JSON's string escaping is JCS's: \" \\ \b \f \n \r \t, other controls as lower-case \u00xx.
_json_string: Callable[[str], str] = (
    getattr(json.encoder, "c_encode_basestring", None) or json.encoder.py_encode_basestring
)


def _utf16(key: Any) -> bytes:
    if not isinstance(key, str):
        raise TypeError("object keys must be strings")
    return key.encode("utf-16-be", "surrogatepass")


def _emit(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True or value is False:
        out.append("true" if value else "false")
    elif isinstance(value, str):
        out.append(_json_string(value))
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float):
        out.append(es_number(value))
    elif isinstance(value, dict):
        out.append("{")
        for i, key in enumerate(sorted(value, key=_utf16)):  # UTF-16 code units (3.2.3)
            out.append(("," if i else "") + _json_string(key) + ":")
            _emit(value[key], out)
        out.append("}")
    elif isinstance(value, list):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _emit(item, out)
        out.append("]")
    else:
        raise TypeError(f"{type(value).__name__} is not a JSON type")


def jcs(value: Any) -> bytes:
    """The RFC 8785 canonical form of a JSON value (str, int, float, bool, None, list, dict)."""
    out: list[str] = []
    _emit(value, out)
    return "".join(out).encode("utf-8")


_c_make = getattr(json.encoder, "c_make_encoder", None)


def _not_json(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not a JSON type")


# Sorted keys, no whitespace, no ASCII escaping: JCS when no float and no key >= U+E000.
_plain = (
    _c_make(None, _not_json, _json_string, None, ":", ",", True, False, False) if _c_make else None
)


def jcs_plain(value: Any) -> bytes:
    """JCS of a value holding no float and no object key with a character >= U+E000.

    For such values the standard library's encoder with sorted keys already gives JCS:
    integers and strings print alike, and code point order equals UTF-16 order below U+E000.
    Much faster than :func:`jcs` (it runs in C); the caller screens the value.
    """
    if _plain is None:
        return jcs(value)
    return "".join(_plain(value, 0)).encode("utf-8")


# --- Ed25519, RFC 8032 section 5.1 --------------------------------------------------------------

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, _P - 2, _P) % _P
_D2 = 2 * _D % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)
Point = tuple[int, int, int, int]  # extended coordinates (X, Y, Z, T): x = X/Z, y = Y/Z
_IDENTITY: Point = (0, 1, 1, 0)


def _add(p: Point, q: Point) -> Point:
    a = (p[1] - p[0]) * (q[1] - q[0]) % _P
    b = (p[1] + p[0]) * (q[1] + q[0]) % _P
    c = p[3] * _D2 * q[3] % _P
    d = 2 * p[2] * q[2] % _P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _double(p: Point) -> Point:
    a, b = p[0] * p[0] % _P, p[1] * p[1] % _P
    c = 2 * p[2] * p[2] % _P
    h = a + b
    e = h - (p[0] + p[1]) ** 2 % _P
    g = a - b
    f = c + g
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def decode_point(data: bytes) -> Point | None:
    """RFC 8032 5.1.3: the point a 32-byte encoding names, or None (non-canonical y refused)."""
    if len(data) != 32:
        return None
    n = int.from_bytes(data, "little")
    y, sign = n & ((1 << 255) - 1), n >> 255
    if y >= _P:
        return None
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P) % _P
    if x2 == 0:
        return None if sign else (0, y, 1, 0)
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P:
        x = x * _SQRT_M1 % _P
        if (x * x - x2) % _P:
            return None
    if x & 1 != sign:
        x = _P - x
    return (x, y, 1, x * y % _P)


def _encode_point(p: Point) -> bytes:
    zi = pow(p[2], _P - 2, _P)
    x, y = p[0] * zi % _P, p[1] * zi % _P
    return (y | (x & 1) << 255).to_bytes(32, "little")


def _base_point() -> Point:
    b = decode_point((4 * pow(5, _P - 2, _P) % _P).to_bytes(32, "little"))  # y = 4/5, x even
    if b is None:
        raise AssertionError("the Ed25519 base point does not decode")
    return b


_B = _base_point()


def _combine(s: int, p: Point, k: int, q: Point) -> Point:
    """[s]p + [k]q, by one pass of doublings (Shamir's trick)."""
    pq = _add(p, q)
    r = _IDENTITY
    for i in range(max(s.bit_length(), k.bit_length()) - 1, -1, -1):
        r = _double(r)
        bits = (s >> i & 1) | (k >> i & 1) << 1
        if bits:
            r = _add(r, (p, q, pq)[bits - 1])
    return r


def ed25519_verify_pure(public: bytes, signature: bytes, message: bytes) -> bool:
    """RFC 8032 5.1.7, in this file: does ``signature`` sign ``message`` under ``public``?

    Checks the cofactorless equation [S]B = R + [k]A (which 5.1.7 allows) by encoding
    [S]B - [k]A and comparing it with R, as OpenSSL does, so both paths give one verdict.
    """
    a = decode_point(public)
    if a is None or len(signature) != 64:
        return False
    s = int.from_bytes(signature[32:], "little")
    if s >= _L:
        return False
    k = int.from_bytes(hashlib.sha512(signature[:32] + public + message).digest(), "little") % _L
    minus_a = ((_P - a[0]) % _P, a[1], a[2], (_P - a[3]) % _P)
    return _encode_point(_combine(s, _B, k, minus_a)) == signature[:32]


def ed25519_verify(public: bytes, signature: bytes, message: bytes, pure: bool = False) -> bool:
    """Ed25519 verification: ``cryptography`` when importable (and not ``pure``), else ours.

    The key is decoded strictly here first (RFC 8032 5.1.3), so both paths refuse the same keys.
    """
    if pure or _fast is None or decode_point(public) is None:
        return ed25519_verify_pure(public, signature, message)
    try:
        _fast.Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
    except _InvalidSignature:
        return False
    return True


_SPKI_ED25519 = bytes.fromhex("302a300506032b6570032100")  # RFC 8410 SubjectPublicKeyInfo
_PEM = re.compile(r"-----BEGIN PUBLIC KEY-----([A-Za-z0-9+/=\s]*)-----END PUBLIC KEY-----")


def pem_public_key(text: str) -> bytes:
    """The raw 32-byte Ed25519 key of a PEM public key; ValueError saying why not."""
    m = _PEM.search(text)
    if m is None:
        raise ValueError("holds no PEM public key (-----BEGIN PUBLIC KEY-----)")
    try:
        der = base64.b64decode("".join(m[1].split()), validate=True)
    except binascii.Error as exc:
        raise ValueError(f"its PEM body is not base64 ({exc})") from None
    if len(der) != 44 or not der.startswith(_SPKI_ED25519):
        raise ValueError("is not an Ed25519 public key (RFC 8410); give the log's key")
    if decode_point(der[12:]) is None:
        raise ValueError("is not a valid Ed25519 point")
    return der[12:]


def key_id_of(public: bytes) -> str:
    """The log's key id: the first 16 hex digits of SHA-256 of the raw key."""
    return hashlib.sha256(public).hexdigest()[:16]


def vkey_public_key(text: str) -> tuple[str, bytes]:
    """(name, raw key) of a C2SP signed-note verifier key ``name+hex8+base64(0x01 || key)``."""
    name, _, rest = text.strip().partition("+")
    hash_hex, _, b64 = rest.partition("+")
    try:
        blob = base64.b64decode(b64, validate=True)
    except binascii.Error:
        blob = b""
    if not name or len(hash_hex) != 8 or len(blob) != 33 or blob[0] not in (1, 4):
        raise ValueError("is neither a PEM Ed25519 key nor a verifier key name+hex8+base64")
    digest = hashlib.sha256(name.encode() + b"\n" + blob).digest()[:4]
    if digest.hex() != hash_hex.lower() or decode_point(blob[1:]) is None:
        raise ValueError("verifier key: its key hash or its key is wrong")
    return name, blob[1:]


# --- Merkle trees, RFC 9162 section 2.1 (as in auditlog.proofs.merkle) --------------------------

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(entry: bytes) -> bytes:
    """The leaf hash of one entry (its 32-byte entry_hash)."""
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The hash of an interior node."""
    return hashlib.sha256(b"\x01" + left + right).digest()


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
    """RFC 9162 2.1.4.2: does the tree of ``new`` leaves extend the tree of ``old`` leaves?"""
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


def path_nodes(indexes: Iterable[int], size: int) -> list[set[int]]:
    """Per level, the indices of the nodes on the leaves' audit paths (docs/evidence.md 4)."""
    out: list[set[int]] = []
    held, level = set(indexes), 0
    while (size - 1) >> level:
        last = (size - 1) >> level
        out.append({i ^ 1 for i in held if i ^ 1 <= last})
        held = {i >> 1 for i in held}
        level += 1
    return out


class TableCheck:
    """Many leaves' inclusion in one tree, each audit path read from one node table; a node a
    checked path carried to the root is remembered, so each distinct node is hashed once."""

    def __init__(self, size: int, root: bytes, table: Mapping[tuple[int, int], bytes]) -> None:
        self.size, self.root, self.table = size, root, table
        self.known: dict[tuple[int, int], bytes] = {}

    def check(self, index: int, leaf: bytes) -> str:
        """``""`` when ``leaf`` at ``index`` leads to the root; else why not."""
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


# --- reading a bundle: a ZIP or its unpacked directory ------------------------------------------


class Source:
    """The members of a bundle, from a ZIP file or from the directory it was unpacked into."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.zip = None if path.is_dir() else zipfile.ZipFile(path)

    def names(self) -> list[str]:
        if self.zip is not None:
            return self.zip.namelist()
        return sorted(p.name for p in self.path.iterdir() if p.name != "__pycache__")

    def open(self, name: str) -> IO[bytes]:
        """The member ``name``; KeyError when the bundle has none."""
        if self.zip is not None:
            return self.zip.open(name)
        member = self.path / name
        if not member.is_file():
            raise KeyError(name)
        return member.open("rb")

    def read(self, name: str) -> bytes:
        with self.open(name) as fh:
            return fh.read()

    def close(self) -> None:
        if self.zip is not None:
            self.zip.close()


# --- the report ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One finding: its kind, why, and where (file, data row, category, seq)."""

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
        seq = None if self.seq is None else f"seq {self.seq}"
        named = " ".join(x for x in (self.category, seq) if x)
        return f"{where}{f' ({named})' if named else ''}: {self.kind}: {self.message}"


@dataclass
class Chain:
    """One category's rows in the bundle, and what vouches for them."""

    rows: int = 0
    runs: list[list[int]] = field(default_factory=list)  # [first_seq, last_seq, first_row]
    checkpoints: int = 0
    covered: int = 0
    failed: bool = False
    watch: set[int] = field(default_factory=set)
    hashes: dict[int, bytes] = field(default_factory=dict)
    link: bytes = b""

    def accept(self, seq: int, entry: bytes, row: int) -> None:
        if self.runs and self.runs[-1][1] + 1 == seq:
            self.runs[-1][1] = seq
        else:
            self.runs.append([seq, seq, row])
        self.rows, self.link = self.rows + 1, entry
        if seq in self.watch:
            self.hashes[seq] = entry

    def row_of(self, seq: int) -> int | None:
        run = next((r for r in self.runs if r[0] <= seq <= r[1]), None)
        return None if run is None else run[2] + seq - run[0]


@dataclass
class Report:
    """Everything one run found; ``ok`` when no problem was found."""

    problems: list[Problem] = field(default_factory=list)
    chains: dict[str, Chain] = field(default_factory=dict)
    rows: int = 0
    manifest: dict[str, Any] | None = None
    signatures: int = 0
    trees: dict[tuple[str, int], bytes] = field(default_factory=dict)  # signed roots
    notes: dict[str, tuple[int, bytes, list[Any]]] = field(default_factory=dict)  # newest v3:
    # category -> (seq, signed note text, its cosignatures as the manifest lists them)
    witnessed: dict[str, int] = field(default_factory=dict)  # category -> valid cosigners
    proven: int = 0  # rows whose inclusion proof checked
    entries: dict[tuple[str, int], bytes] = field(default_factory=dict)  # rows that verified

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, kind: str, message: str, **where: Any) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(Problem(kind, message, **where))


@dataclass(frozen=True)
class Options:
    """What the command line asked for."""

    keys: dict[str, bytes] | None  # pinned: key id -> raw key; None = the bundle's own
    witnesses: dict[str, bytes] = field(default_factory=dict)
    quorum: int = 0
    pure: bool = False


# --- cells and records --------------------------------------------------------------------------

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def _too_deep(text: str) -> bool:
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return False
    depth = 0
    for ch in _NOT_BRACKET.sub("", _STRINGS.sub("", text)):
        depth = depth + 1 if ch in "[{" else depth - 1
        if depth > MAX_DEPTH:
            return True
    return False


def _json_number(text: str) -> int | float:
    # JCS numbers are doubles: an integer beyond +-(2**53-1) can only be a float's value.
    value = int(text)
    return value if -MAX_SAFE_INT <= value <= MAX_SAFE_INT else float(text)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


class _Screen:
    """Decodes JSON cells, noting whether the fast JCS path still applies to the row.

    One decoder, made once: building one per cell costs more than decoding a small cell.
    Its C scanner is called directly; the decoder itself handles anything else (surrounding
    whitespace, trailing data) and raises the errors.
    """

    def __init__(self) -> None:
        self.plain = True
        self._decoder = json.JSONDecoder(
            parse_float=self._float, parse_int=self._int, parse_constant=_no_constant
        )
        self._scan: Callable[[str, int], tuple[Any, int]] = self._decoder.scan_once  # type: ignore[attr-defined]

    def _float(self, text: str) -> float:
        self.plain = False
        return float(text)

    def _int(self, text: str) -> int | float:
        value = _json_number(text)
        self.plain = self.plain and isinstance(value, int)
        return value

    def json(self, cell: str) -> Any:
        if _too_deep(cell):
            raise ValueError(f"nests deeper than {MAX_DEPTH} levels, more than this verifier reads")
        if "\\u" in cell or not (cell.isascii() or max(cell) < "\ue000"):
            self.plain = False
        try:
            value, end = self._scan(cell, 0)
        except StopIteration:
            end = -1
        return value if end == len(cell) else self._decoder.decode(cell)


def _text(cell: str, screen: _Screen) -> str:
    if not cell:
        raise ValueError("is empty")
    return cell[1:] if cell[0] == "'" else cell  # the formula escape, undone


def _nullable(cell: str, screen: _Screen) -> str | None:
    return _text(cell, screen) if cell else None


def _int_cell(cell: str, screen: _Screen) -> int:
    return int(_text(cell, screen))


def _bool_cell(cell: str, screen: _Screen) -> bool:
    text = _text(cell, screen)
    if text not in ("true", "false"):
        raise ValueError(f"{text[:20]!r} is not true or false")
    return text == "true"


def _hex_cell(cell: str, screen: _Screen) -> str:
    text = _text(cell, screen)
    if len(text) != 64 or text.strip("0123456789abcdef"):
        raise ValueError("is not 64 lower-case hex digits")
    return text


def _json_cell(cell: str, screen: _Screen) -> Any:
    return screen.json(_text(cell, screen))


def _source_cell(cell: str, screen: _Screen) -> Any:
    """``null`` (no source) or the object of three strings type, id, name."""
    value = _json_cell(cell, screen)
    if value is not None and not (
        isinstance(value, dict)
        and set(value) == SOURCE_KEYS
        and all(isinstance(v, str) for v in value.values())
    ):
        raise ValueError("is neither null nor an object of the strings type, id and name")
    return value


_DECODERS: dict[str, Callable[[str, _Screen], Any]] = {
    "text": _text, "nullable": _nullable, "int": _int_cell, "bool": _bool_cell,
    "hex": _hex_cell, "json": _json_cell, "source": _source_cell,
}  # fmt: skip
Columns = tuple[tuple[str, Callable[[str, _Screen], Any]], ...]


def decoders(header: Sequence[str]) -> Columns:
    """How to read each cell of a file with ``header`` (its column names)."""
    return tuple((name, _DECODERS[CSV_KINDS[name]]) for name in header)


_COLUMNS = decoders(CSV_COLUMNS)


def csv_record(
    cells: list[str], screen: _Screen | None = None, columns: Columns = _COLUMNS
) -> tuple[dict[str, Any], bool]:
    """One CSV data row in record form (docs/evidence.md section 2), and whether the fast JCS
    path applies to it; ``columns`` from :func:`decoders` of the file's header. ValueError
    naming the column when a cell cannot be read."""
    if len(cells) != len(columns):
        raise ValueError(f"has {len(cells)} cells, expected {len(columns)}")
    screen = screen or _Screen()
    screen.plain = True
    out, name = {}, ""
    try:
        for (name, decode), cell in zip(columns, cells, strict=True):
            out[name] = decode(cell, screen)
    except ValueError as exc:
        raise ValueError(f"column {name}: {exc}") from None
    return out, screen.plain


def record_bytes(rec: Mapping[str, Any], plain: bool = False) -> bytes:
    """JCS of the hashed members of a record (integrity.md section 2): the 17, and source
    when it is not null (absent from a legacy row)."""
    hashed = {k: rec[k] for k in HASHED_FIELDS if k not in OPTIONAL_FIELDS}
    hashed.update((k, rec[k]) for k in OPTIONAL_FIELDS if rec.get(k) is not None)
    return jcs_plain(hashed) if plain else jcs(hashed)


def record_seq(record: bytes) -> int | None:
    """The top-level seq of canonical record bytes (in JCS the last ``,"seq":`` is it)."""
    at = record.rfind(b',"seq":')
    end = record.find(b",", at + 7)
    try:
        return int(record[at + 7 : end]) if at >= 0 else None
    except ValueError:
        return None


# --- manifest, signature, members ---------------------------------------------------------------


def manifest_message(digest: str, key_id: str) -> bytes:
    """The bytes a manifest signature covers (docs/evidence.md section 4)."""
    return jcs(
        {"key_id": key_id, "manifest_sha256": digest, "purpose": "auditlog evidence manifest"}
    )


def _load_json(data: bytes) -> Any:
    text = data.decode("utf-8")
    if _too_deep(text):
        raise ValueError(f"nests deeper than {MAX_DEPTH} levels")
    return json.loads(text, parse_int=_json_number)


def read_manifest(src: Source, report: Report) -> bytes | None:
    try:
        body = src.read(MANIFEST)
        manifest = _load_json(body)
    except (KeyError, ValueError, zipfile.BadZipFile) as exc:
        report.add("forged manifest", f"missing or not JSON ({exc})", file=MANIFEST)
        return None
    need = ("files", "chains", "checkpoints", "public_keys")
    missing = [k for k in need if not isinstance(manifest, dict) or k not in manifest]
    if missing:
        report.add("forged manifest", f"lacks {', '.join(missing)}", file=MANIFEST)
        return None
    report.manifest = manifest
    return body


def manifest_keys(manifest: dict[str, Any], report: Report) -> dict[str, bytes]:
    """The bundle's own keys, each only if its key id is the hash of the key."""
    keys: dict[str, bytes] = {}
    if not isinstance(manifest["public_keys"], dict):
        report.add("forged manifest", "public_keys is not an object", file=MANIFEST)
        return keys
    for key_id, pem in manifest["public_keys"].items():
        try:
            raw = pem_public_key(str(pem))
        except ValueError as exc:
            report.add("forged manifest", f"public key {key_id}: {exc}", file=MANIFEST)
            continue
        if key_id_of(raw) != key_id:
            report.add("forged manifest", f"key {key_id} has another key id", file=MANIFEST)
            continue
        keys[key_id] = raw
    return keys


def check_signature(src: Source, body: bytes, keys: Mapping[str, bytes], pinned: bool,
                    pure: bool, report: Report) -> None:  # fmt: skip
    try:
        seal = _load_json(src.read(SIGNATURE))
        digest, key_id, raw = (
            seal["manifest_sha256"],
            seal["key_id"],
            bytes.fromhex(seal["signature"]),
        )
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        report.add("forged manifest", f"signature missing or unreadable ({exc})", file=SIGNATURE)
        return
    key = keys.get(key_id) if isinstance(key_id, str) else None
    if hashlib.sha256(body).hexdigest() != digest:
        report.add("forged manifest", "changed after it was signed", file=MANIFEST)
    elif key is None:
        who = "a key that is not pinned" if pinned else "a key not in the manifest"
        report.add("forged manifest", f"signed with {who} ({key_id})", file=SIGNATURE)
    elif not ed25519_verify(key, raw, manifest_message(digest, str(key_id)), pure):
        report.add("forged manifest", "the manifest signature does not verify", file=SIGNATURE)
    else:
        report.signatures += 1


def check_members(src: Source, manifest: dict[str, Any], report: Report) -> bool:
    """Member hashes against the manifest; False when a data file cannot be read at all."""
    files = manifest["files"] if isinstance(manifest["files"], dict) else {}
    optional = {SCRIPT, PROOFS} & set(files)
    allowed = {CSV_NAME, NDJSON_NAME, MANIFEST, SIGNATURE} | optional
    for name in sorted(set(src.names()) - allowed):
        report.add("unexpected file", "not part of an evidence bundle", file=name)
    readable = True
    for name in (CSV_NAME, NDJSON_NAME, *sorted(optional)):
        sha = hashlib.sha256()
        try:
            with src.open(name) as fh:
                while chunk := fh.read(1 << 20):
                    sha.update(chunk)
        except KeyError:
            report.add("missing file", "the bundle does not contain it", file=name)
            readable = readable and name == SCRIPT
            continue
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            report.add("file corrupt", f"cannot be read from the bundle ({exc})", file=name)
            readable = readable and name == SCRIPT
            continue
        entry = files.get(name)
        if not isinstance(entry, dict) or sha.hexdigest() != entry.get("sha256"):
            report.add("file changed", "its SHA-256 differs from the manifest", file=name)
    return readable


# --- the rows -----------------------------------------------------------------------------------


def _written_at(rec: dict[str, Any], prev: bytes, entry: bytes) -> int | None:
    """The seq this row's hash was computed with, when that is a nearby other seq."""
    for delta in range(1, 65):
        for cand in (rec["seq"] - delta, rec["seq"] + delta):
            if (
                cand >= 1
                and hashlib.sha256(prev + record_bytes({**rec, "seq": cand})).digest() == entry
            ):
                return int(cand)
    return None


class RowCheck:
    """One pass over events.csv and events.ndjson side by side (evidence.md steps 4 and 5)."""

    def __init__(self, manifest: dict[str, Any], report: Report) -> None:
        self.report, self.chains = report, report.chains
        self.last_cat: str | None = None
        self.nd_failed = self.cross_failed = False
        self.screen = _Screen()
        self.columns = _COLUMNS
        self.watch: dict[str, set[int]] = {}
        for cp in manifest["checkpoints"] if isinstance(manifest["checkpoints"], list) else []:
            if isinstance(cp, dict) and isinstance(cp.get("seq"), int):
                self.watch.setdefault(str(cp.get("category")), set()).add(cp["seq"])

    def run(self, src: Source) -> None:
        raw = src.open(CSV_NAME)
        text = io.TextIOWrapper(raw, encoding="utf-8", errors="surrogateescape", newline="")
        with text, src.open(NDJSON_NAME) as nd:
            reader = csv.reader(text, strict=True)
            header = next(reader, None)
            if header not in (CSV_COLUMNS, LEGACY_CSV_COLUMNS):
                self.report.add("malformed file", f"the header is not {','.join(CSV_COLUMNS)}",
                                file=CSV_NAME)  # fmt: skip
                return
            self.columns = decoders(header)
            i = 0
            try:
                for i, cells in enumerate(reader, start=1):
                    self.row(i, cells, nd.readline())
            except csv.Error as exc:
                self.report.add("malformed row", f"not valid CSV ({exc})", file=CSV_NAME, row=i + 1)
                return
            self.report.rows = i
            if nd.readline() and not (self.nd_failed or self.cross_failed):
                self.report.add("files differ", f"more rows than {CSV_NAME} ({i})",
                                file=NDJSON_NAME, row=i + 1)  # fmt: skip

    def row(self, i: int, cells: list[str], line: bytes) -> None:
        try:
            rec, plain = csv_record(cells, self.screen, self.columns)
            rb = record_bytes(rec, plain)
        except (ValueError, TypeError, UnicodeEncodeError, RecursionError) as exc:
            why = "nests too deeply" if isinstance(exc, RecursionError) else str(exc)
            self.report.add("malformed row", why, file=CSV_NAME, row=i)
            self.ndjson(i, line, None, b"")
            return
        try:
            ok = self.chain(i, rec, rb)
        except RecursionError:
            ok = self._fail(
                self.chains[rec["category"]], "malformed row", "nests too deeply", i, rec
            )
        self.ndjson(i, line, rec if ok else None, rb)

    def _fail(self, st: Chain, kind: str, msg: str, i: int, rec: dict[str, Any]) -> bool:
        st.failed = True
        self.report.add(kind, msg, file=CSV_NAME, row=i, category=rec["category"], seq=rec["seq"])
        return False

    def chain(self, i: int, rec: dict[str, Any], rb: bytes) -> bool:
        """Order, entry_hash and link of one row; the first problem fails its category."""
        cat, seq = rec["category"], rec["seq"]
        st = self.chains.get(cat)
        if st is None:
            st = self.chains[cat] = Chain(watch=self.watch.get(cat, set()))
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
        self.report.entries[(cat, seq)] = entry
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
            self.report.add("content changed", "the line's entry_hash does not match its record",
                            file=NDJSON_NAME, row=i, seq=record_seq(record))  # fmt: skip
        elif rec is not None and not self.cross_failed and record != rb:
            self.cross_failed = True
            self.report.add("files differ", f"not the entry in {CSV_NAME} row {i}",
                            file=NDJSON_NAME, row=i, seq=record_seq(record))  # fmt: skip


# --- after the pass: ranges, checkpoints, their chain -------------------------------------------


def _seqs(runs: Sequence[Sequence[int]]) -> Iterator[int]:
    for r in runs:
        yield from range(r[0], r[1] + 1)


def _first_difference(seen: list[list[int]], listed: Any) -> tuple[str, int] | None:
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


def compare_runs(cat: str, st: Chain, listed: Any, report: Report) -> None:
    """The rows present against the manifest's seq ranges (evidence.md step 6)."""
    seen = [r[:2] for r in st.runs]
    diff = None if seen == listed else _first_difference(seen, listed)
    if diff is None:
        return
    kind, seq = diff
    where = {"file": CSV_NAME, "category": cat, "seq": seq}
    if kind == "inserted":
        report.add("row inserted", "not in the manifest's exported ranges", row=st.row_of(seq),
                   **where)  # fmt: skip
        return
    after = next((r for r in st.runs if r[0] > seq), None)
    if after is None:
        final = st.runs[-1][2] + st.runs[-1][1] - st.runs[-1][0] if st.runs else None
        why = f"seq {seq}..{listed[-1][1]} listed in the manifest are missing after this row"
        report.add("rows truncated", why, row=final, **where)
        return
    end = min(next(r[1] for r in listed if r[0] <= seq <= r[1]), after[0] - 1)
    span = f"seq {seq}" if end == seq else f"seq {seq}..{end}"
    report.add("row deleted", f"{span} listed in the manifest is absent (it belongs before "
               f"row {after[2]})", row=after[2], **where)  # fmt: skip


@dataclass(frozen=True)
class Checkpoint:
    """A signed chain head from the manifest (integrity.md section 3)."""

    category: str
    seq: int
    entry_hash: bytes
    signed_at: str
    key_id: str
    signature: bytes
    version: int
    prev_hash: bytes | None
    count: int | None
    origin: str | None = None  # version 3: a C2SP checkpoint note over the Merkle root
    root: bytes | None = None

    def message(self) -> bytes:
        if self.version == 3:  # docs/integrity.md section 9: the note text
            return (
                f"{self.origin}\n{self.seq}\n{base64.b64encode(self.root or b'').decode()}\n"
                f"head {self.entry_hash.hex()}\nprev {(self.prev_hash or b'').hex()}\n"
                f"count {self.count}\ntime {self.signed_at}\n"
            ).encode()
        body: dict[str, Any] = {"category": self.category, "seq": self.seq,
                                "entry_hash": self.entry_hash.hex(), "signed_at": self.signed_at,
                                "key_id": self.key_id}  # fmt: skip
        if self.version == 2:
            body.update(version=2, prev_hash=(self.prev_hash or b"").hex(), count=self.count)
        return jcs(body)

    def hash(self) -> bytes:
        return hashlib.sha256(self.message()).digest()


def _whole(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a whole number, not {value!r}")
    return value


def _hex(value: Any, name: str, size: int) -> bytes:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a hex string")
    raw = bytes.fromhex(value)
    if len(raw) != size:
        raise ValueError(f"{name} must be {size} bytes ({2 * size} hex digits)")
    return raw


def parse_checkpoint(item: Any) -> Checkpoint:
    """A manifest's checkpoint; KeyError, TypeError or ValueError naming a bad field."""
    version = int(item.get("version", 1))
    if version not in (1, 2, 3):
        raise ValueError(f"version {version} is not 1, 2 or 3")
    v2, v3 = version >= 2, version == 3
    origin = str(item["origin"]) if v3 else None
    if origin is not None and (
        not origin.endswith("/" + str(item["category"])) or any(c in origin for c in " \n")
    ):
        raise ValueError(f"origin {origin!r} is not <deployment>/<category>")
    cp = Checkpoint(
        str(item["category"]), _whole(item["seq"], "seq"),
        _hex(item["entry_hash"], "entry_hash", 32), str(item["signed_at"]), str(item["key_id"]),
        _hex(item["signature"], "signature", 64), version,
        _hex(item["prev_hash"], "prev_hash", 32) if v2 else None,
        _whole(item["count"], "count") if v2 else None,
        origin, _hex(item["root"], "root", 32) if v3 else None,
    )  # fmt: skip
    if v2 and "hash" in item and _hex(item["hash"], "hash", 32) != cp.hash():
        raise ValueError("hash is not SHA-256 of the checkpoint's message")
    return cp


def _chain_fault(prev: Checkpoint | None, cp: Checkpoint) -> tuple[str, str] | None:
    """What is wrong with ``cp`` following ``prev`` in one category's checkpoint chain."""
    if cp.version == 1:
        if prev is None or prev.version == 1:
            return None
        return "checkpoint chain broken", "a version-1 checkpoint follows a version-2 one"
    if cp.count == 1 and cp.prev_hash != ZERO_HASH:
        return "checkpoint chain broken", "count 1 must carry 32 zero bytes as prev_hash"
    if prev is None or prev.count is None or cp.count is None:
        return None
    if prev.seq == cp.seq or cp.count <= prev.count:
        why = f"count {cp.count} does not pass count {prev.count} at seq {prev.seq}"
        return "checkpoints reordered", why
    if cp.count == prev.count + 1 and cp.prev_hash != prev.hash():
        return "checkpoint chain broken", f"prev_hash is not the hash of count {prev.count}"
    return None


def check_checkpoint_chains(cps: list[Checkpoint], report: Report) -> None:
    """Signed checkpoints of a category, in seq order: counts rise, links hold where adjacent."""
    for cat in sorted({cp.category for cp in cps}):
        prev = None
        for cp in sorted((c for c in cps if c.category == cat), key=lambda c: c.seq):
            fault = _chain_fault(prev, cp)
            if fault is not None:
                report.add(*fault, file=MANIFEST, category=cat, seq=cp.seq)
                break
            prev = cp


def check_checkpoints(manifest: dict[str, Any], keys: Mapping[str, bytes], pure: bool,
                      report: Report) -> None:  # fmt: skip
    """Signatures; entry_hash at each checkpointed seq; rows vouched for; the chain."""
    vouched: dict[str, list[int]] = {}
    good: list[Checkpoint] = []
    items = manifest["checkpoints"] if isinstance(manifest["checkpoints"], list) else []
    for item in items:
        try:
            cp = parse_checkpoint(item)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            report.add("forged manifest", f"unreadable checkpoint ({exc})", file=MANIFEST)
            continue
        where = {"category": cp.category, "seq": cp.seq}
        st = report.chains.get(cp.category)
        key = keys.get(cp.key_id)
        if key is None or not ed25519_verify(key, cp.signature, cp.message(), pure):
            why = "unknown key " + cp.key_id if key is None else "does not verify"
            report.add("bad signature", f"checkpoint signature: {why}", file=MANIFEST, **where)
            continue
        report.signatures += 1
        good.append(cp)
        if cp.root is not None:
            report.trees[(cp.category, cp.seq)] = cp.root
            if cp.seq >= report.notes.get(cp.category, (0, b"", []))[0]:
                cosigs = item.get("cosignatures") if isinstance(item, dict) else None
                report.notes[cp.category] = (cp.seq, cp.message(), cosigs or [])
        if st is not None and cp.seq in st.hashes:
            if st.hashes[cp.seq] != cp.entry_hash:
                report.add("checkpoint mismatch", "entry_hash differs from the signed checkpoint",
                           file=CSV_NAME, row=st.row_of(cp.seq), **where)  # fmt: skip
            else:
                st.checkpoints += 1
                vouched.setdefault(cp.category, []).append(cp.seq)
    for cat, seqs in vouched.items():
        st = report.chains[cat]
        for first, last, _ in st.runs:
            inside = [s for s in seqs if first <= s <= last]
            st.covered += max(inside) - first + 1 if inside else 0
    check_checkpoint_chains(good, report)


def _explain_file_change(report: Report) -> None:
    """A changed file with no row to blame: say that every value still verifies."""
    blamed = {p.file for p in report.problems if p.kind != "file changed"}
    for n, p in enumerate(report.problems):
        if p.kind == "file changed" and p.file not in blamed and p.file != SCRIPT:
            why = (f"{p.message}; yet every row's values still verify, so the change is in "
                   "quoting, line endings or encoding, not in a value")  # fmt: skip
            report.problems[n] = Problem(p.kind, why, p.file)


def check_cosignatures(opts: Options, report: Report) -> None:
    """Each chain's newest signed tree must carry valid cosignature/v1 signatures from at
    least ``quorum`` of the witness keys given (c2sp.org/tlog-cosignature), else a finding."""
    for cat, (seq, text, cosigs) in sorted(report.notes.items()):
        valid = set()
        for item in cosigs:
            try:
                raw = bytes.fromhex(item["signature"])
                stamp = int.from_bytes(raw[:8], "big")
                msg = b"cosignature/v1\ntime " + str(stamp).encode() + b"\n" + text
            except (KeyError, TypeError, ValueError, AttributeError):
                continue
            for name, public in opts.witnesses.items():
                want = hashlib.sha256(name.encode() + b"\n\x04" + public).digest()[:4]
                if (item.get("witness") == name and item.get("key_hash") == want.hex()
                        and len(raw) == 72 and stamp > 0
                        and ed25519_verify(public, raw[8:], msg, opts.pure)):  # fmt: skip
                    valid.add(name)
        report.witnessed[cat] = len(valid)
        if len(valid) < opts.quorum:
            why = (
                f"{cat} seq {seq}: {len(valid)} valid cosignature(s) of the {opts.quorum} required"
            )
            report.add("not witnessed", why, file=MANIFEST, category=cat, seq=seq)


def cosignatures(manifest: dict[str, Any]) -> int:
    """How many witness cosignatures the bundle carries (this bundle format has none yet)."""
    items = manifest.get("checkpoints")
    found = [cp.get("cosignatures") for cp in items if isinstance(cp, dict)] if isinstance(
        items, list) else []  # fmt: skip
    return sum(len(c) for c in [*found, manifest.get("cosignatures")] if isinstance(c, list))


def _listed_runs(entry: Any) -> list[list[int]] | None:
    """A manifest chain's ``runs``, or None when they are not [first, last] pairs of seqs."""
    runs = entry.get("runs", []) if isinstance(entry, dict) else []
    ok = isinstance(runs, list) and all(
        isinstance(r, list) and len(r) == 2 and all(type(x) is int for x in r) for r in runs
    )
    return runs if ok else None


def verify(path: Path, opts: Options) -> Report:
    """Check the bundle at ``path`` (a ZIP or a directory) by docs/evidence.md section 5."""
    report = Report()
    try:
        src = Source(path)
    except (OSError, zipfile.BadZipFile) as exc:
        report.add("not a bundle", f"cannot be opened as a ZIP file ({exc})")
        return report
    try:
        body = read_manifest(src, report)
        if body is None or report.manifest is None:
            return report
        manifest = report.manifest
        keys = opts.keys if opts.keys is not None else manifest_keys(manifest, report)
        check_signature(src, body, keys, opts.keys is not None, opts.pure, report)
        if check_members(src, manifest, report):
            RowCheck(manifest, report).run(src)
            chains = manifest["chains"] if isinstance(manifest["chains"], dict) else {}
            for cat in sorted(set(chains) | set(report.chains)):
                st = report.chains.setdefault(cat, Chain())
                listed = _listed_runs(chains.get(cat))
                if listed is None:
                    report.add("forged manifest", f"chains.{cat}.runs is not a list of "
                               "[first, last] seq pairs", file=MANIFEST)  # fmt: skip
                elif not st.failed:
                    compare_runs(cat, st, listed, report)
            check_checkpoints(manifest, keys, opts.pure, report)
            check_proofs(src, report)
            _explain_file_change(report)
        if opts.quorum and not report.notes:
            report.add("not witnessed", f"{opts.quorum} witness cosignature(s) required; this "
                       "bundle carries no signed tree to check them on")  # fmt: skip
        elif opts.witnesses:
            check_cosignatures(opts, report)
    finally:
        src.close()
    return report


def check_proofs(src: Source, report: Report) -> None:
    """Each row listed in proofs.ndjson is proven into a signed tree (format 2: by its tree's
    node table; format 1: by the path on its line); a row not in the bundle, or whose
    checkpoint's signature failed, is left to those checks."""
    if PROOFS not in src.names():
        return
    with src.open(PROOFS) as fh:
        first = fh.readline()
        if _proofs_header(first):
            proven = check_tables(read_tables(fh, report), report)
            report.proven += sum(proven.values())
            return
        for n, line in enumerate(itertools.chain([first], fh), start=1):
            check_proof_line(n, line, report)


def check_proof_line(n: int, line: bytes, report: Report) -> None:
    """Format 1: one row's proof on its own line."""
    try:
        item = json.loads(line)
        cat, seq, size = str(item["category"]), int(item["seq"]), int(item["size"])
        proof = [bytes.fromhex(h) for h in item["proof"]]
    except (ValueError, KeyError, TypeError) as exc:
        report.add("proof fails", f"not a proof line ({exc})", file=PROOFS, row=n)
        return
    entry, root = report.entries.get((cat, seq)), report.trees.get((cat, size))
    if entry is None or root is None:
        return  # the row check or the checkpoint check names why
    if not verify_inclusion(seq - 1, size, leaf_hash(entry), proof, root):
        why = f"does not prove {cat} seq {seq} in the tree of {size} entries"
        report.add("proof fails", why, file=PROOFS, row=n, category=cat, seq=seq)
    else:
        report.proven += 1


def _proofs_header(line: bytes) -> bool:
    try:
        item = json.loads(line)
    except ValueError:
        return False
    return isinstance(item, dict) and item.get("format") == PROOFS_FORMAT


@dataclass
class NodeTable:
    """One tree's part of a format-2 proofs file: the rows listed (seq, line), its nodes."""

    rows: list[tuple[int, int]] = field(default_factory=list)
    nodes: dict[tuple[int, int], bytes] = field(default_factory=dict)
    twice: set[tuple[int, int]] = field(default_factory=set)


def read_tables(fh: IO[bytes], report: Report) -> dict[tuple[str, int], NodeTable]:
    """The format-2 lines after the header, by tree (category, size); a node listed twice
    is named and counts as absent."""
    tables: dict[tuple[str, int], NodeTable] = {}
    for n, line in enumerate(fh, start=2):
        try:
            item = json.loads(line)
            key = (_string(item["category"]), _count(item["size"], "size", 1))
            table = tables.setdefault(key, NodeTable())
            if "rows" in item:
                _table_rows(table, item["rows"], n)
            else:
                _table_nodes(table, item, key, report, n)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            report.add("proof fails", f"not a proof line ({exc})", file=PROOFS, row=n)
    for table in tables.values():
        for k in table.twice:
            table.nodes.pop(k, None)
    return tables


def _count(value: Any, name: str, least: int = 0) -> int:
    if type(value) is not int or value < least:
        raise ValueError(f"{name}: {value!r} is not a whole number >= {least}")
    return value


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{value!r} is not a string")
    return value


def _table_rows(table: NodeTable, runs: Any, line: int) -> None:
    last, seqs = table.rows[-1][0] if table.rows else 0, []
    for a, b in runs:
        if not last < _count(a, "rows", 1) <= _count(b, "rows", 1):
            raise ValueError(f"rows [{a}, {b}] do not ascend past seq {last}")
        seqs.append(range(a, b + 1))
        last = b
    table.rows.extend((s, line) for r in seqs for s in r)


def _table_nodes(table: NodeTable, item: Any, tree: tuple[str, int], report: Report,
                 line: int) -> None:  # fmt: skip
    level, index = _count(item["level"], "level"), item["index"]
    raw = bytes.fromhex(_string(item["hashes"]))
    if not isinstance(index, list) or len(raw) != 32 * len(index):
        raise ValueError("index and hashes differ in length (32 bytes a node)")
    for k, i in enumerate(index):
        key = (level, _count(i, "index"))
        if key in table.nodes:
            table.twice.add(key)
            why = f"the {tree[0]} tree of {tree[1]} entries lists node {key} twice"
            report.add("proof fails", why, file=PROOFS, row=line, category=tree[0])
        table.nodes[key] = raw[32 * k : 32 * k + 32]


def check_tables(tables: dict[tuple[str, int], NodeTable], report: Report) -> dict[str, int]:
    """Each listed row's path, from its tree's table, must lead to the signed root; a table
    must hold no node off the listed rows' paths. Rows proven per category."""
    proven: set[tuple[str, int]] = set()
    for (cat, size), table in sorted(tables.items()):
        root = report.trees.get((cat, size))
        if root is None:
            continue  # no trusted tree: the checkpoint check says why
        check = TableCheck(size, root, table.nodes)
        for seq, line in table.rows:
            entry = report.entries.get((cat, seq))
            if entry is None:
                continue  # not a row that verified: the row check names it
            why = check.check(seq - 1, leaf_hash(entry))
            if why:
                msg = f"does not prove {cat} seq {seq} in the tree of {size} entries: {why}"
                report.add("proof fails", msg, file=PROOFS, row=line, category=cat, seq=seq)
            else:
                proven.add((cat, seq))
        used = path_nodes([s - 1 for s, _ in table.rows if s <= size], size)
        extra = sorted(k for k in table.nodes if k[0] >= len(used) or k[1] not in used[k[0]])
        if extra:
            why = (f"the {cat} tree of {size} entries lists {len(extra)} node(s) on no listed "
                   f"row's path, the first (level {extra[0][0]}, index {extra[0][1]})")  # fmt: skip
            report.add("proof fails", why, file=PROOFS, category=cat)
    out: dict[str, int] = {}
    for cat, _ in proven:
        out[cat] = out.get(cat, 0) + 1
    return out


# --- the command line ---------------------------------------------------------------------------


class UsageError(Exception):
    """A command-line mistake: exit status 2."""


def _read_arg_file(arg: str, what: str) -> str:
    try:
        return Path(arg).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{what} {arg}: cannot be read ({exc})") from None


def _pinned(paths: list[str]) -> dict[str, bytes] | None:
    if not paths:
        return None
    keys = {}
    for arg in paths:
        try:
            raw = pem_public_key(_read_arg_file(arg, "--public-key"))
        except ValueError as exc:
            raise UsageError(f"--public-key {arg}: {exc}") from None
        keys[key_id_of(raw)] = raw
    return keys


def _witness(arg: str) -> tuple[str, bytes]:
    text = _read_arg_file(arg, "--witness-key") if Path(arg).is_file() else arg
    try:
        if "BEGIN PUBLIC KEY" in text:
            raw = pem_public_key(text)
            return "pem:" + key_id_of(raw), raw
        return vkey_public_key(text)
    except ValueError as exc:
        raise UsageError(f"--witness-key {arg}: {exc}") from None


def _options(args: argparse.Namespace) -> Options:
    witnesses = dict(_witness(w) for w in args.witness_key)
    quorum = args.quorum if args.quorum is not None else min(1, len(witnesses))
    if quorum < 0 or quorum > len(witnesses):
        raise UsageError(f"--quorum {quorum}: must be between 0 and the number of "
                         f"--witness-key given ({len(witnesses)})")  # fmt: skip
    return Options(_pinned(args.public_key), witnesses, quorum, args.pure)


def _bundle_path(arg: str | None) -> Path:
    if arg is None:  # run from inside the unpacked bundle
        here = Path.cwd()
        home = Path(__file__).resolve().parent
        path = here if (here / MANIFEST).is_file() else home
        if not (path / MANIFEST).is_file():
            raise UsageError(
                "give BUNDLE (the ZIP or its directory): there is no manifest.json here"
            )
        return path
    path = Path(arg)
    if not path.exists():
        raise UsageError(f"BUNDLE {arg}: no such file or directory")
    return path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="verify_bundle.py",
        description="Check an auditlog evidence bundle (docs/evidence.md) with no dependencies.",
    )
    p.add_argument("bundle", nargs="?", help="the bundle ZIP or its unpacked directory")
    p.add_argument(
        "--public-key",
        action="append",
        default=[],
        metavar="KEY.pem",
        help="a trusted Ed25519 public key (PEM), obtained out of band; repeatable",
    )
    p.add_argument(
        "--witness-key",
        action="append",
        default=[],
        metavar="KEY",
        help="a witness's key: a PEM file or a verifier key name+hash+base64",
    )
    p.add_argument(
        "--quorum",
        type=int,
        metavar="K",
        help="cosignatures required (default 1 when --witness-key is given)",
    )
    p.add_argument(
        "--pure",
        action="store_true",
        help="verify signatures with this file's RFC 8032 code, never cryptography",
    )
    return p  # fmt: skip


def _span(runs: list[list[int]]) -> str:
    return ", ".join(f"{a}..{b}" if a != b else str(a) for a, b, _ in runs) or "none"


def _lines(path: Path, opts: Options, report: Report) -> Iterator[str]:
    m = report.manifest or {}
    engine = "pure Python (RFC 8032)" if opts.pure or _fast is None else "cryptography"
    what = f"{m.get('format', '?')}, {report.rows} rows, exported {m.get('exported_at', '?')}"
    yield f"bundle: {path} ({what})"
    if opts.keys is None:
        yield (
            "keys: NONE PINNED: the bundle's own keys were used, which proves nothing against "
            "someone who replaced them; pin the key you obtained out of band with --public-key"
        )
    else:
        yield f"keys: pinned {', '.join(sorted(opts.keys))}; Ed25519 by {engine}"
    integrity = [
        p for p in report.problems if p.kind not in COMPLETENESS and p.kind != "not witnessed"
    ]
    complete = [p for p in report.problems if p.kind in COMPLETENESS]
    yield ("integrity: OK: every file matches the signed manifest, every row's record and "
           "entry_hash verify, links and checkpoint chains hold, "
           f"{report.signatures} signatures verify"
           if not integrity else f"integrity: FAILED ({len(integrity)} problems)")  # fmt: skip
    cps = (report.manifest or {}).get("checkpoints")
    tokens = sum(
        len(c.get("timestamps") or []) for c in (cps if isinstance(cps, list) else [])
        if isinstance(c, dict)
    )  # fmt: skip
    if tokens:
        yield (
            f"time-stamps: {tokens} RFC 3161 token(s) present, not checked here (CMS needs a "
            "library): auditlog verify --bundle --tsa-anchor PEM, or openssl ts -verify"
        )
    yield (
        f"membership: {report.proven} of {report.rows} rows proven by an inclusion proof in a "
        "signed tree"
        if report.trees
        else "membership: no signed tree (version-3 checkpoint)"
    )
    yield ("completeness: OK: exactly the seqs the manifest lists are present"
           if not complete else f"completeness: FAILED ({len(complete)} problems)")  # fmt: skip
    for cat, st in sorted(report.chains.items()):
        yield (f"  {cat}: seq {_span(st.runs)}: {st.rows} rows, {st.covered} vouched for by "
               f"{st.checkpoints} matching checkpoint(s)")  # fmt: skip
    yield "  (that no other row matches the filters is not proven: re-run them to check)"
    n = cosignatures(m)
    if not n:
        yield "witnesses: no cosignatures are present in this bundle"
    elif not report.witnessed:
        yield f"witnesses: {n} cosignature(s) present, not checked (give --witness-key VKEY)"
    else:
        for cat, k in sorted(report.witnessed.items()):
            yield f"  {cat}: newest signed tree cosigned by {k} of the witness keys given"
    for p in report.problems:
        yield f"FAIL {p}"
    first = next((p for p in report.problems if p.row), None)
    if first is not None:
        yield f"first bad row: {first}"
    yield "result: OK: everything checked holds" if report.ok else (
        f"result: FAILED: {len(report.problems)} problem(s)")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit status (0 holds, 1 a finding, 2 a usage error)."""
    args = _parser().parse_args(argv)
    try:
        opts = _options(args)
        path = _bundle_path(args.bundle)
    except UsageError as exc:
        print(f"verify_bundle.py: error: {exc}", file=sys.stderr)
        return 2
    try:
        report = verify(path, opts)
    except Exception as exc:  # a bundle malformed beyond what the checks foresee: a finding
        print(f"FAIL bundle: malformed bundle: could not be checked ({type(exc).__name__}: {exc})")
        return 1
    for line in _lines(path, opts, report):
        print(line)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
