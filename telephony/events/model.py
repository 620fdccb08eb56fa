"""One outcome event, and its CloudEvents 1.0 form (structured-mode JSON)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from telephony.events import CloudEventJson


def fact_id(*parts: object) -> str:
    """A stable event id for one fact: the same parts always give the same id.

    Hashed, so an id never carries a number or a key a producer chose, and has one length.
    """
    text = "\n".join(str(part) for part in parts)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def utc_text(moment: datetime) -> str:
    """RFC 3339 in UTC with a Z, the form every event time and data time takes."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class OutcomeEvent:
    """What happened, before it is stamped with the app's `source` and published."""

    id: str
    type: str
    subject: str
    time: datetime
    data: Mapping[str, Any]

    def cloudevent(self, source: str) -> CloudEventJson:
        return {
            "specversion": "1.0",
            "id": self.id,
            "source": source,
            "type": self.type,
            "subject": self.subject,
            "time": utc_text(self.time),
            "datacontenttype": "application/json",
            "data": dict(self.data),
        }

    def stored(self) -> dict[str, Any]:
        """The form kept in an outbox (JSON), read back by `from_stored`."""
        return {
            "id": self.id,
            "type": self.type,
            "subject": self.subject,
            "time": utc_text(self.time),
            "data": dict(self.data),
        }

    @classmethod
    def from_stored(cls, stored: Mapping[str, Any]) -> OutcomeEvent:
        return cls(
            id=str(stored["id"]),
            type=str(stored["type"]),
            subject=str(stored["subject"]),
            time=datetime.fromisoformat(str(stored["time"])),
            data=dict(stored["data"]),
        )
