"""API keys in the database: hashed at rest, changed only by revocation, managed only by the
key roles, every change an audit event."""

from __future__ import annotations

import hashlib

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from auditlog.apikeys.admin import create_key, list_keys, revoke_key, rotate_key
from auditlog.apikeys.keys import parse_token
from auditlog.errors import InvalidApiKeySetting, NotFound
from auditlog.store import AuditLog
from tests.support.api import ADMIN


@pytest.fixture
def keys_log(keys_engine: Engine, log: AuditLog) -> AuditLog:
    return AuditLog(keys_engine, log.settings, signer=log.signer)


def _row(admin: Engine, key_id: str) -> sa.Row[tuple[object, ...]]:
    with admin.connect() as conn:
        return conn.execute(
            sa.text("SELECT * FROM api_keys WHERE key_id = :k"), {"k": key_id}
        ).one()


def test_only_the_sha256_of_the_secret_is_stored(keys_log: AuditLog, admin_engine: Engine) -> None:
    created = create_key(keys_log, ADMIN, "billing", ["write:configuration"])
    parsed = parse_token(created.token)
    assert parsed is not None
    key_id, secret = parsed
    row = _row(admin_engine, key_id)
    assert bytes(row.secret_hash) == hashlib.sha256(secret.encode()).digest()
    assert secret not in str(tuple(row))
    assert row.prefix == created.info.prefix
    assert created.token.startswith(row.prefix)


def test_creation_rotation_and_revocation_are_audit_events(
    keys_log: AuditLog, admin_engine: Engine
) -> None:
    created = create_key(keys_log, ADMIN, "billing", ["write:*"], allow=["10.1.2.3"], rate=5)
    rotated = rotate_key(keys_log, ADMIN, "billing")
    revoke_key(keys_log, ADMIN, "billing")
    with admin_engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT action, category, target->>'id', actor->>'id', record FROM events "
                "WHERE action LIKE 'apikey.%' ORDER BY seq"
            )
        ).all()
    assert [(r[0], r[1]) for r in rows] == [
        ("apikey.created", "configuration"),
        ("apikey.rotated", "configuration"),
        ("apikey.revoked", "configuration"),
    ]
    assert [r[2] for r in rows] == [created.info.key_id, rotated.info.key_id, rotated.info.key_id]
    assert all(r[3] == "key-admin" for r in rows)
    for token in (created.token, rotated.token):
        assert token.split("_")[2] not in " ".join(r[4] for r in rows)
    assert _row(admin_engine, rotated.info.key_id).rotated_from == created.info.key_id
    assert rotated.info.allow == ("10.1.2.3/32",)
    assert rotated.info.rate == 5


def test_an_active_name_is_unique_but_a_revoked_name_can_be_reused(keys_log: AuditLog) -> None:
    create_key(keys_log, ADMIN, "billing", ["read"])
    with pytest.raises(InvalidApiKeySetting, match="already named 'billing'"):
        create_key(keys_log, ADMIN, "billing", ["read"])
    revoke_key(keys_log, ADMIN, "billing")
    create_key(keys_log, ADMIN, "billing", ["read"])
    assert [k.name for k in list_keys(keys_log.engine)] == ["billing"]
    assert len(list_keys(keys_log.engine, include_revoked=True)) == 2


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": "bad name"}, "name"),
        ({"scopes": ["write:policy"]}, "scope"),
        ({"scopes": []}, "scope"),
        ({"allow": ["10.0.0.0/33"]}, "allow"),
        ({"rate": 0.0}, "rate"),
    ],
)
def test_bad_key_settings_are_refused_naming_the_field(
    keys_log: AuditLog, kwargs: dict[str, object], field: str
) -> None:
    args: dict[str, object] = {"name": "svc", "scopes": ["write:*"]} | kwargs
    with pytest.raises(InvalidApiKeySetting) as info:
        create_key(keys_log, ADMIN, **args)  # type: ignore[arg-type]
    assert info.value.field == field


def test_rotating_or_revoking_an_unknown_name_says_so(keys_log: AuditLog) -> None:
    with pytest.raises(NotFound, match="no active API key is named 'ghost'"):
        rotate_key(keys_log, ADMIN, "ghost")
    with pytest.raises(NotFound, match="no active API key is named 'ghost'"):
        revoke_key(keys_log, ADMIN, "ghost")


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO api_keys (key_id, name, secret_hash, prefix, scopes, rate, burst, "
        "created_by) VALUES ('00000000000000aa', 'x', '\\x00', 'p', '{read}', 1, 1, 'me')",
        "UPDATE api_keys SET scopes = '{write:*}'",
        "DELETE FROM api_keys",
        "SELECT auditlog_api_key_revoke('billing', 'me')",
    ],
)
def test_the_ingest_login_can_neither_add_change_revoke_nor_delete_keys(
    keys_log: AuditLog, engine: Engine, statement: str
) -> None:
    create_key(keys_log, ADMIN, "billing", ["write:configuration"])
    with pytest.raises(sa.exc.ProgrammingError, match="permission denied"), engine.begin() as c:
        c.execute(sa.text(statement))


def test_not_even_the_owner_changes_a_key_other_than_by_revoking_it(
    keys_log: AuditLog, admin_engine: Engine
) -> None:
    created = create_key(keys_log, ADMIN, "billing", ["write:configuration"])
    for statement in (
        "UPDATE api_keys SET scopes = '{write:*}'",
        "DELETE FROM api_keys",
        "UPDATE api_keys SET revoked_at = now(), revoked_by = 'x', name = 'other'",
    ):
        with (
            pytest.raises(sa.exc.DBAPIError, match="only revoked once"),
            admin_engine.begin() as conn,
        ):
            conn.execute(sa.text(statement))
    revoke_key(keys_log, ADMIN, "billing")
    with pytest.raises(sa.exc.DBAPIError, match="only revoked once"), admin_engine.begin() as c:
        c.execute(sa.text("UPDATE api_keys SET revoked_at = NULL, revoked_by = NULL"))
    assert _row(admin_engine, created.info.key_id).revoked_by == "key-admin"


def test_the_reader_lists_keys_but_never_reads_a_hash(
    keys_log: AuditLog, reader_engine: Engine
) -> None:
    create_key(keys_log, ADMIN, "billing", ["read"])
    assert [k.name for k in list_keys(reader_engine)] == ["billing"]
    with (
        pytest.raises(sa.exc.ProgrammingError, match="permission denied"),
        reader_engine.connect() as conn,
    ):
        conn.execute(sa.text("SELECT secret_hash FROM api_keys"))


def test_the_dashboard_manages_keys_through_its_own_role(
    db_url: sa.engine.URL, log: AuditLog
) -> None:
    from auditlog.db.server import make_engine

    engine = make_engine(db_url.set(username="auditlog_dashboard"), "apikeys")
    try:
        dash = AuditLog(engine, log.settings, signer=log.signer)
        created = create_key(dash, ADMIN, "from-dashboard", ["read"])
        assert revoke_key(dash, ADMIN, "from-dashboard").key_id == created.info.key_id
    finally:
        engine.dispose()
