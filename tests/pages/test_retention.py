"""The Retention page (AppTest): a compliance lead previews and changes a policy; an auditor
reads; a tampered archive is not handed out."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from auditlog.retention.policies import Retention
from auditlog.settings import Settings
from tests.support.retention import (
    events,
    fill,
    policy,
    run,
)


@pytest.fixture
def page_env(monkeypatch: pytest.MonkeyPatch, cli_env: dict[str, str]) -> Iterator[None]:
    """The dashboard on this test's database with the Retention page in its menu."""
    import streamlit as st

    from ui import nav

    spec = nav.PageSpec(
        "retention", "pages/retention.py", "Retention", ":material/inventory_2:", "Govern"
    )
    if all(p.key != "retention" for p in nav.PAGES):
        monkeypatch.setattr(nav, "PAGES", [*nav.PAGES, spec])
    for key, value in cli_env.items():
        monkeypatch.setenv(key, value)
    yield
    st.cache_data.clear()
    st.cache_resource.clear()


def _page(user: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("AUDITLOG_USER", user)
    at = AppTest.from_file(
        str(Path(__file__).resolve().parents[2] / "app.py"), default_timeout=30
    ).run()
    return at.switch_page("pages/retention.py").run()


def test_page_lets_a_compliance_lead_change_a_policy_after_previewing_its_impact(
    page_env: None, ret: Retention, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(ret.log)
    at = _page("lead@contoso.com", monkeypatch)
    assert not at.exception
    assert not at.error
    next(s for s in at.selectbox if s.label == "Category" and s.key == "policy.category").set_value(
        "user_activity"
    ).run()
    next(n for n in at.number_input if n.label.startswith("Keep in the table")).set_value(400)
    next(n for n in at.number_input if n.label.startswith("Then keep")).set_value(3650)
    at.run()
    assert any("60 moved to an archive" in c.value for c in at.caption)
    next(t for t in at.text_area if t.label.startswith("Reason")).set_value("schedule R-7")
    next(b for b in at.button if b.label == "Apply").click().run()
    assert not at.error, [e.value for e in at.error]
    assert ret.policies()["user_activity"].state() == {"days": 400, "archive_days": 3650}  # type: ignore[union-attr]
    (changed,) = events(ret.engine, "retention.policy_changed")
    assert changed["actor"]["id"] == "lead@contoso.com"


def test_page_is_read_only_for_an_auditor(
    page_env: None, ret: Retention, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(ret.log)
    policy(ret)
    run(ret, settings)
    at = _page("auditor@contoso.com", monkeypatch)
    assert not at.exception
    assert not at.error
    assert "Read-only" in at.info[0].value
    assert not [b for b in at.button if b.label in ("Apply", "Propose for approval")]
    assert not at.form_submit_button  # no hold or approval forms
    history = next(d.value for d in at.dataframe if "refused" in d.value.columns)
    assert list(history["action"]) == ["retention.policy_changed"]
    assert not at.get("download_button")  # only once the archive has verified
    next(b for b in at.button if b.label == "Verify and prepare the download").click().run()
    assert not at.error, [e.value for e in at.error]
    assert at.get("download_button")  # archives are downloadable by any role
    (logged,) = events(ret.engine, "export.downloaded")
    assert logged["actor"]["id"] == "auditor@contoso.com"


def test_page_refuses_to_hand_out_a_tampered_archive(
    page_env: None, ret: Retention, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(ret.log)
    policy(ret)
    run(ret, settings)
    at = _page("auditor@contoso.com", monkeypatch)
    chosen = next(s for s in at.selectbox if s.label == "Download an archive").value
    path = ret.settings.archive_root(settings.store.home) / chosen
    path.write_bytes(path.read_bytes()[:-100])  # a damaged or edited file
    next(b for b in at.button if b.label == "Verify and prepare the download").click().run()
    assert not at.exception
    assert "does not verify, so it is not handed out" in at.error[0].value
    assert not at.get("download_button")
    assert events(ret.engine, "export.downloaded") == []
