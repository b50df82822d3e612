"""The real service on a free loopback port (as tests/api starts it) and clients of it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy.engine import URL, Engine

from auditlog.client import AuditLogClient
from auditlog.db.server import make_engine
from auditlog.integrity.keys import Signer
from auditlog.settings import Settings
from auditlog.store import AuditLog
from tests.support.api import Api, start

Start = Callable[..., Api]
MakeClient = Callable[..., AuditLogClient]


@pytest.fixture
def keys_engine(db_url: URL) -> Iterator[Engine]:
    engine = make_engine(db_url.set(username="auditlog_key_admin"), "keys")
    yield engine
    engine.dispose()


@pytest.fixture
def start_api(
    engine: Engine,
    reader_engine: Engine,
    keys_engine: Engine,
    admin_engine: Engine,
    settings: Settings,
    signer: Signer,
) -> Iterator[Start]:
    """Start the service, some settings changed, optionally writing through ``writer``."""
    running: list[Api] = []

    def _start(writer: Engine | None = None, **sections: dict[str, Any]) -> Api:
        api_settings = {"key_cache_seconds": 0} | sections.pop("api", {})
        s = settings.replace(api=api_settings, **sections)
        log = AuditLog(writer or engine, s, signer=signer)
        api = start(log, reader_engine, AuditLog(keys_engine, s, signer=signer), admin_engine)
        running.append(api)
        return api

    yield _start
    for api in running:
        api.stop()


@pytest.fixture
def api(start_api: Start) -> Api:
    return start_api()


@pytest.fixture
def make_client() -> Iterator[MakeClient]:
    """``make_client(url, token, **options)``; every client is closed after the test."""
    made: list[AuditLogClient] = []

    def _make(url: str, token: str, **kw: Any) -> AuditLogClient:
        client = AuditLogClient(url, token, **kw)
        made.append(client)
        return client

    yield _make
    for client in made:
        client.close()
