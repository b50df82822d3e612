"""Evidence export: CSV and NDJSON files of the events a filter selects, streamed.

Public API::

    ExportSettings (auditlog.settings)       guard rails (AUDITLOG_MAX_EXPORT_ROWS, ...)
    Export(engine, filters, fmt, log=..., actor=...)   iterate for bytes; .result at the end
    csv_chunks(engine, filters, log=..., actor=...)    the CSV as bytes chunks (download button)
    write_export(engine, out, filters, fmt, log=..., actor=...) -> ExportResult
    matching_rows(engine, filters, limits) -> int      raises ExportTooLarge over the cap
    export_filename(fmt, now), MEDIA_TYPES

The columns and how each reads back are :data:`auditlog.columns.CSV_COLUMNS` / ``CSV_KINDS``.

The CSV is produced by PostgreSQL's ``COPY ... TO STDOUT (FORMAT csv)`` from one snapshot, in
(category, seq) order, and passed through in ~1 MiB chunks: memory stays constant whatever the
row count. Every export (or refused / broken-off attempt) is recorded as an
``export.downloaded`` event. The file format is specified in docs/evidence.md.

Errors: :class:`ExportTooLarge` (more rows match than ``max_export_rows``), ``InvalidFilter``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any, Literal

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Dialect, Engine

from auditlog.columns import BY_NAME, CSV_COLUMNS, EventColumn
from auditlog.db.server import driver_errors
from auditlog.db.tables import events as _events
from auditlog.errors import AuditLogError, ExportTooLarge, FieldError
from auditlog.model import OutcomeName, new_event, utc_text
from auditlog.query.filters import Filters
from auditlog.query.table import utc as _utc
from auditlog.query.timeline import where_clauses
from auditlog.settings import ExportSettings
from auditlog.store import AuditLog, Receipt

Format = Literal["csv", "ndjson"]
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "ndjson": "application/x-ndjson"}
# The leading characters that make a spreadsheet evaluate a cell (OWASP), and the quote
# that marks an escaped cell; an empty text value is written as a lone quote.
FORMULA_TRIGGERS = "=+-@\t\r'"
Where = Sequence[sa.ColumnElement[bool]]  # extra WHERE clauses, ANDed with the filters

# --- SQL ------------------------------------------------------------------------------------

_c = _events.c


def _escaped(text: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """The formula escape in SQL: a leading ' on empty text or text starting with a trigger."""
    trigger = sa.func.strpos(FORMULA_TRIGGERS, sa.func.left(text, 1)) > 0
    return sa.case((sa.or_(text == "", trigger), sa.literal("'") + text), else_=text)


def _utc_text(ts: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    return sa.func.to_char(_utc(ts), 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')


def _canonical_ip(ip: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """IPv4 dotted quad, IPv6 as 8 groups of 4 hex digits (``model.canonical_ip``)."""
    # inet_send: 4 header bytes, then the address; a regexp or LATERAL costs twice as much.
    hexed = sa.func.encode(sa.func.substr(sa.func.inet_send(ip), 5), "hex")
    groups = [sa.func.substr(hexed, i, 4) for i in range(1, 32, 4)]
    ipv6 = sa.func.concat_ws(":", *groups)
    return sa.case((sa.func.family(ip) == 4, sa.func.host(ip)), (ip.is_not(None), ipv6))


def _json_text(col: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    return sa.func.coalesce(sa.cast(col, sa.Text), "null")


def _csv_expr(col: EventColumn) -> sa.ColumnElement[Any]:
    """A column's CSV cell in SQL, by its record form (docs/evidence.md)."""
    value: sa.ColumnElement[Any] = _c[col.name]
    if col.csv == "hex":
        return sa.func.encode(value, "hex")
    if col.record == "json":
        return _json_text(value)
    if col.record == "timestamp":
        return _utc_text(value)
    if col.record == "ip":
        return _canonical_ip(value)
    if col.record != "text":
        value = sa.cast(value, sa.Text)
    return _escaped(value) if col.escape else value


CSV_SELECT: dict[str, sa.ColumnElement[Any]] = {n: _csv_expr(BY_NAME[n]) for n in CSV_COLUMNS}
_NDJSON_LINE = (
    sa.func.left(_c.record, -1)
    + ',"prev_hash":"'
    + sa.func.encode(_c.prev_hash, "hex")
    + '","entry_hash":"'
    + sa.func.encode(_c.entry_hash, "hex")
    + '"}'
)


def _compile(stmt: sa.Select[Any], dialect: Dialect) -> tuple[str, dict[str, Any]]:
    compiled = stmt.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    return str(compiled), dict(compiled.params)


def _filtered(
    stmt: sa.Select[Any], filters: Filters, now: datetime, where: Where = ()
) -> sa.Select[Any]:
    # The timeline's own filter -> WHERE translation (bound parameters), so an export holds
    # exactly what the filtered view shows; ``where`` narrows further (a sample's rows).
    return stmt.select_from(_events).where(*where_clauses(filters, now), *where)


def csv_sql(
    filters: Filters, now: datetime, dialect: Dialect, where: Where = ()
) -> tuple[str, dict[str, Any]]:
    """The ``COPY ... TO STDOUT (FORMAT csv, HEADER)`` statement of an export, and its params."""
    cols = [expr.label(name) for name, expr in CSV_SELECT.items()]
    stmt = _filtered(sa.select(*cols), filters, now, where).order_by(_c.category, _c.seq)
    sql, params = _compile(stmt, dialect)
    return f"COPY ({sql}) TO STDOUT (FORMAT csv, HEADER)", params


def ndjson_sql(
    filters: Filters, now: datetime, dialect: Dialect, where: Where = ()
) -> tuple[str, dict[str, Any]]:
    """SELECT category, seq, line (one NDJSON line, no newline) in (category, seq) order."""
    stmt = sa.select(_c.category, _c.seq, _NDJSON_LINE.label("line"))
    return _compile(_filtered(stmt, filters, now, where).order_by(_c.category, _c.seq), dialect)


# --- streaming ------------------------------------------------------------------------------


@dataclass
class Tally:
    """Rows and bytes of one output file, and its SHA-256, as they stream past."""

    rows: int = 0
    size: int = 0
    sha: Any = field(default_factory=hashlib.sha256)

    def take(self, blob: bytes, rows: int) -> bytes:
        self.sha.update(blob)
        self.size += len(blob)
        self.rows += rows
        return blob

    @property
    def sha256(self) -> str:
        return str(self.sha.hexdigest())


@contextmanager
def snapshot(engine: Engine, limits: ExportSettings) -> Iterator[psycopg.Connection[Any]]:
    """A read-only REPEATABLE READ transaction: every query of one export sees the same rows."""
    with engine.connect() as sa_conn:
        sa_conn = sa_conn.execution_options(
            isolation_level="REPEATABLE READ", postgresql_readonly=True
        )
        with sa_conn.begin(), driver_errors():
            conn: psycopg.Connection[Any] = sa_conn.connection.driver_connection  # type: ignore[assignment]
            conn.execute(
                "SELECT set_config('statement_timeout', %s, true), "
                "set_config('client_encoding', 'UTF8', true)",
                (str(limits.export_timeout_ms),),
            )
            yield conn


def count_rows(
    conn: psycopg.Connection[Any], filters: Filters, now: datetime, where: Where = ()
) -> int:
    stmt = _filtered(sa.select(sa.func.count()), filters, now, where)
    sql, params = _compile(stmt, _dialect())
    row = conn.execute(sql, params).fetchone()
    return int(row[0]) if row else 0


def check_cap(rows: int, limits: ExportSettings) -> None:
    if limits.max_export_rows and rows > limits.max_export_rows:
        raise ExportTooLarge(rows, limits.max_export_rows)


def _dialect() -> Dialect:
    from sqlalchemy.dialects.postgresql import psycopg as pg

    return pg.dialect()  # type: ignore[no-untyped-call]


def csv_blobs(
    conn: psycopg.Connection[Any],
    filters: Filters,
    now: datetime,
    tally: Tally,
    chunk: int,
    where: Where = (),
) -> Iterator[bytes]:
    """The CSV file in chunks of about ``chunk`` bytes, rows ending in CRLF (RFC 4180).

    PostgreSQL sends one COPY message per row (header first), each ending in LF; an LF
    inside a quoted cell is part of the value and stays as it is.
    """
    sql, params = csv_sql(filters, now, _dialect(), where)
    parts: list[Any] = []
    size, header = 0, 1
    with conn.cursor() as cur, cur.copy(sql, params) as copy:
        for row in copy:
            if row[-1] != 10:
                raise AuditLogError("COPY returned a partial row; export aborted, nothing valid")
            parts.append(row[:-1])
            size += len(row) + 1
            if size >= chunk:
                yield tally.take(b"\r\n".join(parts) + b"\r\n", len(parts) - header)
                parts, size, header = [], 0, 0
    if parts:
        yield tally.take(b"\r\n".join(parts) + b"\r\n", len(parts) - header)


def ndjson_blobs(
    conn: psycopg.Connection[Any],
    filters: Filters,
    now: datetime,
    tally: Tally,
    chunk: int,
    on_row: Any = None,
    where: Where = (),
) -> Iterator[bytes]:
    """The NDJSON file in chunks; ``on_row(category, seq)`` is called for every row."""
    sql, params = ndjson_sql(filters, now, _dialect(), where)
    lines: list[str] = []
    size = 0
    with conn.cursor(name="auditlog_export_ndjson") as cur:
        cur.itersize = 2000
        cur.execute(sql, params)
        for category, seq, line in cur:
            if on_row is not None:
                on_row(category, seq)
            lines.append(line)
            size += len(line) + 1
            if size >= chunk:
                yield tally.take(("\n".join(lines) + "\n").encode(), len(lines))
                lines, size = [], 0
    if lines:
        yield tally.take(("\n".join(lines) + "\n").encode(), len(lines))


# --- one export, audited ----------------------------------------------------------------------


@dataclass(frozen=True)
class ExportResult:
    """What an export produced; ``sha256`` is of the exact bytes delivered."""

    format: str
    rows: int
    size: int
    sha256: str
    filters: dict[str, Any]
    window: dict[str, str | None]
    receipt: Receipt | None = None


def filter_record(filters: Filters, now: datetime) -> tuple[dict[str, Any], dict[str, Any]]:
    """The filters as URL parameters, and the concrete time window they meant at ``now``."""
    start, end = filters.window(now)
    window = {"from": utc_text(start) if start else None, "to": utc_text(end) if end else None}
    return dict(filters.to_query_params()), window


def export_event(
    actor: Mapping[str, Any],
    outcome: OutcomeName,
    details: dict[str, Any],
    target_id: str,
    context: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``export.downloaded`` event (user_activity) of one export or refused attempt.

    ``context`` may hold ``source_ip``, ``user_agent`` and ``correlation_id``.
    """
    target = {"type": "export", "id": target_id, "name": details.get("file")}
    return new_event(
        action="export.downloaded",
        outcome=outcome,
        actor=actor,
        target=target,
        details=details,
        **(context or {}),
    )


def export_filename(fmt: str, now: datetime | None = None) -> str:
    """``auditlog-events-20261128T091502Z.csv`` (``.zip`` for a bundle)."""
    stamp = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    ext = "zip" if fmt == "bundle" else fmt
    return f"auditlog-{'evidence' if fmt == 'bundle' else 'events'}-{stamp}.{ext}"


class Export:
    """One audited export. Iterate it for the file's bytes; ``result`` is set at the end.

    Parameters
    ----------
    engine
        Read access to the events (the dashboard's reader role is enough).
    filters
        What to export; ``last`` windows are resolved against ``now`` (default: UTC now).
    fmt
        ``"csv"`` or ``"ndjson"``.
    log, actor, context
        Where the ``export.downloaded`` event is recorded, who exported, and optional
        ``source_ip`` / ``user_agent`` / ``correlation_id`` for it. The event is recorded
        once the whole file has been produced, before its last chunk is handed over
        (outcome success, with rows and SHA-256); when the cap refuses the export (denied);
        or when it breaks off, the consumer included (failure).
    """

    def __init__(
        self,
        engine: Engine,
        filters: Filters | None = None,
        fmt: Format = "csv",
        *,
        log: AuditLog,
        actor: Mapping[str, Any],
        context: Mapping[str, Any] | None = None,
        limits: ExportSettings | None = None,
        now: datetime | None = None,
    ) -> None:
        if fmt not in MEDIA_TYPES:
            raise FieldError("format", f"{fmt!r} is not one of {', '.join(MEDIA_TYPES)}")
        self.engine, self.filters, self.fmt = engine, filters or Filters(), fmt
        self.log, self.actor, self.context = log, actor, context
        self.limits = limits or ExportSettings()
        self.now = now or datetime.now(UTC)
        self.filename = export_filename(fmt, self.now)
        self.tally = Tally()
        self.result: ExportResult | None = None

    def __iter__(self) -> Iterator[bytes]:
        params, window = filter_record(self.filters, self.now)
        details: dict[str, Any] = {"format": self.fmt, "file": self.filename}
        details |= {"filters": params, "window": window}
        last: bytes | None = None
        try:
            for blob in self._chunks():  # one chunk behind: the last goes out once recorded
                if last is not None:
                    yield last
                last = blob
        except ExportTooLarge as exc:
            details |= {"rows_matching": exc.rows, "max_export_rows": exc.cap}
            self._record("denied", details, "refused")
            raise
        except BaseException:  # includes GeneratorExit: the consumer stopped reading
            details |= {"rows_sent": self.tally.rows, "error": "export broken off"}
            self._record("failure", details, "incomplete")
            raise
        t = self.tally
        details |= {"rows": t.rows, "bytes": t.size, "sha256": t.sha256}
        receipt = self._record("success", details, t.sha256)
        self.result = ExportResult(self.fmt, t.rows, t.size, t.sha256, params, window, receipt)
        if last is not None:
            yield last

    def _chunks(self) -> Iterator[bytes]:
        with snapshot(self.engine, self.limits) as conn:
            expected = count_rows(conn, self.filters, self.now)
            check_cap(expected, self.limits)
            blobs = csv_blobs if self.fmt == "csv" else ndjson_blobs
            yield from blobs(
                conn, self.filters, self.now, self.tally, self.limits.export_chunk_bytes
            )
        if self.tally.rows != expected:  # same snapshot: cannot happen unless the server lies
            raise AuditLogError(f"export wrote {self.tally.rows} rows but {expected} matched")

    def _record(self, outcome: OutcomeName, details: dict[str, Any], target_id: str) -> Receipt:
        return self.log.record(export_event(self.actor, outcome, details, target_id, self.context))


def csv_chunks(engine: Engine, filters: Filters | None = None, **kwargs: Any) -> Iterator[bytes]:
    """The CSV export of ``filters`` as bytes chunks (for a streamed download button).

    Takes the keyword arguments of :class:`Export` (``log`` and ``actor`` are required);
    the ``export.downloaded`` event is recorded once the whole file has been produced.
    """
    return iter(Export(engine, filters, "csv", **kwargs))


def write_export(
    engine: Engine,
    out: IO[bytes],
    filters: Filters | None = None,
    fmt: Format = "csv",
    **kwargs: Any,
) -> ExportResult:
    """Write the export of ``filters`` to the binary file ``out``; return what was written."""
    export = Export(engine, filters, fmt, **kwargs)
    for blob in export:
        out.write(blob)
    assert export.result is not None
    return export.result


def matching_rows(
    engine: Engine,
    filters: Filters,
    limits: ExportSettings | None = None,
    now: datetime | None = None,
) -> int:
    """How many events an export of ``filters`` holds; ExportTooLarge over the cap."""
    limits = limits or ExportSettings()
    with snapshot(engine, limits) as conn:
        rows = count_rows(conn, filters, now or datetime.now(UTC))
    check_cap(rows, limits)
    return rows
