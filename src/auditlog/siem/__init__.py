"""SIEM destinations and streaming: formats, transports, delivery worker, status.

See docs/siem.md. ``auditlog`` core modules do not import this package; it imports them.
"""

from __future__ import annotations

from auditlog.siem.destinations import (
    Destination,
    add_destination,
    change_destination,
    get_destination,
    list_destinations,
    remove_destination,
)
from auditlog.siem.formats import Formatter, Item
from auditlog.siem.status import dead_letters, destination_status

__all__ = [
    "Destination",
    "Formatter",
    "Item",
    "add_destination",
    "change_destination",
    "dead_letters",
    "destination_status",
    "get_destination",
    "list_destinations",
    "remove_destination",
]
