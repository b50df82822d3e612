"""Roles from auditlog.toml, identities from OIDC claims or the local operator, permissions."""

from __future__ import annotations

from pathlib import Path

import pytest

from auditlog import access
from auditlog.access import Identity, RolesConfig, parse_roles, roles_config
from auditlog.errors import ConfigError, PermissionDenied
from auditlog.settings import load_settings

GROUP = "0f8fad5b-d9cb-469f-a165-70867728950e"
OTHER_GROUP = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
TOML = f"""
[auditlog]
max_returned_rows = 500

[roles.users]
"Alice@Contoso.com" = "compliance_lead"
"ops" = "admin"

[roles.groups]
"{GROUP}" = "auditor"
"{OTHER_GROUP}" = "admin"
"""


@pytest.fixture
def config(tmp_path: Path) -> RolesConfig:
    path = tmp_path / "auditlog.toml"
    path.write_text(TOML, "utf-8")
    return roles_config(load_settings({"AUDITLOG_CONFIG": str(path)}).roles)


def test_user_entry_matches_case_insensitively(config: RolesConfig) -> None:
    assert access.role_for("alice@contoso.COM", [], config) == "compliance_lead"


def test_group_id_gives_its_role(config: RolesConfig) -> None:
    assert access.role_for("bob@contoso.com", [GROUP], config) == "auditor"


def test_most_privileged_group_wins(config: RolesConfig) -> None:
    assert access.role_for("bob@contoso.com", [GROUP, OTHER_GROUP], config) == "admin"


def test_user_entry_wins_over_groups(config: RolesConfig) -> None:
    assert access.role_for("alice@contoso.com", [OTHER_GROUP], config) == "compliance_lead"


def test_unknown_user_without_groups_has_no_role(config: RolesConfig) -> None:
    assert access.role_for("mallory@contoso.com", ["not-a-known-group"], config) is None


def test_any_name_of_an_identity_may_match(config: RolesConfig) -> None:
    who = Identity(user="x-123", upn="alice@contoso.com", method="oidc")
    assert config.role_of(who) == "compliance_lead"


def test_local_operator_is_admin_when_no_roles_are_configured(tmp_path: Path) -> None:
    config = roles_config(load_settings({"AUDITLOG_CONFIG": str(tmp_path / "missing.toml")}).roles)
    assert config.role_of(Identity(user="someone", method="local")) == "admin"


def test_oidc_user_gets_no_role_when_no_roles_are_configured() -> None:
    assert RolesConfig().role_of(Identity(user="a@contoso.com", method="oidc")) is None


def test_local_operator_needs_an_entry_once_roles_are_configured(config: RolesConfig) -> None:
    assert config.role_of(Identity(user="someone", method="local")) is None
    assert config.role_of(Identity(user="OPS", method="local")) == "admin"


def test_unknown_role_name_is_refused_naming_the_entry() -> None:
    with pytest.raises(ConfigError, match=r"\[roles.users\] 'bob' = 'superuser'.*auditor"):
        parse_roles({"users": {"bob": "superuser"}})


def test_unknown_roles_subtable_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"unknown key.*admins"):
        parse_roles({"admins": {"bob": "admin"}})


def test_invalid_toml_is_reported_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "auditlog.toml"
    path.write_text("[roles\n", "utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings({"AUDITLOG_CONFIG": str(path)})


def test_local_identity_comes_from_auditlog_user() -> None:
    user = load_settings({"AUDITLOG_USER": "carol"}).dashboard.user
    assert access.local_identity(user) == Identity("carol")


def test_local_identity_defaults_to_the_os_user() -> None:
    import getpass

    assert access.local_identity(load_settings({}).dashboard.user).user == getpass.getuser()


def test_oidc_identity_reads_entra_claims() -> None:
    claims = {"preferred_username": "alice@contoso.com", "name": "Alice Andersen",
              "oid": "2d7a3b9c-8f1e-4c2b-a1d0-5e6f7a8b9c0d", "tid": "t-1",
              "groups": [GROUP], "email": "alice@contoso.com", "is_logged_in": True}  # fmt: skip
    who = access.oidc_identity(claims)
    assert (who.user, who.display_name, who.object_id, who.groups, who.method) == (
        "alice@contoso.com",
        "Alice Andersen",
        claims["oid"],
        (GROUP,),
        "oidc",
    )


def test_oidc_identity_without_any_user_claim_is_refused() -> None:
    with pytest.raises(PermissionDenied, match="names no user"):
        access.oidc_identity({"name": "Nobody", "is_logged_in": True})


def test_actor_of_an_oidc_user_carries_upn_and_object_id() -> None:
    who = Identity(user="a@contoso.com", upn="a@contoso.com", object_id="o-1", method="oidc")
    assert who.actor() == {
        "type": "user",
        "id": "a@contoso.com",
        "upn": "a@contoso.com",
        "entra_object_id": "o-1",
    }


def test_auditor_may_read_but_not_change_retention() -> None:
    assert access.allowed("auditor", "timeline")
    assert access.allowed("auditor", "retention")
    assert not access.allowed("auditor", "retention.change")
    assert access.allowed("compliance_lead", "retention.change")


def test_only_admin_configures_siem() -> None:
    assert [r for r in access.ROLES if access.allowed(r, "siem.configure")] == ["admin"]


def test_no_role_is_allowed_nothing() -> None:
    assert not any(access.allowed(None, name) for name in access.PERMISSIONS)


def test_unknown_page_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown page or action 'timelien'"):
        access.allowed("admin", "timelien")


def test_require_names_the_roles_needed() -> None:
    with pytest.raises(PermissionDenied, match=r"auditor role may not use 'retention\.change'"):
        access.require("auditor", "retention.change")


def test_roles_may_come_from_the_environment() -> None:
    env = {"AUDITLOG_ROLES_USERS": "Ops=admin, lead@contoso.com=compliance_lead"}
    config = roles_config(load_settings(env).roles)
    assert config.role_for("ops") == "admin"
    assert config.role_for("LEAD@contoso.com") == "compliance_lead"


def test_unknown_role_in_the_settings_is_refused_naming_the_entry() -> None:
    roles = load_settings({}, roles={"users": {"bob": "superuser"}}).roles
    with pytest.raises(ConfigError, match=r"\[roles.users\] 'bob' = 'superuser'"):
        roles_config(roles)
