"""Outcome events: what other services hear back, as CloudEvents 1.0 (structured JSON).

Other services learn what happened to their commands, inbound messages and calls without
polling. Each fact is one event whose `id` is stable, so a consumer deduplicates on it;
delivery is at least once (an outbox keeps what a sink did not accept, and `reconcile`
publishes it again). docs/events.md is the contract; the schemas are under
telephony/schemas/events/.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

DELIVERY_UPDATED = "telephony.delivery.updated"
SMS_RECEIVED = "telephony.sms.received"
OPTOUT_CHANGED = "telephony.optout.changed"
CALL_COMPLETED = "telephony.call.completed"
EVENT_TYPES = (DELIVERY_UPDATED, SMS_RECEIVED, OPTOUT_CHANGED, CALL_COMPLETED)

CloudEventJson = Mapping[str, object]


class EventSink(Protocol):
    """Somewhere outcome events go: the events queue, an Event Grid topic."""

    def publish(self, events: Sequence[CloudEventJson]) -> None:
        """Publish every event (CloudEvents 1.0 structured-mode JSON objects).

        Raises EventSinkUnavailableError unless the sink accepted them all; publishing an
        event again is harmless (consumers deduplicate on `id`).
        """
        ...
