"""The service as it runs: writes as the ingest login, reads as the dashboard login, keys
made by the key administrator's login; uvicorn on a free loopback port."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy.engine import URL, Engine

from auditlog.db.server import make_engine
from auditlog.integrity.keys import Signer
from auditlog.settings import Settings
from auditlog.store import AuditLog
from tests.support.api import Api, start

Start = Callable[..., Api]


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
    """Start the service with some ``[api]`` (or other) settings changed."""
    running: list[Api] = []

    def _start(**sections: dict[str, Any]) -> Api:
        api_settings = {"key_cache_seconds": 0} | sections.pop("api", {})
        s = settings.replace(api=api_settings, **sections)
        log = AuditLog(engine, s, signer=signer)
        keys_log = AuditLog(keys_engine, s, signer=signer)
        api = start(log, reader_engine, keys_log, admin_engine)
        running.append(api)
        return api

    yield _start
    for api in running:
        api.stop()


@pytest.fixture
def api(start_api: Start) -> Api:
    return start_api()
