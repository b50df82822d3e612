"""Real witnesses for the log's side of witnessing: `auditlog witness serve` on loopback."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from auditlog.integrity.keys import Signer
from auditlog.model import CATEGORIES
from auditlog.proofs.note import vkey
from auditlog.proofs.witness import load_witness_key, origin_hash, witness_vkey
from tests.support.rsyslog import free_port


def log_vkeys(deployment: str, signer: Signer) -> list[str]:
    """The log's note keys, one per chain's origin ``<deployment>/<category>``."""
    raw = signer.public.public_bytes_raw()
    return [vkey(f"{deployment}/{c}", raw) for c in CATEGORIES]


@dataclass
class WitnessProcess:
    """A witness: its name, state directory, port and key; running or not."""

    name: str
    state: Path
    port: int
    logs: list[str]
    stderr: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def vkey(self) -> str:
        return witness_vkey(self.name, load_witness_key(self.state))

    def entry(self) -> str:
        """Its ``[witness] servers`` entry."""
        return f"{self.vkey} {self.url}"

    def start(self) -> WitnessProcess:
        args = ["serve", "--state", str(self.state), "--name", self.name]
        args += ["--port", str(self.port), *(a for k in self.logs for a in ("--log", k))]
        with self.stderr.open("ab") as fh:
            cmd = [sys.executable, "-m", "auditlog", "witness", *args]
            self.process = subprocess.Popen(cmd, stderr=fh, stdout=subprocess.DEVNULL)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"witness exited: {self.stderr.read_text('utf-8')}")
            try:
                httpx.get(f"{self.url}/{'0' * 64}/checkpoint", timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.05)
        raise AssertionError("witness did not start listening")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def latest(self, origin: str) -> str:
        """The last checkpoint note it cosigned for ``origin`` (with its cosignature)."""
        answer = httpx.get(f"{self.url}/{origin_hash(origin)}/checkpoint", timeout=10)
        assert answer.status_code == 200, answer.text
        return answer.text

    def refusals(self) -> list[str]:
        text = self.stderr.read_text("utf-8") if self.stderr.exists() else ""
        return [line for line in text.splitlines() if line.startswith("witness refused")]


class Witnesses:
    """Makes witnesses under ``tmp``; stops every one at the end of the test."""

    def __init__(self, tmp: Path, logs: list[str]) -> None:
        self.tmp, self.logs, self.made = tmp, logs, list[WitnessProcess]()

    def make(self, name: str, start: bool = True) -> WitnessProcess:
        """A witness whose key exists; started unless ``start=False`` (it is down)."""
        safe = name.replace("/", "_")
        w = WitnessProcess(name, self.tmp / safe, free_port(), self.logs, self.tmp / f"{safe}.err")
        load_witness_key(w.state)
        self.made.append(w)
        return w.start() if start else w

    def stop_all(self) -> None:
        for w in self.made:
            w.stop()
