"""The witness as a real process (`auditlog witness serve` on a loopback port), spoken to over
HTTP by the log's client and by hand: it cosigns only consistent extensions of what it last
cosigned, and refuses stale sizes, forged proofs, forks, rewrites, rollbacks and strangers."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auditlog.errors import WitnessConflict, WitnessRefused, WitnessUnavailable
from auditlog.proofs.merkle import consistency_proof, leaf_hash, root_of
from auditlog.proofs.note import (
    CheckpointBody,
    Note,
    NoteSignature,
    cosignature_time,
    format_consistency,
    format_note,
    note_signed_by,
    parse_note,
    parse_vkey,
    sign_note,
    vkey,
)
from auditlog.proofs.witness import (
    WitnessClient,
    origin_hash,
)
from tests.support.rsyslog import free_port

ORIGIN = "auditlog.example/governance"
WITNESS = "witness.example/w1"
LOG_KEY = Ed25519PrivateKey.generate()
LOG_VKEY = vkey(ORIGIN, LOG_KEY.public_key().public_bytes_raw())


@dataclass
class Log:
    """A log as the test drives it: leaves, signed checkpoints, consistency proofs."""

    key: Ed25519PrivateKey = LOG_KEY
    leaves: list[bytes] = field(default_factory=list)

    def grow(self, n: int, seed: str = "a") -> Log:
        start = len(self.leaves)
        self.leaves += [
            leaf_hash(hashlib.sha256(f"{seed}{start + i}".encode()).digest()) for i in range(n)
        ]
        return self

    def copy(self) -> Log:
        return Log(self.key, list(self.leaves))

    def note(self, size: int | None = None, origin: str = ORIGIN) -> str:
        size = len(self.leaves) if size is None else size
        text = CheckpointBody(origin, size, root_of(self.leaves[:size])).text()
        return format_note(Note(text, (sign_note(text, origin, self.key),)))

    def proof(self, old: int, new: int | None = None) -> list[bytes]:
        def node(level: int, index: int) -> bytes:
            return root_of(self.leaves[index << level : (index + 1) << level])

        return consistency_proof(old, len(self.leaves) if new is None else new, node)


@dataclass
class Running:
    process: subprocess.Popen[bytes]
    url: str
    stderr: Path
    vkey: str

    def client(self, timeout: float = 10.0) -> WitnessClient:
        return WitnessClient(self.url, WITNESS, self.vkey, timeout=timeout)

    def post(self, body: str | bytes) -> httpx.Response:
        data = body.encode("utf-8") if isinstance(body, str) else body
        return httpx.post(f"{self.url}/add-checkpoint", content=data, timeout=10)

    def refusals(self) -> list[str]:
        return [
            line
            for line in self.stderr.read_text("utf-8").splitlines()
            if line.startswith("witness refused")
        ]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "auditlog", "witness", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Running]]:
    """Start `auditlog witness serve` on a free loopback port and wait until it answers."""
    running: list[Running] = []

    def _start(state: Path | None = None, logs: tuple[str, ...] = (LOG_VKEY,)) -> Running:
        state = state or tmp_path / "witness"
        port = free_port()
        err = tmp_path / f"stderr-{port}.txt"
        args = ["serve", "--state", str(state), "--name", WITNESS, "--port", str(port)]
        for log in logs:
            args += ["--log", log]
        with err.open("wb") as fh:
            cmd = [sys.executable, "-m", "auditlog", "witness", *args]
            process = subprocess.Popen(cmd, stderr=fh, stdout=subprocess.DEVNULL)
        server = Running(process, f"http://127.0.0.1:{port}", err, "")
        running.append(server)
        _wait_ready(server)
        server.vkey = err.read_text("utf-8").split()[1]  # "witness <vkey> on <url>"
        return server

    yield _start
    for server in running:
        if server.process.poll() is None:
            server.stop()


def _wait_ready(server: Running) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"witness exited: {server.stderr.read_text('utf-8')}")
        try:
            httpx.get(f"{server.url}/{'0' * 64}/checkpoint", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError("witness did not start listening")


def _verify(sig: NoteSignature, note: str, server: Running) -> int | None:
    public = parse_vkey(server.vkey).public
    return cosignature_time(parse_note(note).text, sig, WITNESS, public)


# --- cosigning --------------------------------------------------------------------------------


def test_the_first_checkpoint_is_cosigned_and_served_to_monitors(
    start: Callable[..., Running],
) -> None:
    server, log = start(), Log().grow(5)
    with server.client() as client:
        before = int(time.time())
        sig = client.add_checkpoint(0, [], log.note())
    stamp = _verify(sig, log.note(), server)
    assert stamp is not None
    assert before <= stamp <= time.time() + 1
    kept = httpx.get(f"{server.url}/{origin_hash(ORIGIN)}/checkpoint", timeout=5)
    assert kept.status_code == 200
    note = parse_note(kept.text)
    assert note.text == parse_note(log.note()).text
    assert note_signed_by(note, ORIGIN, LOG_KEY.public_key().public_bytes_raw())
    assert sig in note.signatures


def test_an_extension_with_a_valid_consistency_proof_is_cosigned(
    start: Callable[..., Running],
) -> None:
    server, log = start(), Log().grow(5)
    with server.client() as client:
        client.add_checkpoint(0, [], log.note())
        log.grow(4)
        sig = client.add_checkpoint(5, log.proof(5), log.note())
        assert _verify(sig, log.note(), server)
        again = client.add_checkpoint(9, [], log.note())  # the same head again: still fine
        assert _verify(again, log.note(), server)


def test_a_stale_old_size_gets_409_with_the_size_and_the_client_proves_from_it(
    start: Callable[..., Running],
) -> None:
    server, log = start(), Log().grow(9)
    with server.client() as client:
        client.add_checkpoint(0, [], log.note())
        log.grow(3)
        answer = server.post(format_consistency(5, log.proof(5), log.note()))
        assert answer.status_code == 409
        assert answer.headers["content-type"].split(";")[0] == "text/x.tlog.size"
        assert answer.text == "9\n"
        with pytest.raises(WitnessConflict) as conflict:
            client.add_checkpoint(0, [], log.note())
        assert conflict.value.size == 9
        sig = client.submit(log.note(), log.proof, old_size=5)
    assert _verify(sig, log.note(), server)


def test_a_forged_consistency_proof_is_refused_with_422(start: Callable[..., Running]) -> None:
    server, log = start(), Log().grow(9)
    with server.client() as client:
        client.add_checkpoint(0, [], log.note())
        log.grow(3)
        good = log.proof(9)
        for i in range(len(good)):
            forged = [*good]
            forged[i] = hashlib.sha256(forged[i]).digest()
            with pytest.raises(WitnessRefused) as refused:
                client.add_checkpoint(9, forged, log.note())
            assert refused.value.status == 422
            assert "does not verify" in refused.value.reason
        for proof in ([], good[:-1], [*good, good[0]]):
            with pytest.raises(WitnessRefused, match="422"):
                client.add_checkpoint(9, proof, log.note())
        assert _verify(client.add_checkpoint(9, good, log.note()), log.note(), server)


def test_a_fork_at_the_same_size_is_refused(start: Callable[..., Running]) -> None:
    server, log = start(), Log().grow(9)
    fork = Log().grow(9, seed="other")
    with server.client() as client:
        client.add_checkpoint(0, [], log.note())
        with pytest.raises(WitnessRefused) as refused:
            client.add_checkpoint(9, [], fork.note())
    assert refused.value.status == 422
    assert "fork" in refused.value.reason
    assert any("422" in line and "fork" in line for line in server.refusals())


def test_a_rewritten_prefix_re_signed_with_the_log_key_is_refused(
    start: Callable[..., Running],
) -> None:
    """The attacker holds the database and the log's signing key: rewrite row 3, rebuild the
    tree, sign new heads, and prove consistency inside the rewritten tree."""
    server, log = start(), Log().grow(9)
    with server.client() as client:
        client.add_checkpoint(0, [], log.note())
        rewritten = log.copy()
        rewritten.leaves[2] = leaf_hash(b"the row as the attacker wants it")
        rewritten.grow(7, seed="later")
        for old in (9, 0, 8):
            with pytest.raises((WitnessRefused, WitnessConflict)) as refused:
                client.add_checkpoint(old, rewritten.proof(old), rewritten.note())
            assert refused.value.status in (409, 422)
        honest = log.copy().grow(7, seed="later")
        assert _verify(
            client.add_checkpoint(9, honest.proof(9), honest.note()), honest.note(), server
        )


def test_a_rollback_to_a_smaller_size_is_refused(start: Callable[..., Running]) -> None:
    server, log = start(), Log().grow(9)
    with server.client() as client:
        client.add_checkpoint(0, [], log.note())
        assert server.post(f"old 9\n\n{log.note(5)}").status_code == 400
        with pytest.raises(WitnessConflict) as conflict:
            client.add_checkpoint(5, [], log.note(5))
        assert conflict.value.size == 9
        with pytest.raises(WitnessConflict):
            client.add_checkpoint(0, [], log.note(0))
    kept = parse_note(httpx.get(f"{server.url}/{origin_hash(ORIGIN)}/checkpoint").text)
    assert kept.text.split("\n")[1] == "9"


def test_a_checkpoint_without_a_trusted_signature_is_refused(start: Callable[..., Running]) -> None:
    server = start()
    stranger = Log(key=Ed25519PrivateKey.generate()).grow(5)
    with server.client() as client:
        with pytest.raises(WitnessRefused) as refused:
            client.add_checkpoint(0, [], stranger.note())
        assert refused.value.status == 403
        with pytest.raises(WitnessRefused) as refused:
            client.add_checkpoint(0, [], Log().grow(5).note(origin="elsewhere.example/log"))
        assert refused.value.status == 404
        honest = parse_note(Log().grow(5).note())
        broken = NoteSignature(ORIGIN, honest.signatures[0].key_hash, bytes(64))
        with pytest.raises(WitnessRefused) as refused:
            client.add_checkpoint(
                0, [], format_note(Note(honest.text, (*honest.signatures, broken)))
            )
        assert refused.value.status == 403
    statuses = [line.split()[2] for line in server.refusals()]
    assert statuses == ["403", "404", "403"]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"old 0\n",
        b"old x\n\n",
        b"old 0\n\nnot a checkpoint\n\n\xe2\x80\x94 k AAAAAAA=\n",
        b"\xff\xfe",
        b"old 0\n" + b"A" * 400_000,
    ],
)
def test_a_malformed_request_is_refused_with_400_and_logged(
    start: Callable[..., Running], body: bytes
) -> None:
    server = start()
    answer = server.post(body)
    assert answer.status_code in (400, 413)
    assert answer.text.endswith("\n")
    assert "\n" not in answer.text[:-1]
    assert len(server.refusals()) == 1


def test_old_size_zero_with_a_proof_is_unprocessable(start: Callable[..., Running]) -> None:
    server, log = start(), Log().grow(5)
    answer = server.post(format_consistency(0, [bytes(32)], log.note()))
    assert answer.status_code == 422


def test_state_and_key_survive_a_restart(start: Callable[..., Running], tmp_path: Path) -> None:
    state = tmp_path / "kept"
    first, log = start(state), Log().grow(9)
    with first.client() as client:
        client.add_checkpoint(0, [], log.note())
    first.stop()
    key_file = state / "witness_key.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    second = start(state)
    assert second.vkey == first.vkey
    with second.client() as client:
        with pytest.raises(WitnessConflict) as conflict:
            client.add_checkpoint(0, [], log.note())
        assert conflict.value.size == 9
        log.grow(2)
        assert _verify(client.add_checkpoint(9, log.proof(9), log.note()), log.note(), second)


def test_of_two_concurrent_extensions_exactly_one_is_cosigned(
    start: Callable[..., Running],
) -> None:
    """Two heads that both extend size 9 but not each other (a split view): the witness must
    cosign only one, whatever the timing."""
    server, base = start(), Log().grow(9)
    with server.client() as client:
        client.add_checkpoint(0, [], base.note())
    size = 9
    for round_ in range(5):
        heads = [base.copy().grow(3, seed=f"{round_}-{side}") for side in "ab"]
        outcomes = _race(server, heads, size)
        winners = [o for o in outcomes if not o.startswith("409")]
        assert len(winners) == 1, outcomes
        assert f"409 {size + 3}" in outcomes
        base = next(h for h in heads if h.note() == winners[0])
        size += 3


def _race(server: Running, heads: list[Log], old: int) -> list[str]:
    """Submit every head at once from its own connection; what each got back."""
    barrier = threading.Barrier(len(heads))
    outcomes: list[str] = []

    def submit(head: Log) -> None:
        with server.client() as mine:
            barrier.wait()
            try:
                mine.add_checkpoint(old, head.proof(old), head.note())
                outcomes.append(head.note())
            except WitnessConflict as exc:
                outcomes.append(f"409 {exc.size}")

    threads = [threading.Thread(target=submit, args=(h,)) for h in heads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


def test_the_client_verifies_the_cosignature_against_its_witness_key(
    start: Callable[..., Running], tmp_path: Path
) -> None:
    real, impostor, log = start(), start(tmp_path / "impostor"), Log().grow(5)
    assert impostor.vkey != real.vkey
    client = WitnessClient(impostor.url, WITNESS, real.vkey)
    with client, pytest.raises(WitnessRefused) as refused:
        client.add_checkpoint(0, [], log.note())
    assert refused.value.status == 200
    assert "no valid cosignature" in refused.value.reason


def test_an_unreachable_witness_is_unavailable() -> None:
    key = vkey(WITNESS, Ed25519PrivateKey.generate().public_key().public_bytes_raw(), 0x04)
    client = WitnessClient(f"http://127.0.0.1:{free_port()}", WITNESS, key, timeout=2)
    with client, pytest.raises(WitnessUnavailable, match=WITNESS):
        client.add_checkpoint(0, [], Log().grow(1).note())


def test_the_client_refuses_a_vkey_that_is_not_the_witnesses_cosignature_key() -> None:
    public = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    with pytest.raises(ValueError, match="type 0x04"):
        WitnessClient("http://127.0.0.1:1", WITNESS, vkey(WITNESS, public))
    with pytest.raises(ValueError, match="not the witness"):
        WitnessClient("http://127.0.0.1:1", "other.example/w", vkey(WITNESS, public, 0x04))


# --- the command line -------------------------------------------------------------------------


def test_witness_key_creates_the_key_once_and_prints_the_same_vkey(tmp_path: Path) -> None:
    first = _cli("key", "--state", str(tmp_path / "w"), "--name", WITNESS)
    second = _cli("key", "--state", str(tmp_path / "w"), "--name", WITNESS)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    key = parse_vkey(first.stdout.strip())
    assert (key.name, key.alg) == (WITNESS, 0x04)


def test_a_key_file_readable_by_others_is_refused_in_one_line(tmp_path: Path) -> None:
    _cli("key", "--state", str(tmp_path / "w"), "--name", WITNESS)
    os.chmod(tmp_path / "w" / "witness_key.pem", 0o644)
    done = _cli("key", "--state", str(tmp_path / "w"), "--name", WITNESS)
    assert done.returncode == 1
    assert done.stderr.startswith("error: witness key")
    assert "chmod 600" in done.stderr
    assert "Traceback" not in done.stderr


def test_serve_refuses_a_bad_log_vkey_in_one_line(tmp_path: Path) -> None:
    done = _cli("serve", "--state", str(tmp_path), "--name", WITNESS, "--log", "not-a-vkey")
    assert done.returncode == 1
    assert done.stderr.startswith("error: vkey")
    assert "Traceback" not in done.stderr
    cosigner_key = vkey(ORIGIN, bytes(32), 0x04)
    done = _cli("serve", "--state", str(tmp_path), "--name", WITNESS, "--log", cosigner_key)
    assert done.returncode == 1
    assert "type 0x01" in done.stderr
