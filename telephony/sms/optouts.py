"""Numbers that opted out of messages (STOP): the record, where it is kept, the check.

An opt-out is keyed by the SHA-256 of the E.164 number, so the number never appears as a
key, in a listing of the table, or in a log line about it. A hash of a phone number is not
anonymous (numbers can be enumerated); the table is protected like the deliveries table,
by the app's identity only. The entity keeps when the opt-out happened, the keyword and
the inbound message's SID, as evidence.

The Table Storage store is telephony/adapters/tables.py (TableOptOutStore).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from telephony.errors import RecipientOptedOutError

OPTED_OUT = "opted_out"  # the reason recorded on a send refused for an opted-out number


@dataclass(frozen=True)
class OptOut:
    """`number` asked not to be contacted, with `keyword`, at `at`."""

    number: str
    keyword: str
    at: datetime
    message_sid: str | None = None


class OptOutStore(Protocol):
    """Where opt-outs live; every method is one round trip to the store."""

    def add(self, optout: OptOut) -> None:
        """Record (or refresh) an opt-out."""
        ...

    def remove(self, number: str) -> None:
        """Forget the opt-out of `number`, if any (opt-in)."""
        ...

    def is_opted_out(self, number: str) -> bool:
        """True when `number` has opted out."""
        ...


def optout_key(number: str) -> str:
    """The table key of `number`: hex SHA-256 of its E.164 form."""
    return hashlib.sha256(number.encode("utf-8")).hexdigest()


def ensure_can_contact(store: OptOutStore, number: str) -> None:
    """Raise RecipientOptedOutError when `number` opted out (one point read)."""
    if store.is_opted_out(number):
        raise RecipientOptedOutError()
