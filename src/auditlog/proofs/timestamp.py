"""RFC 3161 trusted time-stamps: ask a time-stamp authority (TSA), keep its token, verify it.

The ASN.1 and the CMS verification are ``rfc3161-client`` (Trail of Bits, used by sigstore);
this module adds the HTTP exchange, the checks a stored token needs and errors that say which
check failed (docs/timestamps.md).

Its errors (TimestampError and subclasses) are in :mod:`auditlog.errors`; bad trust anchors
(unreadable file, no certificate) raise :class:`auditlog.errors.ConfigError`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
from cryptography import x509
from rfc3161_client import (
    HashAlgorithm,
    PKIStatus,
    TimestampRequestBuilder,
    TimeStampResponse,
    VerificationError,
    VerifierBuilder,
    decode_timestamp_response,
)

from auditlog.errors import (
    ConfigError,
    FieldError,
    TimestampBadReply,
    TimestampHTTPError,
    TimestampInvalid,
    TimestampRejected,
    TimestampUnavailable,
)

SHA256 = x509.ObjectIdentifier("2.16.840.1.101.3.4.2.1")
QUERY_TYPE = "application/timestamp-query"
GRANTED = {PKIStatus.GRANTED, PKIStatus.GRANTED_WITH_MODS}  # RFC 3161 2.4.2: a token follows
SHOWN = 200  # characters of a TSA's own text kept in a message


@dataclass(frozen=True)
class Stamp:
    """What a verified token attests: ``message`` existed at ``gen_time``, said ``tsa``."""

    gen_time: datetime
    tsa: str
    serial: int
    policy: str
    hash_alg: str


def _line(text: str) -> str:
    """One line of at most :data:`SHOWN` characters, from a peer's free text."""
    flat = " ".join(text.split())
    return flat if len(flat) <= SHOWN else f"{flat[:SHOWN]}..."


def request_timestamp(
    url: str, message: bytes, *, timeout: float = 10.0, nonce: bool = True
) -> bytes:
    """Ask the TSA at ``url`` to time-stamp ``message``; return the DER TimeStampToken.

    Parameters
    ----------
    url
        The TSA's HTTP(S) endpoint; the request is POSTed as ``application/timestamp-query``.
    message
        The bytes to stamp (a checkpoint's text); the TSA sees only their SHA-256.
    timeout
        Seconds to wait for connecting and for the reply.
    nonce
        Send a random nonce (and require it back), so a replayed old reply is refused.

    Returns
    -------
    bytes
        The TimeStampToken (a CMS SignedData over the TSTInfo), the thing to store; check it
        with :func:`verify_timestamp`.

    Raises
    ------
    TimestampUnavailable, TimestampHTTPError, TimestampRejected, TimestampBadReply
        Named for the cause (see the module docstring).
    """
    if not message:
        raise FieldError("message", "is empty; there is nothing to time-stamp")
    builder = TimestampRequestBuilder().data(message).hash_algorithm(HashAlgorithm.SHA256)
    request = builder.nonce(nonce=nonce).cert_request(cert_request=True).build()
    reply = _post(url, request.as_bytes(), timeout)
    try:
        response = _decode(reply.content)
    except ValueError as exc:
        kind = reply.headers.get("Content-Type", "none")
        reason = f"not a DER TimeStampResp (Content-Type {kind}): {exc}"
        raise TimestampBadReply(url, reason) from None
    _check_reply(url, response, hashlib.sha256(message).digest(), request.nonce)
    return response.time_stamp_token()


def _post(url: str, query: bytes, timeout: float) -> httpx.Response:
    """The TSA's HTTP answer to ``query``; any status but 200 raises."""
    if httpx.URL(url).scheme not in ("http", "https"):
        raise ConfigError(f"time-stamp authority URL {url!r}: use an http:// or https:// URL")
    try:
        reply = httpx.post(
            url, content=query, headers={"Content-Type": QUERY_TYPE}, timeout=timeout
        )
    except httpx.TransportError as exc:
        raise TimestampUnavailable(url, _line(f"{type(exc).__name__}: {exc}")) from None
    if reply.status_code != 200:
        raise TimestampHTTPError(url, reply.status_code, _line(reply.text))
    return reply


def _check_reply(url: str, response: TimeStampResponse, digest: bytes, nonce: int | None) -> None:
    """Refuse a reply that is not granted, or that answers another request."""
    if response.status not in GRANTED:
        status = response.status
        name = PKIStatus(status).name if status in set(PKIStatus) else f"status {status}"
        raise TimestampRejected(url, status, name, _line("; ".join(response.status_string)))
    info = response.tst_info
    if nonce is not None and info.nonce != nonce:
        raise TimestampBadReply(url, f"nonce {info.nonce} differs from the {nonce} sent")
    imprint = info.message_imprint
    if imprint.hash_algorithm != SHA256 or imprint.message != digest:
        raise TimestampBadReply(url, "its message imprint is not the SHA-256 of the message sent")


def load_anchors(pem_path: str | Path) -> list[x509.Certificate]:
    """The trust anchors (root certificates) for time-stamp tokens, from one PEM file.

    Raises
    ------
    ConfigError
        The file cannot be read or holds no PEM certificate; the message names the file.
    """
    try:
        anchors = x509.load_pem_x509_certificates(Path(pem_path).read_bytes())
    except OSError as exc:
        raise ConfigError(f"time-stamp trust anchors {pem_path}: {exc.strerror}") from None
    except ValueError as exc:
        reason = f"not PEM certificates ({exc})"
        raise ConfigError(f"time-stamp trust anchors {pem_path}: {reason}") from None
    return anchors


def verify_timestamp(token: bytes, message: bytes, anchors: Sequence[x509.Certificate]) -> Stamp:
    """Check a stored TimeStampToken for ``message`` against trusted ``anchors``.

    The checks: the CMS signature over the TSTInfo; the signer certificate chains to one of
    ``anchors`` at the token's genTime and has the critical extended key usage timeStamping
    (RFC 3161 2.3); the message imprint is SHA-256 of ``message``; genTime lies within the
    signer certificate's validity.

    Returns
    -------
    Stamp
        genTime (UTC), the signer certificate's subject, the TSA's serial number and policy.

    Raises
    ------
    TimestampInvalid
        ``reason`` names the check that failed.
    ConfigError
        ``anchors`` is empty.
    """
    if not anchors:
        raise ConfigError("time-stamp trust anchors: none given; configure the TSA's root CA")
    response = _as_response(token)
    _check_signature(response, anchors)
    info = response.tst_info
    if info.message_imprint.hash_algorithm != SHA256:
        oid = info.message_imprint.hash_algorithm.dotted_string
        raise TimestampInvalid(f"message imprint uses hash {oid}, not SHA-256")
    if info.message_imprint.message != hashlib.sha256(message).digest():
        raise TimestampInvalid("message imprint is not the SHA-256 of the message")
    signer = _signer(response)
    _check_validity(signer, info.gen_time)
    subject = signer.subject.rfc4514_string()
    return Stamp(info.gen_time, subject, info.serial_number, info.policy.dotted_string, "sha256")


def _as_response(token: bytes) -> TimeStampResponse:
    """The token wrapped as a granted TimeStampResp, the form rfc3161-client verifies."""
    status = b"\x30\x03\x02\x01\x00"  # PKIStatusInfo { status granted }
    try:
        return _decode(_der_sequence(status + token))
    except ValueError as exc:
        raise TimestampInvalid(f"not a DER TimeStampToken ({exc})") from None


def _decode(der: bytes) -> TimeStampResponse:
    """A TimeStampResp decoded whole; ``ValueError`` if any part of it is malformed.

    The library decodes a granted reply's TSTInfo and certificates lazily: they are decoded
    here, so that a malformed part is refused as such, never midway through a check.
    """
    response = decode_timestamp_response(der)
    if response.status in GRANTED:
        _ = response.tst_info.gen_time, response.tst_info.message_imprint.message
        _ = response.signed_data.signer_infos, response.signed_data.certificates
    return response


def _der_sequence(content: bytes) -> bytes:
    """``content`` as a DER SEQUENCE (tag 0x30, definite length)."""
    size = len(content)
    if size < 0x80:
        return b"\x30" + bytes([size]) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return b"\x30" + bytes([0x80 | len(length)]) + length + content


def _check_signature(response: TimeStampResponse, anchors: Sequence[x509.Certificate]) -> None:
    """CMS signature, chain to an anchor and the timeStamping EKU, by rfc3161-client.

    One anchor at a time: OpenSSL picks an issuer by name, so among anchors that share a
    subject (and carry no key identifiers) it may try the wrong one and give up. The imprint is
    compared afterwards, apart, so that the reason names it exactly: here the library is handed
    the token's own imprint.
    """
    imprint = response.tst_info.message_imprint.message
    failures: list[str] = []
    for anchor in dict.fromkeys(anchors):
        try:
            VerifierBuilder().add_root_certificate(anchor).build().verify(response, imprint)
            return
        except VerificationError as exc:
            failures.append(str(exc))
    tried = f" (tried {len(failures)} anchors; the first said)" if len(failures) > 1 else ""
    raise TimestampInvalid(f"signature or signer certificate{tried}: {failures[0]}")


def _signer(response: TimeStampResponse) -> x509.Certificate:
    """The embedded certificate the SignerInfo names (issuer and serial number)."""
    (info,) = response.signed_data.signer_infos  # exactly one: checked by the verifier
    for der in response.signed_data.certificates:
        cert = x509.load_der_x509_certificate(der)
        if cert.issuer == info.issuer and cert.serial_number == info.serial_number:
            return cert
    raise TimestampInvalid("the token carries no certificate matching its signer")


def _check_validity(signer: x509.Certificate, gen_time: datetime) -> None:
    """genTime must fall within the signer certificate's validity."""
    start, end = signer.not_valid_before_utc, signer.not_valid_after_utc
    if not start <= gen_time <= end:
        raise TimestampInvalid(
            f"genTime {gen_time.isoformat()} is outside the TSA certificate's validity "
            f"({start.isoformat()} to {end.isoformat()})"
        )
