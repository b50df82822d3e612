"""``auditlog verify``: the database, an evidence bundle (``--bundle``) or an archive
(``--archive``); every problem named by its row, exit 1 when anything does not hold.
``--since FILE`` also checks that today's log holds and extends checkpoints kept earlier;
``--tsa-anchor PEM`` checks every stored time-stamp token against its checkpoint;

``--witness-key KEY ... [--quorum K]`` that each chain's newest checkpoint is witnessed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.engine import Engine

from auditlog.archive.files import verify_archive
from auditlog.cli._common import engine_session, errors, trusted_keys
from auditlog.cli._common import settings as _settings
from auditlog.db.server import connect
from auditlog.evidence.verify import BundleReport, verify_bundle
from auditlog.integrity.checkpoints import Checkpoint
from auditlog.integrity.database import db_public_keys, verify_database
from auditlog.integrity.kept import bind_note_keys, check_kept, load_kept
from auditlog.integrity.stamped import StampCheck, check_stamps
from auditlog.integrity.verifier import Problem, SpanPolicy
from auditlog.integrity.witnessed import (
    Witnessed,
    check_witnessed,
    resolve_quorum,
    witness_keys,
)
from auditlog.model import utc_text
from auditlog.proofs.note import VerifierKey
from auditlog.proofs.timestamp import load_anchors
from auditlog.settings import Settings


def verify(
    public_key: Annotated[
        list[Path] | None, typer.Option(help="trusted public key PEM (repeatable)")
    ] = None,
    bundle: Annotated[
        Path | None, typer.Option(help="check an evidence bundle (ZIP) instead of the database")
    ] = None,
    archive: Annotated[
        Path | None, typer.Option(help="check a retention archive file instead of the database")
    ] = None,
    since: Annotated[
        Path | None,
        typer.Option(
            help="a checkpoint kept earlier (auditlog checkpoint export, a bundle, or the SIEM "
            "copy, or a C2SP checkpoint note such as a witness's): fail unless today's log "
            "still holds and extends it"
        ),
    ] = None,
    witness_key: Annotated[
        list[str] | None,
        typer.Option(
            help="a witness's verifier key (vkey, type 0x04); repeat: each chain's newest "
            "checkpoint must carry valid cosignatures from --quorum of them"
        ),
    ] = None,
    quorum: Annotated[
        int | None,
        typer.Option(
            help="cosignatures needed (default: [witness] quorum, else every --witness-key)"
        ),
    ] = None,
    tsa_anchor: Annotated[
        Path | None,
        typer.Option(
            help="PEM of the time-stamp authority's root CA: check every stored time-stamp "
            "token (signature, imprint against its checkpoint, chain to this anchor)"
        ),
    ] = None,
) -> None:
    """Check every chain and checkpoint; name the first bad category/seq and why (exit 1)."""
    if bundle is not None:
        _verify_bundle(bundle, public_key, tsa_anchor)
    if archive is not None:
        _verify_archive(archive, public_key)
    config = _settings()
    pinned = trusted_keys(public_key)
    with errors():
        kept = load_kept(since) if since is not None else []
        anchors = load_anchors(tsa_anchor) if tsa_anchor is not None else None
        witnesses, k = _witness_rule(config, witness_key, quorum)
    with errors(), engine_session(config, "reader") as engine:
        report = verify_database(engine, pinned, SpanPolicy.of(config))
        keys = pinned or _db_keys(engine)
        kept_problems = check_kept(engine, bind_note_keys(kept, keys), keys) if kept else []
        stamps = check_stamps(engine, anchors)
        chains = [cat for cat, res in report.chains.items() if res.rows]
        seen, unwitnessed = check_witnessed(engine, witnesses, k, chains) if witnesses else ([], [])
    for cat, res in report.chains.items():
        span = f"seq {res.first_seq}..{res.last_seq}" if res.rows else "empty"
        state = "FAIL" if res.problem else "ok"
        typer.echo(f"{state:4} {cat}: {res.rows} rows ({span}), {res.checkpoints} checkpoints")
    for problem in report.problems:
        typer.echo(f"FAIL {problem}", err=True)
    if since is not None:
        _print_kept(since, kept, kept_problems, pinned is not None)
    print_stamps(stamps, tsa_anchor)
    _print_witnessed(seen, unwitnessed, k, len(witnesses))
    ok = report.ok and not kept_problems and stamps.ok and not unwitnessed
    typer.echo("verified: all chains intact" if ok else "verification FAILED")
    raise typer.Exit(0 if ok else 1)


def print_stamps(check: StampCheck, anchor: Path | None) -> None:
    """The time-stamp tokens: checked or not, each bad one, each chain's newest stamped time."""
    if check.checked:
        state = "FAIL" if check.problems else "ok"
        good = check.tokens - len(check.problems)
        typer.echo(
            f"{state:4} time-stamps: {good} of {check.tokens} token(s) verify under {anchor}"
        )
    for problem in check.problems:
        typer.echo(f"FAIL {problem}", err=True)
    for chain in check.newest.values():
        count = f" count {chain.count}" if chain.count is not None else ""
        by = f"by {chain.tsa}" if chain.tsa else "stored, not checked"
        typer.echo(
            f"time {chain.category}: newest stamped checkpoint seq {chain.seq}{count}, "
            f"TSA time {utc_text(chain.gen_time)} ({by}; {chain.tsa_url})"
        )
    if not check.checked and check.tokens:
        typer.echo(
            f"note: {check.tokens} time-stamp token(s) were not checked; give --tsa-anchor PEM "
            "(the TSA's root CA) to check them",
            err=True,
        )


def _witness_rule(
    config: Settings, texts: list[str] | None, quorum: int | None
) -> tuple[list[VerifierKey], int]:
    """The pinned witness keys and K (0 when no key was given)."""
    if not texts:
        if quorum is not None:
            raise typer.BadParameter("--quorum needs --witness-key", param_hint="--quorum")
        return [], 0
    keys = witness_keys(texts)
    return keys, resolve_quorum(quorum, config.witness.quorum, len(keys))


def _print_witnessed(seen: list[Witnessed], problems: list[Problem], k: int, n: int) -> None:
    """Per chain the newest checkpoint with a quorum of cosignatures and when; the findings."""
    for chain in seen:
        typer.echo(chain.line(k, n))
    for problem in problems:
        typer.echo(f"FAIL {problem}", err=True)


def _db_keys(engine: Engine) -> dict[str, Ed25519PublicKey]:
    with engine.connect() as conn:
        return db_public_keys(conn.connection.driver_connection)


def _print_kept(since: Path, kept: list[Checkpoint], problems: list[Problem], pinned: bool) -> None:
    """One line per kept checkpoint: held and extended, or the problem naming it."""
    bad = {(p.category, p.seq) for p in problems}
    for cp in kept:
        if (cp.category, cp.seq) not in bad:
            typer.echo(f"ok   since {since}: {cp.name()} is held and extended")
    for problem in problems:
        typer.echo(f"FAIL since {since}: {problem}", err=True)
    for line in rewritten_spans(kept, problems):
        typer.echo(f"FAIL since {since}: {line}", err=True)
    if not pinned:
        typer.echo(
            "note: the kept checkpoints were checked with the keys registered in the database; "
            "pin the key you obtained out of band with --public-key",
            err=True,
        )


def rewritten_spans(kept: list[Checkpoint], problems: list[Problem]) -> list[str]:
    """Where the first rewritten row of each chain lies: after the last kept checkpoint
    whose head today's chain still holds, at or before the first whose head it replaced
    (a head's entry_hash covers every row up to it, so the rows up to a held head are
    untouched)."""
    kinds = {(p.category, p.seq): p.kind for p in problems}
    out = []
    for cat in sorted({cp.category for cp in kept}):
        mine = [(cp.seq, kinds.get((cp.category, cp.seq))) for cp in kept if cp.category == cat]
        bad = [seq for seq, kind in mine if kind == "head replaced"]
        if not bad:
            continue
        held = [seq for seq, kind in mine if kind in (None, "checkpoint replaced")]
        first = max((seq for seq in held if seq < min(bad)), default=0) + 1
        span = f"seq {first}" if first == min(bad) else f"seq {first}..{min(bad)}"
        out.append(f"{cat}: the first rewritten row is {span}")
    return out


def _verify_bundle(
    bundle: Path, public_key: list[Path] | None, tsa_anchor: Path | None
) -> NoReturn:
    """Check an evidence bundle with nothing but the bundle; name the first bad row (exit 1)."""
    with errors():
        anchors = load_anchors(tsa_anchor) if tsa_anchor is not None else None
    report = verify_bundle(bundle, trusted_keys(public_key), anchors)
    print_report(report, bundle)
    good, present = report.stamps
    if present:
        typer.echo(
            f"time-stamps: {good} of {present} token(s) verified against {tsa_anchor}"
            if tsa_anchor is not None
            else f"time-stamps: {present} token(s) in the bundle, not checked (--tsa-anchor PEM)"
        )
    raise typer.Exit(0 if report.ok else 1)


def print_report(report: BundleReport, path: Path) -> None:
    """The verification outcome, one line per chain and per problem."""
    m = report.manifest or {}
    who = (m.get("exported_by") or {}).get("upn") or (m.get("exported_by") or {}).get("id")
    typer.echo(
        f"bundle {path}: exported {m.get('exported_at', '?')} by {who or '?'}; {report.rows} rows"
    )
    for cat, st in report.chains.items():
        state = "FAIL" if any(p.category == cat for p in report.problems) else "ok"
        span = f"seq {st.runs[0][0]}..{st.runs[-1][1]} in {len(st.runs)} run(s)" if st.runs else "-"
        typer.echo(
            f"{state:4} {cat}: {st.rows} rows ({span}); {st.checkpoints} signed "
            f"checkpoint(s) match, vouching for {st.covered} rows; "
            f"{report.proven.get(cat, 0)} proven members of a signed tree"
        )
    for problem in report.problems:
        typer.echo(f"FAIL {problem}", err=True)
    if not report.key_pinned:
        typer.echo(
            "note: the public key was taken from the bundle itself; pin the key you "
            "obtained out of band (auditlog keys export-public) with --public-key",
            err=True,
        )
    typer.echo("verified: bundle intact" if report.ok else "verification FAILED")


def _archive_keys(public_key: list[Path] | None) -> dict[str, Ed25519PublicKey] | None:
    """Keys given on the command line, else the installation's (None if unreachable)."""
    if public_key:
        return trusted_keys(public_key)
    try:
        engine = connect(_settings(), "reader")
        try:
            with engine.connect() as conn:
                return db_public_keys(conn.connection.driver_connection)
        finally:
            engine.dispose()
    except Exception:  # an offline check: say the signature was not checked
        return None


def _verify_archive(file: Path, public_key: list[Path] | None) -> NoReturn:
    """``auditlog verify --archive FILE``: the manifest, then every row; exit 1 naming the
    first bad row (or the file) when anything is wrong."""
    check = verify_archive(file, _archive_keys(public_key))
    m = check.manifest or {}
    span = f"seq {check.first_seq}..{check.last_seq}" if check.rows else "no rows"
    typer.echo(
        f"archive {check.path.name}: {check.category} {m.get('month', '')} {span}, "
        f"{check.rows} rows; manifest signature: {check.signature}"
    )
    for note in check.notes:
        typer.echo(f"note: {note}")
    if check.problem is not None:
        typer.echo(f"FAIL {check.problem}", err=True)
        typer.echo("verification FAILED")
        raise typer.Exit(1)
    if check.signature == "not checked":
        typer.echo("note: signature not checked; give --public-key to pin the signing key")
    typer.echo("verified: archive intact")
    raise typer.Exit(0)
