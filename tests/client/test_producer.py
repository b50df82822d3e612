"""A producer process killed mid-run and started again with the same events (its outbox of
events with their event_ids) leaves each event stored exactly once, in a gapless chain."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from auditlog.client import with_event_ids
from tests.client.helpers import stored
from tests.support.api import Api, event

PRODUCER = """
import json, sys
from auditlog.client import AuditLogClient

url, token, outbox = sys.argv[1:]
events = [json.loads(line) for line in open(outbox, encoding="utf-8")]
with AuditLogClient(url, token, batch_size=25) as client:
    for i in range(0, len(events), 25):
        client.send_many(events[i : i + 25])
"""
TOTAL = 1500


def _producer(tmp_path: Path, api: Api, token: str, outbox: Path) -> subprocess.Popen[bytes]:
    script = tmp_path / "producer.py"
    script.write_text(PRODUCER, "utf-8")
    env = os.environ | {"PYTHONPATH": str(Path.cwd())}
    return subprocess.Popen([sys.executable, str(script), api.url, token, str(outbox)], env=env)


def _count(api: Api) -> int:
    return len(stored(api))


@pytest.mark.slow
def test_a_producer_killed_mid_run_and_restarted_stores_each_event_once(
    api: Api, tmp_path: Path
) -> None:
    token = api.key("producer", rate=1e6, burst=10**6)
    outbox = tmp_path / "outbox.ndjson"
    events = with_event_ids(event(target={"type": "policy", "id": f"p{i}"}) for i in range(TOTAL))
    outbox.write_text("".join(json.dumps(e) + "\n" for e in events), "utf-8")
    first = _producer(tmp_path, api, token, outbox)
    deadline = time.monotonic() + 60
    while _count(api) < 100 and time.monotonic() < deadline:
        time.sleep(0.01)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    partway = _count(api)
    assert 100 <= partway < TOTAL  # killed with some batches stored, and not all
    again = _producer(tmp_path, api, token, outbox)
    assert again.wait(120) == 0
    rows = stored(api)
    assert sorted(r.event_id for r in rows) == sorted(e["event_id"] for e in events)
    seqs = [r.seq for r in api.rows("SELECT seq FROM events WHERE category = 'configuration'")]
    assert sorted(seqs) == list(range(1, len(seqs) + 1))
