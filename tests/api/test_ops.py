"""Health, readiness, metrics, OpenAPI, and what a client sees while the database is down."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from openapi_spec_validator import validate
from sqlalchemy.engine import Engine

from auditlog.api.app import ROUTES, make_app
from auditlog.db.server import make_engine
from auditlog.integrity.keys import Signer
from auditlog.settings import Settings
from auditlog.store import AuditLog
from tests.support.api import Api, event, start
from tests.support.rsyslog import free_port


def test_healthz_and_readyz_answer_when_all_is_well(api: Api) -> None:
    client = api.client()
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200
    assert r.json()["status"] == "ready"


def test_readyz_is_503_naming_a_migration_not_applied(api: Api, admin_engine: Engine) -> None:
    with admin_engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM schema_migrations WHERE version = 15"))
    r = api.client().get("/readyz")
    assert r.status_code == 503
    assert "[15]" in r.json()["detail"]


def test_a_database_outage_is_503_with_retry_after(
    engine: Engine, keys_engine: Engine, admin_engine: Engine, settings: Settings, signer: Signer
) -> None:
    nowhere = make_engine(
        f"postgresql+psycopg://auditlog_ingest@127.0.0.1:{free_port()}/x", "writer"
    )
    log = AuditLog(engine, settings, signer=signer)
    log.engine = nowhere  # the database goes away after the service started
    api = start(log, nowhere, AuditLog(keys_engine, settings, signer=signer), admin_engine)
    try:
        token = api.key()
        r = api.post(token, event())
        assert r.status_code == 503
        assert r.headers["retry-after"] == "5"
        assert r.headers["content-type"] == "application/problem+json"
        assert "database is unavailable" in r.json()["detail"]
        assert "Traceback" not in r.text
        client = api.client()
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert "retry-after" in ready.headers
        assert client.get("/healthz").status_code == 200
        assert "auditlog_status_up 0.0" in client.get("/metrics").text
    finally:
        api.stop()
        nowhere.dispose()


def test_metrics_count_events_refusals_latency_and_lag(api: Api) -> None:
    token = api.key()
    api.post(token, [event(), event()])
    api.post(token, event(outcome="maybe"))
    api.post(None, event())
    api.log.checkpoint()
    text = api.client().get("/metrics").text
    assert 'auditlog_api_events_accepted_total{category="configuration"} 2.0' in text
    assert 'auditlog_api_events_rejected_total{reason="invalid-event"} 1.0' in text
    assert 'auditlog_api_events_rejected_total{reason="missing"} 1.0' in text
    assert (
        'auditlog_api_request_seconds_count{method="POST",route="/v1/events",status="201"} 1.0'
        in text
    )
    assert "auditlog_api_batch_events_bucket" in text
    assert 'auditlog_last_checkpoint_age_seconds{category="configuration"}' in text
    assert "# HELP auditlog_siem_lag_seconds" in text
    assert "# HELP auditlog_witness_lag_seconds" in text
    assert "auditlog_status_up 1.0" in text


def test_openapi_is_valid_3_1_and_names_every_route(api: Api, settings: Settings) -> None:
    doc: dict[str, Any] = api.client().get("/openapi.json").json()
    validate(doc)
    assert doc["openapi"].startswith("3.1")
    for path, method, _ in ROUTES:
        assert method.lower() in doc["paths"][path], (path, method)
    assert "AuditEvent" in doc["components"]["schemas"]
    app = make_app(settings, api.log, api.admin)
    served = {r.path for r in app.routes}  # type: ignore[attr-defined]
    assert served == set(doc["paths"])


def test_an_unknown_route_or_method_is_a_problem_too(api: Api) -> None:
    client = api.client()
    r = client.get("/v2/nothing")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    r = client.delete("/v1/events")
    assert r.status_code == 405
    assert r.json()["status"] == 405
