"""``AuditLogClient``: send events to ``auditlog serve`` and read them back, over httpx.

Synchronous sends (:meth:`~AuditLogClient.send`, :meth:`~AuditLogClient.send_many`: one
request per ``batch_size`` events) and a background mode (:meth:`~AuditLogClient.enqueue`
returning a Future, :meth:`~AuditLogClient.flush`, :meth:`~AuditLogClient.close`). Every event
gets its event_id before the first attempt, so retries store nothing twice. Errors::

    ClientError
    ├── ClientQueueFull   enqueue: max_queue events already wait
    ├── ClientClosed      enqueue after close()
    ├── ApiRefused        the service refused (400/401/403/409/413/422...): never retried
    └── ApiUnavailable    connection errors, 429, 503 on every attempt
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, overload

import httpx

from auditlog.client.batcher import Batcher
from auditlog.client.encode import Event, encode_batch, with_event_id, with_event_ids
from auditlog.client.receipts import EventError, Partial, Receipt
from auditlog.client.session import RetryPolicy, Session
from auditlog.errors import ApiRefused, ClientClosed

FilterValue = str | int | datetime | Sequence[str]
JSON_BATCH = {"Content-Type": "application/json"}


def _positive(name: str, value: float, least: float = 1) -> None:
    if value < least:
        raise ValueError(f"AuditLogClient {name}={value!r}: must be at least {least:g}")


def _query(filters: Mapping[str, FilterValue]) -> list[tuple[str, str]]:
    """Filters as query parameters; ``from_`` is ``from`` (a Python keyword)."""
    out = []
    for key, value in filters.items():
        name = key.rstrip("_")
        values = [value] if isinstance(value, str | int | datetime) else list(value)
        out += [(name, v.isoformat() if isinstance(v, datetime) else str(v)) for v in values]
    return out


def _shifted(exc: ApiRefused, offset: int, stored: list[Receipt]) -> ApiRefused:
    """``exc`` with its per-event indexes counted over every event handed in."""
    problem = dict(exc.problem)
    if offset and exc.errors:
        problem["errors"] = [e | {"index": int(e.get("index", 0)) + offset} for e in exc.errors]
    return ApiRefused(exc.status, problem, stored)


def _not_receipts(response: httpx.Response, why: str) -> ApiRefused:
    detail = f"{why}: is base_url the audit log API? (answered {response.text[:120]!r})"
    problem = {"title": "Not an audit log answer", "status": response.status_code}
    return ApiRefused(response.status_code, problem | {"detail": detail})


def _same_id(a: Any, b: Any) -> bool:
    try:
        return uuid.UUID(str(a)) == uuid.UUID(str(b))
    except ValueError:
        return False


def _answer(
    response: httpx.Response, chunk: list[dict[str, Any]], offset: int, partial: bool
) -> Partial:
    """The receipts and errors of an answer, checked against what was sent: a receipt for
    another event, or a missing one, is refused rather than handed on as proof of storage."""
    try:
        doc = response.json()
        receipts = {int(r["index"]): Receipt.from_json(r) for r in doc["receipts"]}
        rejected = [EventError.from_json(e, offset) for e in doc.get("rejected") or []]
    except (ValueError, KeyError, TypeError) as exc:
        raise _not_receipts(response, f"no receipts in the answer ({exc!r})") from None
    for i, r in receipts.items():
        if not 0 <= i < len(chunk) or not _same_id(r.event_id, chunk[i]["event_id"]):
            raise _not_receipts(response, f"receipt {i} is not for the event sent at {i}")
    refused = {e.index - offset for e in rejected}
    if len(receipts) + len(refused) != len(chunk) or (refused and not partial):
        raise _not_receipts(response, f"{len(receipts)} receipts for {len(chunk)} events")
    return Partial({offset + i: r for i, r in receipts.items()}, rejected)


class AuditLogClient:
    """A client of the audit log's HTTP API (``auditlog serve``).

    Parameters
    ----------
    base_url
        The service, e.g. ``https://audit.example.com`` (``/v1/...`` is appended).
    api_key
        The token ``auditlog apikey create`` printed, sent as ``Authorization: Bearer``.
    batch_size
        Most events per request (the service's ``api.max_batch_events`` must allow it).
    max_queue
        Most events :meth:`enqueue` holds unsent before it raises ClientQueueFull.
    timeout
        Seconds for each connect, read and write of a request.
    retries, backoff
        Retries after a connection error, 429 or 503 (with ``Retry-After`` honoured, else
        ``backoff * 2**n`` seconds with full jitter).
    transport
        An httpx transport (tests, proxies, ``httpx.HTTPTransport(retries=..., verify=...)``).
    max_wait
        The longest Retry-After obeyed; a longer one ends the retries at once.
    linger
        Seconds the background thread waits for a batch to fill before sending it.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        batch_size: int = 500,
        max_queue: int = 10_000,
        timeout: float = 10.0,
        retries: int = 5,
        backoff: float = 0.2,
        transport: httpx.BaseTransport | None = None,
        max_wait: float = 60.0,
        linger: float = 0.05,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"AuditLogClient base_url {base_url!r}: must start with http(s)://")
        if not api_key.strip():
            raise ValueError(
                "AuditLogClient api_key: empty; pass the token `apikey create` printed"
            )
        least = {"batch_size": 1, "max_queue": 1, "retries": 0, "timeout": 0, "backoff": 0}
        given: dict[str, float] = {"batch_size": batch_size, "max_queue": max_queue}
        given |= {"retries": retries, "timeout": timeout, "backoff": backoff}
        for name, value in given.items():
            _positive(name, value, least[name])
        _positive("linger", linger, 0)
        from auditlog import __version__

        headers = {"Authorization": f"Bearer {api_key.strip()}"}
        headers["User-Agent"] = f"auditlog-client/{__version__}"
        http = httpx.Client(
            base_url=base_url.rstrip("/"), headers=headers, timeout=timeout, transport=transport
        )
        self._session = Session(http, RetryPolicy(retries, backoff, max_wait))
        self.batch_size, self.max_queue, self.linger = batch_size, max_queue, linger
        self._batcher: Batcher | None = None
        self._started = threading.Lock()  # one background thread, however many producers
        self._closed = False

    # -- sending -------------------------------------------------------------------------------

    def send(self, event: Event) -> Receipt:
        """Store one event; its receipt (``duplicate`` when it was already stored).

        Raises
        ------
        ApiRefused
            The service refused it (422 names each field, 409 a reused event_id...).
        ApiUnavailable
            Every attempt met a connection error, 429 or 503.
        """
        return self.send_many([event])[0]

    @overload
    def send_many(
        self, events: Sequence[Event], *, partial: Literal[False] = False
    ) -> list[Receipt]: ...

    @overload
    def send_many(self, events: Sequence[Event], *, partial: Literal[True]) -> Partial: ...

    def send_many(
        self, events: Sequence[Event], *, partial: bool = False
    ) -> list[Receipt] | Partial:
        """Store ``events``, one request per ``batch_size``; their receipts in order.

        Each request is all-or-nothing: an invalid event raises ApiRefused (``errors`` index
        it among ``events``; ``stored`` holds the receipts of earlier requests). With
        ``partial=True`` the valid events are stored and a :class:`Partial` names the rest.
        """
        docs = with_event_ids(events)
        stored: list[Receipt] = []
        found = Partial({}, [])
        for offset in range(0, len(docs), self.batch_size):
            chunk = docs[offset : offset + self.batch_size]
            answer = self._post(chunk, offset, partial, stored)
            found.receipts.update(answer.receipts)
            found.rejected.extend(answer.rejected)
            stored += [answer.receipts[i] for i in sorted(answer.receipts)]
        return found if partial else stored

    def _post(
        self, chunk: list[dict[str, Any]], offset: int, partial: bool, stored: list[Receipt]
    ) -> Partial:
        """One request; receipts and errors indexed among all the events handed in."""
        body = encode_batch(chunk, offset)
        params = {"partial": "true"} if partial else None
        try:
            response = self._session.request(
                "POST", "/v1/events", stored, content=body, headers=JSON_BATCH, params=params
            )
        except ApiRefused as exc:
            raise _shifted(exc, offset, stored) from None
        return _answer(response, chunk, offset, partial)

    # -- background mode -----------------------------------------------------------------------

    def enqueue(self, event: Event) -> Future[Receipt]:
        """Queue ``event`` to be sent in the background; a Future of its receipt.

        The Future fails with ApiRefused when the service refused the event (or its whole
        batch), ApiUnavailable when it could not be reached. Raises ClientQueueFull when
        ``max_queue`` events already wait, ClientClosed after :meth:`close`.
        """
        if self._closed:
            raise ClientClosed()
        with self._started:
            if self._batcher is None:
                size, most = self.batch_size, self.max_queue
                self._batcher = Batcher(self._send_partial, size, most, self.linger)
        return self._batcher.put(with_event_id(event))

    def _send_partial(self, events: list[dict[str, Any]]) -> Partial:
        return self._post(events, 0, True, [])

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every enqueued event has its answer (TimeoutError after ``timeout`` s)."""
        if self._batcher is not None:
            self._batcher.flush(timeout)

    def close(self) -> None:
        """Send what is queued, wait for the answers, then close the connections."""
        if self._closed:
            return
        self._closed = True
        if self._batcher is not None:
            self._batcher.close()
        self._session.close()

    def __enter__(self) -> AuditLogClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- reading (keys with the read scope) ----------------------------------------------------

    def events(self, **filters: FilterValue) -> Iterator[dict[str, Any]]:
        """Every stored event matching ``filters`` (the timeline's: ``from_``, ``to``,
        ``last``, ``category``, ``action``, ``actor``, ``q``...; ``limit`` sets the page size),
        newest first, each the hashed record with ``prev_hash`` and ``entry_hash``; pages
        (NDJSON) are fetched as the iteration reaches them."""
        params = _query(filters)
        while True:
            response = self._session.request("GET", "/v1/events", params=params)
            for line in response.text.splitlines():
                if line.strip():
                    yield json.loads(line)
            cursor = response.headers.get("x-next-cursor")
            if not cursor:
                return
            params = [p for p in params if p[0] != "cursor"] + [("cursor", cursor)]

    def checkpoints(self) -> dict[str, Any]:
        """The newest checkpoint of each chain and the public keys that sign them (the
        document ``auditlog verify --since`` takes)."""
        response = self._session.request("GET", "/v1/checkpoints", params={"format": "json"})
        doc: dict[str, Any] = response.json()
        return doc

    def checkpoint_notes(self) -> str:
        """The newest checkpoint of each chain as C2SP signed notes (blank-line separated)."""
        return self._session.request("GET", "/v1/checkpoints").text

    def proof(self, event_id: str) -> str | None:
        """The event's inclusion proof (c2sp.org/tlog-proof text), or None while no signed
        checkpoint covers it yet."""
        response = self._session.request("GET", f"/v1/events/{event_id}/proof")
        return None if response.status_code == 202 else response.text
