"""Checkpoints kept outside the database: the export an auditor keeps, and the check that
today's log still holds and extends them (``auditlog verify --since FILE``).

    export_notes(doc)                  -> the C2SP checkpoint notes ``auditlog checkpoint export``
                                          prints (one per chain, blank-line separated)
    export_checkpoints(engine)         -> the same as a JSON document (``--format json``)
    load_kept(path)                    -> [Checkpoint] from an export, a bundle (ZIP or its
                                          manifest.json), SIEM copies (JSON, NDJSON, syslog)
                                          or C2SP checkpoint notes (a witness's, a monitor's)
    bind_note_keys(kept, keys)         -> the notes' checkpoints named by their trusted key
    check_kept(engine, kept, keys)     -> [Problem], each naming the kept checkpoint

A database superuser can delete the newest rows together with the checkpoints that cover
them; only a checkpoint kept elsewhere shows it. Each kept checkpoint must verify with a
trusted key, its (seq, entry_hash) must still be in the chain (or purged behind an anchor),
and a version-2 one must still be in the database's checkpoint chain at its count.
"""

from __future__ import annotations

import dataclasses
import json
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from auditlog.db.server import driver_errors
from auditlog.errors import InvalidFile, NoteError
from auditlog.integrity.checkpoints import Checkpoint, signature_ok
from auditlog.integrity.database import db_anchor, db_checkpoints
from auditlog.integrity.keys import load_public_key
from auditlog.integrity.verifier import Problem
from auditlog.model import CATEGORIES, utc_text
from auditlog.proofs.merkle import verify_consistency
from auditlog.proofs.note import EM_DASH, key_hash, parse_checkpoint, parse_note
from auditlog.proofs.tree import TreeReader

EXPORT_FORMAT = "auditlog-checkpoints/1"
NOTE_KEY = "note:"  # key_id of a checkpoint read from a note, until bind_note_keys names it
_BUNDLE_MANIFEST = "manifest.json"


def export_checkpoints(engine: Any) -> dict[str, Any]:
    """The newest checkpoint of each category (signature, chain fields) and the public keys
    that sign them: the file an auditor keeps for ``auditlog verify --since``."""
    with engine.connect() as sa_conn, driver_errors():
        conn = sa_conn.connection.driver_connection
        latest = [cps[-1] for cat in CATEGORIES if (cps := db_checkpoints(conn, cat))]
        with conn.cursor() as cur:
            cur.execute(
                "SELECT key_id, public_key FROM signing_keys WHERE key_id = ANY(%s)",
                (sorted({cp.key_id for cp in latest}),),
            )
            keys = {k: bytes(pem).decode("ascii") for k, pem in cur.fetchall()}
            cur.execute("SELECT clock_timestamp()")
            row = cur.fetchone()
        conn.commit()
    return {
        "format": EXPORT_FORMAT,
        "exported_at": utc_text(row[0]),
        "checkpoints": [cp.to_json() for cp in latest],
        "public_keys": keys,
    }


def export_notes(doc: dict[str, Any]) -> tuple[str, list[str]]:
    """From an :func:`export_checkpoints` document: (the newest version-3 checkpoint of each
    chain as its signed note, blank-line separated; the chains whose newest checkpoint has no
    note form: version 1 or 2)."""
    notes, legacy = [], []
    for item in doc["checkpoints"]:
        cp = Checkpoint.from_json(item)
        if cp.version != 3:
            legacy.append(cp.category)
            continue
        notes.append(cp.note(load_public_key(doc["public_keys"][cp.key_id])))
    return "\n".join(notes), legacy


# --- reading what was kept ----------------------------------------------------------------


def load_kept(path: Path) -> list[Checkpoint]:
    """Every checkpoint in ``path``: an ``auditlog checkpoint export`` file, an evidence
    bundle (the ZIP, or its manifest.json), or SIEM copies of checkpoints (one JSON object,
    a JSON array, or one per line: JSON, HEC ``{"event": ...}``, OCSF ``{"unmapped":
    {"auditlog_checkpoint": ...}}``
    or the RFC 5424 line). Raises :class:`InvalidFile` naming the line and what is wrong."""
    name = str(path)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                text = zf.read(_BUNDLE_MANIFEST).decode("utf-8")
            name = f"{path}:{_BUNDLE_MANIFEST}"
        else:
            text = path.read_text("utf-8")
    except (OSError, KeyError, UnicodeDecodeError, zipfile.BadZipFile) as exc:
        raise InvalidFile(name, 1, "-", f"cannot be read ({exc})") from None
    found = list(_checkpoints_in(name, text))
    if not found:
        raise InvalidFile(name, 1, "-", "holds no checkpoint")
    return found


def _checkpoints_in(name: str, text: str) -> Iterator[Checkpoint]:
    if f"\n\n{EM_DASH} " in text and not text.lstrip().startswith(("{", "[")):
        yield from _notes_in(name, text)
        return
    try:
        whole = json.loads(text)
    except ValueError:
        pass
    else:
        for item in _items(whole):
            yield _checkpoint(name, 1, item)
        return
    for n, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            for item in _items(_json_of(name, n, line)):
                yield _checkpoint(name, n, item)


def _json_of(name: str, n: int, line: str) -> Any:
    """A JSON line, or the JSON message at the end of an RFC 5424 line."""
    try:
        return json.loads(line)
    except ValueError:
        pass
    at = line.find("{")
    try:
        return json.loads(line[at:]) if at >= 0 else None
    except ValueError as exc:
        raise InvalidFile(
            name, n, "-", f"is neither JSON nor a syslog line with JSON ({exc})"
        ) from None


def _items(doc: Any) -> Iterator[Any]:
    """The checkpoint objects in one parsed document."""
    if isinstance(doc, list):
        for part in doc:
            yield from _items(part)
    elif isinstance(doc, dict):
        if isinstance(doc.get("checkpoints"), list):  # an export or a bundle manifest
            yield from doc["checkpoints"]
        elif "signature" in doc and "entry_hash" in doc:
            yield doc
        else:
            for wrapper in ("event", "unmapped", "auditlog_checkpoint"):  # Splunk HEC, OCSF
                if isinstance(doc.get(wrapper), dict):
                    yield from _items(doc[wrapper])


def _checkpoint(name: str, line: int, item: Any) -> Checkpoint:
    if not isinstance(item, Mapping):
        raise InvalidFile(name, line, "checkpoint", "is not a JSON object")
    try:
        return Checkpoint.from_json(item)
    except KeyError as exc:
        raise InvalidFile(name, line, f"checkpoint.{exc.args[0]}", "is missing") from None
    except (TypeError, ValueError) as exc:
        raise InvalidFile(name, line, "checkpoint", str(exc)) from None


# --- C2SP checkpoint notes ----------------------------------------------------------------


def _notes_in(name: str, text: str) -> Iterator[Checkpoint]:
    """Version-3 checkpoints from signed notes (``Checkpoint.note()``, a witness's copy with
    cosignature lines), one after the other, each note's text and signature block separated
    by a blank line as c2sp.org/signed-note writes them."""
    blocks: list[tuple[int, list[str]]] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            blocks.append((n + 1, []))
        elif not blocks:
            blocks.append((n, [line]))
        else:
            blocks[-1][1].append(line)
    blocks = [(n, lines) for n, lines in blocks if lines]
    body: tuple[int, list[str]] | None = None
    for n, lines in blocks:
        if all(line.startswith(EM_DASH + " ") for line in lines) and body is not None:
            note = "\n".join(body[1]) + "\n\n" + "\n".join(lines) + "\n"
            yield _note_checkpoint(name, body[0], note)
            body = None
        elif body is not None:
            raise InvalidFile(name, body[0], "note", "has no signature lines after its text")
        else:
            body = (n, lines)
    if body is not None:
        raise InvalidFile(name, body[0], "note", "has no signature lines after its text")


def _note_checkpoint(name: str, line: int, text: str) -> Checkpoint:
    """The version-3 checkpoint a note holds, its key_id ``note:<key hash>`` until bound."""
    try:
        note = parse_note(text)
        body = parse_checkpoint(note.text)
    except NoteError as exc:
        raise InvalidFile(name, line, exc.field, exc.reason) from None
    fields = dict(e.split(" ", 1) for e in body.extensions if " " in e)
    if [e.split(" ", 1)[0] for e in body.extensions] != ["head", "prev", "count", "time"]:
        raise InvalidFile(name, line, "note", "is not an auditlog checkpoint (head, prev, "
                          "count and time lines after the root)")  # fmt: skip
    mine = [s for s in note.signatures if s.name == body.origin and len(s.signature) == 64]
    if not mine:
        raise InvalidFile(name, line, "note", f"carries no signature of its origin {body.origin!r}")
    try:
        cp = Checkpoint(
            body.origin.rsplit("/", 1)[-1], body.size, _hex32(fields["head"]), fields["time"],
            NOTE_KEY + mine[0].key_hash.hex(), mine[0].signature, 3, _hex32(fields["prev"]),
            int(fields["count"]), body.origin, body.root,
        )  # fmt: skip
    except ValueError as exc:
        raise InvalidFile(name, line, "note", str(exc)) from None
    if cp.message().decode("utf-8") != note.text:
        raise InvalidFile(name, line, "note", "is not in the exact form auditlog signs")
    return cp


def _hex32(text: str) -> bytes:
    raw = bytes.fromhex(text)
    if len(raw) != 32 or raw.hex() != text:
        raise ValueError(f"{text[:70]!r} is not 64 lower-case hex digits")
    return raw


def bind_note_keys(
    kept: list[Checkpoint], keys: Mapping[str, Ed25519PublicKey]
) -> list[Checkpoint]:
    """The checkpoints read from notes with the key_id of the trusted key whose note key ID
    (SHA-256 of origin and key, c2sp.org/signed-note) they carry; others unchanged (an
    unknown ``note:`` key is then reported as untrusted)."""
    out = []
    for cp in kept:
        if cp.key_id.startswith(NOTE_KEY) and cp.origin is not None:
            wanted = bytes.fromhex(cp.key_id[len(NOTE_KEY) :])
            for key_id, public in keys.items():
                if key_hash(cp.origin, public.public_bytes_raw()) == wanted:
                    cp = dataclasses.replace(cp, key_id=key_id)
                    break
        out.append(cp)
    return out


# --- checking them against today's log -------------------------------------------------------


def check_kept(
    engine: Any, kept: list[Checkpoint], keys: Mapping[str, Ed25519PublicKey]
) -> list[Problem]:
    """One problem for each kept checkpoint that today's log does not still hold and extend."""
    problems = []
    with engine.connect() as sa_conn, driver_errors():
        conn = sa_conn.connection.driver_connection
        chains = {cat: db_checkpoints(conn, cat) for cat in {cp.category for cp in kept}}
        for cp in kept:
            found = _kept_problem(conn, cp, keys, chains.get(cp.category, []))
            if found is not None:
                problems.append(Problem(cp.category, cp.seq, found[0], f"kept {found[1]}"))
        conn.commit()
    return problems


def _kept_problem(
    conn: Any, cp: Checkpoint, keys: Mapping[str, Ed25519PublicKey], chain: list[Checkpoint]
) -> tuple[str, str] | None:
    """(kind, message) when today's log does not hold and extend ``cp``."""
    if cp.category not in CATEGORIES:
        return "untrusted checkpoint", f"{cp.name()}: {cp.category!r} is not a category"
    cp = bind_note_keys([cp], keys)[0]
    if not signature_ok(cp, keys):
        why = f"unknown key {cp.key_id}" if cp.key_id not in keys else "does not verify"
        return "untrusted checkpoint", f"{cp.name()}: its signature {why} (pin with --public-key)"
    head = _held(conn, cp)
    if head is not None:
        return head
    if cp.root is not None:
        rewritten = _extends(conn, cp, chain)
        if rewritten is not None:
            return rewritten
    if cp.version == 1 or cp.count is None:
        return None
    same = [c for c in chain if c.count == cp.count]
    if not same:
        end = max((c.count or 0 for c in chain), default=0)
        return (
            "checkpoint removed",
            f"{cp.name()} is no longer in the log's checkpoint chain, which ends at count "
            f"{end}: checkpoints were deleted from the database",
        )
    if same[0].hash() != cp.hash():
        return (
            "checkpoint replaced",
            f"{cp.name()}: the log's checkpoint count {cp.count} is now {same[0].name()}",
        )
    return None


def _extends(conn: Any, cp: Checkpoint, chain: list[Checkpoint]) -> tuple[str, str] | None:
    """Whether today's tree extends the kept one, by an RFC 9162 consistency proof from the
    kept size to today's newest signed root (logarithmic: no re-read of the chain)."""
    newest = next((c for c in reversed(chain) if c.root is not None and c.seq >= cp.seq), None)
    if newest is None or newest.root is None or cp.root is None:
        return None  # nothing newer signs a root: the head check above is what holds
    try:
        with conn.cursor() as cur:
            proof = TreeReader(cur, cp.category).consistency(cp.seq, newest.seq)
    except KeyError:
        proof = []
    if verify_consistency(cp.seq, newest.seq, cp.root, newest.root, proof):
        return None
    return (
        "tree rewritten",
        f"{cp.name()}: today's tree ({newest.name()}) does not extend the kept tree of "
        f"{cp.seq} entries (the consistency proof fails): entries up to seq {cp.seq} were "
        "rewritten, and the checkpoints re-signed",
    )


def _held(conn: Any, cp: Checkpoint) -> tuple[str, str] | None:
    """Whether the chain still holds (seq, entry_hash) of ``cp`` (or purged it behind an
    anchor); the rest of the chain after it is checked by the full verification."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT entry_hash FROM events WHERE category = %s AND seq = %s",
            (cp.category, cp.seq),
        )
        row = cur.fetchone()
        cur.execute("SELECT max(seq) FROM events WHERE category = %s", (cp.category,))
        top = cur.fetchone()[0]
    anchor_seq, anchor_hash = db_anchor(conn, cp.category)
    if row is not None:
        if bytes(row[0]) != cp.entry_hash:
            return (
                "head replaced",
                f"{cp.name()}: today's entry at seq {cp.seq} has another entry_hash: "
                "the chain was rewritten from there or before",
            )
        return None
    if cp.seq == anchor_seq and anchor_hash != cp.entry_hash:
        return (
            "head replaced",
            f"{cp.name()}: the purge anchor at seq {cp.seq} has another entry_hash",
        )
    if cp.seq <= anchor_seq:
        return None  # purged by retention; the archive holds it (auditlog verify --archive)
    end = top if top is not None else anchor_seq
    return (
        "head removed",
        f"{cp.name()}: today's log ends at seq {end}: entries {end + 1}..{cp.seq} were "
        "removed, with the checkpoints that covered them",
    )
