"""Reconciliation: what status callbacks missed, asked of Twilio; what sinks missed, again.

Twilio's status callbacks can be lost (our outage, theirs, a redeploy), which would leave a
record short of its final status for ever; an event a sink refused waits in an outbox. The
`reconcile` timer runs `Reconciler.run`: it reads what is due from the reconcile index (no
scan of the records; telephony/adapters/tables.py says how), and for each record
- with a Twilio SID and no final status RECONCILE_AFTER_MINUTES after its send: fetches the
  message or call and advances the record, forward only (as a callback would);
- claimed by a worker whose lease ran out that long ago, retrying with no retry since, or
  deferred by quiet hours and not back that long after its time: settles it `in_doubt` or
  `poison`, as the worker would have (still resendable when the message does come back:
  telephony/outbound/service.py's RETRYABLE);
- with events in its outbox: publishes them;
and publishes staged events whose change happened. A run is bounded in records and time,
and safe to run twice at once: every write is ETag-conditional, and an event published
twice has one id.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from telephony.errors import TwilioRejectedError, TwilioUnavailableError, UnavailableError
from telephony.events.model import OutcomeEvent
from telephony.events.publisher import EventOutbox, Publisher
from telephony.logs import log_event
from telephony.outbound.records import (
    CLAIMED,
    DEFERRED,
    FINAL,
    IN_DOUBT,
    POISON,
    RETRYING,
    DeliveryRecord,
    apply_callback,
)
from telephony.outbound.sender import CreatedResource, StatusSource
from telephony.outbound.writer import RecordWriter

logger = logging.getLogger(__name__)

MAX_RECORDS = 500  # per run: about a minute of Twilio requests at their default rate
MAX_SECONDS = 120.0  # per run: well inside the 5-minute schedule and the host's timeout


@dataclass(frozen=True)
class StagedEvent:
    """An event staged in the outbox, with the due time it was staged under."""

    event: OutcomeEvent
    due: datetime


@dataclass
class DueWork:
    """What the reconcile index holds that is due: record keys and staged events."""

    keys: list[str] = field(default_factory=list)
    events: list[StagedEvent] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.keys) + len(self.events)


class ReconcileIndex(EventOutbox, Protocol):
    """The index of records and staged events to look at, by due time."""

    def due(self, now: datetime, limit: int) -> DueWork:
        """At most `limit` keys and staged events due by `now`."""
        ...


@dataclass
class RunReport:
    """What one run did; logged, and read by tests and the benchmark."""

    records: int = 0
    twilio_requests: int = 0
    advanced: int = 0
    settled: int = 0
    staged_published: int = 0
    stopped_early: bool = False

    def fields(self) -> dict[str, Any]:
        return dict(vars(self))


class Reconciler:
    """One bounded pass over what is due."""

    def __init__(
        self,
        index: ReconcileIndex,
        writer: RecordWriter,
        twilio: StatusSource,
        publisher: Publisher,
        after: timedelta,
        clock: Callable[[], datetime],
        happened: Callable[[OutcomeEvent], bool] = lambda event: True,
        max_records: int = MAX_RECORDS,
        max_seconds: float = MAX_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._index = index
        self._writer = writer
        self._twilio = twilio
        self._publisher = publisher
        self._after = after
        self._clock = clock
        self._happened = happened  # whether a staged event's change was made
        self._max_records = max_records
        self._max_seconds = max_seconds
        self._monotonic = monotonic

    def run(self) -> RunReport:
        report = RunReport()
        deadline = self._monotonic() + self._max_seconds
        work = self._index.due(self._clock(), self._max_records)
        for key in work.keys:
            if self._monotonic() > deadline:
                report.stopped_early = True
                break
            self._record(key, report)
        for staged in work.events:
            if self._monotonic() > deadline:
                report.stopped_early = True
                break
            self._staged(staged, report)
        log_event(logger, "reconcile_done", **report.fields())
        return report

    def _record(self, key: str, report: RunReport) -> None:
        record = self._writer.store.get(key)
        if record is None:
            return
        report.records += 1
        now = self._clock()
        try:
            fetched = self._fetch(record, now, report)
        except (TwilioUnavailableError, TwilioRejectedError) as exc:
            # Asked again next time: the record stays due until a fetch answers.
            log_event(
                logger, "reconcile_fetch_failed", logging.WARNING,
                key=key, reason=type(exc).__name__,
            )  # fmt: skip
            fetched = None
        written = self._writer.advance(record, lambda r: self._reconciled(r, fetched, now))
        if written.status != record.status:
            report.advanced += 1 if fetched is not None else 0
            report.settled += 0 if fetched is not None else 1
        self._writer.publish(written, written.outbox)  # left by a refused sink or a crash

    def _fetch(
        self, record: DeliveryRecord, now: datetime, report: RunReport
    ) -> CreatedResource | None:
        if not record.twilio_sid or record.status in FINAL:
            return None
        if now - record.created_at < self._after:
            return None  # due for its outbox only; callbacks still have time
        report.twilio_requests += 1
        return self._twilio.current_status(record.kind, record.twilio_sid)

    def _reconciled(
        self, record: DeliveryRecord, fetched: CreatedResource | None, now: datetime
    ) -> DeliveryRecord:
        """The record after this look; its check_after is recomputed (Tracking.next_check),
        so a record still open is looked at again RECONCILE_AFTER_MINUTES from now."""
        record = replace(record, check_after=None)
        if fetched is not None:
            return apply_callback(
                record, fetched.status, record.twilio_sid, fetched.error_code, now
            )
        if record.twilio_sid:
            return record
        if (
            record.status == CLAIMED
            and record.lease_until
            and now - record.lease_until > self._after
        ):
            reason = "the worker sending it stopped and the message did not come back"
            return replace(record, status=IN_DOUBT, reason=reason, updated_at=now, lease_until=None)
        if record.status == RETRYING and now - record.updated_at > self._after:
            reason = "no retry came: the message is on the poison queue or was removed"
            return replace(record, status=POISON, reason=reason, updated_at=now)
        overdue = record.lease_until is not None and now > record.lease_until + self._after
        if record.status == DEFERRED and overdue:
            reason = "the deferred message did not come back: on the poison queue, or removed"
            return replace(record, status=POISON, reason=reason, updated_at=now, lease_until=None)
        return record

    def _staged(self, staged: StagedEvent, report: RunReport) -> None:
        try:
            happened = self._happened(staged.event)
        except UnavailableError:
            return  # asked again next run
        if happened and not self._publisher.publish([staged.event]):
            return
        self._index.unstage([staged.event], staged.due)
        report.staged_published += 1 if happened else 0
