"""Evidence bundles: a ZIP of events.csv, events.ndjson, a signed manifest; and their check.

Public API::

    write_bundle(engine, dest, filters, log=..., actor=..., sample=None) -> BundleResult
    verify_bundle(path, public_keys=None) -> BundleReport   in auditlog.bundle_verify
    CONTROLS                                 the compliance controls a bundle is evidence for

The format and the exact verification algorithm are in docs/evidence.md. The manifest is
signed with the installation's Ed25519 key (the key that signs chain checkpoints) under a
message of its own, so neither signature can stand in for the other.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from array import array
from bisect import bisect_right
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy.engine import Engine

from auditlog.canonical import jcs
from auditlog.columns import CSV_COLUMNS
from auditlog.errors import AuditLogError, ExportTooLarge
from auditlog.evidence.export import (
    MEDIA_TYPES,
    Tally,
    check_cap,
    count_rows,
    csv_blobs,
    export_event,
    export_filename,
    filter_record,
    ndjson_blobs,
    snapshot,
)
from auditlog.evidence.proofs import (
    PROOFS_FORMAT,
    PROOFS_NAME,
    PROOFS_RULE,
    EntryTap,
    attach_cosignatures,
    attach_timestamps,
    write_proofs,
)
from auditlog.evidence.sample import Drawn, Sampling, event_details
from auditlog.integrity.checkpoints import Checkpoint
from auditlog.integrity.database import db_checkpoints
from auditlog.integrity.keys import public_pem
from auditlog.model import OutcomeName, utc_text
from auditlog.query.filters import Filters
from auditlog.settings import ExportSettings
from auditlog.store import AuditLog, Receipt

CSV_NAME, NDJSON_NAME = "events.csv", "events.ndjson"
MANIFEST, SIGNATURE = "manifest.json", "manifest.sig.json"
# The stand-alone verifier (standard library only) a bundle may carry; docs/evidence.md.
VERIFIER = "verify_bundle.py"
VERIFIER_PATH = Path(__file__).with_name(VERIFIER)
BUNDLE_FORMAT = "auditlog-evidence-bundle/1"
CONTROLS = [
    {
        "framework": "SOC 2 (AICPA TSC 2017)",
        "id": "CC7.2",
        "title": "System components are monitored for anomalies indicative of malicious acts, "
        "natural disasters and errors; anomalies are analysed",
    },
    {
        "framework": "ISO/IEC 27001:2013",
        "id": "A.12.4",
        "title": "Logging and monitoring (event logging, protection of log information, "
        "administrator and operator logs)",
    },
    {
        "framework": "ISO/IEC 27001:2022",
        "id": "A.8.15",
        "title": "Logging: logs that record activities, exceptions, faults and other relevant "
        "events are produced, stored, protected and analysed",
    },
]
NDJSON_TAIL = re.compile(rb',"prev_hash":"([0-9a-f]{64})","entry_hash":"([0-9a-f]{64})"\}$')


def manifest_message(manifest_sha256: str, key_id: str) -> bytes:
    """The exact bytes a manifest signature covers."""
    return jcs(
        {
            "purpose": "auditlog evidence manifest",
            "manifest_sha256": manifest_sha256,
            "key_id": key_id,
        }
    )


# --- writing --------------------------------------------------------------------------------


class Runs:
    """Contiguous seq runs per category, kept compactly (two int64 per run)."""

    def __init__(self) -> None:
        self.by_cat: dict[str, array[int]] = {}

    def add(self, category: str, seq: int) -> None:
        runs = self.by_cat.get(category)
        if runs is None:
            self.by_cat[category] = array("q", (seq, seq))
        elif runs[-1] + 1 == seq:
            runs[-1] = seq
        else:
            runs.extend((seq, seq))

    def pairs(self, category: str) -> list[list[int]]:
        flat = self.by_cat.get(category, array("q"))
        return [[flat[i], flat[i + 1]] for i in range(0, len(flat), 2)]

    def contains(self, category: str, seq: int) -> bool:
        flat = self.by_cat.get(category)
        if not flat:
            return False
        i = bisect_right(flat, seq)  # flat is sorted: start <= end < next start
        return i % 2 == 1 or (i > 0 and flat[i - 1] == seq)


class _HashingWriter(io.RawIOBase):
    """A write-only, non-seekable stream that hashes what passes (zipfile then streams)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw, self.tally = raw, Tally()

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        self.raw.write(data)
        self.tally.take(data, 0)
        return len(data)


@dataclass(frozen=True)
class BundleResult:
    """What a bundle export produced; ``sha256`` is of the ZIP file, ``files`` of its parts."""

    rows: int
    size: int
    sha256: str
    files: dict[str, str]
    manifest: dict[str, Any]
    receipt: Receipt | None = None


def _checkpoints(conn: Any, runs: Runs) -> list[Checkpoint]:
    """Checkpoints at an exported seq, and the newest of each exported category."""
    out = []
    for cat in sorted(runs.by_cat):
        cps = db_checkpoints(conn, cat)
        out += [cp for cp in cps if runs.contains(cat, cp.seq)]
        if cps and not runs.contains(cat, cps[-1].seq):
            out.append(cps[-1])
    return out


def _public_keys(conn: Any, key_ids: set[str]) -> dict[str, str]:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT key_id, public_key FROM signing_keys WHERE key_id = ANY(%s)", (sorted(key_ids),)
        )
        return {k: bytes(pem).decode("ascii") for k, pem in cur.fetchall()}


def _write_member(zf: zipfile.ZipFile, name: str, blobs: Iterator[bytes]) -> None:
    with zf.open(name, "w", force_zip64=True) as member:
        for blob in blobs:
            member.write(blob)


def _file_entry(tally: Tally, media_type: str) -> dict[str, Any]:
    return {
        "sha256": tally.sha256,
        "bytes": tally.size,
        "rows": tally.rows,
        "media_type": media_type,
    }


@dataclass(frozen=True)
class _Job:
    """One bundle export: what to read, who asked, and where the event goes."""

    engine: Engine
    filters: Filters
    log: AuditLog
    actor: Mapping[str, Any]
    now: datetime
    limits: ExportSettings
    verifier: bool = False
    sample: Sampling | None = None


def _chains(runs: Runs) -> dict[str, Any]:
    out = {}
    for cat in sorted(runs.by_cat):
        pairs = runs.pairs(cat)
        rows = sum(b - a + 1 for a, b in pairs)
        out[cat] = {"rows": rows, "first_seq": pairs[0][0], "last_seq": pairs[-1][1], "runs": pairs}
    return out


def _verifier_entry(data: bytes) -> dict[str, Any]:
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
            "media_type": "text/x-python"}  # fmt: skip


def _manifest(
    job: _Job, tallies: dict[str, Tally], runs: Runs, conn: Any, script: bytes | None
) -> dict[str, Any]:
    params, window = filter_record(job.filters, job.now)
    cps = _checkpoints(conn, runs)
    keys = _public_keys(conn, {cp.key_id for cp in cps})
    keys[job.log.signer.key_id] = public_pem(job.log.signer.public)
    files = {CSV_NAME: "csv", NDJSON_NAME: "ndjson"}
    entries = {name: _file_entry(tallies[name], MEDIA_TYPES[fmt]) for name, fmt in files.items()}
    if PROOFS_NAME in tallies:
        entries[PROOFS_NAME] = _file_entry(tallies[PROOFS_NAME], MEDIA_TYPES["ndjson"])
    if script is not None:
        entries[VERIFIER] = _verifier_entry(script)
    return {
        "format": BUNDLE_FORMAT,
        "exported_at": utc_text(job.now),
        "exported_by": dict(job.actor),
        "filters": params,
        "window": window,
        "rows": tallies[CSV_NAME].rows,
        "files": entries,
        "csv_columns": list(CSV_COLUMNS),
        "chains": _chains(runs),
        "checkpoints": [cp.to_json() for cp in cps],
        "public_keys": keys,
        "manifest_key_id": job.log.signer.key_id,
        "controls": CONTROLS,
        "specification": "docs/evidence.md (format and verification), docs/integrity.md",
    }  # fmt: skip


def _proofs_section(proven: dict[str, Any], tally: Tally) -> dict[str, Any]:
    return {
        "file": PROOFS_NAME,
        "sha256": tally.sha256,
        "bytes": tally.size,
        "format": PROOFS_FORMAT,
        "rows": tally.rows,
        "by_category": proven,
        "rule": PROOFS_RULE,
    }


def _statement(manifest: dict[str, Any], proven: dict[str, Any]) -> list[str]:
    """What the bundle proves, and what it does not, in words."""
    rows = manifest["rows"]
    n = sum(p["rows_proven"] for p in proven.values())
    out = [
        f"Integrity: each of the {rows} rows hashes to its entry_hash, and its columns equal "
        "its hashed record.",
        f"Membership: {n} of the {rows} rows carry an inclusion proof in a tree signed by "
        "their chain's checkpoint note (in `checkpoints`), so each is part of the signed log "
        "as it stood then, wherever it sits in the chain.",
    ]
    for cat, run in sorted(manifest["chains"].items()):
        spans = ", ".join(f"{a}..{b}" for a, b in run["runs"][:20])
        more = "" if len(run["runs"]) <= 20 else f" and {len(run['runs']) - 20} more"
        out.append(
            f"Completeness of {cat}: every seq of the ranges {spans}{more} is present, linked "
            "by its prev_hash (no row of those ranges is missing)."
        )
    out.append(
        "Not proven: that no other row matches the filters (re-run them against the log), "
        "nor anything about rows outside the ranges above."
    )
    if n < rows:
        out.append(f"{rows - n} row(s) were appended after the heads were signed: no proof yet.")
    return out


def _write_data(
    zf: zipfile.ZipFile,
    job: _Job,
    conn: Any,
    tallies: dict[str, Tally],
    tap: EntryTap,
    drawn: Drawn | None = None,
) -> None:
    where = drawn.where() if drawn else ()  # a sample: only its rows, same snapshot
    expected = count_rows(conn, job.filters, job.now, where)
    check_cap(expected, job.limits)
    args = (conn, job.filters, job.now)
    chunk = job.limits.export_chunk_bytes
    _write_member(zf, CSV_NAME, csv_blobs(*args, tallies[CSV_NAME], chunk, where))
    nd = ndjson_blobs(*args, tallies[NDJSON_NAME], chunk, on_row=tap.row, where=where)
    _write_member(zf, NDJSON_NAME, tap.tap(nd))  # the proofs take the entries from here
    if not tallies[CSV_NAME].rows == tallies[NDJSON_NAME].rows == expected:
        raise AuditLogError("bundle files disagree on the row count; nothing valid was written")


def _write_zip(out: io.RawIOBase | IO[bytes], job: _Job) -> tuple[dict[str, Any], dict[str, str]]:
    """The ZIP: data files from one snapshot, then the manifest and its signature."""
    tallies, runs = {CSV_NAME: Tally(), NDJSON_NAME: Tally()}, Runs()
    signer = job.log.signer
    with (
        snapshot(job.engine, job.limits) as conn,
        # level 3: half the CPU of the default 6 on events.csv/.ndjson, ~14% larger
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=3) as zf,
    ):
        drawn = job.sample.draw(conn, job.filters, job.now) if job.sample else None
        tap = EntryTap(runs)
        _write_data(zf, job, conn, tallies, tap, drawn)
        tallies[PROOFS_NAME], proven = write_proofs(zf, conn, runs, tap)
        script = VERIFIER_PATH.read_bytes() if job.verifier else None
        if script is not None:
            zf.writestr(VERIFIER, script)
        manifest = _manifest(job, tallies, runs, conn, script)
        manifest["proofs"] = _proofs_section(proven, tallies[PROOFS_NAME])
        manifest["proofs"]["timestamps"] = attach_timestamps(conn, manifest["checkpoints"])
        manifest["proofs"]["cosignatures"] = attach_cosignatures(conn, manifest["checkpoints"])
        manifest["proven"] = _statement(manifest, proven)
        if drawn is not None:
            manifest["sample"] = drawn.manifest(manifest["filters"], manifest["window"])
        body = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False).encode()
        digest = hashlib.sha256(body).hexdigest()
        sig = signer.sign(manifest_message(digest, signer.key_id))
        zf.writestr(MANIFEST, body)
        seal = {"key_id": signer.key_id, "manifest_sha256": digest, "signature": sig.hex()}
        zf.writestr(SIGNATURE, json.dumps(seal, indent=2))
    hashes = {name: t.sha256 for name, t in tallies.items()} | {MANIFEST: digest}
    if script is not None:
        hashes[VERIFIER] = manifest["files"][VERIFIER]["sha256"]
    return manifest, hashes


def write_bundle(
    engine: Engine,
    dest: str | Path | IO[bytes],
    filters: Filters | None = None,
    *,
    log: AuditLog,
    actor: Mapping[str, Any],
    context: Mapping[str, Any] | None = None,
    limits: ExportSettings | None = None,
    now: datetime | None = None,
    include_verifier: bool = True,
    sample: Sampling | None = None,
) -> BundleResult:
    """Write the evidence bundle of ``filters`` to ``dest`` (a path or a binary stream).

    First signs the current chain heads (``log.checkpoint()``) so the exported rows are
    covered, then exports from one snapshot, signs the manifest with ``log.signer`` and
    records an ``export.downloaded`` event (format ``bundle``) with the ZIP's SHA-256.
    ``include_verifier`` adds ``verify_bundle.py`` (standard library only), hashed in the
    manifest like the data files (on by default). ``sample`` restricts the bundle to a
    reproducible sample of the filtered rows, drawn in the same snapshot, and adds the
    manifest's ``sample`` section (auditlog.evidence.sample); the event's format is then
    ``sample``.
    Raises ExportTooLarge (recorded as ``denied``) when more rows match than the cap.
    """
    job = _Job(
        engine,
        filters or Filters(),
        log,
        actor,
        now or datetime.now(UTC),
        limits or ExportSettings(),
        include_verifier,
        sample,
    )
    params, window = filter_record(job.filters, job.now)
    name = Path(dest).name if isinstance(dest, str | Path) else export_filename("bundle", job.now)
    details: dict[str, Any] = {"format": "sample" if sample else "bundle", "file": name}
    details |= {"filters": params, "window": window}
    if sample is not None:
        details["sample"] = sample.details()

    def record(outcome: OutcomeName, target_id: str) -> Receipt:
        return log.record(export_event(actor, outcome, details, target_id, context))

    log.checkpoint()
    try:
        with _open(dest) as raw:
            writer = _HashingWriter(raw)
            manifest, files = _write_zip(writer, job)
    except ExportTooLarge as exc:
        details |= {"rows_matching": exc.rows, "max_export_rows": exc.cap}
        record("denied", "refused")
        raise
    except Exception:
        details["error"] = "bundle broken off"
        record("failure", "incomplete")
        raise
    t = writer.tally
    details |= {"rows": manifest["rows"], "bytes": t.size, "sha256": t.sha256, "files": files}
    if "sample" in manifest:
        details["sample"] = event_details(manifest["sample"])
    return BundleResult(
        manifest["rows"], t.size, t.sha256, files, manifest, record("success", t.sha256)
    )


@contextmanager
def _open(dest: str | Path | IO[bytes]) -> Iterator[IO[bytes]]:
    """A binary stream for ``dest``: opened (and closed) here when it is a path."""
    if isinstance(dest, str | Path):
        with open(dest, "wb") as fh:
            yield fh
    else:
        yield dest
