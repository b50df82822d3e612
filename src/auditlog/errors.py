"""Every exception auditlog raises, in one hierarchy.

Every message names the field or thing concerned and what to do about it. Pages and the CLI
catch :class:`AuditLogError`; ``status`` is the HTTP status an API answers with.

    AuditLogError                 base class; pages catch this and show st.error
    ├── FieldError                a value handed in is wrong: ``field`` (path) and ``reason``
    │   ├── InvalidEvent          one event failed validation
    │   ├── InvalidFilter         a search filter is malformed
    │   ├── InvalidPolicy         a retention setting outside its bounds or malformed
    │   ├── InvalidFile           an input file (principals CSV) has a bad row (line, column)
    │   ├── InvalidKey            a PEM key is unreadable or not Ed25519
    │   ├── InvalidApiKeySetting  an API key's name, scope, allow-list or rate is wrong
    │   ├── NoteError             a signed note, checkpoint, vkey or proof text is malformed
    │   └── InvalidDestination    a SIEM destination setting is wrong (also a ConfigError)
    ├── BatchRejected             invalid events of a batch, by index; nothing stored
    ├── EventConflict             an event_id was reused with different content
    ├── AppendRefused             the database refused rows that do not extend the chain
    ├── ConfigError               bad setting, missing key
    │   ├── InvalidDestination
    │   └── SigningKeyRefused     the signing key is not registered, or was retired
    ├── PermissionDenied          the caller's role may not do this (status 403)
    ├── NotFound                  a named thing does not exist (status 404)
    ├── IntegrityFailure          verification found tampering (see VerifyReport)
    │   └── TimestampInvalid      a time-stamp token does not prove what it should (also below)
    ├── GraphError                Microsoft Graph or its token endpoint failed (status 502)
    ├── ExportTooLarge            an export over the row cap, refused (status 413)
    ├── RetentionRefused          a retention change or purge not allowed now (status 409)
    ├── DeliveryFailed            a SIEM receiver refused or could not be reached
    ├── LeaseHeld                 another ``auditlog stream`` holds a destination's lease (409)
    ├── TimestampError            an RFC 3161 time-stamp could not be had or is not valid
    │   ├── TimestampUnavailable  the TSA cannot be reached or timed out (503)
    │   ├── TimestampHTTPError    the TSA answered with an HTTP error status
    │   ├── TimestampRejected     the TSA refused the request (its PKIStatus and text)
    │   ├── TimestampBadReply     the reply is malformed, or its nonce or imprint differ
    │   └── TimestampInvalid      verification of a token failed (``reason``)
    ├── WitnessError              a witness did not cosign a checkpoint (502)
    │   ├── WitnessConflict       409: the witness is at another tree ``size``
    │   ├── WitnessRefused        any other refusal: ``status`` and the witness's ``reason``
    │   └── WitnessUnavailable    network error, time-out, or 502/503/504
    ├── ApiProblem                an HTTP API error answer (RFC 9457): status, detail, type
    ├── QueryTimeout              a query ran past statement_timeout_ms (status 503)
    ├── DatabaseUnavailable       PostgreSQL refused or lost the connection (status 503)
    ├── WriterBusy                the group-commit queue is full; retry shortly (status 503)
    ├── WriterClosed              the AuditLog was closed before the events were committed (503)
    └── ClientError               the HTTP client (:mod:`auditlog.client`) failed
        ├── ClientQueueFull       its background queue holds ``max_queue`` events
        ├── ClientClosed          ``enqueue`` after ``close()``
        ├── ApiRefused            the service refused: its RFC 9457 problem (``status``,
        │                         ``title``, ``detail``, per-event ``errors``), never retried
        └── ApiUnavailable        retries ran out: connection errors, 429, 503 (``problem``:
                                  the last answer, if any; ``retry_after``)

:class:`QueryTimeout` and :class:`DatabaseUnavailable` are raised for every engine made by
:func:`auditlog.db.server.make_engine`, which translates the driver's errors in one place.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class AuditLogError(Exception):
    """Base class of every auditlog error."""

    status = 500


# ValueError stays a base of FieldError: a FieldError *is* a bad value handed in, and code
# relies on that: pydantic collects a ValueError raised inside a validator, and the fast
# paths of store.prepare and canonical fall back to their slow, naming path on ValueError.
class FieldError(AuditLogError, ValueError):
    """A value was refused; ``field`` names where (a dotted path), ``reason`` says why."""

    status = 422
    prefix = ""  # what the field belongs to, e.g. "filter " (kept from the messages users know)

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{self.prefix}{field}: {reason}")


class InvalidEvent(FieldError):
    """An event was rejected; ``problems`` lists every ``(path, reason)`` found in it.

    ``InvalidEvent(field, reason)`` is one problem; :meth:`of` takes several. ``field`` and
    ``reason`` are the first; ``str(exc)`` lists them all, ``"; "``-joined, each
    ``path: reason`` (at most :attr:`SHOWN`, then how many more).
    """

    SHOWN = 20

    def __init__(self, field: str, reason: str, *more: tuple[str, str]) -> None:
        self.problems: list[tuple[str, str]] = [(field, reason), *more]
        super().__init__(field, reason)
        shown = "; ".join(f"{path}: {why}" for path, why in self.problems[: self.SHOWN])
        extra = len(self.problems) - self.SHOWN
        self.args = (f"{shown}; and {extra} more problem(s)" if extra > 0 else shown,)

    @classmethod
    def of(cls, problems: Sequence[tuple[str, str]]) -> InvalidEvent:
        """One error for every ``(path, reason)`` of an event (at least one)."""
        first, *more = problems
        return cls(first[0], first[1], *more)


class InvalidFilter(FieldError):
    """A filter value is not usable; ``field`` names which, ``reason`` says why."""

    prefix = "filter "


class InvalidPolicy(FieldError):
    """A retention setting was refused; ``field`` names it, ``reason`` says why."""


class InvalidFile(FieldError):
    """An input file has a bad row; ``line`` (1-based) and ``column`` say where."""

    def __init__(self, path: str, line: int, column: str, reason: str) -> None:
        self.path = path
        self.line = line
        self.column = column
        super().__init__(f"{path} line {line}, column {column}", reason)


class InvalidKey(FieldError):
    """A PEM key cannot be used; ``field`` names where it came from."""


class BatchRejected(AuditLogError):
    """A batch contained invalid events; nothing of it was stored."""

    status = 422

    def __init__(self, errors: dict[int, InvalidEvent]) -> None:
        self.errors = errors
        first = ", ".join(f"event {i}: {e}" for i, e in list(errors.items())[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        super().__init__(f"{len(errors)} invalid event(s) in batch, nothing stored: {first}{more}")


class EventConflict(AuditLogError):
    """An event_id already stored with different content."""

    status = 409

    def __init__(self, event_id: str, detail: str = "") -> None:
        self.event_id = event_id
        super().__init__(
            f"event_id {event_id} is already stored with different content{detail}; "
            "an event_id is an idempotency key: send a new event_id for a new event"
        )


class ConfigError(AuditLogError):
    """A setting is missing or wrong."""


class SigningKeyRefused(ConfigError):
    """The writer's signing key is not registered (or was retired) in the database."""

    status = 503


class AppendRefused(AuditLogError):
    """PostgreSQL refused an append: the rows do not extend the chain (see docs/integrity.md).

    The writer computes every row the database checks, so this means a bug or a forgery."""

    status = 409


class InvalidDestination(FieldError, ConfigError):
    """A destination setting is wrong; ``field`` names it."""

    prefix = "siem destination "


class PermissionDenied(AuditLogError):
    """The caller's role does not allow this action."""

    status = 403


class NotFound(AuditLogError):
    """A requested thing does not exist."""

    status = 404


class IntegrityFailure(AuditLogError):
    """Verification found a broken chain, checkpoint or file."""


class GraphError(AuditLogError):
    """Microsoft Graph (or its token endpoint) refused or failed a request."""

    status = 502

    def __init__(self, message: str, http_status: int | None = None) -> None:
        self.http_status = http_status
        super().__init__(message)


class ExportTooLarge(AuditLogError):
    """More events match than an export may hold; nothing was written."""

    status = 413
    setting = "max_export_rows"

    def __init__(self, rows: int, cap: int) -> None:
        self.rows, self.cap = rows, cap
        super().__init__(
            f"export refused: {rows:,} events match but an export may hold at most {cap:,} "
            "(setting max_export_rows); narrow the filters (time range, category) or raise "
            "AUDITLOG_MAX_EXPORT_ROWS"
        )


class RetentionRefused(AuditLogError):
    """The change conflicts with what is in force (a pending proposal, an existing hold...)."""

    status = 409


class DeliveryFailed(AuditLogError):
    """A delivery attempt failed; ``retryable`` says whether to try the same items again.

    Retryable: connect/TLS/5xx/429/401..., back off and try again. Not retryable
    (400/413/422): the receiver rejected the content.
    """

    status = 502

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = True,
        retry_after: float | None = None,
        http_status: int | None = None,
    ) -> None:
        self.retryable = retryable
        self.retry_after = retry_after
        self.http_status = http_status
        super().__init__(message)


class LeaseHeld(AuditLogError):
    """Another worker holds the lease of a SIEM destination; this one refused to wait."""

    status = 409

    def __init__(self, destination: str, holder: str | None) -> None:
        self.destination, self.holder = destination, holder
        by = f" ({holder})" if holder else ""
        super().__init__(
            f"SIEM destination {destination!r} is being delivered by another `auditlog stream`"
            f"{by}; stop that worker, or run without --no-wait to wait for its lease"
        )


class QueryTimeout(AuditLogError):
    """PostgreSQL cancelled a query at its statement timeout; nothing was returned."""

    status = 503
    setting = "statement_timeout_ms"

    def __init__(self, detail: str = "") -> None:
        super().__init__(
            "the query ran longer than the statement timeout and was cancelled"
            f"{f' ({detail})' if detail else ''}; narrow the filters (a shorter time range, "
            "a category, an actor) or raise the setting statement_timeout_ms "
            "(AUDITLOG_STATEMENT_TIMEOUT_MS)"
        )


class DatabaseUnavailable(AuditLogError):
    """PostgreSQL could not be reached, or the connection to it was lost."""

    status = 503

    def __init__(self, detail: str = "") -> None:
        super().__init__(
            "the audit log database is unavailable"
            f"{f' ({detail})' if detail else ''}; check that PostgreSQL is running and that "
            "AUDITLOG_DATABASE_URL points at it, then retry"
        )


class TimestampError(AuditLogError):
    """The time-stamp authority gave no usable token, or a stored token does not verify."""

    status = 502


class TimestampUnavailable(TimestampError):
    """The TSA could not be reached (refused, unresolvable, timed out)."""

    status = 503

    def __init__(self, url: str, detail: str) -> None:
        self.url = url
        super().__init__(
            f"the time-stamp authority at {url} could not be reached ({detail}); "
            "check the TSA URL and the network, then retry"
        )


class TimestampHTTPError(TimestampError):
    """The TSA answered with an HTTP status other than 200; ``http_status`` says which."""

    def __init__(self, url: str, http_status: int, text: str) -> None:
        self.url, self.http_status = url, http_status
        said = f": {text}" if text else ""
        super().__init__(
            f"the time-stamp authority at {url} answered HTTP {http_status}{said}; "
            "nothing was time-stamped, retry later or ask the TSA's operator"
        )


class TimestampRejected(TimestampError):
    """The TSA refused the request: a PKIStatus other than granted, with the TSA's text."""

    def __init__(self, url: str, pki_status: int, name: str, text: str) -> None:
        self.url, self.pki_status = url, pki_status
        said = f": {text}" if text else " (it gave no reason)"
        super().__init__(f"the time-stamp authority at {url} refused the request, {name}{said}")


class TimestampBadReply(TimestampError):
    """The TSA's reply is undecodable or answers another request (nonce or imprint differ)."""

    def __init__(self, url: str, reason: str) -> None:
        self.url, self.reason = url, reason
        super().__init__(
            f"the reply of the time-stamp authority at {url} is not a token for this request: "
            f"{reason}; it was not kept"
        )


class TimestampInvalid(TimestampError, IntegrityFailure):
    """A time-stamp token failed verification; ``reason`` names the check that failed."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"time-stamp token refused: {reason}")


class NoteError(FieldError):
    """A signed note, checkpoint, vkey or proof text is malformed: ``field`` names the part
    (``note line 4``, ``checkpoint size``...), ``reason`` says what is wrong."""


class WitnessError(AuditLogError):
    """A witness did not cosign a checkpoint."""

    status = 502


class WitnessConflict(WitnessError):
    """The witness's latest cosigned size is not the old size sent: prove from ``size``."""

    status = 409

    def __init__(self, size: int, witness: str = "the witness") -> None:
        self.size = size
        super().__init__(
            f"{witness} is at tree size {size}: send a consistency proof from size {size}"
        )


class WitnessRefused(WitnessError):
    """The witness refused the checkpoint (``status``, and its one-line ``reason``)."""

    def __init__(self, status: int, reason: str, witness: str = "the witness") -> None:
        self.status = status
        self.reason = reason
        super().__init__(f"{witness} refused the checkpoint ({status}): {reason}")


class WitnessUnavailable(WitnessError):
    """The witness could not be reached, timed out, or is temporarily failing."""

    status = 503


# The HTTP API's problem types and titles (RFC 9457), by status.
PROBLEM_TYPE = "https://auditlog.dev/problems/"  # + slug; a name, not a page to fetch
_TITLES = {
    400: "Malformed request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    408: "Request body too slow",
    409: "Conflict",
    413: "Request too large",
    415: "Unsupported media type",
    422: "Invalid events",
    429: "Too many requests",
    500: "Internal error",
    503: "Service unavailable",
}


class ApiProblem(AuditLogError):
    """An error answer of the HTTP API: ``status``, a one-line ``detail``, the problem type's
    ``slug``, response ``headers`` and extension members (RFC 9457; :mod:`auditlog.api`)."""

    def __init__(
        self,
        status: int,
        detail: str,
        slug: str | None = None,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail
        self.slug = slug or _TITLES.get(status, "error").lower().replace(" ", "-")
        self.headers = dict(headers or {})
        self.extra = extra

    def body(self, instance: str | None = None) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "type": PROBLEM_TYPE + self.slug,
            "title": _TITLES.get(self.status, "Error"),
        }
        doc |= {"status": self.status, "detail": self.detail}
        if instance:
            doc["instance"] = instance
        return doc | self.extra


class InvalidApiKeySetting(FieldError):
    """An API key's name, scope, allow-list or rate is not usable; ``field`` names which."""


class WriterBusy(AuditLogError):
    """The group-commit queue holds its cap of events; nothing of the request was queued."""

    status = 503
    setting = "queue_max_events"

    def __init__(self, queued: int, cap: int) -> None:
        self.queued, self.cap = queued, cap
        super().__init__(
            f"the writer's queue is full ({queued:,} events waiting, setting queue_max_events "
            f"= {cap:,}); nothing of this request was stored: retry shortly, or raise "
            "AUDITLOG_QUEUE_MAX_EVENTS"
        )


class WriterClosed(AuditLogError):
    """:meth:`AuditLog.close` was called before the request's events were committed."""

    status = 503

    def __init__(self) -> None:
        super().__init__(
            "the audit log was closed before these events were committed; nothing of them "
            "was stored: send them again through an open AuditLog"
        )


class ClientError(AuditLogError):
    """The HTTP client could not have events stored or read."""


class ClientQueueFull(ClientError):
    """The client's background queue is full: ``waiting`` events not yet sent."""

    status = 503

    def __init__(self, waiting: int, max_queue: int) -> None:
        self.waiting, self.max_queue = waiting, max_queue
        super().__init__(
            f"the client's queue holds {waiting} events waiting to be sent (max_queue="
            f"{max_queue}): the service is slower than this producer or unreachable; call "
            "flush() to wait for them, slow down, or raise max_queue"
        )


class ClientClosed(ClientError):
    """An event was enqueued on a client after ``close()``."""

    def __init__(self) -> None:
        super().__init__("the client is closed: open a new AuditLogClient to send more events")


class ApiRefused(ClientError):
    """The service refused a request with an RFC 9457 problem (retrying would not help).

    ``problem`` is the whole document; ``status``, ``title``, ``detail`` and ``errors`` (each
    ``{index, field, reason}``, ``index`` counted over the events handed to the client) are
    read from it. ``stored`` holds the receipts of the batches stored before this one.
    """

    def __init__(self, status: int, problem: dict[str, Any], stored: Sequence[Any] = ()) -> None:
        self.status = status
        self.problem = problem
        self.title = str(problem.get("title") or f"HTTP {status}")
        self.detail = str(problem.get("detail") or "")
        self.errors: list[dict[str, Any]] = list(problem.get("errors") or [])
        self.stored = list(stored)
        super().__init__(f"the audit log service answered {status} {self.title}: {self.detail}")


class ApiUnavailable(ClientError):
    """Every attempt failed with a connection error, 429 or 503; ``problem`` is the last
    answer (None after a connection error), ``retry_after`` what it asked for."""

    status = 503

    def __init__(
        self,
        url: str,
        attempts: int,
        reason: str,
        problem: dict[str, Any] | None = None,
        retry_after: float | None = None,
        stored: Sequence[Any] = (),
    ) -> None:
        self.url, self.attempts, self.reason = url, attempts, reason
        self.problem, self.retry_after = problem, retry_after
        self.stored = list(stored)
        super().__init__(
            f"the audit log service at {url} did not take the request after {attempts} "
            f"attempt(s): {reason}; nothing more was sent (the events keep their event_id, so "
            "sending them again later stores each once)"
        )
