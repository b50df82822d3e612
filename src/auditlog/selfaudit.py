"""The dashboard audits itself: sign-ins and page views become ``user_activity`` events.

- ``user.login``: once per dashboard session, when the user is identified. The outcome is
  ``denied`` when the user has no role (they see nothing), else ``success``.
- ``dashboard.viewed``: once per *distinct view* of a session: a page with its filters (the
  query string that makes the view, see :func:`view_key`). A rerun, a repeated view, paging
  through results or selecting a row records nothing; changing a filter records a new view.

Every event of a session shares one ``correlation_id`` (``dashboard-<session id>``), so the
correlation page shows what one person looked at in one sitting. The actor is the signed-in
user (:meth:`auditlog.access.Identity.actor`); the :class:`~auditlog.store.AuditLog` it is
recorded through resolves it against the directory like any other actor.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from auditlog.access import Identity
from auditlog.model import OutcomeName, new_event
from auditlog.store import AuditLog, Receipt

APP_TARGET = {"type": "application", "id": "auditlog-dashboard", "name": "Audit log dashboard"}
FilterValue = str | Sequence[str] | None


def _clean(filters: Mapping[str, FilterValue]) -> dict[str, str | list[str]]:
    """Drop empty values; sort multi-values (their order does not change the view)."""
    out: dict[str, str | list[str]] = {}
    for key, value in sorted(filters.items()):
        if value is None or value == "" or (not isinstance(value, str) and not value):
            continue
        out[key] = value if isinstance(value, str) else sorted(map(str, value))
    return out


def view_key(page: str, filters: Mapping[str, FilterValue]) -> str:
    """A stable key for a view: equal for the same page and the same non-empty filters."""
    text = json.dumps({"page": page, "filters": _clean(filters)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _event(
    identity: Identity,
    action: str,
    outcome: OutcomeName,
    target: dict[str, Any],
    details: dict[str, Any],
    context: Mapping[str, Any],
) -> dict[str, Any]:
    return new_event(
        action=action,
        outcome=outcome,
        actor=identity.actor(),
        target=target,
        details=details,
        **context,
    )


def login_event(
    identity: Identity, role: str | None, context: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The ``user.login`` event of ``identity`` signing in with ``role`` (None: refused).

    ``context`` may hold ``source_ip``, ``user_agent`` and ``correlation_id``.
    """
    details: dict[str, Any] = {"method": identity.method, "role": role}
    if identity.groups:
        details["groups"] = list(identity.groups)
    outcome: OutcomeName = "success" if role else "denied"
    return _event(identity, "user.login", outcome, dict(APP_TARGET), details, context or {})


def view_event(
    identity: Identity,
    page: str,
    title: str,
    filters: Mapping[str, FilterValue],
    context: Mapping[str, Any] | None = None,
    outcome: OutcomeName = "success",
) -> dict[str, Any]:
    """The ``dashboard.viewed`` event of one view: ``page`` with its non-empty ``filters``.

    ``outcome`` is ``denied`` when the user's role may not open the page.
    """
    target = {"type": "dashboard", "id": f"auditlog/{page}", "name": title}
    details = {"page": page, "filters": _clean(filters)}
    return _event(identity, "dashboard.viewed", outcome, target, details, context or {})


class SelfAudit:
    """One dashboard session's self-audit: its login and its distinct views.

    Parameters
    ----------
    log
        Where events go (a writer; give it the directory resolver so actors resolve).
    identity
        The session's user.
    source_ip, user_agent
        Of the browser, when known.
    """

    def __init__(
        self,
        log: AuditLog,
        identity: Identity,
        source_ip: str | None = None,
        user_agent: str | None = None,
    ) -> None:
        self.log = log
        self.identity = identity
        self.session_id = uuid.uuid4().hex[:16]
        self.context = {
            "source_ip": source_ip,
            "user_agent": user_agent,
            "correlation_id": f"dashboard-{self.session_id}",
        }
        self.logged_in = False
        self._seen: set[str] = set()

    def login(self, role: str | None) -> Receipt | None:
        """Record ``user.login`` the first time it is called; later calls record nothing."""
        if self.logged_in:
            return None
        receipt = self.log.record(login_event(self.identity, role, self.context))
        self.logged_in = True
        return receipt

    def viewed(
        self,
        page: str,
        title: str,
        filters: Mapping[str, FilterValue],
        outcome: OutcomeName = "success",
    ) -> Receipt | None:
        """Record ``dashboard.viewed`` unless this session already recorded the same view.

        ``outcome="denied"`` records a refused attempt to open ``page``.
        """
        key = f"{outcome}:{view_key(page, filters)}"
        if key in self._seen:
            return None
        event = view_event(self.identity, page, title, filters, self.context, outcome)
        receipt = self.log.record(event)
        self._seen.add(key)
        return receipt
