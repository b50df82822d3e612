"""Prometheus metrics of the service (``GET /metrics``), one registry per app.

Counted as requests are answered: events accepted (by category) and rejected (by reason),
request latency (by route, method and status), batch sizes. Read at each scrape from the
status modules, as the reader role: SIEM delivery lag (:func:`auditlog.siem.status.
destination_status`), witness lag (:func:`auditlog.proofs.submit.witness_status`), the age of
each chain's newest checkpoint (:func:`auditlog.integrity.status.latest_checkpoints`). When
the database cannot be read, ``auditlog_status_up`` is 0 and those gauges are left out.

Each uvicorn worker process has its own counters: scrape each, or sum them in Prometheus.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.engine import Engine

from auditlog.integrity.status import latest_checkpoints
from auditlog.proofs.submit import configured_witnesses, witness_status
from auditlog.settings import Settings
from auditlog.siem.status import destination_status

_LOG = logging.getLogger(__name__)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)


def _gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


class StatusCollector(Collector):
    """Lag gauges read from the database at each scrape."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine, self.settings = engine, settings

    def collect(self) -> Iterator[Metric]:
        up = _gauge("auditlog_status_up", "1 when the status gauges could be read", [])
        try:
            families = [self._siem(), self._witness(), self._checkpoints()]
        except Exception:  # a scrape must answer even when the database does not
            _LOG.warning("reading the status for /metrics failed", exc_info=True)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        for group in families:
            yield from group

    def _siem(self) -> list[GaugeMetricFamily]:
        secs = _gauge(
            "auditlog_siem_lag_seconds",
            "age of the oldest undelivered event",
            ["destination", "category"],
        )
        events = _gauge(
            "auditlog_siem_lag_events", "events not yet delivered", ["destination", "category"]
        )
        for row in destination_status(self.engine).iter_rows(named=True):
            labels = [row["destination"], row["category"]]
            secs.add_metric(labels, float(row["lag_seconds"]))
            events.add_metric(labels, float(row["lag_events"]))
        return [secs, events]

    def _witness(self) -> list[GaugeMetricFamily]:
        secs = _gauge(
            "auditlog_witness_lag_seconds",
            "how long the oldest checkpoint a witness has not cosigned has waited",
            ["witness", "category"],
        )
        names = [t.name for t in configured_witnesses(self.settings.witness)]
        for lag in witness_status(self.engine, names) if names else []:
            secs.add_metric([lag.witness, lag.category], lag.lag_seconds)
        return [secs]

    def _checkpoints(self) -> list[GaugeMetricFamily]:
        age = _gauge(
            "auditlog_last_checkpoint_age_seconds",
            "seconds since the newest checkpoint of the chain was signed",
            ["category"],
        )
        now = datetime.now(UTC)
        for row in latest_checkpoints(self.engine).iter_rows(named=True):
            age.add_metric([row["category"]], (now - row["signed_at"]).total_seconds())
        return [age]


class Metrics:
    """The service's metrics; :meth:`render` is the /metrics body."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.accepted = Counter(
            "auditlog_api_events_accepted", "events stored", ["category"], registry=r
        )
        self.duplicates = Counter(
            "auditlog_api_events_duplicate", "events answered from an earlier receipt", registry=r
        )
        self.rejected = Counter(
            "auditlog_api_events_rejected", "events or requests refused", ["reason"], registry=r
        )
        self.latency = Histogram(
            "auditlog_api_request_seconds",
            "time to answer a request",
            ["method", "route", "status"],
            registry=r,
        )
        self.batch = Histogram(
            "auditlog_api_batch_events",
            "events per POST /v1/events",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        r.register(StatusCollector(engine, settings))

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric (reads the status gauges)."""
        return generate_latest(self.registry)
