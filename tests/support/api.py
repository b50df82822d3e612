"""The ingestion service on a free loopback port, as tests talk to it (httpx)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import sqlalchemy as sa
import uvicorn
from sqlalchemy.engine import Engine

from auditlog.access import local_identity
from auditlog.api.app import make_app, server_options
from auditlog.apikeys.admin import create_key
from auditlog.store import AuditLog
from tests.support.rsyslog import free_port

ADMIN = local_identity("key-admin")


@dataclass
class Api:
    """A running service: its URL, the log it writes, the key administrator's log."""

    url: str
    log: AuditLog
    keys_log: AuditLog
    admin: Engine
    server: uvicorn.Server
    thread: threading.Thread
    clients: list[httpx.Client] = field(default_factory=list)

    def key(self, name: str = "svc", scopes: Sequence[str] = ("write:*",), **kw: Any) -> str:
        """A new API key's token."""
        return create_key(self.keys_log, ADMIN, name, scopes, **kw).token

    def client(self, token: str | None = None, timeout: float = 30.0) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        client = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)
        self.clients.append(client)
        return client

    def post(self, token: str | None, body: Any, **kw: Any) -> httpx.Response:
        """POST /v1/events with a JSON body (``content=`` for raw bytes)."""
        client = self.client(token)
        if "content" in kw:
            kw.setdefault("headers", {}).setdefault("Content-Type", "application/json")
            return client.post("/v1/events", **kw)
        return client.post("/v1/events", json=body, **kw)

    def rows(self, sql: str, **params: Any) -> list[Any]:
        with self.admin.connect() as conn:
            return list(conn.execute(sa.text(sql), params).all())

    def refusals(self) -> list[dict[str, Any]]:
        """details of every apikey.refused event, oldest first."""
        found = self.rows("SELECT details FROM events WHERE action = 'apikey.refused' ORDER BY seq")
        return [r[0] for r in found]

    def stop(self) -> None:
        for client in self.clients:
            client.close()
        self.server.should_exit = True
        self.thread.join(15)


def start(log: AuditLog, reader: Engine, keys_log: AuditLog, admin: Engine) -> Api:
    """Run the app under uvicorn in a thread; return once it answers."""
    port = free_port()
    app = make_app(log.settings, log, reader)
    options = server_options("127.0.0.1", port) | {"log_level": "warning"}
    config = uvicorn.Config(app, **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"api-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the API server did not start")
        time.sleep(0.02)
    return Api(f"http://127.0.0.1:{port}", log, keys_log, admin, server, thread)


def event(**changes: Any) -> dict[str, Any]:
    """A valid event (occurred now-ish, so the skew flag stays off)."""
    from auditlog.model import utc_now, utc_text

    base: dict[str, Any] = {
        "category": "configuration",
        "action": "policy.updated",
        "outcome": "success",
        "occurred_at": utc_text(utc_now()),
        "actor": {"type": "service", "id": "policy-service"},
        "target": {"type": "policy", "id": "mfa-required"},
        "after": {"enabled": True},
    }
    return base | changes
