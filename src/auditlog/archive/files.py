"""Archive files: the events of one category and month, as Parquet (zstd) with a signed manifest.

Layout under the archive root (``<home>/archives`` by default)::

    <category>/<YYYY-MM>/<category>-<YYYY-MM>.parquet
    <category>/<YYYY-MM>/<category>-<YYYY-MM>.manifest.json

Parquet columns (see :data:`SCHEMA`): category, seq, event_id, action, outcome, occurred_at,
recorded_at, correlation_id, ``record``, prev_hash, entry_hash. ``record`` is the exact canonical
JSON (RFC 8785) that was hashed, so ``entry_hash = SHA-256(prev_hash || record)`` and every field
of the event is in it; the other columns are conveniences for querying and are checked against
it. The manifest holds the chain range (seq range, first prev_hash, last entry_hash, row count),
the SHA-256 of each file, and an Ed25519 signature over the JCS of everything else in it.

Writing is crash-safe: a file is written as ``*.partial``, flushed and renamed into place, so an
archive file is either complete or absent.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from auditlog.canonical import jcs
from auditlog.columns import ARCHIVE_COLUMNS, BY_NAME, arrow_type
from auditlog.errors import IntegrityFailure, NotFound
from auditlog.integrity.keys import Signer
from auditlog.integrity.verifier import ChainVerifier, Problem
from auditlog.model import utc_text

FORMAT = "auditlog-archive/1"
BATCH = 50_000
UTC_US = pa.timestamp("us", tz="UTC")
SCHEMA = pa.schema([(name, arrow_type(name)) for name in ARCHIVE_COLUMNS])


def _select_expr(name: str) -> str:
    # Timestamps as microseconds since the epoch: Arrow converts aware datetimes slowly.
    if BY_NAME[name].arrow == "timestamp":
        return f"(extract(epoch FROM {name}) * 1000000)::int8"
    return f"{name}::text" if BY_NAME[name].record == "uuid" else name


_SELECT = (
    f"SELECT {', '.join(_select_expr(n) for n in ARCHIVE_COLUMNS)} FROM events "
    "WHERE category = %s AND seq >= %s ORDER BY seq"
)
_RECORDED = ARCHIVE_COLUMNS.index("recorded_at")
FETCH = 5_000  # rows per round trip: the read stops at most this far past a month's end
# Typed columns (checked against the record) and how each reads inside the record.
_TYPED = tuple(name for name in ARCHIVE_COLUMNS if BY_NAME[name].record is not None)
_DECODE = pl.Struct(
    {name: pl.Int64 if BY_NAME[name].record == "int" else pl.String for name in _TYPED}
)
_TS = "%Y-%m-%dT%H:%M:%S%.6fZ"


@dataclass(frozen=True)
class Span:
    """The chain range of one archive: ``category`` seq ``first_seq..last_seq`` of ``month``."""

    category: str
    month: date
    first_seq: int
    last_seq: int

    @property
    def label(self) -> str:
        return f"{self.category}-{self.month:%Y-%m}"

    @property
    def relpath(self) -> str:
        """The Parquet file's path under the archive root."""
        return f"{self.category}/{self.month:%Y-%m}/{self.label}.parquet"

    @property
    def rows(self) -> int:
        return self.last_seq - self.first_seq + 1


def manifest_path(path: Path) -> Path:
    """The manifest beside an archive's Parquet file."""
    return path.with_name(path.name.removesuffix(".parquet") + ".manifest.json")


@dataclass
class _Stats:
    rows: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    first_prev: bytes = b""
    last_hash: bytes = b""
    first_at: datetime | None = None
    last_at: datetime | None = None

    def add(self, table: pa.Table) -> None:
        if self.first_seq is None:
            self.first_seq = table["seq"][0].as_py()
            self.first_prev = table["prev_hash"][0].as_py()
            self.first_at = table["recorded_at"][0].as_py()
        self.last_seq = table["seq"][-1].as_py()
        self.last_hash = table["entry_hash"][-1].as_py()
        self.last_at = table["recorded_at"][-1].as_py()
        self.rows += table.num_rows


@dataclass(frozen=True)
class Written:
    """An archive written to disk (not yet registered in the database)."""

    span: Span
    path: Path
    manifest: dict[str, Any]
    file_sha256: bytes
    manifest_sha256: bytes
    size: int

    @property
    def first_prev_hash(self) -> bytes:
        return bytes.fromhex(self.manifest["first_prev_hash"])

    @property
    def last_entry_hash(self) -> bytes:
        return bytes.fromhex(self.manifest["last_entry_hash"])


def write_archive(
    conn: Any,
    root: Path,
    first: Span,
    month_end: datetime,
    signer: Signer,
    created_at: datetime,
    on_batch: Callable[[int], None] | None = None,
) -> Written:
    """Write ``first.category``'s rows from ``first.first_seq`` up to ``month_end`` (exclusive,
    by recorded_at, which never decreases along a chain) with their signed manifest.

    ``conn`` is a psycopg connection. The rows are read once, in seq order, by a server-side
    cursor that stops at the month's end. Returns the file with the span it holds.

    Raises
    ------
    IntegrityFailure
        When the rows read are not the gapless run of seqs a chain must be.
    """
    path = root / first.relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    stats = _Stats()
    with (
        conn.cursor(name=f"archive_{first.category}", binary=True) as cur,
        pq.ParquetWriter(partial, SCHEMA, compression="zstd") as writer,
    ):
        cur.execute(_SELECT, (first.category, first.first_seq))
        for table in _month_tables(cur, month_end):
            stats.add(table)
            writer.write_table(table)
            if on_batch is not None:
                on_batch(stats.rows)
    conn.commit()
    span = Span(first.category, first.month, first.first_seq, stats.last_seq or 0)
    if stats.first_seq != first.first_seq or stats.rows != span.rows:
        partial.unlink(missing_ok=True)
        raise IntegrityFailure(
            f"{first.category} from seq {first.first_seq}: the table holds {stats.rows} rows "
            f"where seq {stats.first_seq}..{stats.last_seq} needs {span.rows}: rows are missing; "
            "nothing archived (run `auditlog verify`)"
        )
    _publish(partial, path)
    return _write_manifest(span, path, stats, signer, created_at)


def _month_tables(cur: Any, month_end: datetime) -> Iterator[pa.Table]:
    """Arrow tables of ~BATCH rows from ``cur`` until the first row recorded at month_end."""
    pending: list[tuple[Any, ...]] = []
    end_us = round(month_end.timestamp() * 1_000_000)
    while rows := cur.fetchmany(FETCH):
        cut = next((i for i, r in enumerate(rows) if r[_RECORDED] >= end_us), None)
        pending.extend(rows if cut is None else rows[:cut])
        if cut is not None:
            break
        if len(pending) >= BATCH:
            yield _arrow(pending)
            pending = []
    if pending:
        yield _arrow(pending)


def _arrow(rows: list[tuple[Any, ...]]) -> pa.Table:
    columns = zip(*rows, strict=True)
    arrays = [
        pa.array(col, type=pa.int64()).cast(f.type) if f.type == UTC_US else pa.array(col, f.type)
        for col, f in zip(columns, SCHEMA, strict=True)
    ]
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def _publish(partial: Path, path: Path) -> None:
    """Flush ``partial`` to disk and move it to ``path`` atomically."""
    with open(partial, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(partial, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def file_sha256(path: Path) -> bytes:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.digest()


def _write_manifest(
    span: Span, path: Path, stats: _Stats, signer: Signer, created_at: datetime
) -> Written:
    digest, size = file_sha256(path), path.stat().st_size
    body: dict[str, Any] = {
        "format": FORMAT,
        "category": span.category,
        "month": f"{span.month:%Y-%m}",
        "first_seq": span.first_seq,
        "last_seq": span.last_seq,
        "row_count": stats.rows,
        "first_prev_hash": stats.first_prev.hex(),
        "last_entry_hash": stats.last_hash.hex(),
        "first_recorded_at": utc_text(stats.first_at),  # type: ignore[arg-type]
        "last_recorded_at": utc_text(stats.last_at),  # type: ignore[arg-type]
        "files": [{"name": path.name, "sha256": digest.hex(), "bytes": size, "rows": stats.rows}],
        "hash_rule": "entry_hash = SHA-256(prev_hash || UTF-8 bytes of column record)",
        "created_at": utc_text(created_at),
        "key_id": signer.key_id,
    }
    body["signature"] = signer.sign(jcs(body)).hex()
    text = json.dumps(body, indent=2, ensure_ascii=False).encode("utf-8") + b"\n"
    target = manifest_path(path)
    partial = target.with_name(target.name + ".partial")
    partial.write_bytes(text)
    _publish(partial, target)
    return Written(span, path, body, digest, hashlib.sha256(text).digest(), size)


# --- verification ------------------------------------------------------------------------


@dataclass
class ArchiveCheck:
    """What :func:`verify_archive` found. ``problem`` names the first bad row (or file)."""

    path: Path
    category: str = ""
    rows: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    last_hash: bytes | None = None
    manifest: dict[str, Any] | None = None
    signature: str = "not checked"
    problem: Problem | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problem is None


def _locate(path: Path) -> tuple[Path, dict[str, Any] | None]:
    """(Parquet path, manifest or None) for an archive's Parquet or manifest path."""
    if not path.exists():
        raise NotFound(f"archive file {path} does not exist")
    if path.name.endswith(".manifest.json"):
        manifest = json.loads(path.read_text("utf-8"))
        return path.with_name(manifest["files"][0]["name"]), manifest
    beside = manifest_path(path)
    return path, (json.loads(beside.read_text("utf-8")) if beside.exists() else None)


def _fail(check: ArchiveCheck, seq: int | None, kind: str, message: str) -> ArchiveCheck:
    if check.problem is None:
        check.problem = Problem(check.category or str(check.path), seq, kind, message)
    return check


def _signature(manifest: Mapping[str, Any], keys: Mapping[str, Ed25519PublicKey] | None) -> str:
    if keys is None:
        return "not checked"
    key = keys.get(str(manifest.get("key_id")))
    if key is None:
        return f"unknown key {manifest.get('key_id')}"
    body = {k: v for k, v in manifest.items() if k != "signature"}
    try:
        key.verify(bytes.fromhex(str(manifest.get("signature", ""))), jcs(body))
    except (InvalidSignature, ValueError):
        return "does not verify"
    return "valid"


def verify_archive(path: Path, keys: Mapping[str, Ed25519PublicKey] | None = None) -> ArchiveCheck:
    """Check an archive file: manifest signature and hashes, then every row of its chain.

    ``path`` is the Parquet file or its manifest. Without ``keys`` the manifest signature is
    not checked (say which keys to trust). Each row must hash to its entry_hash, link to the
    previous one and carry typed columns equal to its record; the first row that does not is
    named.
    """
    parquet, manifest = _locate(path)
    check = ArchiveCheck(parquet, manifest=manifest)
    if manifest is None:
        check.notes.append("no manifest beside the file: chain checked, range not vouched for")
    else:
        check.category = str(manifest.get("category", ""))
        _check_manifest(check, manifest, keys)
    if check.problem is None:
        _check_rows(check, parquet)
    # Rows first: a changed file is best reported by the first row that changed.
    if manifest is not None and check.problem is None:
        _check_range(check, manifest)
    if manifest is not None and check.problem is None:
        _check_file_hash(check, manifest)
    return check


def _check_manifest(
    check: ArchiveCheck, manifest: Mapping[str, Any], keys: Mapping[str, Ed25519PublicKey] | None
) -> None:
    if manifest.get("format") != FORMAT:
        _fail(check, None, "bad manifest", f"format {manifest.get('format')!r}, not {FORMAT}")
        return
    check.signature = _signature(manifest, keys)
    if check.signature not in ("valid", "not checked"):
        _fail(check, None, "bad signature", f"manifest signature {check.signature}")
    elif not check.path.exists():
        _fail(check, None, "file missing", f"{check.path.name} named by the manifest is absent")


def _check_file_hash(check: ArchiveCheck, manifest: Mapping[str, Any]) -> None:
    if file_sha256(check.path).hex() != manifest["files"][0]["sha256"]:
        _fail(
            check,
            None,
            "file changed",
            f"SHA-256 of {check.path.name} differs from the "
            "manifest: the file was altered or replaced after it was written",
        )


def _check_rows(check: ArchiveCheck, parquet: Path) -> None:
    try:
        _check_batches(check, pq.ParquetFile(parquet).iter_batches(batch_size=BATCH))
    except (pa.ArrowException, OSError, KeyError) as exc:
        _fail(check, None, "unreadable", f"{parquet.name} is not a readable archive: {exc}")


def _check_batches(check: ArchiveCheck, batches: Iterator[pa.RecordBatch]) -> None:
    verifier: ChainVerifier | None = None
    for batch in batches:
        frame = pl.from_arrow(batch)
        assert isinstance(frame, pl.DataFrame)
        if verifier is None:
            verifier = _start(check, frame)
        seqs, prevs = frame["seq"].to_list(), frame["prev_hash"].to_list()
        hashes, records = frame["entry_hash"].to_list(), frame["record"].to_list()
        feed = verifier.feed_stored
        for seq, prev, stored, record in zip(seqs, prevs, hashes, records, strict=True):
            if not feed(seq, prev, stored, record.encode("utf-8")):
                break
        bad = _typed_mismatch(frame, check.category)
        first = verifier.result.problem
        if bad and (first is None or (first.seq or 0) > bad[0]):
            _fail(
                check,
                bad[0],
                "content changed",
                f"column(s) {', '.join(bad[1])} differ from the hashed record",
            )
            return
        if first is not None:
            check.problem = first
            return
    if verifier is not None:
        r = verifier.result
        check.rows, check.first_seq, check.last_seq = r.rows, r.first_seq, r.last_seq
        check.last_hash = r.last_hash


def _start(check: ArchiveCheck, frame: pl.DataFrame) -> ChainVerifier:
    """A verifier starting where the manifest says (else where the first row says)."""
    check.category = check.category or str(frame["category"][0])
    if check.manifest is not None:
        start = (
            int(check.manifest["first_seq"]) - 1,
            bytes.fromhex(check.manifest["first_prev_hash"]),
        )
    else:
        start = (int(frame["seq"][0]) - 1, bytes(frame["prev_hash"][0]))
    return ChainVerifier(check.category, start)


def _typed_mismatch(frame: pl.DataFrame, category: str) -> tuple[int, list[str]] | None:
    """(seq, columns) of the first row whose typed columns differ from its record."""
    dec = frame.select(pl.col("record").str.json_decode(_DECODE)).unnest("record")
    shown = frame.with_columns(
        pl.col("occurred_at").dt.strftime(_TS), pl.col("recorded_at").dt.strftime(_TS)
    )
    diffs = [(~shown[n].eq_missing(dec[n])).alias(n) for n in _TYPED]
    diffs.append((shown["category"] != category).alias("category (file)"))
    flags = pl.DataFrame(diffs).with_columns(seq=frame["seq"])
    names = [n for n in flags.columns if n != "seq"]
    bad = flags.filter(pl.any_horizontal(names))
    if bad.is_empty():
        return None
    row = bad.row(0, named=True)
    return int(row["seq"]), [n for n in names if row[n]]


def _check_range(check: ArchiveCheck, m: Mapping[str, Any]) -> None:
    last_hash = check.last_hash.hex() if check.last_hash else None
    found = (check.first_seq, check.last_seq, check.rows, last_hash)
    want = (m["first_seq"], m["last_seq"], m["row_count"], m["last_entry_hash"])
    if found != want:
        _fail(
            check,
            check.last_seq,
            "manifest mismatch",
            f"file holds seq {found[0]}..{found[1]} "
            f"({found[2]} rows, last hash {found[3]}), manifest says seq {want[0]}..{want[1]} "
            f"({want[2]} rows, last hash {want[3]}): rows were removed or added",
        )


def require_valid(check: ArchiveCheck) -> ArchiveCheck:
    """Raise IntegrityFailure naming the first bad row unless ``check`` is clean."""
    if check.problem is not None:
        raise IntegrityFailure(f"archive {check.path}: {check.problem}")
    return check
