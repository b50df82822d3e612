"""One client shared by many producer threads: every receipt is the stored row's, and the
chain stays gapless."""

from __future__ import annotations

import threading

from auditlog.client import Receipt
from tests.client.conftest import MakeClient
from tests.support.api import Api, event


def test_threads_sharing_a_client_get_the_receipts_of_the_stored_rows(
    api: Api, make_client: MakeClient
) -> None:
    client = make_client(api.url, api.key("many", rate=1e6, burst=10**6), batch_size=7)
    got: list[Receipt] = []
    lock = threading.Lock()

    def produce(t: int) -> None:
        mine = client.send_many(
            [event(target={"type": "policy", "id": f"{t}-{i}"}) for i in range(20)]
        )
        futures = [client.enqueue(event()) for _ in range(20)]
        mine += [f.result(60) for f in futures]
        with lock:
            got.extend(mine)

    threads = [threading.Thread(target=produce, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = api.rows(
        "SELECT event_id::text, seq, entry_hash FROM events WHERE category = 'configuration' "
        "ORDER BY seq"
    )
    assert [r.seq for r in rows] == list(range(1, len(rows) + 1))
    by_id = {r.event_id: (r.seq, bytes(r.entry_hash).hex()) for r in rows}
    assert len(got) == 8 * 40
    assert all(by_id[r.event_id] == (r.seq, r.entry_hash) for r in got)
