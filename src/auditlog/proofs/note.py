"""Signed notes and the texts built on them, as the C2SP specifications define them.

- ``c2sp.org/signed-note``: a text ending in a newline, a blank line, signature lines
  ``— <key name> base64(key ID || signature)``; Ed25519 note keys (type 0x01) and vkeys.
- ``c2sp.org/tlog-checkpoint``: the note text ``origin / size / base64 root [/ extensions]``.
- ``c2sp.org/tlog-cosignature``: Ed25519 ``cosignature/v1`` (type 0x04), timestamped.
- ``c2sp.org/tlog-proof``: ``c2sp.org/tlog-proof@v1``, ``extra``, ``index``, the inclusion
  proof, a blank line and the checkpoint; and the consistency proof text a tlog-witness
  ``add-checkpoint`` request carries (``old N``, the proof, a blank line, the checkpoint).

Parsing and formatting use the standard library only; signing and verifying use
``cryptography``. Every parser is strict: anything the specifications do not allow raises
:class:`NoteError`, naming the part of the text that is wrong and why (docs/witness.md).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from auditlog.errors import NoteError

ALG_ED25519 = 0x01  # signed-note: Ed25519 note signatures
ALG_COSIGNATURE = 0x04  # tlog-cosignature: timestamped Ed25519 cosignatures (cosignature/v1)
HASH_SIZE = 32
MAX_SIGNATURES = 64  # the spec asks verifiers to accept at least 16
MAX_PROOF_LINES = 63  # tlog-witness: a client MUST NOT send more
MAX_TIMESTAMP = 2**63 - 1
MAX_SIZE = 2**64 - 1
PROOF_HEADER = "c2sp.org/tlog-proof@v1"
EM_DASH = "\u2014"
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")
_DECIMAL = re.compile(r"0|[1-9][0-9]*")  # ASCII only: \d would take other scripts' digits
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


# --- small strict codecs ------------------------------------------------------------------


def _b64decode(field: str, text: str) -> bytes:
    """Standard base64 (RFC 4648 section 4), padded, in its one canonical spelling."""
    if not _BASE64.fullmatch(text):
        raise NoteError(field, "is not base64 (RFC 4648 standard alphabet)")
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error:
        raise NoteError(field, "is not valid base64 (wrong length or padding)") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise NoteError(field, "is not canonical base64 (non-zero padding bits)")
    return raw


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _decimal(field: str, text: str, limit: int = MAX_SIZE) -> int:
    """An ASCII decimal with no leading zeroes, at most ``limit``."""
    if not _DECIMAL.fullmatch(text):
        raise NoteError(field, f"{text[:40]!r} is not a decimal number without leading zeroes")
    value = int(text)
    if value > limit:
        raise NoteError(field, f"{value} is larger than {limit}")
    return value


def _hash(field: str, text: str) -> bytes:
    raw = _b64decode(field, text)
    if len(raw) != HASH_SIZE:
        raise NoteError(field, f"is {len(raw)} bytes, a SHA-256 hash is {HASH_SIZE}")
    return raw


def _check_text(field: str, text: str) -> None:
    """A note text: ends in a newline, no ASCII control character but the newline."""
    if not text.endswith("\n"):
        raise NoteError(field, "does not end in a newline")
    found = _CONTROL.search(text)
    if found:
        line = text.count("\n", 0, found.start()) + 1
        raise NoteError(field, f"line {line} holds control character {found.group()!r}")


def _check_name(field: str, name: str) -> None:
    if not name:
        raise NoteError(field, "the key name is empty")
    if any(c.isspace() or c == "+" for c in name):
        raise NoteError(field, f"key name {name[:60]!r} holds a space or a '+'")
    if _CONTROL.search(name):
        raise NoteError(field, f"key name {name[:60]!r} holds a control character")


def _verify(public_bytes: bytes, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_bytes).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def _public_bytes(private: Ed25519PrivateKey) -> bytes:
    return private.public_key().public_bytes_raw()


# --- signed notes ---------------------------------------------------------------------------


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: the key's name, its 4-byte key ID and the signature bytes."""

    name: str
    key_hash: bytes
    signature: bytes

    def line(self) -> str:
        """The signature line, ``— name base64(key_hash || signature)`` and a newline."""
        _check_name("signature", self.name)
        if len(self.key_hash) != 4:
            raise NoteError("signature", f"key ID is {len(self.key_hash)} bytes, not 4")
        return f"{EM_DASH} {self.name} {_b64(self.key_hash + self.signature)}\n"


@dataclass(frozen=True)
class Note:
    """A signed note: ``text`` (ending in a newline) and its signature lines."""

    text: str
    signatures: tuple[NoteSignature, ...]


def parse_signature_line(line: str, field: str = "signature line") -> NoteSignature:
    """Parse one signature line (without its newline).

    Raises
    ------
    NoteError
        The line does not start with an em dash and a space, has no name or more than two
        fields, or its signature is not base64 of a key ID and at least one byte.
    """
    if not line.startswith(EM_DASH + " "):
        raise NoteError(field, "does not start with an em dash (U+2014) and a space")
    parts = line[2:].split(" ")
    if len(parts) != 2:
        raise NoteError(field, "is not '\u2014 <key name> <base64 signature>'")
    name, encoded = parts
    _check_name(field, name)
    raw = _b64decode(field, encoded)
    if len(raw) < 5:
        raise NoteError(field, "the signature is shorter than a key ID and one byte")
    return NoteSignature(name, raw[:4], raw[4:])


def parse_signature_lines(block: str, field: str = "signature line") -> list[NoteSignature]:
    """Signature lines, each ending in a newline (a witness's answer, a note's tail)."""
    if not block.endswith("\n"):
        raise NoteError(field, "the last signature line does not end in a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(field, f"{len(lines)} signatures, more than {MAX_SIGNATURES}")
    return [parse_signature_line(s, f"{field} {i}") for i, s in enumerate(lines, 1)]


def parse_note(data: str | bytes) -> Note:
    """Parse a signed note strictly (c2sp.org/signed-note).

    The text is everything up to the last blank line (it includes its final newline); the
    signature lines follow. Signatures are parsed, not verified (:func:`note_signed_by`).

    Raises
    ------
    NoteError
        Not UTF-8, a control character other than the newline, no final newline, no blank
        line, no signature line, or a malformed signature line.
    """
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NoteError("note", f"is not valid UTF-8 (byte {exc.start})") from None
    _check_text("note", data)
    split = data.rfind("\n\n")
    if split < 0:
        raise NoteError("note", "has no blank line between the text and its signatures")
    text, block = data[: split + 1], data[split + 2 :]
    if not block:
        raise NoteError("note", "has no signature line after its last blank line")
    return Note(text, tuple(parse_signature_lines(block)))


def format_note(note: Note) -> str:
    """The note as text: its text, a blank line, one line per signature."""
    _check_text("note text", note.text)
    if not note.signatures:
        raise NoteError("note", "has no signature; a signed note needs at least one")
    return note.text + "\n" + "".join(s.line() for s in note.signatures)


# --- keys -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifierKey:
    """A parsed vkey: name, key ID, signature type and the public key bytes."""

    name: str
    key_hash: bytes
    alg: int
    public: bytes

    def text(self) -> str:
        """The vkey string, ``name+hex(key ID)+base64(type || public key)``."""
        return f"{self.name}+{self.key_hash.hex()}+{_b64(bytes([self.alg]) + self.public)}"


def key_hash(name: str, public_bytes: bytes, alg: int = ALG_ED25519) -> bytes:
    """The 4-byte key ID: ``SHA-256(name || 0x0A || alg || public key)[:4]``.

    Parameters
    ----------
    name
        The key name (no spaces, no '+').
    public_bytes
        The 32-byte Ed25519 public key.
    alg
        The signature type: 0x01 for note signatures, 0x04 for cosignatures.
    """
    _check_name("key name", name)
    material = name.encode("utf-8") + b"\n" + bytes([alg]) + public_bytes
    return hashlib.sha256(material).digest()[:4]


def vkey(name: str, public_bytes: bytes, alg: int = ALG_ED25519) -> str:
    """The verifier key text of an Ed25519 key (type 0x01; a witness's is type 0x04)."""
    if len(public_bytes) != 32:
        raise NoteError("vkey", f"an Ed25519 public key is 32 bytes, not {len(public_bytes)}")
    return VerifierKey(name, key_hash(name, public_bytes, alg), alg, public_bytes).text()


def parse_vkey(s: str) -> VerifierKey:
    """Parse ``name+hex8+base64(type || key)``; the key ID must match name, type and key.

    Raises
    ------
    NoteError
        Not three '+'-separated parts, a bad key ID, an unknown signature type (only 0x01
        and 0x04, Ed25519, are supported), or a key ID that does not match.
    """
    parts = s.strip().split("+", 2)  # base64 may hold '+', the name may not
    if len(parts) != 3:
        raise NoteError("vkey", "is not 'name+keyid+base64key'")
    name, hex_id, encoded = parts
    _check_name("vkey", name)
    if not re.fullmatch(r"[0-9a-f]{8}", hex_id):
        raise NoteError("vkey", f"key ID {hex_id[:20]!r} is not 8 lowercase hex digits")
    raw = _b64decode("vkey key", encoded)
    if len(raw) != 33 or raw[0] not in (ALG_ED25519, ALG_COSIGNATURE):
        raise NoteError("vkey", "is not an Ed25519 key (type 0x01 or 0x04 and 32 bytes)")
    key = VerifierKey(name, bytes.fromhex(hex_id), raw[0], raw[1:])
    if key_hash(name, key.public, key.alg) != key.key_hash:
        raise NoteError("vkey", f"key ID {hex_id} does not match the name and the key")
    return key


def sign_note(text: str, name: str, private: Ed25519PrivateKey) -> NoteSignature:
    """An Ed25519 note signature (type 0x01) over ``text``."""
    _check_text("note text", text)
    kh = key_hash(name, _public_bytes(private))
    return NoteSignature(name, kh, private.sign(text.encode("utf-8")))


def note_signed_by(note: Note, name: str, public_bytes: bytes) -> bool:
    """Is ``note`` signed by this Ed25519 key? True when at least one signature line has the
    key's name and ID and every such line verifies (a line that matches the key but fails
    makes the note bad, as the spec recommends); lines of other keys are ignored."""
    kh = key_hash(name, public_bytes)
    mine = [s for s in note.signatures if s.name == name and s.key_hash == kh]
    message = note.text.encode("utf-8")
    return bool(mine) and all(_verify(public_bytes, s.signature, message) for s in mine)


# --- checkpoints ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckpointBody:
    """The text of a checkpoint: origin, tree size, root hash, optional extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def text(self) -> str:
        """The note text, one line each, ending in a newline."""
        if not 0 <= self.size <= MAX_SIZE:
            raise NoteError("checkpoint size", f"{self.size} is not a tree size")
        if len(self.root) != HASH_SIZE:
            raise NoteError("checkpoint root", f"is {len(self.root)} bytes, not {HASH_SIZE}")
        lines = [self.origin, str(self.size), _b64(self.root), *self.extensions]
        if any(not line or "\n" in line for line in lines[:1] + lines[3:]):
            raise NoteError("checkpoint", "origin and extension lines must be one non-empty line")
        text = "\n".join(lines) + "\n"
        _check_text("checkpoint", text)
        return text


def parse_checkpoint(text: str) -> CheckpointBody:
    """Parse a checkpoint's note text strictly (c2sp.org/tlog-checkpoint).

    Raises
    ------
    NoteError
        Fewer than three lines, an empty line, a size with leading zeroes or not decimal, a
        root that is not base64 of 32 bytes.
    """
    _check_text("checkpoint", text)
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise NoteError("checkpoint", f"has {len(lines)} line(s); origin, size, root needed")
    empty = [i for i, line in enumerate(lines, 1) if not line]
    if empty:
        raise NoteError(f"checkpoint line {empty[0]}", "is empty")
    size = _decimal("checkpoint size", lines[1])
    root = _hash("checkpoint root", lines[2])
    return CheckpointBody(lines[0], size, root, tuple(lines[3:]))


# --- cosignatures ---------------------------------------------------------------------------


def _cosigned_message(body_text: str, timestamp: int) -> bytes:
    return f"cosignature/v1\ntime {timestamp}\n{body_text}".encode()


def cosign(body_text: str, name: str, private: Ed25519PrivateKey, timestamp: int) -> NoteSignature:
    """A ``cosignature/v1`` (type 0x04) over a checkpoint's text at ``timestamp``.

    Parameters
    ----------
    body_text
        The checkpoint's note text (checked with :func:`parse_checkpoint`).
    name
        The cosigner's (witness's) key name.
    private
        The cosigner's Ed25519 key.
    timestamp
        POSIX seconds, ``0 <= timestamp <= 2**63 - 1``.
    """
    parse_checkpoint(body_text)
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise NoteError("cosignature timestamp", f"{timestamp} is outside 0..2**63-1")
    signature = private.sign(_cosigned_message(body_text, timestamp))
    kh = key_hash(name, _public_bytes(private), ALG_COSIGNATURE)
    return NoteSignature(name, kh, timestamp.to_bytes(8, "big") + signature)


def cosignature_time(
    body_text: str, sig: NoteSignature, name: str, public_bytes: bytes
) -> int | None:
    """The timestamp of ``sig`` when it is this cosigner's valid cosignature of
    ``body_text``; None when it is another key's, malformed, or does not verify."""
    if sig.name != name or sig.key_hash != key_hash(name, public_bytes, ALG_COSIGNATURE):
        return None
    if len(sig.signature) != 8 + 64:
        return None
    timestamp = int.from_bytes(sig.signature[:8], "big")
    if timestamp > MAX_TIMESTAMP:
        return None
    message = _cosigned_message(body_text, timestamp)
    return timestamp if _verify(public_bytes, sig.signature[8:], message) else None


# --- proof texts ----------------------------------------------------------------------------


@dataclass(frozen=True)
class InclusionProof:
    """A parsed tlog-proof: leaf index, audit path, the checkpoint note (verbatim), extra."""

    index: int
    proof: tuple[bytes, ...]
    checkpoint_note: str
    extra: bytes | None

    @property
    def note(self) -> Note:
        """The checkpoint as a signed note."""
        return parse_note(self.checkpoint_note)

    @property
    def checkpoint(self) -> CheckpointBody:
        """The checkpoint's body."""
        return parse_checkpoint(self.note.text)


@dataclass(frozen=True)
class ConsistencyProof:
    """A parsed consistency proof text: old size, proof hashes, the new checkpoint note."""

    old_size: int
    proof: tuple[bytes, ...]
    checkpoint_note: str

    @property
    def note(self) -> Note:
        """The new checkpoint as a signed note."""
        return parse_note(self.checkpoint_note)

    @property
    def checkpoint(self) -> CheckpointBody:
        """The new checkpoint's body."""
        return parse_checkpoint(self.note.text)


def _checkpoint_note(field: str, note_text: str) -> CheckpointBody:
    """Check that ``note_text`` is a signed note whose text is a checkpoint."""
    try:
        return parse_checkpoint(parse_note(note_text).text)
    except NoteError as exc:
        raise NoteError(f"{field}: {exc.field}", exc.reason) from None


def _hash_lines(proof: list[bytes], field: str, limit: int) -> str:
    if len(proof) > limit:
        raise NoteError(field, f"{len(proof)} hashes, more than {limit}")
    if any(len(h) != HASH_SIZE for h in proof):
        raise NoteError(field, f"every hash must be {HASH_SIZE} bytes")
    return "".join(_b64(h) + "\n" for h in proof)


def _split_header(text: str, field: str) -> tuple[list[str], str]:
    """The lines before the first blank line, and the note after it."""
    split = text.find("\n\n")
    if split < 0:
        raise NoteError(field, "has no blank line before the checkpoint")
    return text[:split].split("\n"), text[split + 2 :]


def format_inclusion(
    index: int, proof: list[bytes], checkpoint_note: str, extra: str | bytes | None = None
) -> str:
    """A c2sp.org/tlog-proof@v1 text; ``extra`` (bytes, or text taken as UTF-8) is base64ed."""
    cp = _checkpoint_note("tlog-proof checkpoint", checkpoint_note)
    if not 0 <= index < cp.size:
        raise NoteError("tlog-proof index", f"{index} is not a leaf of a tree of {cp.size}")
    head = PROOF_HEADER + "\n"
    if extra is not None:
        raw = extra.encode("utf-8") if isinstance(extra, str) else extra
        head += f"extra {_b64(raw)}\n"
    lines = _hash_lines(proof, "tlog-proof proof", 64)
    return f"{head}index {index}\n{lines}\n{checkpoint_note}"


def parse_inclusion(text: str) -> InclusionProof:
    """Parse a c2sp.org/tlog-proof@v1 text strictly.

    Raises
    ------
    NoteError
        A wrong first line, a bad ``extra`` or ``index`` line, a proof line that is not a
        base64 SHA-256 hash, an index outside the tree, or a checkpoint that is not a
        signed checkpoint note.
    """
    head, note_text = _split_header(text, "tlog-proof")
    if head[0] != PROOF_HEADER:
        raise NoteError("tlog-proof line 1", f"is not {PROOF_HEADER!r}")
    rest, extra = head[1:], None
    if rest and rest[0].startswith("extra "):
        extra = _b64decode("tlog-proof extra", rest[0][6:])
        rest = rest[1:]
    if not rest or not rest[0].startswith("index "):
        raise NoteError("tlog-proof", "has no 'index N' line after the header")
    index = _decimal("tlog-proof index", rest[0][6:])
    if len(rest) - 1 > 64:
        raise NoteError("tlog-proof proof", f"{len(rest) - 1} hashes, more than 64")
    proof = tuple(_hash(f"tlog-proof proof line {i}", h) for i, h in enumerate(rest[1:], 1))
    cp = _checkpoint_note("tlog-proof checkpoint", note_text)
    if index >= cp.size:
        raise NoteError("tlog-proof index", f"{index} is not a leaf of a tree of {cp.size}")
    return InclusionProof(index, proof, note_text, extra)


def format_consistency(old_size: int, proof: list[bytes], note: str) -> str:
    """The body of a tlog-witness ``add-checkpoint`` request: ``old N``, one base64 hash a
    line, a blank line, the new checkpoint note."""
    cp = _checkpoint_note("consistency checkpoint", note)
    if not 0 <= old_size <= cp.size:
        raise NoteError("consistency old size", f"{old_size} is not in 0..{cp.size}")
    return f"old {old_size}\n{_hash_lines(proof, 'consistency proof', MAX_PROOF_LINES)}\n{note}"


def parse_consistency(text: str | bytes) -> ConsistencyProof:
    """Parse an ``add-checkpoint`` body strictly (c2sp.org/tlog-witness).

    A non-empty proof for old size 0 is *not* refused here: the witness answers that with
    422, not 400, so it is left to the consistency check.

    Raises
    ------
    NoteError
        Not UTF-8, no ``old N`` line, more than 63 proof lines, a proof line that is not a
        base64 SHA-256 hash, an old size above the checkpoint's, or a malformed checkpoint.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NoteError("request", f"is not valid UTF-8 (byte {exc.start})") from None
    head, note_text = _split_header(text, "request")
    if not head[0].startswith("old "):
        raise NoteError("request line 1", "is not 'old N'")
    old = _decimal("old size", head[0][4:])
    if len(head) - 1 > MAX_PROOF_LINES:
        raise NoteError("consistency proof", f"{len(head) - 1} lines, more than 63")
    proof = tuple(_hash(f"consistency proof line {i}", h) for i, h in enumerate(head[1:], 1))
    cp = _checkpoint_note("checkpoint", note_text)
    if old > cp.size:
        raise NoteError("old size", f"{old} is larger than the checkpoint's size {cp.size}")
    return ConsistencyProof(old, proof, note_text)
