"""The path a person clicks, in a real Chromium against `streamlit run app.py`.

Timeline -> filter -> select a row -> its diff -> its correlation, checking what is on screen
and saving a screenshot of each page under test-artifacts/ (gitignored).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from auditlog.apikeys.keys import parse_token
from auditlog.demo import demo_events
from auditlog.settings import Settings
from auditlog.store import AuditLog

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ROLES = '[roles.users]\n"auditor@contoso.com" = "auditor"\n'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"streamlit exited ({proc.returncode}):\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/_stcore/health", timeout=1).text == "ok":
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"streamlit did not become healthy in {timeout}s:\n{log.read_text()}")


@contextmanager
def streamlit_app(settings: Settings, tmp_path: Path, roles: str, user: str) -> Iterator[str]:
    """`streamlit run app.py` on a free localhost port against the test's database, as ``user``."""
    config = tmp_path / "auditlog.toml"
    config.write_text(roles, "utf-8")
    env = {**os.environ, "AUDITLOG_DATABASE_URL": str(settings.store.database_url),
           "AUDITLOG_HOME": str(settings.store.home), "AUDITLOG_CONFIG": str(config),
           "AUDITLOG_USER": user}  # fmt: skip
    port = free_port()
    out = tmp_path / "streamlit.log"
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless=true",
           f"--server.port={port}", "--server.address=127.0.0.1",
           "--browser.gatherUsageStats=false", "--server.fileWatcherType=none"]  # fmt: skip
    with out.open("wb") as sink:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, out)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def server(log: AuditLog, settings: Settings, tmp_path: Path) -> Iterator[str]:
    """The dashboard over 400 demo events, as an auditor."""
    log.record_many(list(demo_events(400, seed=11, days=20)))
    with streamlit_app(settings, tmp_path, ROLES, "auditor@contoso.com") as url:
        yield url


@pytest.fixture
def admin_server(log: AuditLog, settings: Settings, tmp_path: Path) -> Iterator[str]:
    """The dashboard as an admin (ops@contoso.com)."""
    with streamlit_app(settings, tmp_path, '[roles.users]\n"ops@contoso.com" = "admin"\n',
                       "ops@contoso.com") as url:  # fmt: skip
        yield url


def test_filter_then_open_a_diff_and_its_correlation(server: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    # expect() waits 5 s by default: too little for a first render on a loaded 2-core machine.
    expect.set_options(timeout=20_000)
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing; run `bash scripts/system-deps.sh` (Debian chromium)")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(
                timezone_id="Europe/Oslo", viewport={"width": 1400, "height": 1500}
            ).new_page()
            page.set_default_timeout(20_000)
            _timeline_filter_and_select(page, server)
            _diff_then_correlation(page)
        finally:
            browser.close()


def _timeline_filter_and_select(page, server: str) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    page.goto(f"{server}/")
    expect(page.get_by_text("events match")).to_be_visible()
    expect(page.get_by_text("Times are shown in Europe/Oslo")).to_be_visible()
    page.get_by_label("Target type").fill("policy")
    page.get_by_role("button", name="Apply filters").click()
    page.wait_for_url("**target_type=policy**")
    expect(page.get_by_text("Events 1-")).to_be_visible()
    page.wait_for_timeout(500)  # let the chart and table paint
    page.screenshot(path=ARTIFACTS / "timeline.png", full_page=True)

    grid = page.locator('[data-testid="stDataFrame"]').first
    box = grid.bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + 18, box["y"] + 35 + 17)  # the first row's selection cell
    expect(page.get_by_text("Open its before/after diff")).to_be_visible()
    expect(page.get_by_text("policy.updated · success")).to_be_visible()
    page.get_by_text("Open its before/after diff").click()


def _diff_then_correlation(page) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    page.wait_for_url("**/diff?event=**")
    expect(page.get_by_role("heading", name="Before/after diff")).to_be_visible()
    expect(page.get_by_text("Change story of policy")).to_be_visible()
    expect(page.locator("pre span.diff-changed, pre span.diff-added").first).to_be_visible()
    expect(page.get_by_text("+01:00").first).to_be_visible()
    page.wait_for_timeout(300)
    page.screenshot(path=ARTIFACTS / "diff.png", full_page=True)

    page.get_by_text("Open correlation").click()
    page.wait_for_url("**/correlation?correlation_id=**")
    expect(page.get_by_role("heading", name="Correlation drilldown")).to_be_visible()
    expect(page.get_by_text("approval.requested")).to_be_visible()
    page.wait_for_timeout(300)
    page.screenshot(path=ARTIFACTS / "correlation.png", full_page=True)


def test_an_admin_creates_an_api_key_and_sees_it_once(admin_server: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=20_000)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1400, "height": 1500}).new_page()
            page.set_default_timeout(20_000)
            page.goto(f"{admin_server}/")
            expect(page.get_by_text("events match")).to_be_visible()  # the app's own menu is up
            page.get_by_role("link", name="API keys", exact=True).click()  # section Administer
            page.wait_for_url("**/api_keys")
            expect(page.get_by_role("heading", name="API keys")).to_be_visible()
            page.get_by_label("Name", exact=True).fill("billing-svc")
            page.get_by_label("Allowed source addresses", exact=True).fill("10.20.0.0/16")
            page.locator('[data-testid="stMultiSelect"]').first.click()  # Scopes
            page.get_by_role("option", name="write:configuration").click()
            page.keyboard.press("Escape")
            page.get_by_role("button", name="Create key").click()
            expect(page.get_by_text("Store it now: it is not shown again")).to_be_visible()
            token = page.locator('[data-testid="stCode"] code').first.inner_text().strip()
            assert parse_token(token), token
            page.screenshot(path=ARTIFACTS / "api_keys.png", full_page=True)
            page.get_by_role("link", name="Timeline", exact=True).click()
            expect(page.get_by_text("events match")).to_be_visible()
            page.get_by_role("link", name="API keys", exact=True).click()  # back: not shown again
            expect(page.get_by_text("Rotate or revoke a key")).to_be_visible()
            expect(page.get_by_text("Store it now")).to_have_count(0)
            assert token not in page.content()
        finally:
            browser.close()
