"""Auditor sampling: a reproducible random sample of the filtered population, as a bundle.

Public API::

    Sampling(size, seed=None)        a validated request; a missing seed is drawn (secrets)
    rank(seed, event_id) -> str      the selection rule in Python (what an auditor re-implements)
    event_details(section) -> dict   what the export.downloaded event keeps of a sample
    sample_filename(now) -> str      auditlog-sample-<UTC stamp>.zip
    SAMPLE_RULE, MAX_SAMPLE_SIZE

A sample is written by :func:`auditlog.evidence.bundle.write_bundle` with ``sample=``: inside
the export's one read-only snapshot, :meth:`Sampling.draw` counts the population (the rows
the filters match), ranks every population row by :func:`rank` and keeps the ``size``
lowest; the bundle then holds exactly those rows and its signed manifest a ``sample``
section (:meth:`Drawn.manifest`). The rule depends neither on row order nor on any random
number generator, so anyone holding the population can redraw the same sample
(docs/evidence.md, "Auditor sampling").

Errors: :class:`~auditlog.errors.FieldError` naming ``sample size`` or ``sample seed``.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from auditlog.db.tables import events
from auditlog.errors import FieldError
from auditlog.evidence.export import count_rows
from auditlog.model import CATEGORIES, utc_text
from auditlog.query.filters import Filters
from auditlog.query.timeline import where_clauses

SAMPLE_RULE = "sha256-rank/1"
RULE_TEXT = (
    "rank(row) = lower-case hex of SHA-256(UTF-8(seed) || 0x00 || ASCII(event_id)), event_id "
    "lower-case and hyphenated (8-4-4-4-12); sort the population by rank ascending and take "
    "the first `size` rows (all of them when the population is smaller)"
)
MAX_SAMPLE_SIZE = 10_000  # a sample an auditor reads row by row; more is an export
MAX_SEED = 256  # characters
_SEP = b"\x00"
_EVENT_KEYS = ("rule", "seed", "seed_drawn", "size_requested", "size", "population", "heads")


def rank(seed: str, event_id: str) -> str:
    """The rank of one row under :data:`SAMPLE_RULE`: hex SHA-256(seed || 0x00 || event_id).

    Parameters
    ----------
    seed
        The sample's seed, as text (hashed as its UTF-8 bytes, exactly as given).
    event_id
        The row's event_id, lower-case hyphenated UUID text.
    """
    return hashlib.sha256(seed.encode() + _SEP + event_id.lower().encode("ascii")).hexdigest()


def _check_size(size: Any) -> int:
    if isinstance(size, bool) or not isinstance(size, int):
        raise FieldError("sample size", f"expected a whole number, got {size!r}")
    if not 1 <= size <= MAX_SAMPLE_SIZE:
        raise FieldError(
            "sample size", f"{size:,} is out of range; give 1 to {MAX_SAMPLE_SIZE:,} rows"
        )
    return size


def _check_seed(seed: Any) -> str:
    if not isinstance(seed, str):
        raise FieldError("sample seed", f"expected text, got {type(seed).__name__}")
    if not 1 <= len(seed) <= MAX_SEED:
        raise FieldError("sample seed", f"give 1 to {MAX_SEED} characters, got {len(seed)}")
    if not seed.isprintable() or seed != seed.strip():
        raise FieldError(
            "sample seed",
            "has control characters or leading/trailing white space, which nobody can "
            "retype exactly; use letters, digits and punctuation",
        )
    try:
        seed.encode()
    except UnicodeEncodeError:
        raise FieldError("sample seed", "is not valid Unicode (a lone surrogate)") from None
    return seed


@dataclass(frozen=True)
class Sampling:
    """A sample request: how many rows, and the seed (drawn with ``secrets`` when None).

    Attributes
    ----------
    size
        1 to :data:`MAX_SAMPLE_SIZE` rows.
    seed
        Printable text of 1 to 256 characters; ``seed_drawn`` says whether it was drawn.
    """

    size: int
    seed: str | None = None
    seed_drawn: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        """Validate; raises FieldError naming ``sample size`` or ``sample seed``."""
        put = object.__setattr__
        put(self, "size", _check_size(self.size))
        put(self, "seed_drawn", self.seed is None)
        put(self, "seed", _check_seed(secrets.token_hex(16) if self.seed is None else self.seed))

    @property
    def key(self) -> str:
        """The seed, never None after validation."""
        assert self.seed is not None
        return self.seed

    def rank_sql(self) -> sa.ColumnElement[Any]:
        """:func:`rank` in SQL (as bytea: byte order equals the hex order)."""
        prefix = sa.bindparam("sample_prefix", self.key.encode() + _SEP, type_=sa.LargeBinary)
        ident = sa.func.convert_to(sa.cast(events.c.event_id, sa.Text), "UTF8")
        return sa.func.sha256(prefix.op("||")(ident))

    def draw(self, conn: psycopg.Connection[Any], filters: Filters, now: datetime) -> Drawn:
        """Count the population and select the sample, in ``conn``'s snapshot."""
        population = count_rows(conn, filters, now)
        order = self.rank_sql()
        stmt = (
            sa.select(sa.cast(events.c.event_id, sa.Text), sa.func.encode(order, "hex"))
            .where(*where_clauses(filters, now))
            .order_by(order, events.c.event_id)
            .limit(self.size)
        )
        rows = conn.execute(*_compiled(stmt)).fetchall()
        ranked = tuple((str(e), str(r)) for e, r in rows)
        return Drawn(self, population, ranked, *_snapshot_state(conn))

    def details(self) -> dict[str, Any]:
        """What the ``export.downloaded`` event records of the request."""
        return {"rule": SAMPLE_RULE, "seed": self.key, "seed_drawn": self.seed_drawn,
                "size_requested": self.size}  # fmt: skip


def sample_filename(now: datetime | None = None) -> str:
    """``auditlog-sample-20261128T091502Z.zip``."""
    stamp = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"auditlog-sample-{stamp}.zip"


def event_details(section: Mapping[str, Any]) -> dict[str, Any]:
    """What the ``export.downloaded`` event keeps of a manifest's ``sample`` section (the
    chosen ids are pinned by the ZIP's SHA-256, which the event records)."""
    return {k: v for k, v in section.items() if k in _EVENT_KEYS}


def _snapshot_state(conn: psycopg.Connection[Any]) -> tuple[str, dict[str, int]]:
    """When the snapshot's transaction began, and each chain's last seq in it."""
    at = conn.execute("SELECT transaction_timestamp()").fetchone()
    assert at is not None
    heads = {}
    for cat in CATEGORIES:  # one index probe each on the (category, seq) key
        row = conn.execute("SELECT max(seq) FROM events WHERE category = %s", (cat,)).fetchone()
        if row is not None and row[0] is not None:
            heads[cat] = int(row[0])
    return utc_text(at[0]), heads


def _compiled(stmt: sa.Select[Any]) -> tuple[str, dict[str, Any]]:
    dialect = postgresql.psycopg.dialect()  # type: ignore[no-untyped-call]
    compiled = stmt.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    return str(compiled), dict(compiled.params)


@dataclass(frozen=True)
class Drawn:
    """A drawn sample: the population's size and the chosen (event_id, rank) in rank order."""

    sampling: Sampling
    population: int
    ranked: tuple[tuple[str, str], ...]
    snapshot_at: str
    heads: dict[str, int]

    @property
    def event_ids(self) -> list[str]:
        return [e for e, _ in self.ranked]

    def where(self) -> list[sa.ColumnElement[bool]]:
        """The clause restricting an export to the sample (one array parameter)."""
        ids = sa.bindparam("sample_ids", "{" + ",".join(self.event_ids) + "}", type_=sa.Text)
        return [events.c.event_id == sa.any_(sa.cast(ids, postgresql.ARRAY(postgresql.UUID)))]

    def manifest(self, params: Mapping[str, Any], window: Mapping[str, Any]) -> dict[str, Any]:
        """The manifest's ``sample`` section, with the statement of what it proves."""
        s = self.sampling
        return s.details() | {
            "rule_text": RULE_TEXT,
            "size": len(self.ranked),
            "population": self.population,
            "all_taken": len(self.ranked) == self.population,
            "population_filters": dict(params),
            "population_window": dict(window),
            "snapshot_at": self.snapshot_at,
            "heads": dict(self.heads),
            "event_ids": self.event_ids,
            "last_rank": self.ranked[-1][1] if self.ranked else None,
            "statement": self.statement(),
        }

    def statement(self) -> str:
        """In words: what the sample proves, and what it does not."""
        s, n, m = self.sampling, len(self.ranked), self.population
        took = (
            f"the requested size {s.size:,} is not smaller than the population, so all "
            f"{m:,} rows are taken"
            if n == m
            else f"the {n:,} lowest ranks are taken"
        )
        return (
            f"These {n:,} rows are a sample of a population of {m:,} rows matching the filters "
            f"(filters, window) among the rows up to each chain's head seq (heads) in the "
            f"database snapshot of {self.snapshot_at}, drawn by rule "
            f"{SAMPLE_RULE} with seed {s.key!r}: every population row is ranked by "
            f"SHA-256(seed || 0x00 || event_id) and {took}. Each row verifies like any bundle "
            "row. This does not prove that no other row matches the filters, nor that the "
            "population count is complete: the count is the log's own statement; to redraw "
            "the sample, export the same filters and apply the rule."
        )
