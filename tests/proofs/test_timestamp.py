"""RFC 3161 time-stamps against a real TSA on loopback (OpenSSL ``ts -reply`` behind HTTP)."""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from auditlog.errors import (
    ConfigError,
    FieldError,
    IntegrityFailure,
    TimestampBadReply,
    TimestampHTTPError,
    TimestampInvalid,
    TimestampRejected,
    TimestampUnavailable,
)
from auditlog.proofs.timestamp import (
    Stamp,
    load_anchors,
    request_timestamp,
    verify_timestamp,
)
from tests.support.tsa import POLICY, LocalTSA

CHECKPOINT = b"auditlog.example/configuration\n42\nq83Ld3zW0SO2kP1qY0eFf5J1O0k5C1m2Qp9sH3aA1Bc=\n"


@pytest.fixture(scope="module")
def tsa() -> Iterator[LocalTSA]:
    with LocalTSA() as running:
        yield running


@pytest.fixture(scope="module")
def token(tsa: LocalTSA) -> bytes:
    return request_timestamp(tsa.url, CHECKPOINT)


def _flips(token: bytes) -> Iterator[tuple[int, bytes]]:
    """Every token with one bit changed (the lowest and the highest of each byte)."""
    for at in range(len(token)):
        for bit in (0x01, 0x80):
            forged = bytearray(token)
            forged[at] ^= bit
            yield at, bytes(forged)


def _stamp_or_none(token: bytes, anchors: LocalTSA) -> Stamp | None:
    try:
        return verify_timestamp(token, CHECKPOINT, [anchors.anchor])
    except TimestampInvalid:
        return None


def test_a_round_trip_verifies_and_says_when_and_by_whom(tsa: LocalTSA, token: bytes) -> None:
    stamp = verify_timestamp(token, CHECKPOINT, [tsa.anchor])
    assert abs(stamp.gen_time - dt.datetime.now(dt.UTC)) < dt.timedelta(seconds=10)
    assert stamp.gen_time.tzinfo is not None
    assert stamp.tsa == tsa.signer.cert.subject.rfc4514_string()
    assert (stamp.policy, stamp.hash_alg) == (POLICY, "sha256")
    assert stamp.serial > 0


def test_openssl_itself_accepts_the_token_the_client_kept(tsa: LocalTSA, token: bytes) -> None:
    assert tsa.openssl_verifies(token, CHECKPOINT)
    assert not tsa.openssl_verifies(token, CHECKPOINT + b"x")


def test_each_stamp_has_its_own_serial(tsa: LocalTSA) -> None:
    serials = {
        verify_timestamp(request_timestamp(tsa.url, CHECKPOINT), CHECKPOINT, [tsa.anchor]).serial
        for _ in range(3)
    }
    assert len(serials) == 3


def test_the_request_is_a_sha256_query_with_nonce_and_cert_request(tsa: LocalTSA) -> None:
    request_timestamp(tsa.url, CHECKPOINT)
    kind, body = tsa.queries[-1]
    text = tsa.query_text(body)
    assert kind == "application/timestamp-query"
    assert "Hash Algorithm: sha256" in text
    assert "Certificate required: yes" in text
    assert "Nonce: 0x" in text


def test_without_nonce_the_request_carries_none(tsa: LocalTSA) -> None:
    token = request_timestamp(tsa.url, CHECKPOINT, nonce=False)
    assert "Nonce: unspecified" in tsa.query_text(tsa.queries[-1][1])
    assert verify_timestamp(token, CHECKPOINT, [tsa.anchor]).hash_alg == "sha256"


def test_a_token_for_another_message_is_refused_naming_the_imprint(
    tsa: LocalTSA, token: bytes
) -> None:
    with pytest.raises(TimestampInvalid, match="message imprint is not the SHA-256") as caught:
        verify_timestamp(token, CHECKPOINT.replace(b"42", b"43"), [tsa.anchor])
    assert isinstance(caught.value, IntegrityFailure)


def test_a_ca_with_the_anchors_very_name_but_another_key_is_refused(tsa: LocalTSA) -> None:
    with LocalTSA(name=tsa.name) as impostor:
        forged = request_timestamp(impostor.url, CHECKPOINT)
        assert impostor.anchor.subject == tsa.anchor.subject
        assert verify_timestamp(forged, CHECKPOINT, [impostor.anchor]).tsa
    with pytest.raises(TimestampInvalid, match="signature or signer certificate"):
        verify_timestamp(forged, CHECKPOINT, [tsa.anchor])


def test_any_of_several_anchors_even_of_one_name_may_vouch(tsa: LocalTSA, token: bytes) -> None:
    with LocalTSA(name=tsa.name) as namesake, LocalTSA() as third:
        for anchors in ([namesake.anchor, tsa.anchor], [tsa.anchor, namesake.anchor, tsa.anchor]):
            assert verify_timestamp(token, CHECKPOINT, anchors).policy == POLICY
        stranger = request_timestamp(third.url, CHECKPOINT)
        with pytest.raises(TimestampInvalid, match="tried 2 anchors"):
            verify_timestamp(stranger, CHECKPOINT, [namesake.anchor, tsa.anchor])


def test_a_flipped_bit_in_the_signed_content_or_signature_is_refused(
    tsa: LocalTSA, token: bytes
) -> None:
    tst_info = tsa.tst_info(token)  # the TSTInfo the signature covers, and its place
    signed = token.find(tst_info)
    assert signed > 0
    covered = {*range(signed, signed + len(tst_info)), *range(len(token) - 64, len(token))}
    accepted = [at for at, forged in _flips(token) if at in covered and _stamp_or_none(forged, tsa)]
    assert accepted == []


def test_no_flipped_bit_anywhere_makes_the_token_attest_something_else(
    tsa: LocalTSA, token: bytes
) -> None:
    # OpenSSL ignores a few unsigned header fields (SignedData version, the signature algorithm
    # identifier): such a flip may still verify, but only as the very same attestation.
    genuine = verify_timestamp(token, CHECKPOINT, [tsa.anchor])
    stamps = {_stamp_or_none(forged, tsa) for _, forged in _flips(token)}
    assert stamps <= {None, genuine}


@pytest.mark.parametrize("garbage", [b"", b"\x30\x00", b"not a token", b"\x30\x82\xff\xff"])
def test_bytes_that_are_no_token_are_refused_as_such(tsa: LocalTSA, garbage: bytes) -> None:
    with pytest.raises(TimestampInvalid, match="not a DER TimeStampToken"):
        verify_timestamp(garbage, CHECKPOINT, [tsa.anchor])


def test_a_truncated_or_extended_token_is_refused(tsa: LocalTSA, token: bytes) -> None:
    for forged in (token[:-1], token + b"\x00", token + token):
        with pytest.raises(TimestampInvalid, match="not a DER TimeStampToken"):
            verify_timestamp(forged, CHECKPOINT, [tsa.anchor])


def test_a_certificate_of_the_ca_without_the_timestamping_eku_cannot_sign_tokens(
    tsa: LocalTSA, token: bytes
) -> None:
    with_eku, without = tsa.resign(token, eku=True), tsa.resign(token, eku=False)
    assert verify_timestamp(with_eku, CHECKPOINT, [tsa.anchor]).tsa.startswith("CN=other")
    with pytest.raises(TimestampInvalid, match="purpose"):
        verify_timestamp(without, CHECKPOINT, [tsa.anchor])


def test_a_token_signed_while_the_tsa_certificate_had_expired_is_refused() -> None:
    now = dt.datetime.now(dt.UTC)
    with LocalTSA(tsa_validity=(now - dt.timedelta(days=3), now - dt.timedelta(days=1))) as old:
        token = request_timestamp(old.url, CHECKPOINT)
        with pytest.raises(TimestampInvalid, match="expired"):
            verify_timestamp(token, CHECKPOINT, [old.anchor])


def test_verifying_with_no_anchor_is_a_configuration_error(token: bytes) -> None:
    with pytest.raises(ConfigError, match="none given"):
        verify_timestamp(token, CHECKPOINT, [])


def test_a_tsa_that_is_down_is_named_in_one_line() -> None:
    with LocalTSA() as gone:
        url = gone.url
    with pytest.raises(TimestampUnavailable, match="could not be reached") as caught:
        request_timestamp(url, CHECKPOINT)
    assert url in str(caught.value)
    assert "\n" not in str(caught.value)
    assert caught.value.status == 503


def test_a_tsa_that_never_answers_times_out_as_unavailable() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
        with pytest.raises(TimestampUnavailable, match="ReadTimeout"):
            request_timestamp(url, CHECKPOINT, timeout=0.3)


def test_an_http_500_names_the_status() -> None:
    with LocalTSA(http_status=500) as broken, pytest.raises(TimestampHTTPError) as caught:
        request_timestamp(broken.url, CHECKPOINT)
    assert "HTTP 500" in str(caught.value)
    assert caught.value.http_status == 500
    assert "TSA out of order" in str(caught.value)


def test_a_rejection_carries_the_tsas_status_and_text() -> None:
    with LocalTSA(digests="sha512") as picky, pytest.raises(TimestampRejected) as caught:
        request_timestamp(picky.url, CHECKPOINT)
    assert caught.value.pki_status == 2
    assert "REJECTION: Message digest algorithm is not supported" in str(caught.value)


def test_a_replayed_reply_is_refused_by_its_nonce() -> None:
    with LocalTSA(replay=True) as replaying:
        request_timestamp(replaying.url, CHECKPOINT)
        with pytest.raises(TimestampBadReply, match="nonce"):
            request_timestamp(replaying.url, CHECKPOINT)


def test_a_reply_for_another_message_is_refused_by_its_imprint() -> None:
    with LocalTSA(replay=True) as replaying:
        request_timestamp(replaying.url, CHECKPOINT, nonce=False)
        with pytest.raises(TimestampBadReply, match="message imprint"):
            request_timestamp(replaying.url, b"another checkpoint", nonce=False)


def test_a_page_answered_with_status_200_is_refused_as_no_reply() -> None:
    portal = LocalTSA(body=b"<html>Sign in to the guest network</html>")
    with portal, pytest.raises(TimestampBadReply, match="not a DER TimeStampResp") as caught:
        request_timestamp(portal.url, CHECKPOINT)
    assert "Content-Type text/html" in str(caught.value)


def test_an_empty_message_is_refused_before_asking(tsa: LocalTSA) -> None:
    asked = len(tsa.queries)
    with pytest.raises(FieldError, match="message: is empty"):
        request_timestamp(tsa.url, b"")
    assert len(tsa.queries) == asked


@pytest.mark.parametrize("url", ["ftp://tsa.example/", "file:///etc/passwd", "tsa.example"])
def test_a_tsa_url_that_is_not_http_is_a_configuration_error(url: str) -> None:
    with pytest.raises(ConfigError, match="http:// or https://"):
        request_timestamp(url, CHECKPOINT)


def test_anchors_load_from_a_pem_file_of_one_or_more_certificates(
    tsa: LocalTSA, tmp_path: Path
) -> None:
    assert load_anchors(tsa.anchor_pem) == [tsa.anchor]
    with LocalTSA() as other:
        both = tmp_path / "anchors.pem"
        both.write_bytes(tsa.anchor_pem.read_bytes() + other.anchor_pem.read_bytes())
        assert load_anchors(both) == [tsa.anchor, other.anchor]


def test_anchors_that_cannot_be_read_name_the_file(tmp_path: Path) -> None:
    missing, junk = tmp_path / "missing.pem", tmp_path / "junk.pem"
    junk.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    with pytest.raises(ConfigError, match=r"missing\.pem: No such file"):
        load_anchors(missing)
    with pytest.raises(ConfigError, match=r"junk\.pem: not PEM certificates"):
        load_anchors(junk)
    (tmp_path / "empty.pem").write_text("")
    with pytest.raises(ConfigError, match=r"empty\.pem: not PEM certificates"):
        load_anchors(tmp_path / "empty.pem")
