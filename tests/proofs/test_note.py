"""Signed notes, vkeys, checkpoints, cosignatures and proof texts (C2SP): the specifications'
own examples, round trips, strict parsing, and tampering (every change fails)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auditlog.errors import NoteError
from auditlog.proofs.merkle import NodeSource, inclusion_proof, leaf_hash, root_of, verify_inclusion
from auditlog.proofs.note import (
    ALG_COSIGNATURE,
    CheckpointBody,
    Note,
    NoteSignature,
    cosign,
    cosignature_time,
    format_consistency,
    format_inclusion,
    format_note,
    key_hash,
    note_signed_by,
    parse_checkpoint,
    parse_consistency,
    parse_inclusion,
    parse_note,
    parse_vkey,
    sign_note,
    vkey,
)

D = "\u2014"
# c2sp.org/signed-note, "Verifier keys / Example": this vkey verifies this note.
SPEC_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
SPEC_NOTE = (
    "This is an example message.\n\n"
    f"{D} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3m"
    "FXmRKuwHjG1Yu72IneyaQM=\n"
)
# c2sp.org/tlog-cosignature: a checkpoint with a log signature and a witness's cosignature.
SPEC_CHECKPOINT = (
    "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n"
    f"{D} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Z"
    "hcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
    f"{D} witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrD"
    "JsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n"
)
ORIGIN = "auditlog.example/governance"
LOG_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
WITNESS_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32, 64)))


def _pub(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


def _leaves(n: int) -> list[bytes]:
    return [leaf_hash(hashlib.sha256(str(i).encode()).digest()) for i in range(n)]


def _node(leaves: list[bytes]) -> NodeSource:
    def node(level: int, index: int) -> bytes:
        return root_of(leaves[index << level : (index + 1) << level])

    return node


def _checkpoint(size: int = 7, extensions: tuple[str, ...] = ()) -> str:
    return CheckpointBody(ORIGIN, size, root_of(_leaves(size)), extensions).text()


def _signed(text: str) -> str:
    return format_note(Note(text, (sign_note(text, ORIGIN, LOG_KEY),)))


def _edits(text: str) -> list[str]:
    """Every one-character change of ``text``: each character replaced by another."""
    out = []
    for i, c in enumerate(text):
        other = "B" if c == "A" else "A"
        out.append(text[:i] + other + text[i + 1 :])
    return out


# --- the specifications' examples ---------------------------------------------------------


def test_the_signed_note_spec_example_verifies_with_its_vkey() -> None:
    key = parse_vkey(SPEC_VKEY)
    note = parse_note(SPEC_NOTE)
    assert note.text == "This is an example message.\n"
    assert key.name == "example.com/foo"
    assert key.key_hash == bytes.fromhex("530d903a") == key_hash(key.name, key.public)
    assert note_signed_by(note, key.name, key.public)
    assert vkey(key.name, key.public) == SPEC_VKEY == key.text()


def test_the_spec_examples_format_back_to_the_same_bytes() -> None:
    for text in (SPEC_NOTE, SPEC_CHECKPOINT):
        assert format_note(parse_note(text)) == text
        assert format_note(parse_note(text.encode("utf-8"))) == text


def test_the_cosignature_spec_example_carries_its_timestamp() -> None:
    note = parse_note(SPEC_CHECKPOINT)
    body = parse_checkpoint(note.text)
    assert (body.origin, body.size, body.extensions) == (
        "example.com/behind-the-sofa",
        20852163,
        (),
    )
    cosig = note.signatures[1]
    assert cosig.name == "witness.example.com/w1"
    assert len(cosig.signature) == 8 + 64
    assert int.from_bytes(cosig.signature[:8], "big") == 1679315147  # the spec's "time" line
    # Without the witness's key it verifies for no one.
    assert cosignature_time(note.text, cosig, cosig.name, _pub(WITNESS_KEY)) is None


def test_the_spec_note_fails_under_any_one_character_change_of_its_text() -> None:
    key = parse_vkey(SPEC_VKEY)
    for changed in _edits("This is an example message.\n"[:-1]):
        forged = SPEC_NOTE.replace("This is an example message.", changed, 1)
        assert not note_signed_by(parse_note(forged), key.name, key.public), changed


# --- signed notes ---------------------------------------------------------------------------


def test_a_signed_note_round_trips_and_verifies() -> None:
    text = _checkpoint()
    note = parse_note(_signed(text))
    assert note.text == text
    assert note_signed_by(note, ORIGIN, _pub(LOG_KEY))
    assert format_note(note) == _signed(text)


def test_the_text_may_hold_empty_lines_and_ends_at_the_last_blank_line() -> None:
    text = "first\n\nthird\n"
    note = parse_note(_signed(text))
    assert note.text == text
    assert note_signed_by(note, ORIGIN, _pub(LOG_KEY))


def test_every_one_character_change_of_the_body_breaks_the_signature() -> None:
    signed = _signed(_checkpoint())
    text = parse_note(signed).text
    for changed in _edits(text[:-1]):
        try:
            note = parse_note(changed + "\n" + signed[len(text) :])
        except NoteError:
            continue
        assert not note_signed_by(note, ORIGIN, _pub(LOG_KEY)), changed


def test_every_one_character_change_of_the_signature_line_fails() -> None:
    signed = _signed(_checkpoint())
    text = parse_note(signed).text
    line = signed[len(text) + 1 : -1]
    for changed in _edits(line):
        try:
            note = parse_note(text + "\n" + changed + "\n")
        except NoteError:
            continue
        assert not note_signed_by(note, ORIGIN, _pub(LOG_KEY)), changed


def test_signatures_of_unknown_keys_are_ignored_but_a_bad_one_of_the_key_fails_the_note() -> None:
    text = _checkpoint()
    good = sign_note(text, ORIGIN, LOG_KEY)
    stranger = sign_note(text, "other.example/log", Ed25519PrivateKey.generate())
    same_name = sign_note(text, ORIGIN, Ed25519PrivateKey.generate())  # same name, other ID
    assert note_signed_by(Note(text, (stranger, same_name, good)), ORIGIN, _pub(LOG_KEY))
    assert not note_signed_by(Note(text, (stranger, same_name)), ORIGIN, _pub(LOG_KEY))
    bad = NoteSignature(ORIGIN, good.key_hash, bytes(64))
    assert not note_signed_by(Note(text, (good, bad)), ORIGIN, _pub(LOG_KEY))


def test_a_signature_under_another_name_is_not_the_keys() -> None:
    text = _checkpoint()
    sig = sign_note(text, "impostor.example/log", LOG_KEY)
    renamed = NoteSignature(ORIGIN, sig.key_hash, sig.signature)
    assert not note_signed_by(Note(text, (renamed,)), ORIGIN, _pub(LOG_KEY))


SIG = base64.b64encode(bytes(4) + bytes(64)).decode()


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ("text\n\n" + f"{D} k {SIG}", "newline"),
        ("text\n" + f"{D} k {SIG}\n", "blank line"),
        ("text\n\n", "no signature"),
        ("te\rxt\n\n" + f"{D} k {SIG}\n", "control"),
        ("te\txt\n\n" + f"{D} k {SIG}\n", "control"),
        ("te\x00xt\n\n" + f"{D} k {SIG}\n", "control"),
        (b"te\xffxt\n\n" + f"{D} k {SIG}\n".encode(), "UTF-8"),
        ("text\n\n" + f"- k {SIG}\n", "em dash"),
        ("text\n\n" + f"{D}k {SIG}\n", "em dash"),
        ("text\n\n" + f"{D}  k {SIG}\n", "key name"),
        ("text\n\n" + f"{D} a+b {SIG}\n", "space or a"),
        ("text\n\n" + f"{D} a\u00a0b {SIG}\n", "space"),
        ("text\n\n" + f"{D} k {SIG} extra\n", "key name"),
        ("text\n\n" + f"{D} k {SIG[:-1]}\n", "base64"),
        ("text\n\n" + f"{D} k {SIG[:-2]}-_\n", "base64"),
        ("text\n\n" + f"{D} k AAAAAB==\n", "canonical"),
        ("text\n\n" + f"{D} k AAAAAA==\n", "shorter"),
        ("text\n\n" + f"{D} k {SIG}\n\n", "no signature line"),
        ("text\n\n" + f"{D} k {SIG}\n" * 65, "more than 64"),
    ],
)
def test_a_malformed_note_is_refused_naming_the_reason(data: str | bytes, says: str) -> None:
    with pytest.raises(NoteError, match=says):
        parse_note(data)


def test_sixteen_signatures_are_accepted() -> None:
    text = _checkpoint()
    sigs = tuple(
        sign_note(text, f"w{i}.example/w", Ed25519PrivateKey.generate()) for i in range(16)
    )
    note = parse_note(format_note(Note(text, (*sigs, sign_note(text, ORIGIN, LOG_KEY)))))
    assert len(note.signatures) == 17
    assert note_signed_by(note, ORIGIN, _pub(LOG_KEY))


def test_formatting_refuses_a_note_without_signatures_or_final_newline() -> None:
    with pytest.raises(NoteError, match="no signature"):
        format_note(Note("text\n", ()))
    with pytest.raises(NoteError, match="newline"):
        format_note(Note("text", (sign_note("text\n", ORIGIN, LOG_KEY),)))


# --- vkeys ----------------------------------------------------------------------------------


def test_a_vkey_round_trips_for_both_key_types() -> None:
    for alg in (0x01, ALG_COSIGNATURE):
        text = vkey("witness.example/w1", _pub(WITNESS_KEY), alg)
        key = parse_vkey(text)
        assert (key.alg, key.public, key.text()) == (alg, _pub(WITNESS_KEY), text)
    assert vkey("w", _pub(WITNESS_KEY), 1) != vkey("w", _pub(WITNESS_KEY), ALG_COSIGNATURE)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("example.com/foo+530d903b+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k", "does not match"),
        ("example.com/fo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k", "does not match"),
        ("example.com/foo+530D903A+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k", "hex"),
        ("example.com/foo+530d903a+AukyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k", "Ed25519"),
        ("example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U0=", "Ed25519"),
        ("example.com/foo+530d903a", "name\\+keyid"),
        ("+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k", "empty"),
    ],
)
def test_a_bad_vkey_is_refused_naming_the_reason(text: str, says: str) -> None:
    with pytest.raises(NoteError, match=says):
        parse_vkey(text)


# --- checkpoints ----------------------------------------------------------------------------


def test_a_checkpoint_round_trips_with_extensions() -> None:
    body = CheckpointBody(ORIGIN, 0, root_of([]), ("ext one", "ext two"))
    assert parse_checkpoint(body.text()) == body
    assert body.text().splitlines()[1:3] == ["0", "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (f"{ORIGIN}\n7\n", "origin, size, root"),
        (f"{ORIGIN}\n07\n{SIG[:44]}\n", "leading zeroes"),
        (f"{ORIGIN}\n+7\n{SIG[:44]}\n", "decimal"),
        (f"{ORIGIN}\n-7\n{SIG[:44]}\n", "decimal"),
        (f"{ORIGIN}\n\u0667\n{SIG[:44]}\n", "decimal"),  # an Arabic-Indic seven
        (f"{ORIGIN}\n{2**64}\n{SIG[:44]}\n", "larger"),
        (f"{ORIGIN}\n7\nAAAA\n", "32"),
        (f"{ORIGIN}\n7\n{'A' * 43}=\n\next\n", "line 4"),
        (f"\n7\n{'A' * 43}=\n", "line 1"),
        (f"{ORIGIN}\n7\n{'A' * 43}=", "newline"),
    ],
)
def test_a_malformed_checkpoint_is_refused_naming_the_line(text: str, says: str) -> None:
    with pytest.raises(NoteError, match=says):
        parse_checkpoint(text)


# --- cosignatures ---------------------------------------------------------------------------


def test_a_cosignature_verifies_and_gives_its_time() -> None:
    text = _checkpoint()
    sig = cosign(text, "witness.example/w1", WITNESS_KEY, 1_700_000_000)
    assert sig.key_hash == key_hash("witness.example/w1", _pub(WITNESS_KEY), ALG_COSIGNATURE)
    assert cosignature_time(text, sig, "witness.example/w1", _pub(WITNESS_KEY)) == 1_700_000_000
    assert parse_note(format_note(Note(text, (sig,)))).signatures == (sig,)


def test_a_cosignature_fails_for_any_changed_body_time_name_or_key() -> None:
    text = _checkpoint(extensions=("ext",))
    name, pub = "witness.example/w1", _pub(WITNESS_KEY)
    sig = cosign(text, name, WITNESS_KEY, 1_700_000_000)
    for changed in _edits(text[:-1]):
        assert cosignature_time(changed + "\n", sig, name, pub) is None, changed
    later = NoteSignature(
        name, sig.key_hash, (1_700_000_001).to_bytes(8, "big") + sig.signature[8:]
    )
    assert cosignature_time(text, later, name, pub) is None
    assert cosignature_time(text, sig, "witness.example/w2", pub) is None
    assert cosignature_time(text, sig, name, _pub(LOG_KEY)) is None


def test_a_note_signature_and_a_cosignature_of_the_same_key_are_not_interchangeable() -> None:
    text = _checkpoint()
    name, pub = "witness.example/w1", _pub(WITNESS_KEY)
    plain = sign_note(text, name, WITNESS_KEY)
    assert cosignature_time(text, plain, name, pub) is None
    cosig = cosign(text, name, WITNESS_KEY, 1_700_000_000)
    assert not note_signed_by(Note(text, (cosig,)), name, pub)
    # Even relabelled with the other type's key ID, neither verifies as the other.
    relabelled = NoteSignature(name, plain.key_hash, cosig.signature)
    assert not note_signed_by(Note(text, (relabelled,)), name, pub)


def test_cosigning_refuses_a_body_that_is_not_a_checkpoint_or_a_bad_time() -> None:
    with pytest.raises(NoteError, match="checkpoint"):
        cosign("just text\n", "w", WITNESS_KEY, 1)
    with pytest.raises(NoteError, match="timestamp"):
        cosign(_checkpoint(), "w", WITNESS_KEY, 2**63)


# --- proof texts ----------------------------------------------------------------------------


def test_an_inclusion_proof_text_round_trips_and_proves_the_leaf() -> None:
    leaves = _leaves(7)
    note = _signed(_checkpoint(7))
    proof = inclusion_proof(5, 7, _node(leaves))
    text = format_inclusion(5, proof, note, "row 6 of the bundle")
    assert text.startswith("c2sp.org/tlog-proof@v1\nextra cm93IDYgb2YgdGhlIGJ1bmRsZQ==\nindex 5\n")
    parsed = parse_inclusion(text)
    assert (parsed.index, list(parsed.proof), parsed.checkpoint_note) == (5, proof, note)
    assert parsed.extra == b"row 6 of the bundle"
    cp = parsed.checkpoint
    assert verify_inclusion(parsed.index, cp.size, leaves[5], parsed.proof, cp.root)
    assert parse_inclusion(format_inclusion(0, [], _signed(_checkpoint(1)))).extra is None


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda t: t.replace("tlog-proof@v1", "tlog-proof@v2"), "line 1"),
        (lambda t: t.replace("index 5", "index 05"), "leading zeroes"),
        (lambda t: t.replace("index 5", "index 7"), "not a leaf"),
        (lambda t: t.replace("index 5\n", ""), "index"),
        (lambda t: t.replace("extra cm93", "extra *m93"), "base64"),
        (lambda t: t.replace("index 5\n", "index 5\nAAAA\n"), "32"),
        (lambda t: t.replace("\n\n", "\n", 1), "not base64"),
        (lambda t: t.replace(ORIGIN + "\n7", ORIGIN + "\n07"), "checkpoint"),
    ],
)
def test_a_malformed_inclusion_proof_text_is_refused(
    change: Callable[[str], str], says: str
) -> None:
    proof = inclusion_proof(5, 7, _node(_leaves(7)))
    text = format_inclusion(5, proof, _signed(_checkpoint(7)), "row 6 of the bundle")
    with pytest.raises(NoteError, match=says):
        parse_inclusion(change(text))


def test_a_consistency_proof_text_is_the_witness_request_body() -> None:
    note = _signed(_checkpoint(7))
    proof = [hashlib.sha256(b"a").digest(), hashlib.sha256(b"b").digest()]
    text = format_consistency(3, proof, note)
    lines = text.split("\n")
    assert lines[0] == "old 3"
    assert [base64.b64decode(x) for x in lines[1:3]] == proof
    assert lines[3] == ""
    parsed = parse_consistency(text.encode("utf-8"))
    assert (parsed.old_size, list(parsed.proof), parsed.checkpoint_note) == (3, proof, note)
    assert parsed.checkpoint.size == 7


def test_a_consistency_text_leaves_a_proof_for_old_zero_to_the_witness() -> None:
    note = _signed(_checkpoint(7))
    body = f"old 0\n{base64.b64encode(bytes(32)).decode()}\n\n{note}"
    assert len(parse_consistency(body).proof) == 1  # the witness answers 422, not 400


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("old 8\n\n{note}", "larger"),
        ("old 01\n\n{note}", "leading zeroes"),
        ("new 1\n\n{note}", "old N"),
        ("old 1\n" + f"{'A' * 43}=\n" * 64 + "\n{note}", "more than 63"),
        ("old 1\nAAAA\n\n{note}", "32"),
        ("old 1\n{note}", "not base64"),
        ("old 1\n\n" + _checkpoint(7), "checkpoint"),
    ],
)
def test_a_malformed_consistency_text_is_refused(body: str, says: str) -> None:
    with pytest.raises(NoteError, match=says):
        parse_consistency(body.replace("{note}", _signed(_checkpoint(7))))
