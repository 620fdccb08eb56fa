"""Delivery records: one per idempotency key, and the forward-only status machine.

A record is claimed by a conditional insert and advanced with ETag checks by the store
(telephony/adapters/tables.py), so concurrent workers and callbacks never lose an update.
This module holds the rules; it imports no SDK.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Protocol
from urllib.parse import quote

from telephony.errors import RecordChangedError, twilio_code_reason
from telephony.events import DELIVERY_UPDATED
from telephony.events.model import OutcomeEvent, fact_id, utc_text
from telephony.events.publisher import OUTBOX_GRACE
from telephony.phone import mask

# Our own statuses, around Twilio's message and call statuses.
PENDING = "pending"  # enqueued through POST /api/messages, not yet picked up
CLAIMED = "claimed"  # a worker holds the lease and is sending
RETRYING = "retrying"  # a transient failure; the host will redeliver
REJECTED = "rejected"  # the command can never be sent as it is
FAILED = "failed"  # Twilio refused it for good (or reported it failed)
POISON = "poison"  # transient failures until maxDequeueCount; moved to the poison queue
IN_DOUBT = "in_doubt"  # Twilio may or may not have accepted it; an operator decides
DEFERRED = "deferred"  # quiet hours: back on the queue until `lease_until`, then sent

# Rank of each status: a record only moves to a higher rank. Equal ranks are alternatives
# (delivered vs undelivered), so the first one reported stands.
_RANK = {
    PENDING: 0,
    CLAIMED: 1,
    RETRYING: 1,
    DEFERRED: 1,
    "accepted": 2,
    "scheduled": 2,
    "queued": 3,
    "initiated": 4,
    "sending": 4,
    "ringing": 5,
    "in-progress": 6,
    "sent": 7,
    "delivered": 9,
    "undelivered": 9,
    "completed": 9,
    "busy": 9,
    "no-answer": 9,
    "canceled": 9,
    FAILED: 9,
    "read": 10,  # after delivered, for channels with read receipts
    REJECTED: 11,
    POISON: 11,
    IN_DOUBT: 11,
}
FINAL = frozenset(s for s, rank in _RANK.items() if rank >= 9)
# Once any of these is recorded, the key has had its one send (or never will).
SETTLED = frozenset(s for s, rank in _RANK.items() if rank >= 2)
# No attempt ever reached Twilio: a pending marker, or a command refused before sending.
NEVER_SENT = frozenset({PENDING, REJECTED})
# An attempt was made but its outcome was not confirmed (a retry, poison, a lost answer).
ATTEMPTED = frozenset({RETRYING, POISON, IN_DOUBT})
# The app's own bookkeeping, not outcomes: no event is published for them.
INTERNAL = frozenset({PENDING, CLAIMED})
# How long reconcile keeps asking Twilio about a record that never reaches a final status
# (some carriers never report delivery, so `sent` can be the last word).
TRACK_FOR = timedelta(days=3)
# Statuses a key moves between before its send: claimed, released, deferred, claimed again.
_UNSENT = frozenset({CLAIMED, RETRYING, DEFERRED})


def is_known_status(status: str) -> bool:
    return status in _RANK


def moves_forward(current: str, new: str) -> bool:
    """True when `new` may replace `current`; unknown statuses never move a record."""
    if new not in _RANK or current not in _RANK:
        return False
    if current in _UNSENT and new in _UNSENT:
        return True  # a retry re-claims, a failed attempt releases, quiet hours defer
    return _RANK[new] > _RANK[current]


@dataclass(frozen=True)
class DeliveryRecord:
    """What happened to one outbound command. `etag` is the store's version tag."""

    key: str
    kind: str
    to: str
    status: str
    created_at: datetime
    updated_at: datetime
    attempts: int = 0
    twilio_sid: str | None = None
    error_code: int | None = None
    reason: str | None = None
    # A claim's lease; for a deferred record, the time it was deferred to (not sent before).
    lease_until: datetime | None = None
    # Events of this record's changes that no sink has confirmed yet (the outbox).
    outbox: tuple[OutcomeEvent, ...] = ()
    # When reconcile should look at the record next; None: it needs no looking after.
    check_after: datetime | None = None
    # How often quiet hours deferred the key: bounded, so a bad clock cannot loop for ever.
    deferrals: int = 0
    etag: str | None = field(default=None, compare=False)

    def advanced(self, status: str, now: datetime, **changes: object) -> DeliveryRecord:
        """This record moved to `status` (if that is forward) with `changes` applied."""
        if not moves_forward(self.status, status):
            return self
        return replace(self, status=status, updated_at=now, **changes)  # type: ignore[arg-type]


# Twilio's error codes are five digits. Anything else in ErrorCode is no code: not digits
# of another script ("³".isdigit() is true, int() refuses it), nor one too long for int()
# or for a Table property.
_ERROR_CODE = re.compile(r"[0-9]{1,9}")


class Fields(Protocol):
    """Form fields of a webhook (adapters.signature.FormParams, or a dict in tests)."""

    def get(self, name: str, /) -> str | None: ...


@dataclass(frozen=True)
class StatusCallback:
    """One Twilio status callback, for a message or a call; `key` names our record."""

    sid: str | None
    status: str
    error_code: int | None
    key: str | None
    fields: dict[str, str | None]

    @classmethod
    def from_params(cls, params: Fields, key: str | None) -> StatusCallback:
        message_sid = params.get("MessageSid")
        code = params.get("ErrorCode")
        return cls(
            sid=message_sid or params.get("CallSid"),
            status=params.get("MessageStatus") or params.get("CallStatus") or "",
            error_code=int(code) if code and _ERROR_CODE.fullmatch(code) else None,
            key=key or None,
            fields={
                "MessageSid": message_sid,
                "CallSid": None if message_sid else params.get("CallSid"),
                "ErrorCode": code or None,
                "To": params.get("To"),
            },
        )

    def log_fields(self) -> dict[str, object]:
        """What a log line says about it (numbers are masked by log_event)."""
        return {**self.fields, "status": self.status, "key": self.key}


def record_view(record: DeliveryRecord, *, masked: bool = True) -> dict[str, object]:
    """The record as GET /api/messages/{id} shows it (masked) and events carry it (full)."""
    return {
        "id": record.key,
        "kind": record.kind,
        "to": mask(record.to) if masked else record.to,
        "status": record.status,
        "twilio_sid": record.twilio_sid,
        "error_code": record.error_code,
        "reason": record.reason,
        "attempts": record.attempts,
        "created_at": utc_text(record.created_at),
        "updated_at": utc_text(record.updated_at),
    }


def delivery_event(record: DeliveryRecord, previous: str | None) -> OutcomeEvent:
    """telephony.delivery.updated for `record` having moved from `previous` (None: new)."""
    data = {
        **record_view(record, masked=False),
        "idempotency_key": record.key,
        "previous_status": previous,
    }
    return OutcomeEvent(
        id=fact_id(DELIVERY_UPDATED, record.key, record.status, record.attempts),
        type=DELIVERY_UPDATED,
        subject=f"messages/{quote(record.key, safe='')}",
        time=record.updated_at,
        data=data,
    )


@dataclass(frozen=True)
class Tracking:
    """What every record write adds: its event (when `events`), and its next check."""

    events: bool = False
    after: timedelta = timedelta(minutes=30)  # RECONCILE_AFTER_MINUTES

    def track(
        self, before: DeliveryRecord | None, after: DeliveryRecord, now: datetime
    ) -> DeliveryRecord:
        """`after` as it is written: with the event of its status change in its outbox,
        and when reconcile should look at it next. An unchanged record stays unchanged."""
        if before is not None and after == before:
            return after
        previous = before.status if before is not None else None
        if self.events and after.status != previous and after.status not in INTERNAL:
            after = replace(after, outbox=(*after.outbox, delivery_event(after, previous)))
        return replace(after, check_after=self.next_check(after, now))

    def next_check(self, record: DeliveryRecord, now: datetime) -> datetime | None:
        """Soon for unpublished events; `after` past the time a deferred record's message is
        due back; else `after` from the send (or from now, once it has passed) while the
        record is short of a final status, for TRACK_FOR at most."""
        if record.outbox:
            return now + OUTBOX_GRACE
        if record.status == DEFERRED and record.lease_until is not None:
            return max(record.lease_until, now) + self.after  # its message is back by then
        if record.status in FINAL or now - record.created_at > TRACK_FOR:
            return None
        later = record.created_at + self.after
        return later if later > now else now + self.after


def without_events(record: DeliveryRecord, published: Sequence[OutcomeEvent]) -> DeliveryRecord:
    """`record` with `published` taken out of its outbox (the rest stay for reconcile)."""
    done = {event.id for event in published}
    kept = tuple(event for event in record.outbox if event.id not in done)
    return record if kept == record.outbox else replace(record, outbox=kept)


def apply_callback(
    record: DeliveryRecord, status: str, sid: str | None, error_code: int | None, now: datetime
) -> DeliveryRecord:
    """The record after a Twilio status callback; repeats and late arrivals change nothing."""
    if sid and record.twilio_sid and sid != record.twilio_sid:
        return record  # a callback about another resource never moves this record
    if record.status in NEVER_SENT:
        return record  # nothing was sent under this key: no callback can be about it
    # A WhatsApp message outside the 24-hour window fails after Twilio accepted it (63016).
    reason = twilio_code_reason(error_code) or record.reason
    if record.status in ATTEMPTED and is_known_status(status):
        # Twilio calling back proves it accepted an attempt we could not confirm: the
        # doubt is resolved, and the key has had its send.
        sid = sid or record.twilio_sid
        return replace(
            record, status=status, twilio_sid=sid, error_code=error_code, reason=reason,
            updated_at=now,
        )  # fmt: skip
    moved = record.advanced(status, now, error_code=error_code or record.error_code, reason=reason)
    if sid and moved.twilio_sid is None:
        moved = replace(moved, twilio_sid=sid, updated_at=now)
    return moved


class DeliveryStore(Protocol):
    """Where records live. Keys are idempotency keys; updates are ETag-conditional.

    Beside each record a store may keep a pending marker, written when a command is
    enqueued over HTTP, so that it can be looked up before a worker claims it.
    """

    def get(self, key: str) -> DeliveryRecord | None:
        """The record (not the pending marker)."""
        ...

    def insert(self, record: DeliveryRecord) -> DeliveryRecord:
        """Insert the record; RecordExistsError when one exists."""
        ...

    def update(self, record: DeliveryRecord, was: DeliveryRecord) -> DeliveryRecord:
        """Replace `was` (as read, with its ETag) by `record` if it is unchanged since;
        else RecordChangedError."""
        ...

    def insert_pending(self, record: DeliveryRecord) -> None:
        """Insert the pending marker; RecordExistsError when one exists."""
        ...

    def lookup(self, key: str) -> DeliveryRecord | None:
        """The record, else the pending marker, else None."""
        ...


def advance(
    store: DeliveryStore,
    record: DeliveryRecord,
    change: Callable[[DeliveryRecord], DeliveryRecord],
    attempts: int = 5,
) -> DeliveryRecord:
    """Apply `change` to `record` and store it; on a concurrent update, re-read and re-apply.

    `change` must be a pure function of the record, since it may run more than once.
    """
    current = record
    for _ in range(attempts):
        updated = change(current)
        if updated == current:
            return current
        try:
            return store.update(updated, current)
        except RecordChangedError:
            fresh = store.get(record.key)
            if fresh is None:
                raise
            current = fresh
    raise RecordChangedError(f"record kept changing after {attempts} attempts")
