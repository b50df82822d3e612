"""Exceptions raised by auditlog.

Every message names the field or thing concerned and what to do about it.

    AuditLogError                      base class; pages catch this and show st.error
    ├── InvalidEvent                   one event failed validation (field, reason)
    │   └── BatchRejected              invalid events of a batch, by index; nothing stored
    ├── EventConflict                  an event_id was reused with different content
    ├── ConfigError                    bad setting, missing key, unreachable database
    │   └── siem.InvalidDestination    a SIEM destination setting is wrong (field, reason)
    ├── PermissionDenied               the caller's role may not do this (status 403)
    ├── NotFound                       a named thing does not exist (status 404)
    ├── IntegrityFailure               verification found tampering (see VerifyReport)
    ├── InvalidFile                    an input file (principals CSV) has a bad row (line, column)
    ├── GraphError                     Microsoft Graph or its token endpoint failed (status 502)
    ├── filters.InvalidFilter          a search filter is malformed (field, reason)
    ├── export.ExportTooLarge          an export over the row cap, refused (status 413)
    ├── retention_model.InvalidPolicy  a retention policy outside its bounds (field, reason)
    ├── retention_model.RetentionRefused  a retention change or purge not allowed now
    └── siem.transports.DeliveryFailed a SIEM receiver refused or could not be reached

The classes marked module.Name live beside the code that raises them.
"""

from __future__ import annotations


class AuditLogError(Exception):
    """Base class of every auditlog error."""

    status = 500


class InvalidEvent(AuditLogError, ValueError):
    """An event was rejected; ``field`` names where, ``reason`` says why."""

    status = 422

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class BatchRejected(AuditLogError, ValueError):
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


class PermissionDenied(AuditLogError):
    """The caller's role does not allow this action."""

    status = 403


class NotFound(AuditLogError):
    """A requested thing does not exist."""

    status = 404


class IntegrityFailure(AuditLogError):
    """Verification found a broken chain, checkpoint or file."""


class InvalidFile(AuditLogError, ValueError):
    """An input file has a bad row; ``line`` (1-based) and ``column`` say where."""

    status = 422

    def __init__(self, path: str, line: int, column: str, reason: str) -> None:
        self.path = path
        self.line = line
        self.column = column
        self.reason = reason
        super().__init__(f"{path} line {line}, column {column}: {reason}")


class GraphError(AuditLogError):
    """Microsoft Graph (or its token endpoint) refused or failed a request."""

    status = 502

    def __init__(self, message: str, http_status: int | None = None) -> None:
        self.http_status = http_status
        super().__init__(message)
