"""Running the real ``auditlog`` command line in-process against a test's database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from auditlog.cli.app import app
from auditlog.settings import Settings


def make_cli(settings: Settings, monkeypatch: pytest.MonkeyPatch, home: Path) -> Any:
    """Run the real ``auditlog`` commands in-process, as ``cli-auditor``, against this test's db."""
    monkeypatch.setenv("AUDITLOG_DATABASE_URL", settings.store.database_url or "")
    monkeypatch.setenv("AUDITLOG_HOME", str(settings.store.home))
    monkeypatch.setenv("AUDITLOG_USER", "cli-auditor")
    monkeypatch.chdir(home)
    return lambda *args: CliRunner().invoke(app, list(args), catch_exceptions=False)
