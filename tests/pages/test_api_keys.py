"""The API keys page (AppTest, real PostgreSQL, the real ingestion API on loopback): an admin
creates, lists, rotates and revokes keys; a key is shown once and stored only as its hash; a
double press changes nothing twice; nobody else reaches the page."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import streamlit as st
from sqlalchemy.engine import Engine
from streamlit.testing.v1 import AppTest

from auditlog.access import local_identity
from auditlog.apikeys.admin import create_key, list_keys, revoke_key
from auditlog.apikeys.keys import digest, parse_token
from auditlog.integrity.keyadmin import open_registered
from auditlog.integrity.keys import Signer
from auditlog.settings import Settings
from auditlog.store import AuditLog
from tests.support.api import event, start
from tests.support.pages import app
from ui import apikey_data, nav

ADMIN = "ops@contoso.com"
ROLES = f"""
[roles.users]
"{ADMIN}" = "admin"
"auditor@contoso.com" = "auditor"
"lead@contoso.com" = "compliance_lead"
"""


@pytest.fixture
def page_env(monkeypatch: pytest.MonkeyPatch, settings: Settings, tmp_path: Path) -> Iterator[None]:
    """The app on this test's database, signed in as the local operator ops (an admin)."""
    config = tmp_path / "auditlog.toml"
    config.write_text(ROLES, "utf-8")
    monkeypatch.setenv("AUDITLOG_DATABASE_URL", str(settings.store.database_url))
    monkeypatch.setenv("AUDITLOG_HOME", str(settings.store.home))
    monkeypatch.setenv("AUDITLOG_CONFIG", str(config))
    monkeypatch.setenv("AUDITLOG_USER", ADMIN)
    yield
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.fixture
def keys_log(settings: Settings, page_env: None) -> Iterator[AuditLog]:
    """Another admin's way in (the CLI's): the key administrator's credential."""
    log = open_registered(settings, role="keys")
    yield log
    log.close()


def _page() -> AppTest:
    at = app().run()
    return at.switch_page("pages/api_keys.py").run()


def _fill(at: AppTest, name: str, scopes: list[str], allow: str = "") -> None:
    next(t for t in at.text_input if t.label == "Name").set_value(name)
    next(m for m in at.multiselect if m.label == "Scopes").set_value(scopes)
    next(t for t in at.text_area if t.label == "Allowed source addresses").set_value(allow)


def _create(at: AppTest) -> AppTest:
    return next(b for b in at.button if b.label == "Create key").click().run()


def _shown_tokens(at: AppTest) -> list[str]:
    return [c.value for c in at.code if parse_token(c.value)]


def _every_text(at: AppTest) -> str:
    """Everything the page drew, as text (elements and tables)."""
    parts = [str(node.proto) for node in at.main]
    parts += [d.value.to_csv() for d in at.dataframe]
    return "\n".join(parts)


def _rows(engine: Engine, sql: str, **params: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(sa.text(sql), params).all())


def _events(engine: Engine, action: str) -> list[dict[str, Any]]:
    sql = "SELECT actor, target, before, after FROM events WHERE action = :a ORDER BY seq"
    return [dict(r._mapping) for r in _rows(engine, sql, a=action)]


def _choose(at: AppTest, name: str, typed: str) -> None:
    next(s for s in at.selectbox if s.label == "Key").set_value(name).run()
    next(t for t in at.text_input if t.label == f"Type {name} to confirm").set_value(typed)


def _press(at: AppTest, verb: str, name: str, typed: str) -> AppTest:
    _choose(at, name, typed)
    return next(b for b in at.button if b.label == verb).click().run()


def test_a_created_key_is_shown_once_works_and_is_stored_only_as_its_hash(
    page_env: None,
    admin_engine: Engine,
    engine: Engine,
    reader_engine: Engine,
    settings: Settings,
    signer: Signer,
) -> None:
    at = _page()
    assert not at.exception
    assert not at.error, [e.value for e in at.error]
    _fill(at, "billing-svc", ["write:configuration", "read"], "10.20.0.0/16, 127.0.0.1\n::1")
    _create(at)
    assert not at.error, [e.value for e in at.error]
    (token,) = _shown_tokens(at)
    assert any("Store it now: it is not shown again" in w.value for w in at.warning)
    key_id, secret = parse_token(token)  # type: ignore[misc]
    (row,) = _rows(admin_engine, "SELECT secret_hash, row_to_json(k)::text FROM api_keys k")
    assert bytes(row[0]) == digest(secret)
    assert secret not in row[1]
    assert secret[:8] not in row[1]
    assert secret not in _rows(admin_engine, "SELECT string_agg(e::text, '') FROM events e")[0][0]
    (made,) = _events(admin_engine, "apikey.created")
    assert (made["actor"]["id"], made["target"]["id"]) == (ADMIN, key_id)
    assert made["after"]["allow"] == ["10.20.0.0/16", "127.0.0.1/32", "::1/128"]

    served = settings.replace(api={"key_cache_seconds": 0})
    log = AuditLog(engine, served, signer=signer)
    api = start(log, reader_engine, log, admin_engine)
    try:
        assert api.post(token, event()).status_code in (200, 201)  # the key shown works
        at.run()  # the next rerun: the key is gone from the page, and was never kept
        assert _shown_tokens(at) == []
        assert secret not in _every_text(at)
        assert secret not in repr(at.session_state)
        at.switch_page("pages/timeline.py").run().switch_page("pages/api_keys.py").run()
        assert _shown_tokens(at) == []
        assert secret not in _every_text(at)
    finally:
        api.stop()


def test_list_shows_each_key_without_secrets_and_revoked_ones_on_request(
    page_env: None, keys_log: AuditLog
) -> None:
    other = local_identity("ci-admin")
    create_key(keys_log, other, "billing-svc", ["write:*"], ["10.0.0.0/8"], rate=50, burst=9)
    gone = create_key(keys_log, other, "old-svc", ["read"])
    revoke_key(keys_log, other, "old-svc")
    at = _page()
    table = at.dataframe[0].value
    assert list(table.columns) == list(apikey_data.SCHEMA)  # no secret or hash column
    assert list(table["name"]) == ["billing-svc"]
    first = table.iloc[0]
    assert (first["scopes"], first["allowed from"], first["rate /s"], first["burst"]) == (
        "write:*", "10.0.0.0/8", 50.0, 9)  # fmt: skip
    assert (first["created by"], first["status"], first["revoked"]) == ("ci-admin", "active", "—")
    next(t for t in at.toggle if t.label == "Show revoked keys").set_value(True).run()
    table = at.dataframe[0].value.set_index("name")
    assert table.loc["old-svc", "status"] == "revoked"
    assert table.loc["old-svc", "revoked by"] == "ci-admin"
    assert table.loc["old-svc", "key id"] == gone.info.key_id
    assert gone.token not in _every_text(at)


def test_rotate_needs_the_name_typed_and_a_double_press_rotates_once(
    page_env: None, keys_log: AuditLog, admin_engine: Engine
) -> None:
    old = create_key(keys_log, local_identity("ci-admin"), "billing-svc", ["write:*"])
    at = _page()
    _press(at, "Rotate", "billing-svc", "billing")
    assert "Type the key's name, billing-svc, to confirm" in at.error[0].value
    assert _events(admin_engine, "apikey.rotated") == []
    next(t for t in at.text_input if t.label == "Type billing-svc to confirm").set_value(
        "billing-svc"
    )
    next(b for b in at.button if b.label == "Rotate").click()
    press = at._tree.get_widget_states()  # what the browser sends for this press
    at.run()
    (token,) = _shown_tokens(at)
    at._run(press)  # the same press again (a double click): nothing happens
    assert not at.error
    assert _shown_tokens(at) == []
    (rotated,) = _events(admin_engine, "apikey.rotated")
    assert rotated["actor"]["id"] == ADMIN
    assert rotated["before"]["key_id"] == old.info.key_id
    key_id, secret = parse_token(token)  # type: ignore[misc]
    stored = _rows(admin_engine, "SELECT secret_hash FROM api_keys WHERE key_id = :k", k=key_id)
    assert bytes(stored[0][0]) == digest(secret)
    (now,) = list_keys(keys_log.engine)
    assert (now.key_id, now.rotated_from) == (key_id, old.info.key_id)


def test_revoke_of_a_key_revoked_meanwhile_says_so_and_changes_nothing(
    page_env: None, keys_log: AuditLog, admin_engine: Engine
) -> None:
    other = local_identity("ci-admin")
    create_key(keys_log, other, "billing-svc", ["write:*"])
    create_key(keys_log, other, "batch-svc", ["read"])
    at = _page()
    _choose(at, "billing-svc", "billing-svc")
    revoke_key(keys_log, other, "billing-svc")  # another admin, while this page is open
    next(b for b in at.button if b.label == "Revoke").click().run()
    assert "billing-svc" in at.warning[0].value
    assert "is already revoked" in at.warning[0].value
    assert [e["actor"]["id"] for e in _events(admin_engine, "apikey.revoked")] == ["ci-admin"]
    _press(at, "Revoke", "batch-svc", "batch-svc")
    assert "Revoked API key batch-svc" in at.success[0].value
    assert list_keys(keys_log.engine) == []
    revoked = _events(admin_engine, "apikey.revoked")
    assert [e["actor"]["id"] for e in revoked] == ["ci-admin", ADMIN]
    assert "No active keys." in [c.value for c in at.caption]


def test_bad_allow_list_entry_is_named_and_nothing_is_created(
    page_env: None, admin_engine: Engine
) -> None:
    at = _page()
    _fill(at, "billing-svc", ["write:*"], "10.0.0.0/8\n10.0.0.300/33")
    _create(at)
    assert not at.exception
    assert "allow: '10.0.0.300/33' is not an IPv4/IPv6 address or CIDR" in at.error[0].value
    assert _shown_tokens(at) == []
    assert _rows(admin_engine, "SELECT key_id FROM api_keys") == []
    assert _events(admin_engine, "apikey.created") == []


@pytest.mark.parametrize(
    ("name", "scopes", "says"),
    [
        ("svc\nadmin", ["write:*"], "name: 'svc\\nadmin': use 1-64 letters"),
        ("svc", [], "scope: give at least one of"),
    ],
)
def test_bad_name_or_no_scope_is_refused_with_the_field_named(
    page_env: None, admin_engine: Engine, name: str, scopes: list[str], says: str
) -> None:
    at = _page()
    _fill(at, name, scopes)
    _create(at)
    assert says in at.error[0].value
    assert _rows(admin_engine, "SELECT key_id FROM api_keys") == []


def test_a_second_press_of_create_makes_no_second_key(page_env: None, admin_engine: Engine) -> None:
    at = _page()
    _fill(at, "billing-svc", ["write:*"])
    _create(at)
    assert len(_shown_tokens(at)) == 1
    _create(at)
    assert "an active API key is already named 'billing-svc'" in at.error[0].value
    assert _shown_tokens(at) == []
    assert len(_rows(admin_engine, "SELECT key_id FROM api_keys")) == 1
    assert len(_events(admin_engine, "apikey.created")) == 1


@pytest.mark.parametrize(
    ("user", "role"), [("auditor@contoso.com", "auditor"), ("lead@contoso.com", "compliance_lead")]
)
def test_anyone_but_an_admin_is_refused_by_url(
    page_env: None,
    keys_log: AuditLog,
    admin_engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
    user: str,
    role: str,
) -> None:
    made = create_key(keys_log, local_identity("ci-admin"), "billing-svc", ["write:*"])
    monkeypatch.setenv("AUDITLOG_USER", user)
    assert "API keys" not in [p.title for p in nav.shown(role)]  # type: ignore[arg-type]
    at = _page()
    assert not at.exception
    assert f"API keys is not available to the {role} role; it needs one of: admin" in (
        at.error[0].value
    )
    assert not at.title
    assert not at.dataframe
    assert not at.button
    assert made.info.key_id not in _every_text(at)
    sql = "SELECT actor->>'id' FROM events WHERE action = 'dashboard.viewed' AND outcome = 'denied'"
    assert [r[0] for r in _rows(admin_engine, sql)] == [user]
