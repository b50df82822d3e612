"""Retention fixtures (a pytest plugin of tests/conftest.py): an engine acting as
auditlog_retention, its log, the retention settings and the CLI environment."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import URL, Engine

from auditlog.integrity.keys import Signer
from auditlog.retention.policies import Retention
from auditlog.retention.records import (
    retention_engine,
)
from auditlog.settings import RetentionSettings, Settings
from auditlog.store import AuditLog
from tests.support.retention import (
    cli_environment,
)


@pytest.fixture
def ret_engine(db_url: URL) -> Iterator[Engine]:
    """Logs in as auditlog_retention_admin and acts as auditlog_retention, like the CLI."""
    engine = retention_engine(db_url.set(username="auditlog_retention_admin"))
    yield engine
    engine.dispose()


@pytest.fixture
def ret_log(ret_engine: Engine, settings: Settings, signer: Signer) -> AuditLog:
    return AuditLog(ret_engine, settings, signer=signer)


@pytest.fixture
def rs(tmp_path: Path) -> RetentionSettings:
    return RetentionSettings(archive_dir=tmp_path / "archives")


@pytest.fixture
def ret(ret_log: AuditLog, rs: RetentionSettings) -> Retention:
    return Retention(ret_log, rs)


@pytest.fixture
def cli_env(
    settings: Settings, signer: Signer, tmp_path: Path, rs: RetentionSettings
) -> dict[str, str]:
    return cli_environment(settings, signer, tmp_path, rs.archive_dir)  # type: ignore[arg-type]
