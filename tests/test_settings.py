"""The one Settings object: sources and their precedence, coercion, refusals, overrides."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from auditlog.errors import ConfigError
from auditlog.settings import SECTIONS, Settings, env_name, load_settings


def config(tmp_path: Path, text: str) -> dict[str, str]:
    path = tmp_path / "auditlog.toml"
    path.write_text(text, "utf-8")
    return {"AUDITLOG_CONFIG": str(path)}


TOML = """
[store]
checkpoint_every = 10
[dashboard]
max_returned_rows = 20
[export]
max_export_rows = 30
[retention]
min_days = 400
[graph]
tenant_id = "toml-tenant"
[siem]
poll_seconds = 0.5
[roles.users]
ops = "admin"
"""
# (section, setting, value in TOML above, environment text, value from that text)
CASES = [
    ("store", "checkpoint_every", 10, "11", 11),
    ("dashboard", "max_returned_rows", 20, "21", 21),
    ("export", "max_export_rows", 30, "31", 31),
    ("retention", "min_days", 400, "401", 401),
    ("graph", "tenant_id", "toml-tenant", "env-tenant", "env-tenant"),
    ("siem", "poll_seconds", 0.5, "1.5", 1.5),
    ("roles", "users", (("ops", "admin"),), "ops=auditor", (("ops", "auditor"),)),
]


@pytest.mark.parametrize(("section", "name", "in_toml", "text", "from_env"), CASES)
def test_environment_beats_toml_beats_default_in_every_section(
    tmp_path: Path, section: str, name: str, in_toml: object, text: str, from_env: object
) -> None:
    env = config(tmp_path, TOML)
    default = getattr(getattr(Settings(), section), name)
    assert getattr(getattr(load_settings({}), section), name) == default
    assert getattr(getattr(load_settings(env), section), name) == in_toml
    env[env_name(section, name)] = text
    assert getattr(getattr(load_settings(env), section), name) == from_env


def test_every_section_of_the_issue_exists_and_is_frozen() -> None:
    settings = load_settings({})
    for name in ("store", "dashboard", "export", "retention", "graph", "siem", "roles"):
        section = getattr(settings, name)
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(section, dataclasses.fields(section)[0].name, None)


def test_every_setting_has_a_help_line() -> None:
    for cls in SECTIONS.values():
        assert all(f.metadata.get("help") for f in dataclasses.fields(cls)), cls


def test_flat_names_of_store_dashboard_and_export_are_kept() -> None:
    env = {
        "AUDITLOG_DATABASE_URL": "postgresql://db/x",
        "AUDITLOG_STATEMENT_TIMEOUT_MS": "5",
        "AUDITLOG_MAX_DOWNLOAD_ROWS": "7",
        "AUDITLOG_USER": "carol",
    }
    s = load_settings(env)
    assert s.store.database_url == "postgresql://db/x"
    assert (s.dashboard.statement_timeout_ms, s.dashboard.max_download_rows) == (5, 7)
    assert s.dashboard.user == "carol"


def test_flat_auditlog_table_still_sets_settings_but_a_section_table_wins(tmp_path: Path) -> None:
    env = config(
        tmp_path,
        "[auditlog]\nmax_returned_rows = 5\nmax_export_rows = 6\n[export]\nmax_export_rows = 7\n",
    )
    s = load_settings(env)
    assert (s.dashboard.max_returned_rows, s.export.max_export_rows) == (5, 7)


def test_empty_environment_variable_means_unset() -> None:
    assert load_settings({"AUDITLOG_CHECKPOINT_EVERY": ""}).store.checkpoint_every == 1000


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"AUDITLOG_CHECKPOINT_EVERY": "often"},
            r"checkpoint_every .* 'often' is not a whole",
        ),
        ({"AUDITLOG_SIEM_POLL_SECONDS": "soon"}, r"siem.poll_seconds .* 'soon' is not a number"),
        ({"AUDITLOG_RETENTION_REQUIRE_APPROVAL": "maybe"}, r"require_approval .* 'maybe' .* true"),
        ({"AUDITLOG_ROLES_GROUPS": "g1"}, r"roles.groups .* 'g1' is not .*name=value"),
        ({"AUDITLOG_MAX_EXPORT_ROWS": "-1"}, r"max_export_rows: must not be negative"),
    ],
)
def test_bad_values_are_refused_naming_the_setting_and_value(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(env)


def test_a_toml_value_of_the_wrong_type_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"store.checkpoint_every .* 'often'"):
        load_settings(config(tmp_path, '[store]\ncheckpoint_every = "often"\n'))
    with pytest.raises(ConfigError, match=r"max_returned_rows .* 2.5 is not a whole number"):
        load_settings(config(tmp_path, "[dashboard]\nmax_returned_rows = 2.5\n"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[store]\ncheckpoint_evry = 5\n", r"unknown setting store.checkpoint_evry"),
        ("[auditlog]\nmax_rows = 5\n", r"unknown setting auditlog.max_rows"),
        ("[retenton]\nmin_days = 5\n", r"unknown table\(s\) \[retenton\]"),
        ("[store\n", r"not valid TOML"),
    ],
)
def test_unknown_settings_and_tables_in_the_file_are_refused(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(config(tmp_path, text))


def test_unknown_sectioned_environment_variable_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown setting AUDITLOG_RETENTION_MINDAYS"):
        load_settings({"AUDITLOG_RETENTION_MINDAYS": "400"})


def test_overrides_are_per_section_coerced_and_win_over_the_environment() -> None:
    s = load_settings({"AUDITLOG_CHECKPOINT_EVERY": "9"}, store={"checkpoint_every": "5"})
    assert s.store.checkpoint_every == 5
    assert s.store.home == Path(".auditlog")


def test_unknown_override_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"unknown setting store\.checkpoints"):
        load_settings({}, store={"checkpoints": 5})
    with pytest.raises(ConfigError, match="unknown settings section"):
        load_settings({}, storage={"home": "x"})


def test_replace_changes_one_section_and_keeps_the_rest(tmp_path: Path) -> None:
    s = load_settings({}, store={"home": tmp_path})
    changed = s.replace(store={"checkpoint_every": 5}, retention={"require_approval": "yes"})
    assert (changed.store.home, changed.store.checkpoint_every) == (tmp_path, 5)
    assert changed.retention.require_approval is True
    assert s.store.checkpoint_every == 1000


def test_settings_are_hashable_so_caches_can_key_on_them() -> None:
    s = load_settings({"AUDITLOG_ROLES_USERS": "ops=admin"})
    assert hash(s) == hash(load_settings({"AUDITLOG_ROLES_USERS": "ops=admin"}))


def test_optional_path_and_bool_settings_are_typed(tmp_path: Path) -> None:
    s = load_settings(
        config(tmp_path, f'[retention]\narchive_dir = "{tmp_path}"\nrequire_approval = true\n')
    )
    assert s.retention.archive_dir == tmp_path
    assert s.retention.require_approval is True
    assert load_settings({}).retention.archive_dir is None


def test_dashboard_download_cap_is_the_setting_bounded_by_the_export_cap() -> None:
    from ui import data  # the dashboard glue: it takes the settings, never the environment

    s = load_settings({"AUDITLOG_MAX_DOWNLOAD_ROWS": "70", "AUDITLOG_MAX_EXPORT_ROWS": "50"})
    assert data.max_download_rows(s) == 50
    assert data.max_download_rows(s.replace(export={"max_export_rows": 0})) == 70


def test_no_two_settings_share_an_environment_name() -> None:
    names = [env_name(s, f.name) for s, cls in SECTIONS.items() for f in dataclasses.fields(cls)]
    assert len(names) == len(set(names))
