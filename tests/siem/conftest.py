"""SIEM tests run as the SIEM worker does: the ``auditlog_stream`` login acting as
``auditlog_streamer`` (reads events, checkpoints and keys; keeps its cursors; appends its own
events through the database's append check). The ingest login may not read checkpoints."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.engine import URL, Engine

from auditlog.db.server import make_engine


@pytest.fixture
def engine(db_url: URL) -> Iterator[Engine]:
    engine = make_engine(db_url.set(username="auditlog_stream"), "stream")
    yield engine
    engine.dispose()
