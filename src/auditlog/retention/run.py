"""One retention pass (``auditlog retention run``): archive, verify, purge, expire.

For each category with a policy, in chain order, month by month (UTC) once a whole month is
past retention (``recorded_at`` older than ``days``; the server's clock, not the producer's):

1. **write** its rows to ``<category>-<YYYY-MM>.parquet`` + signed manifest (``*.partial``,
   flushed, renamed into place);
2. **verify** the file read back: every row's hash and link, its first prev_hash and last
   entry_hash against the table, the row count;
3. **register** it in ``archives`` (range, hashes, file SHA-256), then log ``retention.archived``;
4. **purge** through ``auditlog_purge`` (unless a legal hold stands): the database re-checks
   prefix, policy, hold and hashes, deletes, and leaves the signed anchor, in one transaction;
   then log ``retention.purged``;
5. **expire**: archives whose newest event is older than ``days + archive_days`` are deleted
   (never under a legal hold), then ``retention.archive_deleted`` is logged.

Each step's outcome is in the database before the next starts, so a pass killed anywhere
resumes on the next run: an unregistered file is rewritten, a registered archive is purged, an
event not yet logged is logged (with a deterministic event_id, so never twice). Every event is
at all times in the table, or in exactly one registered, verified archive, or in both between
steps 3 and 4.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from auditlog.archive.files import (
    ArchiveCheck,
    Span,
    Written,
    file_sha256,
    manifest_path,
    require_valid,
    verify_archive,
    write_archive,
)
from auditlog.db import tables
from auditlog.errors import IntegrityFailure, RetentionRefused
from auditlog.integrity.checkpoints import anchor_message
from auditlog.model import CATEGORIES, new_event
from auditlog.retention.records import (
    Policy,
    active_holds,
    current_policies,
)
from auditlog.settings import RetentionSettings
from auditlog.store import AuditLog

EVENT_NAMESPACE = uuid.UUID("0d6c3f4e-4b1a-5c7e-9f2d-3a8b6e1c5d40")
SYSTEM_ACTOR = {"type": "system", "id": "auditlog-retention", "display_name": "Retention job"}
# Each step of an archive's life, and the action (auditlog.model.ACTIONS) that logs it.
STEP_ACTIONS = {
    "archived": "retention.archived",
    "purged": "retention.purged",
    "archive_deleted": "retention.archive_deleted",
}
PAUSE_ENV = "AUDITLOG_TEST_PAUSE_AT"
RUN_LOCK_WAIT_S = 15
_ARCHIVE_COLUMNS = (
    "id, category, month, first_seq, last_seq, row_count, first_prev_hash, last_entry_hash, "
    "first_recorded_at, last_recorded_at, path, file_sha256, manifest_sha256, bytes, created_at, "
    "archived_event, purged_at, anchor_id, purged_event, deleted_at, deleted_event"
)
_NEXT = sa.text(
    "SELECT s.seq, s.m::date, (s.m + interval '1 month') AT TIME ZONE 'UTC' AS month_end, "
    "(s.m + interval '1 month') AT TIME ZONE 'UTC' <= now() - make_interval(days => :days) "
    "FROM (SELECT seq, "
    "date_trunc('month', recorded_at AT TIME ZONE 'UTC') AS m FROM events "
    "WHERE category = :c AND seq > :after ORDER BY seq LIMIT 1) s"
)


def pause_point(name: str) -> None:
    """Test hook: stop here (so a test can SIGKILL the process) when AUDITLOG_TEST_PAUSE_AT
    names this point. Points, in order: archive_writing, archive_written, archive_registered,
    archived_logged, purged, purged_logged, archive_files_deleted, archive_deleted_logged."""
    if os.environ.get(PAUSE_ENV) == name:
        print(f"paused at {name}", file=sys.stderr, flush=True)
        time.sleep(600)


@dataclass(frozen=True)
class ArchiveRow:
    """A row of the ``archives`` table."""

    id: int
    category: str
    month: date
    first_seq: int
    last_seq: int
    row_count: int
    first_prev_hash: bytes
    last_entry_hash: bytes
    first_recorded_at: datetime
    last_recorded_at: datetime
    path: str
    file_sha256: bytes
    manifest_sha256: bytes
    size: int
    created_at: datetime
    archived_event: Any
    purged_at: datetime | None
    anchor_id: int | None
    purged_event: Any
    deleted_at: datetime | None
    deleted_event: Any

    @property
    def state(self) -> str:
        if self.deleted_at is not None:
            return "deleted"
        return "purged" if self.purged_at is not None else "archived"


def archive_rows(conn: Connection, category: str | None = None) -> list[ArchiveRow]:
    """Archives (all, or of one category) in chain order."""
    where = "WHERE category = :c " if category else ""
    stmt = sa.text(f"SELECT {_ARCHIVE_COLUMNS} FROM archives {where}ORDER BY category, first_seq")
    rows = conn.execute(stmt, {"c": category}).all()
    out = []
    for row in rows:
        values: list[Any] = [bytes(v) if isinstance(v, memoryview) else v for v in row]
        out.append(ArchiveRow(*values))
    return out


@dataclass
class CategoryReport:
    """What one pass did to one category."""

    category: str
    policy: Policy | None = None
    held: bool = False
    archived: list[str] = field(default_factory=list)
    archived_rows: int = 0
    purged: list[str] = field(default_factory=list)
    purged_rows: int = 0
    deleted: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if self.policy is None:
            return f"{self.category}: no policy; kept"
        parts = [
            f"{self.category} ({self.policy.days} days + {self.policy.archive_days} "
            f"archived): archived {self.archived_rows} rows in {len(self.archived)} file(s), "
            f"purged {self.purged_rows} rows, deleted {len(self.deleted)} expired "
            "archive(s)"
        ]
        return "; ".join(parts + self.notes)


@dataclass
class RunReport:
    categories: dict[str, CategoryReport] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return any(r.archived or r.purged or r.deleted for r in self.categories.values())


class RetentionRun:
    """One pass over every category. ``log`` must act as ``auditlog_retention``."""

    def __init__(self, log: AuditLog, settings: RetentionSettings, home: Path) -> None:
        self.log = log
        self.engine = log.engine
        self.signer = log.signer
        self.root = settings.archive_root(home)
        self.keys = {self.signer.key_id: self.signer.public}

    def run(self, categories: Iterable[str] = CATEGORIES) -> RunReport:
        """Archive, purge and expire what the policies say; safe to repeat and to kill.

        Raises
        ------
        RetentionRefused
            Another pass is running.
        """
        report = RunReport()
        with self.engine.connect() as guard:
            self._lock_run(guard)
            try:
                for cat in sorted(categories):
                    report.categories[cat] = self._category(cat)
                self.log.checkpoint()
            finally:
                guard.execute(
                    sa.text("SELECT pg_advisory_unlock(hashtext('auditlog:retention-run'))")
                )
                guard.commit()
        return report

    @staticmethod
    def _lock_run(guard: Connection) -> None:
        """One pass at a time (a session lock: released even if the process is killed)."""
        try:
            guard.execute(sa.text(f"SET LOCAL lock_timeout = '{RUN_LOCK_WAIT_S}s'"))
            guard.execute(sa.text("SELECT pg_advisory_lock(hashtext('auditlog:retention-run'))"))
            guard.commit()  # the session lock outlives the transaction; hold no snapshot
        except sa.exc.OperationalError:
            guard.rollback()
            raise RetentionRefused(
                "another `auditlog retention run` is in progress (waited "
                f"{RUN_LOCK_WAIT_S} s); try again when it has finished"
            ) from None

    def _category(self, category: str) -> CategoryReport:
        rep = CategoryReport(category)
        self._log_missing(category)
        with self.engine.connect() as conn:
            rep.policy = current_policies(conn)[category]
            rep.held = any(h.category == category for h in active_holds(conn))
        if rep.policy is None:
            return rep
        if rep.held:
            rep.notes.append("on legal hold: archived only, nothing purged or deleted")
        self._purge_pending(rep)
        while (start := self._next_start(category, rep.policy.days)) is not None:
            self._archive(*start, rep)
            self._purge_pending(rep)
        self._expire(rep)
        return rep

    # -- archive --------------------------------------------------------------------------

    def _next_start(self, category: str, days: int) -> tuple[Span, datetime] | None:
        """Where the next archive starts and when its month ends, if all of that month is
        past retention (the span's last_seq is found while writing)."""
        with self.engine.connect() as conn:
            after = conn.execute(
                sa.text(
                    "SELECT greatest((SELECT coalesce(max(last_seq), 0) FROM archives WHERE "
                    "category = :c), (SELECT coalesce(max(seq), 0) FROM purge_anchors WHERE "
                    "category = :c))"
                ),
                {"c": category},
            ).scalar_one()
            row = conn.execute(_NEXT, {"c": category, "after": after, "days": days}).first()
        if row is None or not row[3]:
            return None
        return Span(category, row[1], int(row[0]), int(row[0]) - 1), row[2]

    def _archive(self, first: Span, month_end: datetime, rep: CategoryReport) -> None:
        with self.engine.connect() as sa_conn:
            conn = sa_conn.connection.driver_connection
            now = sa_conn.execute(sa.text("SELECT now()")).scalar_one()
            sa_conn.commit()
            written = write_archive(
                conn,
                self.root,
                first,
                month_end,
                self.signer,
                now,
                on_batch=lambda _n: pause_point("archive_writing"),
            )
        span = written.span
        pause_point("archive_written")
        check = require_valid(verify_archive(written.path, self.keys))
        with self.engine.begin() as conn:
            self._match_table(conn, span, written, check)
            conn.execute(sa.insert(tables.archives).values(_archive_record(span, written)))
        pause_point("archive_registered")
        rep.archived.append(span.label)
        rep.archived_rows += span.rows
        self._log_missing(span.category)

    @staticmethod
    def _match_table(conn: Connection, span: Span, written: Written, check: ArchiveCheck) -> None:
        """The file's chain ends must be the table's: then, by the hash chain, every row is."""
        first, last = conn.execute(
            sa.text(
                "SELECT (SELECT prev_hash FROM events WHERE category = :c AND seq = :f), "
                "(SELECT entry_hash FROM events WHERE category = :c AND seq = :l)"
            ),
            {"c": span.category, "f": span.first_seq, "l": span.last_seq},
        ).one()
        same = (bytes(first or b""), bytes(last or b"")) == (
            written.first_prev_hash,
            check.last_hash or b"",
        )
        if not same or check.rows != span.rows:
            raise IntegrityFailure(
                f"archive {written.path}: its chain does not match "
                f"{span.category} seq {span.first_seq}..{span.last_seq} in "
                "the table; nothing registered or purged"
            )

    # -- purge ----------------------------------------------------------------------------

    def _purge_pending(self, rep: CategoryReport) -> None:
        """Purge registered archives not yet purged, oldest first, while allowed."""
        if rep.held or rep.policy is None:
            return
        with self.engine.connect() as conn:
            waiting = [a for a in archive_rows(conn, rep.category) if a.purged_at is None]
            cutoff = conn.execute(
                sa.text("SELECT now() - make_interval(days => :d)"), {"d": rep.policy.days}
            ).scalar_one()
        for a in waiting:
            if a.last_recorded_at >= cutoff:
                rep.notes.append(
                    f"{a.category}-{a.month:%Y-%m} is archived but not yet past "
                    "retention under the current policy; kept in the table"
                )
                return
            if not self._purge(a, rep):
                return

    def _purge(self, a: ArchiveRow, rep: CategoryReport) -> bool:
        path = self.root / a.path
        if not path.exists() or file_sha256(path) != a.file_sha256:
            raise IntegrityFailure(
                f"archive {path} is missing or changed since it was "
                "registered; its rows stay in the table (investigate, then "
                "restore the file)"
            )
        key_id = self.signer.key_id
        sig = self.signer.sign(anchor_message(a.category, a.last_seq, a.last_entry_hash, key_id))
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    sa.text("SELECT auditlog_purge(:archive_id, :key_id, :signature)"),
                    {"archive_id": a.id, "key_id": key_id, "signature": sig},
                )
        except sa.exc.DBAPIError as exc:
            reason = str(exc.orig).splitlines()[0] if exc.orig else str(exc)
            rep.notes.append(f"purge refused by the database: {reason}")
            return False
        pause_point("purged")
        rep.purged.append(f"{a.category}-{a.month:%Y-%m}")
        rep.purged_rows += a.row_count
        self._log_missing(a.category)
        return True

    # -- expire ---------------------------------------------------------------------------

    def _expire(self, rep: CategoryReport) -> None:
        """Delete archives past their archive period (never under a legal hold)."""
        if rep.held or rep.policy is None:
            return
        total = rep.policy.days + rep.policy.archive_days
        with self.engine.connect() as conn:
            cutoff = conn.execute(
                sa.text("SELECT now() - make_interval(days => :d)"), {"d": total}
            ).scalar_one()
            due = [
                a
                for a in archive_rows(conn, rep.category)
                if a.state == "purged" and a.last_recorded_at < cutoff
            ]
        for a in due:
            path = self.root / a.path
            for file in (path, manifest_path(path)):
                file.unlink(missing_ok=True)
            if path.parent.exists() and not any(path.parent.iterdir()):
                path.parent.rmdir()
            pause_point("archive_files_deleted")
            with self.engine.begin() as conn:
                conn.execute(
                    sa.update(tables.archives)
                    .where(tables.archives.c.id == a.id)
                    .values(deleted_at=sa.func.now())
                )
            rep.deleted.append(f"{a.category}-{a.month:%Y-%m}")
            self._log_missing(a.category)

    # -- events ---------------------------------------------------------------------------

    def _log_missing(self, category: str) -> None:
        """Log every step done but not yet logged (this pass's, or an interrupted pass's)."""
        with self.engine.connect() as conn:
            rows = archive_rows(conn, category)
        for a in rows:
            steps = (
                ("archived", a.created_at, a.archived_event),
                ("purged", a.purged_at, a.purged_event),
                ("archive_deleted", a.deleted_at, a.deleted_event),
            )
            for kind, at, logged in steps:
                if at is not None and logged is None:
                    receipt = self.log.record(step_event(a, kind, at))
                    pause_point(f"{kind}_logged")
                    column = {
                        "archived": "archived_event",
                        "purged": "purged_event",
                        "archive_deleted": "deleted_event",
                    }[kind]
                    stmt = sa.update(tables.archives).where(tables.archives.c.id == a.id)
                    with self.engine.begin() as conn:
                        conn.execute(stmt.values({column: receipt.event_id}))


def _archive_record(span: Span, written: Written) -> dict[str, Any]:
    """The ``archives`` row registering ``written`` (its range, ends and hashes)."""
    return {
        "category": span.category,
        "month": span.month,
        "first_seq": span.first_seq,
        "last_seq": span.last_seq,
        "row_count": span.rows,
        "first_prev_hash": written.first_prev_hash,
        "last_entry_hash": written.last_entry_hash,
        "first_recorded_at": written.manifest["first_recorded_at"],
        "last_recorded_at": written.manifest["last_recorded_at"],
        "path": span.relpath,
        "file_sha256": written.file_sha256,
        "manifest_sha256": written.manifest_sha256,
        "bytes": written.size,
    }


def step_event(a: ArchiveRow, kind: str, at: datetime) -> dict[str, Any]:
    """The governance event of one step of an archive (same content every time it is built,
    so logging it again after a crash is an idempotent repeat)."""
    key = f"retention:{kind}:{a.category}:{a.first_seq}:{a.last_entry_hash.hex()}"
    details: dict[str, Any] = {
        "category": a.category,
        "month": f"{a.month:%Y-%m}",
        "first_seq": a.first_seq,
        "last_seq": a.last_seq,
        "rows": a.row_count,
        "archive": a.path,
        "file_sha256": a.file_sha256.hex(),
    }
    if kind == "archived":
        details |= {
            "first_prev_hash": a.first_prev_hash.hex(),
            "last_entry_hash": a.last_entry_hash.hex(),
            "manifest_sha256": a.manifest_sha256.hex(),
            "bytes": a.size,
        }
    elif kind == "purged":
        details |= {"anchor_seq": a.last_seq, "anchor_hash": a.last_entry_hash.hex()}
    return new_event(
        action=STEP_ACTIONS[kind],
        actor=SYSTEM_ACTOR,
        target={"type": "archive", "id": a.path, "name": f"{a.category} {a.month:%Y-%m}"},
        details=details,
        occurred_at=at,
        event_id=uuid.uuid5(EVENT_NAMESPACE, key),
    )
