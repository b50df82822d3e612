"""Running the real ``auditlog`` command line in-process against a test's database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from auditlog.cli.app import app
from auditlog.db.server import make_engine
from auditlog.integrity.keys import key_status, load_signer
from auditlog.settings import Settings
from tests.support.database import register


def register_host_key(settings: Settings) -> None:
    """Register the signing key under ``settings``' home in its (superuser) test database."""
    admin = make_engine(sa.make_url(str(settings.store.database_url)), "admin")
    try:
        with admin.connect() as conn:
            known = key_status(conn, load_signer(settings).key_id)
        if known is None:
            register(admin, load_signer(settings))
    finally:
        admin.dispose()


def make_cli(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, home: Path, register_key: bool = True
) -> Any:
    """Run the real ``auditlog`` commands in-process, as ``cli-auditor``, against this test's db.

    The host's signing key (under the settings' home) is registered first, as a key
    administrator would have before the host ingests; ``register_key=False`` leaves that to
    the test."""
    if register_key:
        register_host_key(settings)
    monkeypatch.setenv("AUDITLOG_DATABASE_URL", settings.store.database_url or "")
    monkeypatch.setenv("AUDITLOG_HOME", str(settings.store.home))
    monkeypatch.setenv("AUDITLOG_USER", "cli-auditor")
    monkeypatch.chdir(home)
    return lambda *args: CliRunner().invoke(app, list(args), catch_exceptions=False)
