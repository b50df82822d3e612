"""``auditlog apikey create|list|rotate|revoke``: the key is the last line, shown once; list
never shows a secret; each change is logged."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from auditlog.apikeys.keys import parse_token
from auditlog.settings import Settings
from tests.support.cli import make_cli


@pytest.fixture
def cli(settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    return make_cli(settings, monkeypatch, tmp_path)


def _last_line(output: str) -> str:
    return output.rstrip("\n").splitlines()[-1]


def test_create_prints_the_key_alone_on_the_last_line_and_stores_its_hash(
    cli: Any, admin_engine: Engine
) -> None:
    result = cli(
        "apikey",
        "create",
        "billing",
        "--scope",
        "write:configuration",
        "--allow",
        "10.0.0.0/8",
        "--rate",
        "50",
    )
    assert result.exit_code == 0, result.output
    token = _last_line(result.stdout)
    parsed = parse_token(token)
    assert parsed is not None
    with admin_engine.connect() as conn:
        row = conn.execute(sa.text("SELECT * FROM api_keys")).one()
    assert bytes(row.secret_hash) == hashlib.sha256(parsed[1].encode()).digest()
    assert (row.name, list(row.scopes), row.rate) == ("billing", ["write:configuration"], 50)
    assert row.created_by == "cli-auditor"


def test_list_never_shows_a_secret(cli: Any) -> None:
    token = _last_line(cli("apikey", "create", "billing").stdout)
    secret = token.split("_", 2)[2]
    listed = cli("apikey", "list")
    assert listed.exit_code == 0
    assert "billing" in listed.stdout
    assert secret not in listed.stdout
    as_json = cli("apikey", "list", "--json").stdout
    assert secret not in as_json
    assert json.loads(as_json)["scopes"] == ["write:*"]


def test_rotate_prints_a_new_key_and_revoke_ends_it_each_logged(
    cli: Any, admin_engine: Engine
) -> None:
    old = _last_line(cli("apikey", "create", "billing", "--scope", "read").stdout)
    rotated = cli("apikey", "rotate", "billing")
    assert rotated.exit_code == 0
    new = _last_line(rotated.stdout)
    assert parse_token(new) is not None
    assert new != old
    assert cli("apikey", "revoke", "billing").exit_code == 0
    assert "no API keys" in cli("apikey", "list").stdout
    assert cli("apikey", "list", "--all").stdout.count("revoked") == 2
    with admin_engine.connect() as conn:
        actions = (
            conn.execute(
                sa.text("SELECT action FROM events WHERE action LIKE 'apikey.%' ORDER BY seq")
            )
            .scalars()
            .all()
        )
    assert actions == ["apikey.created", "apikey.rotated", "apikey.revoked"]


def test_bad_input_is_one_line_naming_the_field(cli: Any) -> None:
    result = cli("apikey", "create", "billing", "--scope", "write:policy")
    assert result.exit_code == 1
    assert "scope: 'write:policy' is not a scope" in result.stderr
    assert "Traceback" not in result.output
    result = cli("apikey", "revoke", "ghost")
    assert result.exit_code == 1
    assert "no active API key is named 'ghost'" in result.stderr
