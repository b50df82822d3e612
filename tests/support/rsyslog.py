"""Real receivers for the SIEM tests: Debian's rsyslogd on loopback (TCP and TLS listeners
writing each raw message to a file), plus the test CA and server certificate they use.

rsyslogd runs unprivileged-capable from a config in a temporary directory:
``rsyslogd -n -f <conf> -i <pidfile>``. The template writes ``%rawmsg%`` JSON-escaped, one
message per line, with rsyslog's own control-character escaping turned off, so a line read
back is exactly the message sent (after framing).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

RSYSLOGD = Path(os.environ.get("AUDITLOG_RSYSLOGD", "/usr/sbin/rsyslogd"))


def wait_for_rsyslogd(timeout: float = 300.0) -> Path:
    """The rsyslogd binary, waiting while ``scripts/system-deps.sh`` may still install it."""
    end = time.monotonic() + timeout
    while not (RSYSLOGD.exists() and _gtls_installed()):
        if time.monotonic() > end:
            raise RuntimeError(
                f"{RSYSLOGD} (with rsyslog-gnutls) is not installed; run `make system-deps`"
            )
        time.sleep(2)
    return RSYSLOGD


def _gtls_installed() -> bool:
    return any(
        Path(p).exists()
        for p in (
            "/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so",
            "/usr/lib/aarch64-linux-gnu/rsyslog/lmnsd_gtls.so",
            "/usr/lib/rsyslog/lmnsd_gtls.so",
        )
    )


@dataclass(frozen=True)
class TlsFiles:
    """A throwaway CA and a server certificate for 127.0.0.1 / localhost signed by it."""

    ca_pem: str
    ca_path: Path
    cert_path: Path
    key_path: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(
    subject: str,
    issuer: str,
    key: ec.EllipticCurvePrivateKey,
    signer: ec.EllipticCurvePrivateKey,
    ca: bool,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        alt = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    else:
        usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
        builder = builder.add_extension(usage, critical=True)
    return builder.sign(signer, hashes.SHA256())


def make_tls_files(directory: Path, ca_name: str = "auditlog test CA") -> TlsFiles:
    """Write ``ca.pem``, ``server.pem`` and ``server.key`` to ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, srv_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    ca = _cert(ca_name, ca_name, ca_key, ca_key, ca=True)
    srv = _cert("localhost", ca_name, srv_key, ca_key, ca=False)
    pem = serialization.Encoding.PEM
    ca_pem = ca.public_bytes(pem).decode()
    (directory / "ca.pem").write_text(ca_pem)
    (directory / "server.pem").write_bytes(srv.public_bytes(pem))
    key = srv_key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (directory / "server.key").write_bytes(key)
    return TlsFiles(
        ca_pem, directory / "ca.pem", directory / "server.pem", directory / "server.key"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


CONFIG = """\
global(workDirectory="{dir}" maxMessageSize="1m"
       parser.escapeControlCharactersOnReceive="off"
       parser.dropTrailingLFOnReception="off"{tls_global})
module(load="imtcp")
template(name="raw" type="string" string="\\"%rawmsg:::json%\\"\\n")
ruleset(name="plain") {{ action(type="omfile" file="{dir}/plain-{gen}.log" template="raw") }}
input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="plain")
{tls_input}
"""
TLS_GLOBAL = """
       defaultNetstreamDriverCAFile="{ca}" defaultNetstreamDriverCertFile="{cert}"
       defaultNetstreamDriverKeyFile="{key}\""""
TLS_INPUT = """\
ruleset(name="tls") {{ action(type="omfile" file="{dir}/tls-{gen}.log" template="raw") }}
input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="tls"
      streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
"""


class Rsyslog:
    """A real rsyslogd on loopback: ``port`` (plain TCP) and ``tls_port`` (RFC 5425)."""

    def __init__(self, directory: Path, tls: TlsFiles | None = None) -> None:
        self.binary = wait_for_rsyslogd()
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.tls = tls
        self.port = free_port()
        self.tls_port = free_port() if tls else None
        self.gen = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def _config(self) -> str:
        tls_global = tls_input = ""
        if self.tls:
            t = self.tls
            tls_global = TLS_GLOBAL.format(ca=t.ca_path, cert=t.cert_path, key=t.key_path)
            tls_input = TLS_INPUT.format(dir=self.dir, gen=self.gen, port=self.tls_port)
        return CONFIG.format(
            dir=self.dir, gen=self.gen, port=self.port, tls_global=tls_global, tls_input=tls_input
        )

    def start(self) -> Rsyslog:
        """Start (or restart) rsyslogd; a restart writes to new files (generation + 1)."""
        self.gen += 1
        conf, pid = self.dir / "rsyslog.conf", self.dir / "rsyslog.pid"
        conf.write_text(self._config())
        pid.unlink(missing_ok=True)
        log = (self.dir / "rsyslogd.out").open("ab")
        args = [str(self.binary), "-n", "-f", str(conf), "-i", str(pid)]
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        for port in filter(None, (self.port, self.tls_port)):
            self._wait_listening(port)
        return self

    def _wait_listening(self, port: int, timeout: float = 10.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc is not None and self.proc.poll() is not None:
                out = (self.dir / "rsyslogd.out").read_text(errors="replace")
                raise RuntimeError(f"rsyslogd exited with {self.proc.returncode}: {out[-2000:]}")
            if _listening(port):
                return
            time.sleep(0.05)
        raise RuntimeError(f"rsyslogd is not listening on 127.0.0.1:{port}")

    def freeze(self) -> None:
        """SIGSTOP: it stops reading (a hung receiver); ``kill`` still works."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGSTOP)

    def kill(self) -> None:
        """SIGKILL: no flush, no goodbye."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
            self.proc = None

    def messages(self, listener: str = "plain") -> list[str]:
        """Every message received on ``listener`` (``plain`` or ``tls``), all generations.

        A line cut short by SIGKILL is skipped (its message is one the sender re-sends).
        """
        out = []
        for path in sorted(self.dir.glob(f"{listener}-*.log")):
            # split on LF only: str.splitlines would also split on U+2028, NEL, ...
            for line in path.read_text("utf-8").split("\n"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
        return out

    def wait_for(self, count: int, listener: str = "plain", timeout: float = 30.0) -> list[str]:
        """Messages once there are at least ``count`` (or whatever arrived by ``timeout``)."""
        end = time.monotonic() + timeout
        while True:
            found = self.messages(listener)
            if len(found) >= count or time.monotonic() > end:
                return found
            time.sleep(0.05)


def _listening(port: int) -> bool:
    # Read /proc rather than connect, so probing leaves no connection in rsyslog's log.
    hexport = f":{port:04X}"
    for table in ("/proc/net/tcp",):
        with open(table) as f:
            for line in f.readlines()[1:]:
                parts = line.split()
                if parts[1].endswith(hexport) and parts[3] == "0A":
                    return True
    return False
