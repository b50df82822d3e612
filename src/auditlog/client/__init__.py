"""The Python client of the audit log's HTTP API (``auditlog serve``); see docs/client.md.

from auditlog.client import AuditLogClient

with AuditLogClient("http://127.0.0.1:8600", token) as client:
    receipt = client.send({"category": "configuration", "action": "policy.updated", ...})
"""

from __future__ import annotations

from auditlog.client.client import AuditLogClient
from auditlog.client.encode import with_event_ids
from auditlog.client.receipts import EventError, Partial, Receipt
from auditlog.client.retry import retry_after

__all__ = ["AuditLogClient", "EventError", "Partial", "Receipt", "retry_after", "with_event_ids"]
