"""Every write of a delivery record: its event in the same write, then published.

The outbox: a status change and its telephony.delivery.updated event are one entity write,
so a crash after it loses no event. After the write the event is published and taken out
of the record; what a sink refused, or a crash left behind, reconcile publishes once the
record's `check_after` (OUTBOX_GRACE) has passed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime

from telephony.errors import UnavailableError
from telephony.events.model import OutcomeEvent
from telephony.events.publisher import Publisher
from telephony.logs import log_event
from telephony.outbound.records import (
    DeliveryRecord,
    DeliveryStore,
    Tracking,
    advance,
    without_events,
)

logger = logging.getLogger(__name__)


class RecordWriter:
    """Inserts and advances records with tracking (event, next check), then publishes."""

    def __init__(
        self,
        store: DeliveryStore,
        tracking: Tracking,
        publisher: Publisher | None,
        clock: Callable[[], datetime],
    ) -> None:
        self.store = store
        self._tracking = tracking
        self._publisher = publisher
        self._clock = clock

    def track(self, before: DeliveryRecord | None, after: DeliveryRecord) -> DeliveryRecord:
        """`after` as it is written (Tracking.track), for writes made elsewhere."""
        return self._tracking.track(before, after, self._clock())

    def insert(self, record: DeliveryRecord) -> DeliveryRecord:
        """Insert the record; RecordExistsError when the key exists."""
        written = self.store.insert(self.track(None, record))
        return self.publish(written, written.outbox)

    def advance(
        self, record: DeliveryRecord, change: Callable[[DeliveryRecord], DeliveryRecord]
    ) -> DeliveryRecord:
        """`advance` with tracking: the change's event is written with it, then published."""
        now = self._clock()
        read = [record]  # the version each attempt changed: its outbox was already there

        def tracked(current: DeliveryRecord) -> DeliveryRecord:
            read.append(current)
            return self._tracking.track(current, change(current), now)

        written = advance(self.store, record, tracked)
        before = {event.id for event in read[-1].outbox}
        return self.publish(written, [e for e in written.outbox if e.id not in before])

    def publish(self, record: DeliveryRecord, events: Sequence[OutcomeEvent]) -> DeliveryRecord:
        """Publish `events` of `record`, then take them out of its outbox.

        A writer publishes only its own write's events: an older one still in the outbox is
        another writer's (being published) or abandoned, and reconcile publishes those.
        """
        if not events or self._publisher is None or not self._publisher.publish(events):
            return record
        now = self._clock()
        try:
            return advance(
                self.store,
                record,
                lambda r: self._tracking.track(r, without_events(r, events), now),
            )
        except UnavailableError as exc:  # published; reconcile may publish them again
            log_event(
                logger, "events_not_cleared", logging.WARNING,
                key=record.key, reason=type(exc).__name__,
            )  # fmt: skip
            return record
