"""A witness (c2sp.org/tlog-witness) and the client a log uses to ask it for cosignatures.

The witness is its own process (``auditlog witness serve``) with its own Ed25519 key and its
own state directory. It cosigns a log's checkpoint only when the checkpoint is signed by a
key configured for its origin and extends, by a verified consistency proof, the last
checkpoint it cosigned for that origin; the check and the update of its state happen under
one lock per origin, so two concurrent submissions cannot both advance it (docs/witness.md).

The client's errors (WitnessError and its subclasses) are in :mod:`auditlog.errors`.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from auditlog.errors import (
    ConfigError,
    NoteError,
    WitnessConflict,
    WitnessError,
    WitnessRefused,
    WitnessUnavailable,
)
from auditlog.proofs.merkle import EMPTY_ROOT, verify_consistency
from auditlog.proofs.note import (
    ALG_COSIGNATURE,
    ALG_ED25519,
    ConsistencyProof,
    Note,
    NoteSignature,
    cosign,
    cosignature_time,
    format_consistency,
    format_note,
    key_hash,
    note_signed_by,
    parse_consistency,
    parse_signature_lines,
    parse_vkey,
    vkey,
)

KEY_FILE = "witness_key.pem"
LOGS_DIR = "logs"
SIZE_TYPE = "text/x.tlog.size"
MAX_BODY = 256 * 1024  # 63 hashes and a checkpoint with 64 post-quantum signatures fit


# --- the witness's key ----------------------------------------------------------------------


def load_witness_key(state_dir: Path) -> Ed25519PrivateKey:
    """The witness's Ed25519 key in ``state_dir`` (created, mode 0600, on first use).

    Raises
    ------
    ConfigError
        The key file is readable by group or others, unreadable, or not an Ed25519 key.
    """
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = state_dir / KEY_FILE
    if not path.exists():
        _create_key(path)
    return _read_key(path)


def _create_key(path: Path) -> None:
    """Write a new key beside ``path`` and link it into place: a concurrent reader sees no
    key or a whole one, and of two processes creating it, one key wins."""
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
            fh.flush()
            os.fsync(fh.fileno())
        os.link(tmp, path)
    except FileExistsError:
        pass  # another process made the key first: use theirs
    finally:
        tmp.unlink()


def _read_key(path: Path) -> Ed25519PrivateKey:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise ConfigError(
            f"witness key {path} has mode {mode:04o}: make it readable by its owner only "
            f"(chmod 600 {path})"
        )
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"witness key {path} is unreadable: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"witness key {path} is not an Ed25519 key")
    return key


def witness_vkey(name: str, private: Ed25519PrivateKey) -> str:
    """The witness's verifier key: ``name+id+base64(0x04 || key)`` (a cosignature key)."""
    return vkey(name, private.public_key().public_bytes_raw(), ALG_COSIGNATURE)


def log_keys(vkeys: Sequence[str]) -> dict[str, tuple[bytes, ...]]:
    """The trusted log keys by origin: each vkey (type 0x01) is trusted for the origin that
    is its key name; an origin may have several keys (a rotation)."""
    out: dict[str, tuple[bytes, ...]] = {}
    for text in vkeys:
        key = parse_vkey(text)
        if key.alg != ALG_ED25519:
            raise NoteError("log vkey", f"{key.name}: is not an Ed25519 note key (type 0x01)")
        out[key.name] = (*out.get(key.name, ()), key.public)
    return out


# --- the witness's state --------------------------------------------------------------------


@dataclass(frozen=True)
class OriginState:
    """What the witness keeps per origin: the last cosigned size, root and checkpoint note."""

    size: int
    root: bytes
    checkpoint: str


class StateStore:
    """One JSON file per origin (named by SHA-256 of the origin), written atomically
    (temporary file, fsync, rename, fsync of the directory) under an flock per origin."""

    def __init__(self, state_dir: Path) -> None:
        self.directory = state_dir / LOGS_DIR
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    def _path(self, origin_hash: str, suffix: str) -> Path:
        return self.directory / f"{origin_hash}{suffix}"

    @contextmanager
    def locked(self, origin: str) -> Iterator[None]:
        """Hold the origin's lock (across threads and processes) for a read-check-write."""
        fd = os.open(self._path(origin_hash(origin), ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def read(self, origin: str) -> OriginState | None:
        """The origin's state, or None when the witness never cosigned for it."""
        return self.read_hash(origin_hash(origin))

    def read_hash(self, hashed: str) -> OriginState | None:
        """The state stored under an origin hash (the monitoring endpoint's key)."""
        try:
            doc = json.loads(self._path(hashed, ".json").read_text("utf-8"))
        except FileNotFoundError:
            return None
        return OriginState(int(doc["size"]), bytes.fromhex(doc["root"]), doc["checkpoint"])

    def write(self, origin: str, state: OriginState) -> None:
        """Replace the origin's state atomically and durably."""
        doc = {"origin": origin, "size": state.size, "root": state.root.hex()}
        data = json.dumps({**doc, "checkpoint": state.checkpoint}, indent=1).encode("utf-8")
        final = self._path(origin_hash(origin), ".json")
        tmp = final.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def origin_hash(origin: str) -> str:
    """Lower-case hex SHA-256 of the origin (tlog-witness's monitoring path)."""
    return hashlib.sha256(origin.encode("utf-8")).hexdigest()


# --- deciding ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: status, body, content type."""

    status: int
    body: str
    content_type: str = "text/plain; charset=utf-8"


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Witness:
    """The witness's rules, apart from HTTP: :meth:`add_checkpoint` takes a request body and
    gives the answer tlog-witness prescribes."""

    def __init__(
        self,
        name: str,
        private: Ed25519PrivateKey,
        logs: Mapping[str, Sequence[bytes]],
        store: StateStore,
        *,
        clock: Callable[[], float] = time.time,
        log: Callable[[str], None] = _stderr,
    ) -> None:
        self.vkey = witness_vkey(name, private)  # also refuses a name with spaces or '+'
        self.name, self.private, self.store = name, private, store
        self.logs = {origin: tuple(keys) for origin, keys in logs.items()}
        self.clock, self.report = clock, log

    def refuse(self, status: int, origin: str | None, reason: str) -> Answer:
        """Log the refusal as one line on stderr and answer it."""
        self.report(f"witness refused {status} origin={origin!r}: {reason}")
        return Answer(status, reason + "\n")

    def add_checkpoint(self, body: bytes) -> Answer:
        """Check and cosign one ``add-checkpoint`` request (c2sp.org/tlog-witness)."""
        try:
            request = parse_consistency(body)
        except NoteError as exc:
            return self.refuse(400, None, f"malformed request: {exc}")
        note, cp = request.note, request.checkpoint
        keys = self.logs.get(cp.origin)
        if keys is None:
            return self.refuse(404, cp.origin, "unknown origin: no log key is configured for it")
        bad = self._signature_problem(note, cp.origin, keys)
        if bad:
            return self.refuse(403, cp.origin, bad)
        with self.store.locked(cp.origin):
            return self._advance(request, note, keys)

    def _signature_problem(self, note: Note, origin: str, keys: Sequence[bytes]) -> str | None:
        known = {key_hash(origin, k): k for k in keys}
        mine = [s for s in note.signatures if s.name == origin and s.key_hash in known]
        if not mine:
            return "the checkpoint carries no signature from a trusted key for its origin"
        if not all(note_signed_by(note, origin, known[s.key_hash]) for s in mine):
            return "a signature from a trusted key for the origin does not verify"
        return None

    def _advance(self, request: ConsistencyProof, note: Note, keys: Sequence[bytes]) -> Answer:
        cp = request.checkpoint
        state = self.store.read(cp.origin)
        size, root = (state.size, state.root) if state else (0, EMPTY_ROOT)
        if request.old_size != size:
            self.report(
                f"witness refused 409 origin={cp.origin!r}: old {request.old_size}, at {size}"
            )
            return Answer(409, f"{size}\n", SIZE_TYPE)
        problem = _inconsistency(request, size, root)
        if problem:
            return self.refuse(422, cp.origin, problem)
        sig = cosign(note.text, self.name, self.private, max(1, int(self.clock())))
        logs = tuple(
            s for s in note.signatures if any(note_signed_by(note, s.name, k) for k in keys)
        )
        kept = format_note(Note(note.text, (*logs, sig)))
        self.store.write(cp.origin, OriginState(cp.size, cp.root, kept))
        return Answer(200, sig.line())

    def checkpoint(self, hashed: str) -> Answer:
        """The latest cosigned checkpoint of the origin whose SHA-256 is ``hashed``."""
        state = self.store.read_hash(hashed) if re.fullmatch(r"[0-9a-f]{64}", hashed) else None
        if state is None:
            return Answer(404, "no checkpoint cosigned for this origin\n")
        return Answer(200, state.checkpoint)


def _inconsistency(request: ConsistencyProof, size: int, root: bytes) -> str | None:
    """Why the checkpoint does not extend (size, root), or None when it does."""
    cp = request.checkpoint
    if cp.size == 0 and cp.root != EMPTY_ROOT:
        return "a checkpoint of size 0 must have the empty tree's root"
    if size == 0 and request.proof:
        return "old size 0 takes an empty consistency proof"
    if size == cp.size and cp.root != root:
        return f"fork: size {size} is already cosigned with another root hash"
    if size == cp.size and request.proof:
        return "a checkpoint of the same size takes an empty consistency proof"
    if not verify_consistency(size, cp.size, root, cp.root, request.proof):
        return f"the consistency proof from size {size} to {cp.size} does not verify"
    return None


# --- HTTP -------------------------------------------------------------------------------------


async def _body(request: Request) -> bytes | None:
    """The request body, or None when it is larger than MAX_BODY."""
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def make_app(witness: Witness) -> Starlette:
    """The witness's HTTP interface: ``POST /add-checkpoint`` and, for monitors,
    ``GET /<origin hash>/checkpoint``."""

    def respond(answer: Answer) -> Response:
        return Response(answer.body, answer.status, media_type=answer.content_type)

    async def add_checkpoint(request: Request) -> Response:
        body = await _body(request)
        if body is None:
            return respond(witness.refuse(413, None, f"request body over {MAX_BODY} bytes"))
        return respond(await run_in_threadpool(witness.add_checkpoint, body))

    async def checkpoint(request: Request) -> Response:
        return respond(witness.checkpoint(request.path_params["origin_hash"]))

    return Starlette(
        routes=[
            Route("/add-checkpoint", add_checkpoint, methods=["POST"]),
            Route("/{origin_hash}/checkpoint", checkpoint, methods=["GET"]),
        ]
    )


def serve(
    state_dir: Path, name: str, vkeys: Sequence[str], host: str = "127.0.0.1", port: int = 7380
) -> None:
    """Run the witness under uvicorn until interrupted (``auditlog witness serve``)."""
    import uvicorn

    logs = log_keys(vkeys)
    witness = Witness(name, load_witness_key(state_dir), logs, StateStore(state_dir))
    _stderr(f"witness {witness.vkey} on http://{host}:{port}")
    uvicorn.run(make_app(witness), host=host, port=port, log_level="warning", access_log=False)


# --- the client -------------------------------------------------------------------------------


class WitnessClient:
    """Ask one witness to cosign checkpoints (the log's side of c2sp.org/tlog-witness).

    Parameters
    ----------
    url
        The witness's submission prefix, e.g. ``http://witness.example:7380``.
    name
        The witness's key name; must be the name in ``vkey``.
    vkey
        The witness's cosignature verifier key (type 0x04).
    timeout
        Seconds for connecting and for each read.
    transport
        An httpx transport (tests, proxies); the default is a real connection.
    """

    def __init__(
        self,
        url: str,
        name: str,
        vkey: str,
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        key = parse_vkey(vkey)
        if key.alg != ALG_COSIGNATURE:
            raise NoteError("witness vkey", "is not a cosignature key (type 0x04)")
        if key.name != name:
            raise NoteError("witness vkey", f"names {key.name!r}, not the witness {name!r}")
        self.url, self.name, self.public = url.rstrip("/"), name, key.public
        self._http = httpx.Client(timeout=timeout, transport=transport)

    def __enter__(self) -> WitnessClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def add_checkpoint(
        self, old_size: int, proof: Sequence[bytes], note_text: str
    ) -> NoteSignature:
        """Submit ``note_text`` with a consistency proof from ``old_size``; return the
        witness's cosignature, verified against its key.

        Raises
        ------
        WitnessConflict
            The witness is at another size (``.size``): prove from there and submit again.
        WitnessRefused
            Any other refusal, or an answer without a valid cosignature from this witness.
        WitnessUnavailable
            The witness could not be reached, timed out, or answered 502/503/504.
        """
        body = format_consistency(old_size, list(proof), note_text)
        try:
            response = self._http.post(f"{self.url}/add-checkpoint", content=body.encode())
        except httpx.HTTPError as exc:
            raise WitnessUnavailable(f"witness {self.name} at {self.url}: {exc}") from None
        if response.status_code == 200:
            return self._cosignature(response.text, note_text)
        raise self._error(response)

    def submit(
        self, note_text: str, proof_from: Callable[[int], Sequence[bytes]], old_size: int = 0
    ) -> NoteSignature:
        """Like :meth:`add_checkpoint`, and when the witness answers with its size, prove
        from that size (``proof_from(size)``) and submit once more."""
        try:
            return self.add_checkpoint(old_size, proof_from(old_size), note_text)
        except WitnessConflict as conflict:
            return self.add_checkpoint(conflict.size, proof_from(conflict.size), note_text)

    def _cosignature(self, text: str, note_text: str) -> NoteSignature:
        body = note_text[: note_text.rfind("\n\n") + 1]
        try:
            lines = parse_signature_lines(text, "witness answer")
        except NoteError as exc:
            raise WitnessRefused(200, f"answer is not signature lines: {exc}", self.name) from None
        for sig in lines:
            stamp = cosignature_time(body, sig, self.name, self.public)
            if stamp is not None and stamp > 0:  # tlog-witness: the time is never zero
                return sig
        raise WitnessRefused(200, "the answer holds no valid cosignature of its key", self.name)

    def _error(self, response: httpx.Response) -> WitnessError:
        status = response.status_code
        kind = response.headers.get("content-type", "").split(";")[0].strip()
        if (
            status == 409
            and kind == SIZE_TYPE
            and re.fullmatch(r"(0|[1-9][0-9]*)\n", response.text)
        ):
            return WitnessConflict(int(response.text), f"witness {self.name}")
        reason = (response.text.splitlines() or [""])[0][:300]
        if status in (502, 503, 504):
            return WitnessUnavailable(f"witness {self.name} answered {status}: {reason}")
        return WitnessRefused(status, reason, f"witness {self.name}")
