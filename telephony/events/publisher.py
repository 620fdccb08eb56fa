"""Publishing outcome events to every sink, and keeping what a sink did not take.

A fact the app records (a delivery record's status) keeps its events in the record itself,
written with the change (telephony/outbound/service.py). Facts that are not records (an
inbound message, a consent change, a finished call) are published at once; what a sink
refuses is staged in the outbox (`EventOutbox`), and `reconcile` publishes it again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Protocol

from telephony.errors import UnavailableError
from telephony.events import EventSink
from telephony.events.model import OutcomeEvent
from telephony.logs import log_event

logger = logging.getLogger(__name__)

# How long an event waits in an outbox before `reconcile` publishes it: longer than a live
# writer takes to publish and clear it, so that only abandoned events are published twice.
OUTBOX_GRACE = timedelta(minutes=2)


class EventOutbox(Protocol):
    """Where events that belong to no record wait until every sink has them."""

    def stage(self, events: Sequence[OutcomeEvent], due: datetime) -> None:
        """Keep `events` until `unstage`; `reconcile` publishes them once `due` has passed."""
        ...

    def unstage(self, events: Sequence[OutcomeEvent], due: datetime) -> None:
        """Forget `events` staged with `due` (published, or about a change that did not
        happen)."""
        ...


class Publisher:
    """Publishes to every sink; no sinks means events are off and nothing is kept."""

    def __init__(
        self,
        sinks: Sequence[EventSink],
        source: str,
        outbox: Callable[[], EventOutbox],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._sinks = tuple(sinks)
        self._source = source
        self._outbox = outbox  # built on first use: most webhooks never stage anything
        self._clock = clock

    @property
    def enabled(self) -> bool:
        return bool(self._sinks)

    def publish(self, events: Sequence[OutcomeEvent]) -> bool:
        """True when every sink accepted every event; a refusal is logged, never raised."""
        if not events:
            return True
        batch = [event.cloudevent(self._source) for event in events]
        accepted = True
        for sink in self._sinks:
            try:
                sink.publish(batch)
            except UnavailableError as exc:
                accepted = False
                log_event(
                    logger, "events_not_published", logging.WARNING,
                    sink=type(sink).__name__, events=len(batch), reason=type(exc).__name__,
                )  # fmt: skip
        return accepted

    def publish_or_stage(self, events: Sequence[OutcomeEvent]) -> None:
        """Publish a fact that is not a record; what a sink refused is staged for `reconcile`.

        Raises StorageUnavailableError when it can be neither published nor staged.
        """
        if not self.enabled or not events or self.publish(events):
            return
        self._outbox().stage(events, self._clock())

    def stage(self, events: Sequence[OutcomeEvent]) -> datetime | None:
        """Stage events about a change about to be made; their due time, for `release`.

        Staged first, a crash between the change and the publish loses nothing: reconcile
        finds them (and asks whether the change happened before it publishes them).
        """
        if not self.enabled or not events:
            return None
        due = self._clock() + OUTBOX_GRACE
        self._outbox().stage(events, due)
        return due

    def release(self, events: Sequence[OutcomeEvent], due: datetime | None, happened: bool) -> None:
        """After the change `stage` announced: publish and unstage when it happened (a
        refused publish stays staged for `reconcile`), only unstage when it did not."""
        if due is None or not events:
            return
        if happened and not self.publish(events):
            return
        try:
            self._outbox().unstage(events, due)
        except UnavailableError as exc:  # reconcile will look at them again; no harm
            log_event(logger, "events_not_unstaged", logging.WARNING, reason=type(exc).__name__)
