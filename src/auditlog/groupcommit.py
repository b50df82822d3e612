"""Group commit: concurrent requests coalesced into one transaction per chain lock hold.

Callers validate their events in their own threads and :meth:`GroupCommitter.submit` them; one
committer thread takes *everything queued at that moment* (up to the caps of a group), appends
it as one batch and answers each request with its own results after the commit. A lone caller
waits for nobody: there is no timer, only the queue that fills while the previous group
commits; and a blocking caller (:meth:`GroupCommitter.call`) that finds nothing queued and
nothing being committed commits its own request in its own thread, with no hand-off at all.
One group is committed at a time, whichever thread commits it.

A failed group fails exactly its own requests: unless the database is unavailable (then every
request of the group gets that error: the outcome of a lost commit is unknown, and a retry
with the same event_id is idempotent), the group is split in halves and each half goes again,
down to the single request that fails, which gets its own error.

The committer is generic over what it appends (``T``) and returns (``R``), so it knows nothing
of events: :class:`auditlog.store.AuditLog` hands it its batch path.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Generic, NamedTuple, TypeVar

from auditlog.errors import DatabaseUnavailable, QueryTimeout, WriterBusy, WriterClosed

T = TypeVar("T")
R = TypeVar("R")
# The committer thread ends after this long without work (and starts again on the next
# request), so an AuditLog nobody closes does not keep a thread, and itself, alive forever.
IDLE_SECONDS = 2.0
# Errors that say nothing about a request's content: splitting the group would only repeat them.
UNAVAILABLE = (DatabaseUnavailable, QueryTimeout)


class GroupCaps(NamedTuple):
    """The bounds of one group and of the queue (settings ``[store]``)."""

    max_events: int
    max_bytes: int
    queue_events: int


class CommitStats(NamedTuple):
    """Counters of a committer since it was made.

    ``groups`` counts transactions attempted (a split group's halves count too), ``splits``
    the groups split after a failure, ``requests`` and ``events`` what was answered (with
    results or an error), ``queued`` the events waiting now.
    """

    groups: int = 0
    requests: int = 0
    events: int = 0
    splits: int = 0
    queued: int = 0


@dataclass(slots=True)
class _Request(Generic[T, R]):
    items: list[T]
    nbytes: int
    future: Future[list[R]]


class GroupCommitter(Generic[T, R]):
    """Coalesces submitted requests into groups, appended one group at a time.

    Parameters
    ----------
    append
        Appends one group's items in one transaction; returns one result per item, in order.
    size
        The bytes one item counts for against ``caps.max_bytes``.
    caps
        The most events and bytes of a group, and the most events waiting.
    name
        The committer thread's name.
    """

    def __init__(
        self,
        append: Callable[[list[T]], list[R]],
        size: Callable[[T], int],
        caps: GroupCaps,
        name: str = "auditlog-commit",
    ) -> None:
        self._append, self._size, self.caps, self._name = append, size, caps, name
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)  # the committer waits for requests
        self._space = threading.Condition(self._lock)  # blocked submitters wait for room
        self._queue: deque[_Request[T, R]] = deque()
        self._queued = 0
        self._closed = False
        self._busy = False  # a group is being committed (by the committer or a caller)
        self._thread: threading.Thread | None = None
        self._stats = CommitStats()

    def submit(self, items: Sequence[T], *, block: bool = False) -> Future[list[R]]:
        """Queue one request; its future gives one result per item, after the commit.

        Parameters
        ----------
        items
            The request's items, appended together (all or none) in one group.
        block
            When the queue holds ``caps.queue_events``: wait for room (True), or fail the
            future with :class:`~auditlog.errors.WriterBusy` at once (False).

        Returns
        -------
        Future
            Results in input order, or the request's own error; after :meth:`close`,
            :class:`~auditlog.errors.WriterClosed`.
        """
        future: Future[list[R]] = Future()
        if not items:
            future.set_result([])
            return future
        request = _Request(list(items), sum(self._size(i) for i in items), future)
        with self._lock:
            while not self._closed and self._full(len(request.items)):
                if not block:
                    future.set_exception(WriterBusy(self._queued, self.caps.queue_events))
                    return future
                self._space.wait()
            if self._closed:
                future.set_exception(WriterClosed())
                return future
            self._queue.append(request)
            self._queued += len(request.items)
            self._start()
            self._work.notify()
        return future

    def call(self, items: Sequence[T]) -> list[R]:
        """``submit(items, block=True).result()``, but committed in the calling thread when
        nothing is queued or being committed (a lone caller pays no hand-off).

        Raises
        ------
        Exception
            The request's own error, as its future would.
        """
        with self._lock:
            lead = not (self._busy or self._queue or self._closed)
            self._busy = self._busy or lead
        if not lead:
            return self.submit(items, block=True).result()
        request: _Request[T, R] = _Request(list(items), 0, Future())
        request.future.set_running_or_notify_cancel()
        try:
            self._commit([request])
        finally:
            self._done()
        return request.future.result()

    def stats(self) -> CommitStats:
        """The counters now (see :class:`CommitStats`)."""
        with self._lock:
            return self._stats._replace(queued=self._queued)

    def close(self) -> None:
        """Fail every queued request with :class:`~auditlog.errors.WriterClosed`, let the group
        being committed finish (its callers get their results) and stop the committer. Later
        submissions fail with WriterClosed too."""
        with self._lock:
            self._closed = True
            dropped = list(self._queue)
            self._queue.clear()
            self._queued = 0
            thread = self._thread
            self._work.notify_all()
            self._space.notify_all()
        for request in dropped:
            if request.future.set_running_or_notify_cancel():
                request.future.set_exception(WriterClosed())
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _full(self, n: int) -> bool:
        # An empty queue takes any request, or one larger than the cap could never go in.
        return self._queued > 0 and self._queued + n > self.caps.queue_events

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            while (group := self._take()) is not None:
                try:
                    self._commit(group)
                finally:
                    self._done()
        finally:
            with self._lock:
                if self._thread is threading.current_thread():
                    self._thread = None  # ended by an error it could not answer: restart

    def _take(self) -> list[_Request[T, R]] | None:
        """Everything queued now, up to a group's caps, once no other group is being
        committed; None when closed or idle."""
        with self._lock:
            while self._busy or not self._queue:
                ended = self._closed and not self._queue
                if ended or (not self._work.wait(IDLE_SECONDS) and not self._queue):
                    self._thread = None  # closed, or idle: the next request starts another
                    return None
            group = self._pop_group()
            self._busy = True
            self._space.notify_all()
        # a request cancelled while it waited is dropped: nothing of it is stored
        return [r for r in group if r.future.set_running_or_notify_cancel()]

    def _done(self) -> None:
        """A group is answered: the next may go (the committer is woken if one waits)."""
        with self._lock:
            self._busy = False
            if self._queue:
                self._start()
                self._work.notify()

    def _pop_group(self) -> list[_Request[T, R]]:
        group: list[_Request[T, R]] = []
        events = nbytes = 0
        caps = self.caps
        while self._queue:
            nxt = self._queue[0]
            n = len(nxt.items)
            if group and (events + n > caps.max_events or nbytes + nxt.nbytes > caps.max_bytes):
                break
            group.append(self._queue.popleft())
            events, nbytes = events + n, nbytes + nxt.nbytes
        self._queued -= events
        return group

    def _commit(self, group: list[_Request[T, R]]) -> None:
        """Append the group in one transaction; on failure, split it (see the module)."""
        if not group:
            return
        self._count(groups=1)
        try:
            results = self._append([item for r in group for item in r.items])
        except Exception as exc:  # every error reaches a caller; the committer lives on
            if len(group) == 1 or isinstance(exc, UNAVAILABLE):
                self._fail(group, exc)
                return
            self._count(splits=1)
            half = len(group) // 2
            self._commit(group[:half])
            self._commit(group[half:])
            return
        self._answer(group, results)

    def _answer(self, group: list[_Request[T, R]], results: list[R]) -> None:
        start = 0
        for request in group:
            end = start + len(request.items)
            request.future.set_result(results[start:end])
            start = end
        self._count(requests=len(group), events=start)

    def _fail(self, group: list[_Request[T, R]], exc: Exception) -> None:
        for request in group:
            request.future.set_exception(exc)
        self._count(requests=len(group), events=sum(len(r.items) for r in group))

    def _count(self, **add: int) -> None:
        with self._lock:
            s = self._stats
            self._stats = s._replace(**{k: getattr(s, k) + v for k, v in add.items()})
