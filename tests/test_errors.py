"""The one exception hierarchy, and the query boundary that raises QueryTimeout and
DatabaseUnavailable instead of driver errors."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

import auditlog
from auditlog import errors
from auditlog.db.server import driver_errors, make_engine
from auditlog.errors import (
    AuditLogError,
    DatabaseUnavailable,
    FieldError,
    InvalidDestination,
    InvalidFile,
    InvalidFilter,
    InvalidPolicy,
    QueryTimeout,
)
from auditlog.integrity.database import verify_database
from auditlog.query.filters import Filters
from auditlog.query.timeline import search


def _package_modules() -> Iterator[object]:
    for info in pkgutil.walk_packages(auditlog.__path__, "auditlog."):
        yield importlib.import_module(info.name)


# The bundle's verifier is one self-contained file of the standard library: it imports nothing
# of the package, so its own usage error stays inside it.
STANDALONE = "auditlog.evidence.verify_bundle"


def test_every_exception_class_of_the_package_is_defined_in_errors() -> None:
    elsewhere = [
        f"{module.__name__}.{name}"  # type: ignore[attr-defined]
        for module in _package_modules()
        for name, obj in vars(module).items()
        if inspect.isclass(obj)
        and issubclass(obj, BaseException)
        and obj.__module__ == module.__name__  # type: ignore[attr-defined]
        and module is not errors
        and module.__name__ != STANDALONE  # type: ignore[attr-defined]
    ]
    assert elsewhere == []


def test_every_exception_in_errors_is_an_auditlog_error_drawn_in_the_docstring() -> None:
    defined = vars(errors).values()
    classes = [c for c in defined if inspect.isclass(c) and c.__module__ == errors.__name__]
    assert all(issubclass(c, AuditLogError) for c in classes)
    assert [c.__name__ for c in classes if c.__name__ not in (errors.__doc__ or "")] == []


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (FieldError("format", "not csv"), "format: not csv"),
        (InvalidFilter("tz", "unknown zone"), "filter tz: unknown zone"),
        (InvalidPolicy("days", "below the floor"), "days: below the floor"),
        (InvalidDestination("endpoint", "no port"), "siem destination endpoint: no port"),
        (InvalidFile("p.csv", 3, "upn", "empty"), "p.csv line 3, column upn: empty"),
    ],
)
def test_field_errors_name_the_field_and_the_reason_uniformly(
    error: FieldError, message: str
) -> None:
    assert str(error) == message
    assert error.reason == message.rsplit(": ", 1)[1]
    assert error.status == 422


def test_an_invalid_destination_is_both_a_field_error_and_a_config_error() -> None:
    assert isinstance(InvalidDestination("x", "y"), errors.ConfigError)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_engine_pointing_at_a_closed_port_raises_database_unavailable() -> None:
    url = f"postgresql+psycopg://auditlog_dashboard@127.0.0.1:{_closed_port()}/auditlog"
    engine = make_engine(url, "reader")
    try:
        with pytest.raises(DatabaseUnavailable, match="AUDITLOG_DATABASE_URL") as info:
            search(engine, Filters())
    finally:
        engine.dispose()
    assert "Connection refused" in str(info.value)


@pytest.fixture
def impatient_reader(db_url: URL) -> Iterator[Engine]:
    engine = make_engine(db_url.set(username="auditlog_dashboard"), "reader", 200)
    yield engine
    engine.dispose()


def test_a_statement_timeout_raises_query_timeout_naming_the_setting(
    impatient_reader: Engine,
) -> None:
    with (
        pytest.raises(QueryTimeout, match="statement_timeout_ms") as info,
        impatient_reader.connect() as conn,
    ):
        conn.execute(sa.text("SELECT pg_sleep(2)"))
    assert "narrow the filters" in str(info.value)
    assert info.value.status == 503


@contextmanager
def _events_locked(admin_engine: Engine) -> Iterator[None]:
    """Hold an exclusive lock on events, so a reader's query waits until its timeout."""
    with admin_engine.begin() as conn:
        conn.execute(sa.text("LOCK TABLE events IN ACCESS EXCLUSIVE MODE"))
        yield


def test_a_timeline_search_past_its_timeout_raises_query_timeout(
    admin_engine: Engine, impatient_reader: Engine
) -> None:
    with _events_locked(admin_engine), pytest.raises(QueryTimeout):
        search(impatient_reader, Filters())


def test_verification_over_the_driver_connection_raises_query_timeout_too(
    admin_engine: Engine, impatient_reader: Engine
) -> None:
    with _events_locked(admin_engine), pytest.raises(QueryTimeout):
        verify_database(impatient_reader)


def test_driver_errors_translates_a_raw_psycopg_timeout(impatient_reader: Engine) -> None:
    with impatient_reader.connect() as sa_conn:
        raw = sa_conn.connection.driver_connection
        assert raw is not None
        with pytest.raises(QueryTimeout), driver_errors():
            raw.execute("SELECT pg_sleep(2)")


def test_other_database_errors_are_left_as_they_are(reader_engine: Engine) -> None:
    with pytest.raises(sa.exc.DataError), reader_engine.connect() as conn:
        conn.execute(sa.text("SELECT 1 / 0"))
