"""Performs queued outbound commands: at most one accepted Twilio send per idempotency key.

Every message ends in exactly one outcome, each recorded and logged: sent, rejected,
failed, duplicate, in doubt, or (raised) retry, which becomes poison on the last attempt.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Protocol

from telephony.commands import (
    CommandRules,
    OutboundCommand,
    decode_message,
    parse_command,
)
from telephony.deliveries import (
    CLAIMED,
    FAILED,
    IN_DOUBT,
    PENDING,
    POISON,
    REJECTED,
    RETRYING,
    SETTLED,
    DeliveryRecord,
    DeliveryStore,
    RecordExistsError,
    advance,
    apply_callback,
)
from telephony.errors import CommandRejectedError
from telephony.logs import log_event
from telephony.optouts import (
    OPTED_OUT,
    OptOutStore,
    ensure_can_contact,
)
from telephony.twilio_errors import (
    TwilioOutcomeUnknownError,
    TwilioRejectedError,
    TwilioUnavailableError,
)
from telephony.twilio_gateway import CreatedResource, OutboundCall, OutboundSms
from telephony.twiml import say_response

logger = logging.getLogger(__name__)

# host.json extensions.queues.maxDequeueCount; tests check the two agree.
MAX_DEQUEUE_COUNT = 5
# Settled statuses that never reached Twilio: a requeued poison message, or a corrected
# command under a key that was rejected, is sent (still at most once).
RETRYABLE = frozenset({POISON, REJECTED})
# Longer than a Twilio request can take (connect 5 s + read 15 s): a live claim is never
# mistaken for a dead one.
LEASE = timedelta(seconds=60)


class Outcome(Enum):
    SENT = "sent"
    REJECTED = "rejected"
    FAILED = "failed"
    DUPLICATE = "duplicate"
    IN_DOUBT = "in_doubt"


class RetryLaterError(Exception):
    """Transient: the function raises it so the host redelivers the message."""


class Sender(Protocol):
    def send_message(self, sms: OutboundSms) -> CreatedResource: ...

    def place_call(self, call: OutboundCall) -> CreatedResource: ...


@dataclass(frozen=True)
class SenderDefaults:
    """Defaults from settings: senders, and where Twilio calls back."""

    phone_number: str | None
    messaging_service_sid: str | None
    public_base_url: str | None


class OutboundService:
    """Claims, sends and records one command at a time; safe to run concurrently."""

    def __init__(
        self,
        store: DeliveryStore,
        sender: Sender,
        rules: CommandRules,
        defaults: SenderDefaults,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        optouts: OptOutStore | None = None,
    ) -> None:
        self._store = store
        self._sender = sender
        self._rules = rules
        self._defaults = defaults
        self._clock = clock
        self._optouts = optouts  # None: no opt-out checks (unit tests of the send path)

    def handle(self, text: str, message_id: str, dequeue_count: int) -> Outcome:
        """Process one queue message; raises RetryLaterError for the host to retry."""
        try:
            document, event_id = decode_message(text)
            command = parse_command(document, event_id or message_id, self._rules, self._clock())
        except CommandRejectedError as exc:
            return self._reject(exc, message_id)
        if self._opted_out(command.to):
            return self._reject_opted_out(command)
        record = self._claim(command)
        if record is None:
            log_event(logger, "outbound_duplicate", key=command.idempotency_key)
            return Outcome.DUPLICATE
        if record.status == IN_DOUBT:
            return Outcome.IN_DOUBT
        return self._send(command, record, dequeue_count)

    def record_of(self, key: str) -> DeliveryRecord | None:
        """The delivery record of `key`, or its pending marker before a worker claims it."""
        return self._store.lookup(key)

    def submit(self, document: object, put: Callable[[str], object]) -> tuple[DeliveryRecord, bool]:
        """Validate and enqueue a command from HTTP; (record, False) when the key was used.

        Raises CommandRejectedError for an invalid command and RecipientOptedOutError for
        a recipient that opted out, before anything is enqueued.
        """
        import json
        import uuid

        command = parse_command(document, uuid.uuid4().hex, self._rules, self._clock())
        existing = self._store.lookup(command.idempotency_key)
        if existing is not None:
            return existing, False
        if self._optouts is not None:
            ensure_can_contact(self._optouts, command.to)
        assert isinstance(document, dict)
        put(json.dumps({**document, "idempotency_key": command.idempotency_key}))
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
        return advance(
            self._store, record, lambda r: apply_callback(r, status, sid, error_code, now)
        )

    def _reject(self, exc: CommandRejectedError, message_id: str) -> Outcome:
        key = exc.key or message_id
        log_event(
            logger,
            "outbound_rejected",
            logging.WARNING,
            key=key,
            field=exc.field,
            reason=exc.message,
        )
        now = self._clock()
        record = DeliveryRecord(
            key=key, kind="unknown", to="", status=REJECTED, created_at=now, updated_at=now,
            reason=exc.message,
        )  # fmt: skip
        self._record_rejection(record)
        return Outcome.REJECTED

    def _opted_out(self, number: str) -> bool:
        """One point read of the opt-out table; StorageUnavailableError makes the host retry."""
        return self._optouts is not None and self._optouts.is_opted_out(number)

    def _reject_opted_out(self, command: OutboundCommand) -> Outcome:
        key = command.idempotency_key
        log_event(logger, "outbound_rejected", logging.WARNING, key=key, reason=OPTED_OUT)
        now = self._clock()
        record = DeliveryRecord(
            key=key, kind=command.kind, to=command.to, status=REJECTED, created_at=now,
            updated_at=now, reason=OPTED_OUT,
        )  # fmt: skip
        self._record_rejection(record)
        return Outcome.REJECTED

    def _record_rejection(self, record: DeliveryRecord) -> None:
        """Store a rejection; a key that already had its send keeps its record."""
        if self._insert_or_none(record) is not None:
            return
        existing = self._store.get(record.key)
        if existing is not None and existing.status not in SETTLED:
            reason, now = record.reason, record.updated_at
            advance(self._store, existing, lambda r: r.advanced(REJECTED, now, reason=reason))

    def _claim(self, command: OutboundCommand) -> DeliveryRecord | None:
        """The claimed record, or None when the key has already had its send.

        The first delivery of a key claims it with one conditional insert; only a key seen
        before costs a read.
        """
        now = self._clock()
        claimed = self._insert_or_none(self._new_claim(command, now))
        if claimed is not None:
            return claimed
        existing = self._store.get(command.idempotency_key)
        if existing is None:  # deleted in between: never by this app
            raise RetryLaterError("the record vanished while it was being claimed")
        if existing.status in SETTLED and existing.status not in RETRYABLE:
            return None
        if existing.status == CLAIMED and existing.lease_until and existing.lease_until > now:
            raise RetryLaterError("another worker holds the lease on this key")
        if existing.status == CLAIMED:
            return self._in_doubt(existing, "the worker sending it stopped before recording")
        return advance(
            self._store,
            existing,
            lambda r: replace(
                r, status=CLAIMED, attempts=r.attempts + 1, lease_until=now + LEASE, updated_at=now
            ),
        )

    def _new_claim(self, command: OutboundCommand, now: datetime) -> DeliveryRecord:
        return DeliveryRecord(
            key=command.idempotency_key, kind=command.kind, to=command.to, status=CLAIMED,
            created_at=now, updated_at=now, attempts=1, lease_until=now + LEASE,
        )  # fmt: skip

    def _insert_or_none(self, record: DeliveryRecord) -> DeliveryRecord | None:
        try:
            return self._store.insert(record)
        except RecordExistsError:
            return None

    def _send(
        self, command: OutboundCommand, record: DeliveryRecord, dequeue_count: int
    ) -> Outcome:
        try:
            created = self._dispatch(command)
        except CommandRejectedError as exc:
            self._finish(record, REJECTED, reason=exc.message)
            log_event(
                logger, "outbound_rejected", logging.WARNING, key=record.key, reason=exc.message
            )
            return Outcome.REJECTED
        except TwilioRejectedError as exc:
            self._finish(record, FAILED, error_code=exc.code, reason=exc.message)
            log_event(
                logger, "outbound_failed", logging.WARNING, key=record.key, twilio_code=exc.code
            )
            return Outcome.FAILED
        except TwilioOutcomeUnknownError as exc:
            self._in_doubt(record, str(exc))
            return Outcome.IN_DOUBT
        except TwilioUnavailableError as exc:
            self._retry_or_poison(record, exc, dequeue_count)
            raise RetryLaterError(str(exc)) from exc
        self._finish(record, created.status, twilio_sid=created.sid)
        log_event(logger, "outbound_sent", key=record.key, to=record.to, sid=created.sid)
        return Outcome.SENT

    def _dispatch(self, command: OutboundCommand) -> CreatedResource:
        callback = self._callback_url(command.idempotency_key)
        if command.kind == "sms":
            return self._sender.send_message(self._sms(command, callback))
        return self._sender.place_call(self._call(command, callback))

    def _sms(self, command: OutboundCommand, callback: str | None) -> OutboundSms:
        service = self._defaults.messaging_service_sid
        sender = command.from_ or (None if service else self._defaults.phone_number)
        return OutboundSms(
            to=command.to,
            from_=sender,
            messaging_service_sid=service if not command.from_ or command.send_at else None,
            body=command.body,
            media_urls=command.media_urls,
            status_callback=callback,
            send_at=command.send_at,
        )

    def _call(self, command: OutboundCommand, callback: str | None) -> OutboundCall:
        sender = command.from_ or self._defaults.phone_number
        if sender is None:
            raise CommandRejectedError("a call needs from, or TWILIO_PHONE_NUMBER", "from")
        twiml = say_response(command.say) if command.say else command.twiml
        base = self._defaults.public_base_url
        if command.flow is not None:
            if base is None:
                raise CommandRejectedError("a call with a flow needs PUBLIC_BASE_URL", "flow")
            return OutboundCall(command.to, sender, callback, url=_flow_url(base, command.flow))
        url = command.url or (f"{base}/api/voice_url" if base and not twiml else None)
        if url is None and twiml is None:
            raise CommandRejectedError("a call without say, url or twiml needs PUBLIC_BASE_URL")
        return OutboundCall(command.to, sender, callback, url=url, twiml=twiml)

    def _callback_url(self, key: str) -> str | None:
        from urllib.parse import quote

        base = self._defaults.public_base_url
        return f"{base}/api/status_callback?id={quote(key, safe='')}" if base else None

    def _finish(self, record: DeliveryRecord, status: str, **changes: object) -> None:
        now = self._clock()
        advance(self._store, record, lambda r: _settle(r, status, now, **changes))

    def _in_doubt(self, record: DeliveryRecord, reason: str) -> DeliveryRecord:
        log_event(logger, "outbound_in_doubt", logging.ERROR, key=record.key, reason=reason)
        now = self._clock()
        return advance(self._store, record, lambda r: _settle(r, IN_DOUBT, now, reason=reason))

    def _retry_or_poison(
        self, record: DeliveryRecord, exc: TwilioUnavailableError, dequeue_count: int
    ) -> None:
        last = dequeue_count >= MAX_DEQUEUE_COUNT
        status = POISON if last else RETRYING
        log_event(
            logger, f"outbound_{status}", logging.ERROR if last else logging.WARNING,
            key=record.key, attempt=dequeue_count, reason=str(exc),
        )  # fmt: skip
        now = self._clock()
        advance(
            self._store,
            record,
            lambda r: _settle(r, status, now, error_code=exc.code, reason=str(exc)),
        )


def _flow_url(base: str, flow: str) -> str:
    from telephony.flows.render import CallUrls

    return CallUrls.for_base(base).flow(flow)


def _settle(
    record: DeliveryRecord, status: str, now: datetime, **changes: object
) -> DeliveryRecord:
    """Release the lease and move to `status`; a status from a faster callback is kept."""
    if record.status not in (CLAIMED, RETRYING, PENDING):
        # A callback already advanced the record: keep its status, add what it lacks.
        sid = changes.get("twilio_sid")
        return replace(record, twilio_sid=record.twilio_sid or sid, lease_until=None)  # type: ignore[arg-type]
    return replace(record, status=status, updated_at=now, lease_until=None, **changes)  # type: ignore[arg-type]
