"""Consent: who opted out of being contacted (STOP) and back in (START); the check before a send.

**One person, one key.** A consent is about a number, whatever channel it came on:
`whatsapp:+15558675310` and `+15558675310` are one person, so a STOP on WhatsApp stops
calls and SMS to the number, and a START on either channel undoes a STOP on the other.
`consent_number` drops the channel prefix and `optout_key` hashes what is left; stores key
by `optout_key` and nothing else, so every record and every check (`ensure_can_contact`)
agree.

The key is the SHA-256 of the number, so the number never appears as a key, in a listing of
the table, or in a log line about it. A hash of a phone number is not anonymous (numbers
can be enumerated); the table is protected like the deliveries table, by the app's
identity only.

**Order.** An older consent event never overrides a newer one. Twilio's webhook carries
no time, and a validly signed request can be replayed at any later time. A store applies
each MessageSid at most once, so a replayed message is ignored whatever its time; events
are ordered by their time, which is when the app received them. A `MessageClock` (Twilio's
`date_created` for the message) can date them instead; the app does not wire one yet, as
each STOP and START would then cost a Twilio REST request. Stores write
conditionally (an ETag), so two webhooks processed at once cannot reorder either. At the
same time, an opt-out wins: it is the safe side.

The Table Storage store is telephony/adapters/tables.py (TableOptOutStore).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal, Protocol

from telephony.errors import RecipientOptedOutError
from telephony.events import OPTOUT_CHANGED

if TYPE_CHECKING:
    from telephony.events.model import OutcomeEvent

OPTED_OUT = "opted_out"  # the reason recorded on a send refused for an opted-out number

# Where the time that orders a consent event comes from: Twilio's date_created of the
# message, or the app's clock when it received the webhook.
TimeSource = Literal["twilio", "received"]

# A channel address: a scheme such as whatsapp: or sms: before an E.164 number.
_CHANNEL_ADDRESS = re.compile(r"[A-Za-z][A-Za-z0-9.+-]*:(\+\d+)")


@dataclass(frozen=True)
class ConsentEvent:
    """`number` opted out (STOP...) or, with `opted_out` False, back in (START...).

    `at` orders the events of one number (see the module docstring); `message_sid` is the
    inbound message, kept as evidence and to recognise a replay.
    """

    number: str
    keyword: str
    at: datetime
    message_sid: str | None = None
    opted_out: bool = True
    time_source: TimeSource = "received"

    def overrides(self, newest: ConsentEvent | None) -> bool:
        """Whether this event decides the consent over `newest`, the newest event kept.

        A newer event wins, an older one never does; at the same time (Twilio dates to
        the second) an opt-in does not undo an opt-out, and anything else applies. The
        message that `newest` came from never applies again.
        """
        if newest is None:
            return True
        if self.replays(newest):
            return False
        if self.at != newest.at:
            return self.at > newest.at
        return self.opted_out or not newest.opted_out

    def replays(self, applied: ConsentEvent) -> bool:
        """Whether this is `applied` again: the same message (MessageSid) to the same end.

        A message says one thing, so a replay repeats both; matching the kind too keeps a
        message that somehow arrives as both STOP and START from being half ignored.
        """
        return (
            self.message_sid is not None
            and self.message_sid == applied.message_sid
            and self.opted_out == applied.opted_out
        )


# An opt-out is a consent event; the name older callers import.
OptOut = ConsentEvent


class OptOutStore(Protocol):
    """Where consent lives, keyed by `optout_key`."""

    def apply(self, event: ConsentEvent) -> bool:
        """Keep `event` as the number's consent unless it is a replay or not the newest.

        False when the store already applied `event.message_sid`, or holds an event that
        `event` does not override (ConsentEvent.overrides). The write is conditional on
        what was read, so concurrent calls for one number end in the newest event.
        """
        ...

    def is_opted_out(self, number: str) -> bool:
        """True when `number`, on any channel, has opted out (one round trip)."""
        ...

    def was_applied(self, event: ConsentEvent) -> bool:
        """Whether `event` was kept (reconcile asks before it publishes its event)."""
        ...


class MessageClock(Protocol):
    """When Twilio created a message: the time that orders consent events."""

    def message_created_at(self, message_sid: str) -> datetime | None:
        """Twilio's `date_created` of the message (timezone-aware), or None when Twilio
        does not know the SID. Raises an UnavailableError when Twilio cannot be asked."""
        ...


def consent_changed_event(event: ConsentEvent, source: str) -> OutcomeEvent:
    """telephony.optout.changed: `event` was kept; `source` says who found the keyword."""
    from telephony.events.model import OutcomeEvent, fact_id, utc_text  # only with events on

    number = consent_number(event.number)
    state = "opted_out" if event.opted_out else "opted_in"
    return OutcomeEvent(
        id=fact_id(OPTOUT_CHANGED, number, event.message_sid or utc_text(event.at), state),
        type=OPTOUT_CHANGED,
        subject=f"numbers/{number}",
        time=event.at,
        data={
            "number": number,
            "address": event.number,
            "state": state,
            "keyword": event.keyword,
            "source": source,
            "message_sid": event.message_sid,
            "at": utc_text(event.at),
            "time_source": event.time_source,
        },
    )


def consent_of(event: OutcomeEvent) -> ConsentEvent:
    """The consent event a telephony.optout.changed event announces."""
    data = event.data
    return ConsentEvent(
        number=str(data["address"]),
        keyword=str(data["keyword"]),
        at=datetime.fromisoformat(str(data["at"])),
        message_sid=data.get("message_sid"),
        opted_out=data["state"] == "opted_out",
        time_source="twilio" if data.get("time_source") == "twilio" else "received",
    )


def consent_number(address: str) -> str:
    """The number a consent is about: `address` without a channel prefix (whatsapp:)."""
    address = address.strip()
    match = _CHANNEL_ADDRESS.fullmatch(address)
    return match.group(1) if match else address


def optout_key(number: str) -> str:
    """The store key of `number` on any channel: hex SHA-256 of its E.164 form."""
    return hashlib.sha256(consent_number(number).encode("utf-8")).hexdigest()


def ensure_can_contact(store: OptOutStore, number: str) -> None:
    """Raise RecipientOptedOutError when `number` opted out (one point read)."""
    if store.is_opted_out(number):
        raise RecipientOptedOutError()
