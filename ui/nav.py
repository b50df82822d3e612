"""The dashboard's pages: one line each. A page the user's role may not use is registered
hidden (not in the menu) and refused by ``app.py`` when reached by its URL."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from auditlog import access
from auditlog.access import Role


@dataclass(frozen=True)
class PageSpec:
    key: str  # the name in auditlog.access.PERMISSIONS, also the URL path
    path: str  # relative to app.py
    title: str
    icon: str
    section: str


PAGES: list[PageSpec] = [
    PageSpec("timeline", "pages/timeline.py", "Timeline", ":material/timeline:", "Investigate"),
    PageSpec("correlation", "pages/correlation.py", "Correlation", ":material/hub:", "Investigate"),
    PageSpec("diff", "pages/diff.py", "Before/after diff", ":material/difference:", "Investigate"),
    PageSpec("retention", "pages/retention.py", "Retention", ":material/inventory_2:", "Govern"),
    PageSpec("export", "pages/export_siem.py", "Export & SIEM", ":material/output:", "Evidence"),
    PageSpec("integrity", "pages/integrity.py", "Integrity", ":material/verified:", "Evidence"),
    PageSpec("api_keys", "pages/api_keys.py", "API keys", ":material/key:", "Administer"),
]


def shown(role: Role | None) -> list[PageSpec]:
    """The pages listed in the menu for ``role``."""
    return [spec for spec in PAGES if access.allowed(role, spec.key)]


def build(role: Role | None) -> tuple[dict[str, list[st.Page]], dict[str, PageSpec]]:
    """Pages by section for ``st.navigation``, and each page's spec by its URL path."""
    sections: dict[str, list[st.Page]] = {}
    by_url: dict[str, PageSpec] = {}
    listed = shown(role)
    for spec in PAGES:
        page = st.Page(
            spec.path,
            title=spec.title,
            icon=spec.icon,
            url_path=spec.key,
            default=bool(listed) and spec == listed[0],
            visibility="visible" if spec in listed else "hidden",
        )
        sections.setdefault(spec.section, []).append(page)
        by_url[page.url_path] = spec
    return sections, by_url
