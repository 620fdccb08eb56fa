"""Performs queued outbound commands: at most one accepted Twilio send per idempotency key.

Every message ends in exactly one outcome, each recorded and logged: sent, rejected,
failed, duplicate, in doubt, deferred, or (raised) retry, which becomes poison on the last
attempt. The error family decides which: invalid input and conflicts are rejected, an
upstream refusal fails, a lost answer is in doubt, and anything unavailable is retried.
A command inside the recipient's quiet hours (telephony/outbound/quiet.py) is deferred:
scheduled by Twilio where it can hold the message, else put back on the queue, invisible
until then, under the same key, which is claimed again when it returns.
"""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING

from telephony.errors import (
    CommandRejectedError,
    ConflictError,
    InvalidInputError,
    RecordChangedError,
    RecordExistsError,
    RetryLaterError,
    StorageUnavailableError,
    TwilioOutcomeUnknownError,
    TwilioUnavailableError,
    UnavailableError,
    UpstreamRejectedError,
)
from telephony.events.model import utc_text
from telephony.logs import log_event
from telephony.outbound.calls import build_call, data_id, keep_call_data, status_callback_url
from telephony.outbound.commands import (
    SCHEDULE_MAX,
    SCHEDULE_MIN,
    CommandRules,
    OutboundCommand,
    QuietHours,
    decode_message,
    parse_command,
)
from telephony.outbound.quiet import next_allowed
from telephony.outbound.records import (
    CLAIMED,
    DEFERRED,
    FAILED,
    IN_DOUBT,
    PENDING,
    POISON,
    REJECTED,
    RETRYING,
    DeliveryRecord,
    DeliveryStore,
    Tracking,
    apply_callback,
)
from telephony.outbound.sender import CreatedResource, OutboundSms, Sender, SenderDefaults
from telephony.outbound.writer import RecordWriter
from telephony.phone import split_address
from telephony.sms.optouts import OPTED_OUT, OptOutStore, ensure_can_contact

if TYPE_CHECKING:
    from telephony.flows.data import CallDataStore

logger = logging.getLogger(__name__)

# host.json extensions.queues.maxDequeueCount; tests check the two agree.
MAX_DEQUEUE_COUNT = 5
# Statuses of a key that never reached Twilio: a retry, a requeued poison message, a
# corrected command under a key that was rejected, or a command back after quiet hours, is
# sent (still at most once).
RETRYABLE = frozenset({RETRYING, POISON, REJECTED, DEFERRED})
# Storage hides a message for 7 days at most, and a message lives 7 days: a deferred command
# comes back with a day to spare. A longer deferral (a send_at near Twilio's 35 days, pushed
# past quiet hours) is scheduled with Twilio when it comes back.
MAX_QUEUE_DELAY = timedelta(days=6)
# Deferrals of one key before quiet hours give way and it is sent (an error is logged). A
# key's own deferral and a few redelivered copies of it are all counted, so the bound is
# far above what they add up to; only clocks that disagree, again and again, get there.
MAX_DEFERRALS = 50
# The request reaches Twilio a moment after it is built: Twilio's scheduling window, kept.
SCHEDULE_MARGIN = timedelta(minutes=1)
# Longer than a Twilio request can take (connect 5 s + read 15 s): a live claim is never
# mistaken for a dead one.
LEASE = timedelta(seconds=60)
RECLAIM_ATTEMPTS = 5  # ETag conflicts in a row before the host is asked to retry


class SendOutcome(Enum):
    SENT = "sent"
    REJECTED = "rejected"
    FAILED = "failed"
    DUPLICATE = "duplicate"
    IN_DOUBT = "in_doubt"
    DEFERRED = "deferred"


class OutboundService:
    """Claims, sends and records one command at a time; safe to run concurrently."""

    def __init__(
        self,
        store: DeliveryStore,
        sender: Sender,
        rules: CommandRules,
        defaults: SenderDefaults,
        optouts: OptOutStore,
        enqueue: Callable[[str], object],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        writer: RecordWriter | None = None,
        requeue: Callable[[str, timedelta], object] | None = None,
        quiet_hours: QuietHours | None = None,
        call_data: Callable[[], CallDataStore] | None = None,
    ) -> None:
        self._store = store
        self._sender = sender
        self._rules = rules
        self._defaults = defaults
        self._optouts = optouts
        self._enqueue = enqueue  # puts one message on the outbound queue
        self._clock = clock
        # Without a writer (unit tests of the send logic): no events, the default tracking.
        self._writer = writer or RecordWriter(store, Tracking(), None, clock)
        # Puts a message back on the outbound queue, invisible for a while (quiet hours).
        self._requeue = requeue
        self._quiet_hours = quiet_hours  # QUIET_HOURS: for commands without their own
        self._call_data = call_data  # where a call's data waits for its webhooks

    def handle(self, text: str, message_id: str, dequeue_count: int) -> SendOutcome:
        """Process one queue message; raises RetryLaterError for the host to retry."""
        try:
            document, event_id = decode_message(text)
            command = parse_command(document, event_id or message_id, self._rules, self._clock())
        except CommandRejectedError as exc:
            return self._reject(exc.key or message_id, exc.message, field=exc.field)
        try:
            ensure_can_contact(self._optouts, command.to)
        except ConflictError:
            return self._reject(command.idempotency_key, OPTED_OUT, command)
        command, back = self._past_quiet_hours(command)
        record = self._claim(command, back)
        if record is None:
            log_event(logger, "outbound_duplicate", key=command.idempotency_key)
            return SendOutcome.DUPLICATE
        if record.status == DEFERRED:
            return self._put_back(document, record)
        if record.status != CLAIMED:  # parked in doubt, or settled by a callback meanwhile
            return SendOutcome.IN_DOUBT if record.status == IN_DOUBT else SendOutcome.DUPLICATE
        return self._send(command, record, dequeue_count)

    def record_of(self, key: str) -> DeliveryRecord | None:
        """The delivery record of `key`, or its pending marker before a worker claims it."""
        return self._store.lookup(key)

    def submit(self, document: object) -> tuple[DeliveryRecord, bool]:
        """Validate and enqueue a command from HTTP; (record, False) when the key was used.

        Raises CommandRejectedError for an invalid command and RecipientOptedOutError for
        a recipient that opted out, before anything is enqueued.
        """
        command = parse_command(document, uuid.uuid4().hex, self._rules, self._clock())
        existing = self._store.lookup(command.idempotency_key)
        if existing is not None:
            return existing, False
        ensure_can_contact(self._optouts, command.to)
        assert isinstance(document, dict)
        self._enqueue(json.dumps({**document, "idempotency_key": command.idempotency_key}))
        now = self._clock()
        pending = DeliveryRecord(
            key=command.idempotency_key, kind=command.kind, to=command.to, status=PENDING,
            created_at=now, updated_at=now,
        )  # fmt: skip
        # A marker beside the record, not the record itself: the worker's claim stays one
        # conditional insert, and a fast worker's record wins in record_of.
        with contextlib.suppress(RecordExistsError):
            self._store.insert_pending(pending)
        return self._store.lookup(pending.key) or pending, True

    def apply_status(
        self, key: str, status: str, sid: str | None, error_code: int | None
    ) -> DeliveryRecord | None:
        """Advance the record `key` with a Twilio status callback; None for an unknown key."""
        record = self._store.get(key)
        if record is None:
            return None
        now = self._clock()
        return self._advance(record, lambda r: apply_callback(r, status, sid, error_code, now))

    def _reject(
        self,
        key: str,
        reason: str,
        command: OutboundCommand | None = None,
        field: str | None = None,
    ) -> SendOutcome:
        """Record and log a command that can never be sent as it is (None: it did not parse).

        A rejection only ever inserts a record: it never demotes one that is claimed, sent
        or settled, whatever arrives with the same key while a send is in flight.
        """
        log_event(logger, "outbound_rejected", logging.WARNING, key=key, field=field, reason=reason)
        now = self._clock()
        record = DeliveryRecord(
            key=key, kind=command.kind if command else "unknown", to=command.to if command else "",
            status=REJECTED, created_at=now, updated_at=now, reason=reason,
        )  # fmt: skip
        if self._insert_or_none(record) is not None:
            return SendOutcome.REJECTED
        existing = self._store.get(key)
        if existing is not None and not _claimable(existing):
            log_event(logger, "outbound_duplicate", key=key, status=existing.status)
            return SendOutcome.DUPLICATE
        if existing is not None:  # never sent (retrying, poison, rejected): it says so now
            self._advance(existing, lambda r: _rejected(r, reason, now))
        return SendOutcome.REJECTED

    def _claim(self, command: OutboundCommand, back: datetime | None) -> DeliveryRecord | None:
        """The claimed record (deferred when `back`, the time its message comes back, is
        set), or None when the key has already had its send.

        The first delivery of a key claims it with one conditional insert; only a key seen
        before costs a read. Every retry of the ETag-checked update re-reads the record and
        decides again, so two workers never both claim it.
        """
        now = self._clock()
        claimed = self._insert_or_none(self._new_claim(command, now, back))
        if claimed is not None:
            return claimed
        key = command.idempotency_key
        for _ in range(RECLAIM_ATTEMPTS):
            existing = self._store.get(key)
            if existing is None:  # deleted in between: never by this app
                raise RetryLaterError("the record vanished while it was being claimed")
            if existing.status == CLAIMED and not existing.twilio_sid:
                return self._expired_claim(existing, now)
            if not _claimable(existing):
                return None
            try:
                claim = self._writer.track(existing, self._claimed(existing, now, back))
                written = self._store.update(claim, existing)
            except RecordChangedError:
                continue
            before = {event.id for event in existing.outbox}  # a deferral has its event
            return self._writer.publish(written, [e for e in written.outbox if e.id not in before])
        raise RetryLaterError("the record kept changing while it was being claimed")

    def _claimed(
        self, record: DeliveryRecord, now: datetime, back: datetime | None
    ) -> DeliveryRecord:
        """A claimable record claimed to be sent now, or deferred until `back`."""
        if back is None and record.status == DEFERRED and record.lease_until:
            # A copy of the command that came before the deferred one: not sent earlier.
            back = record.lease_until if record.lease_until > now else None
        if back is None:
            return _claimed(record, now)
        if record.deferrals >= MAX_DEFERRALS:
            log_event(
                logger, "outbound_quiet_hours_exhausted", logging.ERROR,
                key=record.key, deferrals=record.deferrals,
            )  # fmt: skip
            return _claimed(record, now)
        return _deferred(record, back, now)

    def _expired_claim(self, record: DeliveryRecord, now: datetime) -> DeliveryRecord:
        """Another worker's claim: still live (retry later) or dead (in doubt, never resent)."""
        if record.lease_until and record.lease_until > now:
            raise RetryLaterError("another worker holds the lease on this key")
        return self._in_doubt(record, "the worker sending it stopped before recording")

    def _new_claim(
        self, command: OutboundCommand, now: datetime, back: datetime | None
    ) -> DeliveryRecord:
        claim = DeliveryRecord(
            key=command.idempotency_key, kind=command.kind, to=command.to, status=CLAIMED,
            created_at=now, updated_at=now, attempts=1, lease_until=now + LEASE,
        )  # fmt: skip
        return claim if back is None else _deferred(replace(claim, attempts=0), back, now)

    def _insert_or_none(self, record: DeliveryRecord) -> DeliveryRecord | None:
        """Insert the record (with its event and next check); None when the key exists."""
        try:
            return self._writer.insert(record)
        except RecordExistsError:
            return None

    def _advance(
        self, record: DeliveryRecord, change: Callable[[DeliveryRecord], DeliveryRecord]
    ) -> DeliveryRecord:
        return self._writer.advance(record, change)

    def _send(
        self, command: OutboundCommand, record: DeliveryRecord, dequeue_count: int
    ) -> SendOutcome:
        try:
            created = self._dispatch(command)
        except InvalidInputError as exc:
            self._finish(record, REJECTED, reason=exc.message)
            log_event(
                logger, "outbound_rejected", logging.WARNING, key=record.key, reason=exc.message
            )
            return SendOutcome.REJECTED
        except UpstreamRejectedError as exc:
            code = getattr(exc, "code", None)
            self._finish(record, FAILED, error_code=code, reason=exc.message)
            log_event(logger, "outbound_failed", logging.WARNING, key=record.key, twilio_code=code)
            return SendOutcome.FAILED
        except TwilioOutcomeUnknownError as exc:
            self._in_doubt(record, str(exc))
            return SendOutcome.IN_DOUBT
        except (TwilioUnavailableError, StorageUnavailableError) as exc:
            # Storage: the call's data could not be kept, so Twilio was not asked.
            self._retry_or_poison(record, exc, dequeue_count)
            raise RetryLaterError(str(exc)) from exc
        self._finish(record, created.status, twilio_sid=created.sid)
        log_event(logger, "outbound_sent", key=record.key, to=record.to, sid=created.sid)
        return SendOutcome.SENT

    def _past_quiet_hours(
        self, command: OutboundCommand
    ) -> tuple[OutboundCommand, datetime | None]:
        """The command as it is sent (scheduled with Twilio past the recipient's quiet
        hours, where it can be), and when its message must come back (None: send now)."""
        quiet = command.quiet_hours or self._quiet_hours
        if quiet is None:
            return command, None
        now = self._clock()
        until = next_allowed(command.to, quiet, command.send_at or now)
        if until is None:
            return command, None
        if self._schedulable(command, until - now):
            log_event(
                logger, "outbound_quiet_hours_scheduled", key=command.idempotency_key,
                to=command.to, until=utc_text(until),
            )  # fmt: skip
            return replace(command, send_at=until), None
        return command, min(until, now + MAX_QUEUE_DELAY)  # a longer wait is decided again

    def _schedulable(self, command: OutboundCommand, ahead: timedelta) -> bool:
        """Whether Twilio can hold the message until then: an SMS with a Messaging Service,
        15 minutes to 35 days ahead with a minute to spare (a command's own send_at has
        passed the 15-minute check: a quiet end after it is later still)."""
        if command.kind != "sms" or not self._defaults.messaging_service_sid:
            return False
        soonest = SCHEDULE_MIN if command.send_at else SCHEDULE_MIN + SCHEDULE_MARGIN
        return soonest <= ahead <= SCHEDULE_MAX - SCHEDULE_MARGIN

    def _put_back(self, document: object, record: DeliveryRecord) -> SendOutcome:
        """Put the deferred command back on the queue until its record's time; the message
        that brought it is then deleted. The queue's failure raises: the host retries."""
        assert isinstance(document, dict) and record.lease_until is not None
        if self._requeue is None:
            raise RetryLaterError("quiet hours need a queue to put the command back on")
        delay = max(record.lease_until - self._clock(), timedelta(seconds=1))
        # The plain command under its key: an event's envelope is not needed to send it.
        self._requeue(json.dumps({**document, "idempotency_key": record.key}), delay)
        log_event(
            logger, "outbound_deferred", key=record.key, to=record.to,
            until=utc_text(record.lease_until), deferrals=record.deferrals,
        )  # fmt: skip
        return SendOutcome.DEFERRED

    def _dispatch(self, command: OutboundCommand) -> CreatedResource:
        base = self._defaults.public_base_url
        callback = status_callback_url(base, command.idempotency_key, data_id(command))
        if command.kind == "sms":
            return self._sender.send_message(self._sms(command, callback))
        call = build_call(command, self._defaults, base, callback)
        keep_call_data(self._call_data, command)  # claimed: only this worker writes the key's
        return self._sender.place_call(call)

    def _sms(self, command: OutboundCommand, callback: str | None) -> OutboundSms:
        service = self._defaults.messaging_service_sid
        phone = self._defaults.phone_number
        # The default sender is on the recipient's channel: a Messaging Service picks its
        # WhatsApp sender itself, our number needs the whatsapp: prefix.
        default = split_address(command.to)[0] + phone if phone and not service else None
        return OutboundSms(
            to=command.to,
            from_=command.from_ or default,
            messaging_service_sid=service if not command.from_ or command.send_at else None,
            body=command.body,
            media_urls=command.media_urls,
            status_callback=callback,
            send_at=command.send_at,
            content_sid=command.content_sid,
            content_variables=command.content_variables,
            validity_period=command.validity_period,
        )

    def _finish(self, record: DeliveryRecord, status: str, **changes: object) -> None:
        now = self._clock()
        self._advance(record, lambda r: _settle(r, status, now, **changes))

    def _in_doubt(self, record: DeliveryRecord, reason: str) -> DeliveryRecord:
        log_event(logger, "outbound_in_doubt", logging.ERROR, key=record.key, reason=reason)
        now = self._clock()
        return self._advance(record, lambda r: _settle(r, IN_DOUBT, now, reason=reason))

    def _retry_or_poison(
        self, record: DeliveryRecord, exc: UnavailableError, dequeue_count: int
    ) -> None:
        last = dequeue_count >= MAX_DEQUEUE_COUNT
        status = POISON if last else RETRYING
        log_event(
            logger, f"outbound_{status}", logging.ERROR if last else logging.WARNING,
            key=record.key, attempt=dequeue_count, reason=str(exc),
        )  # fmt: skip
        now = self._clock()
        code = getattr(exc, "code", None)  # Twilio's error code; None for Storage
        self._advance(record, lambda r: _settle(r, status, now, error_code=code, reason=str(exc)))


def _claimable(record: DeliveryRecord) -> bool:
    """Whether the key may still have its send: never sent, and not being sent."""
    if record.twilio_sid:
        return False  # Twilio accepted something under this key: never again
    return record.status in RETRYABLE


def _rejected(record: DeliveryRecord, reason: str, now: datetime) -> DeliveryRecord:
    """A key that never had its send, rejected now; anything claimable no longer is left."""
    if not _claimable(record):
        return record
    return replace(record, status=REJECTED, reason=reason, updated_at=now, lease_until=None)


def _claimed(record: DeliveryRecord, now: datetime) -> DeliveryRecord:
    return replace(
        record, status=CLAIMED, attempts=record.attempts + 1, lease_until=now + LEASE,
        updated_at=now, reason=None, error_code=None,
    )  # fmt: skip


def _deferred(record: DeliveryRecord, back: datetime, now: datetime) -> DeliveryRecord:
    """Deferred by quiet hours: its message is back on the queue until `back`."""
    return replace(
        record, status=DEFERRED, lease_until=back, updated_at=now, error_code=None,
        reason=f"quiet hours: deferred until {utc_text(back)}", deferrals=record.deferrals + 1,
    )  # fmt: skip


def _settle(
    record: DeliveryRecord, status: str, now: datetime, **changes: object
) -> DeliveryRecord:
    """Release the lease and move to `status`; a status from a faster callback is kept."""
    if record.status == IN_DOUBT and changes.get("twilio_sid"):
        # Parked while this worker was still waiting for Twilio: its answer settles it.
        return replace(record, status=status, updated_at=now, lease_until=None, **changes)  # type: ignore[arg-type]
    if record.status not in (CLAIMED, RETRYING):
        # A callback already advanced the record: keep its status, add what it lacks.
        sid = changes.get("twilio_sid")
        return replace(record, twilio_sid=record.twilio_sid or sid, lease_until=None)  # type: ignore[arg-type]
    return replace(record, status=status, updated_at=now, lease_until=None, **changes)  # type: ignore[arg-type]
