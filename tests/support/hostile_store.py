"""One real database holding the whole hostile matrix (every field x every hostile value).

The per-format read-back tests are parametrized over some 600 (field, value) cases; storing
them once per test module, through a real :class:`AuditLog` into the session's PostgreSQL,
keeps each case a cheap check of the stored item. Engines and roles as in tests/conftest.py.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL, Engine

from auditlog.db.server import make_engine
from auditlog.integrity.keys import Signer
from auditlog.settings import load_settings
from auditlog.siem.formats import Item
from auditlog.store import AuditLog
from tests.support.database import create_database, register
from tests.support.hostile import event_with, field_cases
from tests.support.siem import stored_items


@dataclass(frozen=True)
class HostileStore:
    """The stored matrix: ``items[(field, value)]`` is that event as the SIEM worker reads it."""

    log: AuditLog
    reader: Engine
    items: dict[tuple[str, str], Item]

    def item(self, name: str, value: str) -> Item:
        return self.items[(name, value)]


@contextmanager
def hostile_store(server: URL, template: str, home: Path) -> Iterator[HostileStore]:
    """A fresh database with one event per :func:`field_cases` case, recorded through the log."""
    name = f"hostile_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    create_database(server, name, template)
    url = server.set(database=name)
    signer = Signer.generate()
    admin = make_engine(url, "admin")
    register(admin, signer)
    admin.dispose()
    writer = make_engine(url.set(username="auditlog_ingest"), "writer")
    reader = make_engine(url.set(username="auditlog_dashboard"), "reader")
    try:
        url_text = url.render_as_string(hide_password=False)
        settings = load_settings(env={}, store={"home": home, "database_url": url_text})
        log = AuditLog(writer, settings, signer=signer)
        cases = [tuple(p.values) for p in field_cases()]
        events = [event_with(f, v) for f, v in cases]
        by_id = {str(e["event_id"]): (f, v) for e, (f, v) in zip(events, cases, strict=True)}
        items = {by_id[i.key]: i for i in stored_items(log, events)}
        yield HostileStore(log, reader, items)
    finally:
        writer.dispose()
        reader.dispose()
