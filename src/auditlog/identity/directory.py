"""Actor identity: a directory of Entra ID principals and the resolution of actors against it.

The directory is the ``principals`` table, a cache (not an audit entry) filled by
``auditlog identity sync`` from Microsoft Graph (:class:`GraphClient`, :func:`sync_from_graph`)
or from a CSV file (:func:`load_csv`). At ingest the store calls the resolver from
:meth:`Directory.resolver`, which holds the whole directory in memory (directories hold
thousands of principals, not millions), so a batch of 200k events costs no queries.

How an actor is resolved:

- The actor's ``entra_object_id``, then ``upn``, then ``id`` are tried in that order. Each is
  compared, case-insensitively, with a principal's object id, then UPN, then mail, then (for
  service principals) app id. The first principal found is the match.
- A match is refused when it contradicts the actor: another of its keys names a different
  principal, or it sent a different ``entra_object_id`` or ``tenant_id``. The actor then stays
  unresolved (a key that names no principal, such as a UPN since renamed, is no contradiction).
- A match fills only the fields the producer left empty (``entra_object_id``,
  ``display_name``, ``upn``, ``tenant_id``) and sets ``resolved: true``. What the producer sent
  is kept as sent, so an idempotent resend still compares equal; ``type`` is never changed.
- No match: the actor is stored as given with ``resolved: false``.

Errors: :class:`~auditlog.errors.InvalidFile` (a bad CSV row, also a ``ValueError``),
:class:`~auditlog.errors.GraphError` (Graph or the token endpoint failed),
:class:`~auditlog.errors.ConfigError` (Graph settings missing or malformed).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, field_validator
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Engine

from auditlog.db.tables import principals as principals_table
from auditlog.model import Actor

CSV_COLUMNS = ("object_id", "upn", "mail", "display_name", "type", "tenant_id")
CSV_OPTIONAL_COLUMNS = ("app_id", "account_enabled")
DEMO_TENANT_ID = "7b0f3c6e-2d4a-4c1b-9e8f-1a2b3c4d5e6f"


class Principal(BaseModel):
    """One Entra ID principal: a user or a service principal, as the directory holds it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    object_id: str
    type: Literal["user", "service"]
    upn: str | None = None
    mail: str | None = None
    display_name: str | None = None
    tenant_id: str | None = None
    app_id: str | None = None
    account_enabled: bool | None = None
    source: Literal["graph", "csv", "demo"]
    synced_at: datetime | None = None

    @field_validator("object_id", mode="before")
    @classmethod
    def _object_id(cls, value: Any) -> str:
        try:
            return str(uuid.UUID(str(value)))
        except ValueError:
            raise ValueError(f"{str(value)[:60]!r} is not a UUID (an Entra object id)") from None

    @field_validator("upn", "mail", "display_name", "tenant_id", "app_id")
    @classmethod
    def _text(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if "\x00" in value:
            raise ValueError("contains a NUL character, which PostgreSQL text cannot hold")
        return value.strip()


@dataclass(frozen=True)
class SyncResult:
    """What a directory sync did: principals stored per kind, stale ones removed."""

    users: int
    service_principals: int
    removed: int = 0


# --- the directory -----------------------------------------------------------------------


class _Index:
    """Principals by object id, UPN, mail and app id (lower-cased keys)."""

    def __init__(self, principals: Iterable[Principal]) -> None:
        self.by_object_id: dict[str, Principal] = {}
        self.by_upn: dict[str, Principal] = {}
        self.by_mail: dict[str, Principal] = {}
        self.by_app_id: dict[str, Principal] = {}
        # Oldest first, so a UPN or mail reused by a newer principal points at the newer one.
        for p in principals:
            self.by_object_id[p.object_id] = p
            for table, key in (
                (self.by_upn, p.upn),
                (self.by_mail, p.mail),
                (self.by_app_id, p.app_id),
            ):
                if key:
                    table[key.lower()] = p

    def __len__(self) -> int:
        return len(self.by_object_id)

    def find(self, key: str) -> Principal | None:
        k = key.strip().lower()
        return (
            self.by_object_id.get(k)
            or self.by_upn.get(k)
            or self.by_mail.get(k)
            or self.by_app_id.get(k)
        )

    def match(self, actor: Actor) -> Principal | None:
        """The principal ``actor`` names, or None (see the module docstring for the rule)."""
        keys = (actor.entra_object_id, actor.upn, actor.id)
        matches = [p for p in (self.find(k) for k in keys if k) if p is not None]
        if not matches:
            return None
        found = matches[0]
        if any(p is not found for p in matches[1:]):
            return None
        if actor.entra_object_id and actor.entra_object_id != found.object_id:
            return None
        if (
            actor.tenant_id
            and found.tenant_id
            and actor.tenant_id.lower() != found.tenant_id.lower()
        ):
            return None
        return found


def resolved_actor(actor: Actor, principal: Principal | None) -> Actor:
    """``actor`` with the empty fields filled from ``principal`` and ``resolved`` set."""
    if principal is None:
        return actor.model_copy(update={"resolved": False})
    update: dict[str, Any] = {"resolved": True}
    for name in ("entra_object_id", "display_name", "upn", "tenant_id"):
        value = principal.object_id if name == "entra_object_id" else getattr(principal, name)
        if getattr(actor, name) is None and value is not None:
            update[name] = value
    return actor.model_copy(update=update)


class DirectoryResolver:
    """An ``ActorResolver`` over an in-memory copy of the directory.

    The copy is loaded on the first call and reloaded when older than ``max_age_seconds``
    (None: never) or when :meth:`refresh` is called, e.g. after a sync.
    """

    def __init__(self, directory: Directory, max_age_seconds: float | None = 300.0) -> None:
        self.directory = directory
        self.max_age_seconds = max_age_seconds
        self._index: _Index | None = None
        self._loaded_at = 0.0

    def refresh(self) -> int:
        """Reload the directory; return how many principals it holds."""
        self._index = _Index(self.directory.principals())
        self._loaded_at = time.monotonic()
        return len(self._index)

    def _current(self) -> _Index:
        age = time.monotonic() - self._loaded_at
        if self._index is None or (self.max_age_seconds is not None and age > self.max_age_seconds):
            self.refresh()
        assert self._index is not None
        return self._index

    def __call__(self, actor: Actor) -> Actor:
        return resolved_actor(actor, self._current().match(actor))


class Directory:
    """The ``principals`` table: upsert, look up, and build a resolver for the store."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def upsert(self, principals: Iterable[Principal]) -> int:
        """Insert or update principals by object id; return how many were written.

        Within one call a repeated object id keeps its last occurrence.
        """
        with self.engine.begin() as conn:
            return _upsert(conn, principals)

    def replace(
        self, principals: Iterable[Principal], *, source: str, tenant_id: str
    ) -> tuple[int, int]:
        """Upsert ``principals`` and remove the ones of ``source`` and ``tenant_id`` not among them.

        One transaction: a full sync makes deleted Entra principals disappear from the cache
        (events already stored keep the actor they were stored with). Returns
        ``(written, removed)``.
        """
        t = principals_table
        with self.engine.begin() as conn:
            written = _upsert(conn, principals)
            stale = sa.delete(t).where(
                t.c.source == source, t.c.tenant_id == tenant_id, t.c.synced_at < sa.func.now()
            )
            removed = conn.execute(stale).rowcount
        return written, removed

    def principals(self) -> list[Principal]:
        """Every principal, oldest sync first."""
        query = sa.select(principals_table).order_by(
            principals_table.c.synced_at, principals_table.c.object_id
        )
        with self.engine.connect() as conn:
            return [Principal.model_validate(dict(row)) for row in conn.execute(query).mappings()]

    def lookup(self, key: str) -> Principal | None:
        """The principal whose object id, UPN, mail or app id is ``key`` (case-insensitive)."""
        t, oid = principals_table, _as_uuid(key.strip())
        lowered = sa.func.lower(key.strip())
        ranked = [(sa.func.lower(t.c.upn) == lowered, 1), (sa.func.lower(t.c.mail) == lowered, 2)]
        if oid is not None:  # never compare with NULL: `app_id = NULL` would become IS NULL
            ranked = [(t.c.object_id == oid, 0), *ranked, (t.c.app_id == oid, 3)]
        query = (
            sa.select(t)
            .where(sa.or_(*(cond for cond, _ in ranked)))
            .order_by(sa.case(*ranked, else_=4), t.c.synced_at.desc())
            .limit(1)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return None if row is None else Principal.model_validate(dict(row))

    def resolver(self, max_age_seconds: float | None = 300.0) -> DirectoryResolver:
        """An ``ActorResolver`` for ``AuditLog(resolve=...)``; loads the directory on first use."""
        return DirectoryResolver(self, max_age_seconds)


def _as_uuid(text: str) -> str | None:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None


def _upsert(conn: sa.Connection, principals: Iterable[Principal]) -> int:
    unique = {p.object_id: p for p in principals}
    if not unique:
        return 0
    rows = [p.model_dump(exclude={"synced_at"}) for p in unique.values()]
    stmt = pg_insert(principals_table).values(synced_at=sa.func.now())
    columns = [c for c in rows[0] if c != "object_id"]
    stmt = stmt.on_conflict_do_update(
        index_elements=["object_id"],
        set_={**{c: stmt.excluded[c] for c in columns}, "synced_at": sa.func.now()},
    )
    conn.execute(stmt, rows)
    return len(rows)
