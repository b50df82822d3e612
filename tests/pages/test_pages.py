"""The dashboard pages under Streamlit's AppTest, against a real (test) database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import streamlit as st
from sqlalchemy.engine import Engine
from streamlit.testing.v1 import AppTest

from auditlog import access, diff
from auditlog.demo import demo_events
from auditlog.query.drilldown import correlation, get_event, target_history
from auditlog.query.filters import Filters
from auditlog.query.timeline import count, search
from auditlog.settings import Settings
from auditlog.store import AuditLog
from tests.support.pages import app
from ui import nav

ROOT = Path(__file__).resolve().parents[2]
GROUP = "0f8fad5b-d9cb-469f-a165-70867728950e"
ROLES = f"""
[roles.users]
"auditor@contoso.com" = "auditor"
"lead@contoso.com" = "compliance_lead"

[roles.groups]
"{GROUP}" = "auditor"
"""


@pytest.fixture
def app_env(monkeypatch: pytest.MonkeyPatch, settings: Settings, tmp_path: Path) -> Iterator[None]:
    """The app pointed at this test's database, as local operator auditor@contoso.com."""
    config = tmp_path / "auditlog.toml"
    config.write_text(ROLES, "utf-8")
    monkeypatch.setenv("AUDITLOG_DATABASE_URL", str(settings.store.database_url))
    monkeypatch.setenv("AUDITLOG_HOME", str(settings.store.home))
    monkeypatch.setenv("AUDITLOG_CONFIG", str(config))
    monkeypatch.setenv("AUDITLOG_USER", "auditor@contoso.com")
    yield
    st.cache_data.clear()
    st.cache_resource.clear()  # disposes the app's engines (on_release)


@pytest.fixture
def seeded(log: AuditLog, app_env: None) -> list[dict[str, Any]]:
    events = list(demo_events(300, seed=3, days=30))
    log.record_many(events)
    return events


def _self_events(engine: Engine, action: str) -> list[dict[str, Any]]:
    stmt = sa.text(
        "SELECT outcome, actor, details FROM events WHERE action = :a "
        "AND target->>'id' LIKE 'auditlog%' ORDER BY seq"
    )
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(stmt, {"a": action}).mappings()]


def _with_state(events: list[dict[str, Any]]) -> dict[str, Any]:
    return next(e for e in events if e.get("before") and e.get("correlation_id"))


def _labelled(widgets: Any, label: str) -> Any:
    return next(w for w in widgets if w.label == label)


def _table_ids(at: AppTest) -> list[str]:
    return list(at.dataframe[0].value["event id"])


def test_every_page_renders_without_exception(seeded: list[dict[str, Any]]) -> None:
    ev = _with_state(seeded)
    params = {"timeline": {"category": "governance"}, "correlation": {
        "correlation_id": ev["correlation_id"]}, "diff": {"event": ev["event_id"]}, "retention": {},
        "export": {"category": "governance", "last": "30d"}, "integrity": {}}  # fmt: skip
    for spec in nav.shown("auditor"):  # the admin's pages: tests/pages/test_api_keys.py
        for query_params in ({}, params[spec.key]):
            at = app().run()
            at.query_params = query_params
            at.switch_page(spec.path).run()
            assert not at.exception, (spec.key, query_params, at.exception)
            assert not at.error, (spec.key, query_params, [e.value for e in at.error])


def test_timeline_without_filters_shows_every_event_newest_first(
    seeded: list[dict[str, Any]], reader_engine: Engine
) -> None:
    at = app().run()
    total = count(reader_engine, Filters())
    assert total == len(seeded) + 2  # the demo, plus this session's user.login and view
    assert at.markdown[0].value.startswith(f"**{total}** events match")
    assert _table_ids(at) == search(reader_engine, Filters()).rows["event_id"].to_list()
    first = at.dataframe[0].value["time"][0]
    assert first[-6:] in ("+01:00", "+02:00")  # Oslo, with its offset visible


def test_filter_narrows_table_to_exactly_what_search_returns(
    seeded: list[dict[str, Any]], reader_engine: Engine
) -> None:
    at = app().run()
    _labelled(at.multiselect, "Category").set_value(["governance"])
    _labelled(at.multiselect, "Outcome").set_value(["denied"])
    at.form_submit_button[0].click().run()
    wanted = Filters(categories=("governance",), outcomes=("denied",))
    assert Filters.from_query_params(at.query_params) == wanted  # the URL holds the view
    expected = search(reader_engine, wanted).rows["event_id"].to_list()
    assert 0 < len(expected) < len(seeded)
    assert _table_ids(at) == expected
    n = count(reader_engine, wanted)
    assert at.markdown[0].value.startswith(f"**{n}** events match")


def test_bookmarked_url_opens_the_same_view(
    seeded: list[dict[str, Any]], reader_engine: Engine
) -> None:
    actor = next(e["actor"]["upn"] for e in seeded if e["actor"].get("upn"))
    at = app()
    at.query_params = {"actor": actor, "last": "90d"}
    at.run()
    assert _labelled(at.text_input, "Actor").value == actor
    assert _labelled(at.selectbox, "Time range").value == "90d"
    expected = search(reader_engine, Filters(actor=actor, last="90d"))
    assert _table_ids(at) == expected.rows["event_id"].to_list()


def test_older_button_pages_by_keyset(log: AuditLog, app_env: None, reader_engine: Engine) -> None:
    log.record_many(list(demo_events(120, seed=5, days=10)))
    at = app().run()
    first = search(reader_engine, Filters(), page_size=50)
    older = next(b for b in at.button if b.label == "Older →")
    older.click().run()
    second = search(reader_engine, Filters(), page_size=50, after=first.next_cursor)
    assert _table_ids(at) == second.rows["event_id"].to_list()
    assert any("Events 51-100 of" in c.value for c in at.caption)


def test_views_are_logged_once_per_distinct_view(
    seeded: list[dict[str, Any]], engine: Engine
) -> None:
    at = app().run()
    at.run()  # a rerun
    at.form_submit_button[0].click().run()  # applying unchanged filters
    assert len(_self_events(engine, "dashboard.viewed")) == 1
    _labelled(at.multiselect, "Outcome").set_value(["failure"])
    at.form_submit_button[0].click().run()
    at.run()
    views = _self_events(engine, "dashboard.viewed")
    assert [v["details"]["filters"] for v in views] == [{}, {"outcome": ["failure"]}]
    logins = _self_events(engine, "user.login")
    assert [(x["outcome"], x["actor"]["id"]) for x in logins] == [
        ("success", "auditor@contoso.com")
    ]


def test_user_without_a_role_sees_only_a_message(
    seeded: list[dict[str, Any]], engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUDITLOG_USER", "mallory@contoso.com")
    at = app().run()
    assert not at.exception
    assert "no role is assigned to you" in at.error[0].value
    assert not at.dataframe
    assert not at.text_input
    assert [t.value for t in at.title] == ["No access"]
    assert [x["outcome"] for x in _self_events(engine, "user.login")] == ["denied"]
    assert _self_events(engine, "dashboard.viewed") == []


def test_auditor_cannot_reach_a_page_that_needs_another_role(
    seeded: list[dict[str, Any]], engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(access.PERMISSIONS, "diff", frozenset({"compliance_lead", "admin"}))
    assert "Before/after diff" not in [p.title for p in nav.shown("auditor")]  # not shown
    at = app().run()
    at.query_params = {"event": _with_state(seeded)["event_id"]}
    at.switch_page("pages/diff.py").run()  # ...and refused when reached by its URL
    assert "not available to the auditor role" in at.error[0].value
    assert [t.value for t in at.title] == []
    assert not at.dataframe
    denied = [v for v in _self_events(engine, "dashboard.viewed") if v["outcome"] == "denied"]
    assert [d["details"]["page"] for d in denied] == ["diff"]


def test_compliance_lead_reaches_that_page(
    seeded: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(access.PERMISSIONS, "diff", frozenset({"compliance_lead", "admin"}))
    monkeypatch.setenv("AUDITLOG_USER", "lead@contoso.com")
    at = app().run()
    at.query_params = {"event": _with_state(seeded)["event_id"]}
    at.switch_page("pages/diff.py").run()
    assert not at.error
    assert [t.value for t in at.title] == ["Before/after diff"]


def test_oidc_configured_shows_sign_in_until_logged_in(app_env: None) -> None:
    at = app()
    at.secrets = {
        "auth": {
            "redirect_uri": "http://localhost:8501/oauth2callback",
            "microsoft": {"client_id": "x"},
        }
    }
    at.user = {}
    at.run()
    assert [b.label for b in at.button] == ["Sign in with Microsoft"]
    assert not at.dataframe


def test_oidc_user_gets_role_from_entra_group(app_env: None, engine: Engine) -> None:
    at = app()
    at.secrets = {"auth": {"redirect_uri": "http://localhost:8501/oauth2callback"}}
    at.user = {
        "is_logged_in": True,
        "preferred_username": "bob@contoso.com",
        "name": "Bob B",
        "oid": "2d7a3b9c-8f1e-4c2b-a1d0-5e6f7a8b9c0d",
        "groups": [GROUP],
    }
    at.run()
    assert not at.exception
    assert [t.value for t in at.title] == ["Timeline"]
    assert any("Bob B" in c.value and "auditor" in c.value for c in at.sidebar.caption)
    login = _self_events(engine, "user.login")[0]
    assert (login["actor"]["upn"], login["details"]["method"]) == ("bob@contoso.com", "oidc")


def test_changing_time_zone_changes_displayed_offsets(seeded: list[dict[str, Any]]) -> None:
    at = app(tz="Asia/Kolkata").run()
    assert at.dataframe[0].value["time"][0].endswith("+05:30")
    at.sidebar.selectbox(key="tz").set_value("UTC").run()
    assert at.dataframe[0].value["time"][0].endswith("+00:00")


def test_correlation_page_lists_every_related_event_in_time_order(
    seeded: list[dict[str, Any]], reader_engine: Engine
) -> None:
    cid = _with_state(seeded)["correlation_id"]
    at = app().run()
    at.query_params = {"correlation_id": cid}
    at.switch_page("pages/correlation.py").run()
    expected = correlation(reader_engine, cid)
    table = at.dataframe[0].value
    assert list(table["diff"]) == [f"diff?event={e}" for e in expected["event_id"]]
    assert at.metric[0].value == str(expected.height)


def test_diff_page_shows_changes_and_the_target_story(
    seeded: list[dict[str, Any]], reader_engine: Engine
) -> None:
    ev = _with_state(seeded)
    at = app().run()
    at.query_params = {"event": ev["event_id"]}
    at.switch_page("pages/diff.py").run()
    stored = get_event(reader_engine, ev["event_id"])
    changes = diff.changes_frame(diff.diff(stored["before"], stored["after"]))
    assert list(at.dataframe[0].value["path"]) == changes["path"].to_list()
    story = target_history(reader_engine, ev["target"]["type"], ev["target"]["id"])
    assert list(at.dataframe[1].value["change"]) == story["summary"].to_list()


def test_diff_page_names_a_creation_as_such(log: AuditLog, app_env: None) -> None:
    from tests.support.factories import valid

    receipt = log.record(valid(before=None, after={"name": "new-policy", "enabled": True}))
    at = app().run()
    at.query_params = {"event": receipt.event_id}
    at.switch_page("pages/diff.py").run()
    assert "Creation" in at.success[0].value
    assert list(at.dataframe[0].value["kind"]) == ["added"]


def test_unknown_event_id_is_reported_not_raised(seeded: list[dict[str, Any]]) -> None:
    at = app().run()
    at.query_params = {"event": "00000000-0000-0000-0000-000000000000"}
    at.switch_page("pages/diff.py").run()
    assert not at.exception
    assert "is not in the log" in at.error[0].value


def test_timeline_offers_the_current_view_as_csv(
    seeded: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    at = app().run()
    buttons = at.get("download_button")
    assert len(buttons) == 1
    assert "Download CSV" in str(buttons[0].proto.label)
    monkeypatch.setenv("AUDITLOG_MAX_DOWNLOAD_ROWS", "1")
    at = app().run()
    assert not at.get("download_button")
    assert "more than a browser download holds" in at.info[0].value


def test_integrity_page_labels_each_chains_tier_and_offers_its_checkpoint_note(
    seeded: list[dict[str, Any]], log: AuditLog
) -> None:
    log.checkpoint()
    at = app().run()
    at.switch_page("pages/integrity.py").run()
    assert not at.exception
    labels = [m.value for m in at.markdown if m.value.startswith("**governance**")]
    assert labels == ["**governance**: tamper-detecting (signed by the log's own key)"]
    notes = [b for b in at.get("download_button") if "checkpoint note" in b.proto.label]
    assert notes  # each chain's newest signed note, as text an auditor keeps
