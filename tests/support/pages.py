"""Streamlit AppTest over the real app.py."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]


def app(tz: str = "Europe/Oslo") -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30)
    at.context = {"timezone": tz}
    return at
