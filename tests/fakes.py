"""In-memory stand-ins for unit tests of pure logic (the real store and Twilio run in
tests/integration against Azurite and Prism)."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from telephony.adapters.twilio_rest import CreatedResource, OutboundCall, OutboundSms
from telephony.errors import EventSinkUnavailableError, RecordChangedError, RecordExistsError
from telephony.events.model import OutcomeEvent
from telephony.outbound.reconcile import DueWork, StagedEvent
from telephony.outbound.records import DeliveryRecord
from telephony.sms.optouts import ConsentEvent, consent_number


class MemoryStore:
    """DeliveryStore in a dict, with ETags, counting round trips."""

    def __init__(self) -> None:
        self.records: dict[str, DeliveryRecord] = {}
        self.pending: dict[str, DeliveryRecord] = {}
        self.staged: dict[tuple[str, datetime], OutcomeEvent] = {}
        self.round_trips = 0
        self._etags = itertools.count(1)
        self._lock = threading.Lock()

    def get(self, key: str) -> DeliveryRecord | None:
        with self._lock:
            self.round_trips += 1
            return self.records.get(key)

    def insert(self, record: DeliveryRecord) -> DeliveryRecord:
        with self._lock:
            self.round_trips += 1
            if record.key in self.records:
                raise RecordExistsError(record.key)
            return self._put(record)

    def update(self, record: DeliveryRecord, was: DeliveryRecord) -> DeliveryRecord:
        with self._lock:
            self.round_trips += 1
            current = self.records.get(record.key)
            if current is None or current.etag != was.etag:
                raise RecordChangedError(record.key)
            return self._put(record)

    # The reconcile index and the outbox of staged events, as the Table store keeps them.

    def due(self, now: datetime, limit: int) -> DueWork:
        with self._lock:
            self.round_trips += 1
            keys = sorted(
                (r.check_after, key)
                for key, r in self.records.items()
                if r.check_after is not None and r.check_after < now
            )
            events = sorted((due, event_id) for (event_id, due) in self.staged if due < now)
            work = DueWork(keys=[key for _, key in keys][:limit])
            for due, event_id in events[: limit - len(work.keys)]:
                work.events.append(StagedEvent(self.staged[(event_id, due)], due))
            return work

    def stage(self, events: Sequence[OutcomeEvent], due: datetime) -> None:
        with self._lock:
            self.round_trips += 1
            for event in events:
                self.staged[(event.id, due)] = event

    def unstage(self, events: Sequence[OutcomeEvent], due: datetime) -> None:
        with self._lock:
            self.round_trips += 1
            for event in events:
                self.staged.pop((event.id, due), None)

    def insert_pending(self, record: DeliveryRecord) -> None:
        with self._lock:
            self.round_trips += 1
            if record.key in self.pending:
                raise RecordExistsError(record.key)
            self.pending[record.key] = record

    def lookup(self, key: str) -> DeliveryRecord | None:
        with self._lock:
            self.round_trips += 1
            return self.records.get(key) or self.pending.get(key)

    def _put(self, record: DeliveryRecord) -> DeliveryRecord:
        stored = replace(record, etag=str(next(self._etags)))
        self.records[record.key] = stored
        return stored


class ScriptedSender:
    """Sender that answers from a script: a list of exceptions or None (accept)."""

    def __init__(self, *script: Exception | None) -> None:
        self.script = list(script)
        self.sent: list[OutboundSms | OutboundCall] = []
        self.statuses: dict[str, str] = {}  # what current_status answers, by SID
        self.fetched: list[str] = []
        self._sids = itertools.count(1)

    def send_message(self, sms: OutboundSms) -> CreatedResource:
        return self._answer(sms, "SM", "queued")

    def current_status(self, kind: str, sid: str) -> CreatedResource | None:
        """What `statuses` says of `sid` now (None: unknown); counts the requests."""
        self.fetched.append(sid)
        step = self.script.pop(0) if self.script else None
        if step is not None:
            raise step
        status = self.statuses.get(sid)
        return CreatedResource(sid, status) if status else None

    def place_call(self, call: OutboundCall) -> CreatedResource:
        return self._answer(call, "CA", "queued")

    def _answer(
        self, request: OutboundSms | OutboundCall, prefix: str, status: str
    ) -> CreatedResource:
        self.sent.append(request)
        step = self.script.pop(0) if self.script else None
        if step is not None:
            raise step
        return CreatedResource(f"{prefix}{next(self._sids):032x}", status)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class MemoryOptOutStore:
    """OptOutStore in dicts keyed by the number without its channel, counting round trips.

    It decides as the Table store does (ConsentEvent.overrides, once per MessageSid) and
    costs what it costs: a consent event is a read, and a write when it is kept.
    `optouts` holds the numbers opted out now.
    """

    def __init__(self, *opted_out: str) -> None:
        at = datetime(2026, 1, 1, tzinfo=UTC)
        self.newest = {consent_number(n): ConsentEvent(n, "STOP", at) for n in opted_out}
        self.optouts: dict[str, ConsentEvent] = dict(self.newest)
        self.applied: set[tuple[str, str, bool]] = set()  # number, MessageSid, opted out
        self.round_trips = 0
        self._lock = threading.Lock()

    def apply(self, event: ConsentEvent) -> bool:
        number = consent_number(event.number)
        with self._lock:
            self.round_trips += 1
            applied = (number, event.message_sid or "", event.opted_out)
            replayed = event.message_sid is not None and applied in self.applied
            if replayed or not event.overrides(self.newest.get(number)):
                return False
            self.round_trips += 1
            self.newest[number] = event
            if event.message_sid is not None:
                self.applied.add(applied)
            if event.opted_out:
                self.optouts[number] = event
            else:
                self.optouts.pop(number, None)
            return True

    def is_opted_out(self, number: str) -> bool:
        with self._lock:
            self.round_trips += 1
            return consent_number(number) in self.optouts

    def was_applied(self, event: ConsentEvent) -> bool:
        if event.message_sid is None:
            return self.is_opted_out(event.number) == event.opted_out
        with self._lock:
            self.round_trips += 1
            return (
                consent_number(event.number),
                event.message_sid,
                event.opted_out,
            ) in self.applied

    # Unordered writes, as the store had before consent was ordered: for tests that set a
    # number's state directly (a STOP or START arriving mid-send), not through apply.

    def add(self, optout: ConsentEvent) -> None:
        number = consent_number(optout.number)
        with self._lock:
            self.round_trips += 1
            self.newest[number] = self.optouts[number] = optout

    def remove(self, number: str) -> None:
        number = consent_number(number)
        with self._lock:
            self.round_trips += 1
            self.newest.pop(number, None)
            self.optouts.pop(number, None)


class MonotonicClock:
    """A monotonic clock (seconds) that only moves when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class MemorySink:
    """EventSink that keeps what it is given, failing on demand (`fail` more batches)."""

    def __init__(self) -> None:
        self.events: list[dict[str, object]] = []
        self.fail = 0
        self.batches = 0
        self._lock = threading.Lock()

    def publish(self, events: Sequence[Mapping[str, object]]) -> None:
        with self._lock:
            self.batches += 1
            if self.fail:
                self.fail -= 1
                raise EventSinkUnavailableError("the test sink refused the batch")
            self.events.extend(dict(event) for event in events)

    def of_type(self, kind: str) -> list[dict[str, object]]:
        return [event for event in self.events if event["type"] == kind]
