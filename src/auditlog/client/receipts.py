"""What the service answers, as the client hands it back: receipts and per-event errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Receipt:
    """Where an event landed: its chain position and hash, as ``POST /v1/events`` answers.

    ``duplicate`` means the service already held this event_id with the same content (a
    retried request): the receipt is the original one. ``proof`` is the path of its inclusion
    proof (``GET``, once a checkpoint covers it).
    """

    event_id: str
    category: str
    seq: int
    entry_hash: str
    recorded_at: str | None
    duplicate: bool
    proof: str | None = None

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Receipt:
        """A receipt from its JSON object (``index`` is the caller's business)."""
        return cls(
            event_id=str(doc["event_id"]),
            category=str(doc["category"]),
            seq=int(doc["seq"]),
            entry_hash=str(doc["entry_hash"]),
            recorded_at=doc.get("recorded_at"),
            duplicate=bool(doc.get("duplicate", False)),
            proof=doc.get("proof"),
        )


@dataclass(frozen=True, slots=True)
class EventError:
    """Why one event was refused: ``index`` among the events handed to the client, the
    ``field`` path (``actor.type``) and the ``reason``; ``line`` of its request body."""

    index: int
    field: str
    reason: str
    line: int | None = None

    @classmethod
    def from_json(cls, doc: dict[str, Any], offset: int = 0) -> EventError:
        """From a problem's ``errors`` item; ``offset``: the request's first event's index."""
        return cls(
            index=int(doc.get("index", 0)) + offset,
            field=str(doc.get("field", "event")),
            reason=str(doc.get("reason", "")),
            line=doc.get("line"),
        )


@dataclass(frozen=True, slots=True)
class Partial:
    """The answer of ``send_many(..., partial=True)``: receipts of the stored events by
    index, and the errors of the refused ones (an event may have several)."""

    receipts: dict[int, Receipt]
    rejected: list[EventError]

    @property
    def refused(self) -> list[int]:
        """Indexes of the events that were not stored."""
        return sorted({e.index for e in self.rejected})
