"""A real RFC 3161 time-stamp authority on loopback: OpenSSL's ``ts -reply`` behind HTTP.

``LocalTSA`` makes its own root CA and a TSA certificate (extended key usage timeStamping,
critical) with ``cryptography`` in a temporary directory, writes an ``openssl ts`` config and
serves ``POST /`` on ``127.0.0.1:<free port>``: the body (a TimeStampReq) goes through
``openssl ts -reply`` and the reply comes back as ``application/timestamp-reply``.

Each instance is its own, independent trust domain (a second ``LocalTSA`` is a TSA whose CA is
not an anchor of the first). The options make a misbehaving TSA:

- ``http_status``, ``body``: answer every request with this status and body instead (a broken
  TSA, or a proxy's page with status 200);
- ``digests``: the imprint algorithms OpenSSL accepts (others are *rejected*, a PKIStatus);
- ``replay``: answer every request with the first reply it made (a man in the middle's replay);
- ``tsa_validity``: the TSA certificate's (not_before, not_after), e.g. expired.

:meth:`LocalTSA.resign` re-signs a token's TSTInfo with another certificate of the same CA, with
or without the timeStamping EKU (``openssl ts`` itself refuses a signer without it), using
``openssl cms``: the forgery of someone holding any certificate from the TSA's CA.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

POLICY = "1.3.6.1.4.1.99999.3161.1"
HOUR = dt.timedelta(hours=1)
CONFIG = """\
[ tsa ]
default_tsa = local
[ local ]
dir = {dir}
serial = $dir/serial
crypto_device = builtin
signer_cert = $dir/tsa.pem
signer_key = $dir/tsa.key
signer_digest = sha256
default_policy = {policy}
digests = {digests}
accuracy = secs:1
ordering = no
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""


@dataclass(frozen=True)
class Issued:
    """A certificate and its key, also written as PEM files."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    cert_pem: Path
    key_pem: Path


def _write(
    directory: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> Issued:
    cert_pem, key_pem = directory / f"{stem}.pem", directory / f"{stem}.key"
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Issued(cert, key, cert_pem, key_pem)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_usage(**granted: bool) -> x509.KeyUsage:
    """A KeyUsage with only the ``granted`` bits set."""
    bits = [
        *("digital_signature", "content_commitment", "key_encipherment", "data_encipherment"),
        *("key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only"),
    ]
    return x509.KeyUsage(**{bit: granted.get(bit, False) for bit in bits})


def make_ca(directory: Path, common_name: str) -> Issued:
    """A self-signed root CA (EC P-256), valid from an hour ago for a day."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - HOUR)
        .not_valid_after(now + 24 * HOUR)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .sign(key, hashes.SHA256())
    )
    return _write(directory, "ca", cert, key)


def issue(
    ca: Issued,
    directory: Path,
    stem: str,
    *,
    eku: bool = True,
    validity: tuple[dt.datetime, dt.datetime] | None = None,
) -> Issued:
    """A leaf certificate from ``ca``; with ``eku`` it may sign time-stamps (RFC 3161 2.3)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    not_before, not_after = validity or (now - HOUR, now + 12 * HOUR)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(f"{stem} of {ca.cert.subject.rfc4514_string()}"))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True), critical=True)
    )
    if eku:
        usage = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING])
        builder = builder.add_extension(usage, critical=True)
    return _write(directory, stem, builder.sign(ca.key, hashes.SHA256()), key)


def _openssl(*args: str) -> bytes:
    done = subprocess.run(["openssl", *args], capture_output=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {done.stderr.decode(errors='replace')}")
    return done.stdout


@dataclass
class LocalTSA:
    """An OpenSSL time-stamp authority serving HTTP on loopback; use it as a context manager."""

    http_status: int = 200
    body: bytes | None = None
    digests: str = "sha256, sha384, sha512"
    replay: bool = False
    tsa_validity: tuple[dt.datetime, dt.datetime] | None = None
    name: str = "Local Test TSA"
    queries: list[tuple[str, bytes]] = field(default_factory=list)  # (content type, body)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _first_reply: bytes | None = None

    def __enter__(self) -> LocalTSA:
        self.dir = Path(tempfile.mkdtemp(prefix="auditlog-tsa-"))
        self.ca = make_ca(self.dir, self.name)
        self.signer = issue(self.ca, self.dir, "tsa", validity=self.tsa_validity)
        (self.dir / "serial").write_text("01\n")
        config = CONFIG.format(dir=self.dir, policy=POLICY, digests=self.digests)
        (self.dir / "openssl.cnf").write_text(config)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        serve = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        serve.start()  # a short poll: shutdown() waits for one
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.server.shutdown()
        self.server.server_close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def url(self) -> str:
        """Where to POST a TimeStampReq."""
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    @property
    def anchor(self) -> x509.Certificate:
        """The root CA certificate, the trust anchor for this TSA's tokens."""
        return self.ca.cert

    @property
    def anchor_pem(self) -> Path:
        """The root CA certificate as a PEM file."""
        return self.ca.cert_pem

    def reply(self, query: bytes) -> bytes:
        """What ``openssl ts -reply`` answers to ``query`` (serialised: it bumps a serial file)."""
        with self._lock:
            if self.replay and self._first_reply is not None:
                return self._first_reply
            (self.dir / "query.tsq").write_bytes(query)
            out = self.dir / "reply.tsr"
            cnf, tsq = str(self.dir / "openssl.cnf"), str(self.dir / "query.tsq")
            _openssl("ts", "-reply", "-config", cnf, "-queryfile", tsq, "-out", str(out))
            self._first_reply = self._first_reply or out.read_bytes()
            return out.read_bytes()

    def resign(self, token: bytes, *, eku: bool) -> bytes:
        """The token's TSTInfo signed again by a new certificate of this TSA's CA."""
        with self._lock:
            other = issue(self.ca, self.dir, "other", eku=eku)
            tst = self.dir / "tstinfo.der"
            tst.write_bytes(self.tst_info(token))
            return _openssl(
                *("cms", "-sign", "-binary", "-nodetach", "-nosmimecap", "-md", "sha256"),
                *("-econtent_type", "id-smime-ct-TSTInfo", "-in", str(tst), "-outform", "DER"),
                *("-signer", str(other.cert_pem), "-inkey", str(other.key_pem)),
            )

    def tst_info(self, token: bytes) -> bytes:
        """The DER TSTInfo a token signs (its encapsulated content), read by ``openssl cms``."""
        (self.dir / "token.der").write_bytes(token)
        inform = ("-inform", "DER", "-in", str(self.dir / "token.der"))
        return _openssl("cms", "-verify", "-noverify", "-binary", *inform)

    def query_text(self, query: bytes) -> str:
        """``openssl ts -query -text`` of a TimeStampReq: what a TSA reads in it."""
        path = self.dir / "inspect.tsq"
        path.write_bytes(query)
        return _openssl("ts", "-query", "-in", str(path), "-text").decode()

    def openssl_verifies(self, token: bytes, message: bytes) -> bool:
        """Whether ``openssl ts -verify`` (an independent verifier) accepts the token."""
        (self.dir / "check.tst").write_bytes(token)
        (self.dir / "check.msg").write_bytes(message)
        done = subprocess.run(
            [
                *("openssl", "ts", "-verify", "-token_in", "-in", str(self.dir / "check.tst")),
                *("-data", str(self.dir / "check.msg"), "-CAfile", str(self.anchor_pem)),
            ],
            capture_output=True,
            check=False,
        )
        return done.returncode == 0

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        tsa = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                kind = self.headers.get("Content-Type", "")
                tsa.queries.append((kind, body))
                if tsa.http_status != 200 or tsa.body is not None:
                    payload = b"TSA out of order\n" if tsa.body is None else tsa.body
                    return self.answer(tsa.http_status, "text/html", payload)
                if kind != "application/timestamp-query":
                    return self.answer(415, "text/plain", b"want application/timestamp-query\n")
                return self.answer(200, "application/timestamp-reply", tsa.reply(body))

            def answer(self, status: int, kind: str, payload: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:
                pass  # quiet: pytest shows failures, not every request

        return Handler
