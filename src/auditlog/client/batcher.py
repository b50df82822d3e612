"""The client's background mode: a bounded queue drained by one thread, in batches.

``put`` returns a Future at once; the thread sends up to ``batch_size`` queued events per
request (waiting up to ``linger`` seconds for a batch to fill) with ``?partial=true``, so an
invalid event fails only its own Future. A request that fails as a whole (the service
unreachable after every retry, a 403, a 409) fails the Futures of its batch.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from auditlog.client.receipts import EventError, Partial, Receipt
from auditlog.errors import ApiRefused, ClientClosed, ClientQueueFull

Item = tuple[dict[str, Any], "Future[Receipt]"]
SendPartial = Callable[[list[dict[str, Any]]], Partial]


def _refused(event_id: Any, errors: list[EventError]) -> ApiRefused:
    detail = "; ".join(f"{e.field}: {e.reason}" for e in errors)
    doc = {
        "title": "Invalid events",
        "status": 422,
        "detail": f"event {event_id} was refused, nothing of it stored: {detail}",
        "errors": [{"index": 0, "field": e.field, "reason": e.reason} for e in errors],
    }
    return ApiRefused(422, doc)


class Batcher:
    """See the module docstring."""

    def __init__(self, send: SendPartial, batch_size: int, max_queue: int, linger: float):
        self.send, self.batch_size, self.max_queue, self.linger = (
            send,
            batch_size,
            max_queue,
            linger,
        )
        self._items: deque[Item] = deque()
        self._busy = 0  # events taken by the thread and not yet answered
        self._closed = self._hurry = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="auditlog-client", daemon=True)
        self._thread.start()

    def put(self, event: dict[str, Any]) -> Future[Receipt]:
        """Queue ``event`` (it has its event_id); ClientQueueFull when ``max_queue`` wait."""
        future: Future[Receipt] = Future()
        with self._cond:
            if self._closed:
                raise ClientClosed()
            if len(self._items) >= self.max_queue:
                raise ClientQueueFull(len(self._items), self.max_queue)
            self._items.append((event, future))
            self._cond.notify_all()
        return future

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every queued event is answered; TimeoutError after ``timeout`` s."""
        with self._cond:
            self._hurry = True
            self._cond.notify_all()
            done = self._cond.wait_for(lambda: not self._items and not self._busy, timeout)
            self._hurry = False
            if not done:
                raise TimeoutError(
                    f"{len(self._items) + self._busy} event(s) still unanswered after "
                    f"{timeout:g} s; the service is slow or unreachable"
                )

    def close(self, timeout: float | None = None) -> None:
        """Send what is queued, then stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def _take(self) -> list[Item] | None:
        with self._cond:
            self._cond.wait_for(lambda: self._items or self._closed)
            if not self._items:
                return None  # closed and drained
            if len(self._items) < self.batch_size and not (self._closed or self._hurry):
                self._cond.wait_for(
                    lambda: len(self._items) >= self.batch_size or self._closed or self._hurry,
                    self.linger,
                )
            batch: list[Item] = []
            while self._items and len(batch) < self.batch_size:
                item = self._items.popleft()
                if item[1].set_running_or_notify_cancel():  # a cancelled one is not sent
                    batch.append(item)
            self._busy += len(batch)
            return batch

    def _run(self) -> None:
        while (batch := self._take()) is not None:
            try:
                self._deliver(batch)
            finally:
                with self._cond:
                    self._busy -= len(batch)
                    self._cond.notify_all()

    def _deliver(self, batch: list[Item]) -> None:
        if not batch:
            return
        try:
            answer = self.send([event for event, _ in batch])
        except Exception as exc:  # the whole request failed: so does each of its events
            for _, future in batch:
                future.set_exception(exc)
            return
        errors: dict[int, list[EventError]] = {}
        for e in answer.rejected:
            errors.setdefault(e.index, []).append(e)
        for i, (event, future) in enumerate(batch):
            if i in answer.receipts:
                future.set_result(answer.receipts[i])
            else:
                why = errors.get(i) or [EventError(i, "event", "no receipt was returned")]
                future.set_exception(_refused(event.get("event_id"), why))
