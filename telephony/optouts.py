"""Numbers that opted out of messages (STOP), and the Azure Table Storage that keeps them.

An opt-out is keyed by the SHA-256 of the E.164 number, so the number never appears as a
key, in a listing of the table, or in a log line about it. A hash of a phone number is not
anonymous (numbers can be enumerated); the table is protected like the deliveries table,
by the app's identity only. The entity keeps when the opt-out happened, the keyword and
the inbound message's SID, as evidence.

The SDK is imported on first use, like telephony/table_store.py: the webhook paths only
touch the table for STOP and START.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from telephony.storage import ensure_table, storage_errors

if TYPE_CHECKING:
    from azure.data.tables import TableClient, TableServiceClient

OPTED_OUT = "opted_out"  # the reason recorded on a send refused for an opted-out number
ROW_KEY = "optout"


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


class RecipientOptedOutError(Exception):
    """A send to a number that opted out; handlers answer 409, the worker rejects."""

    message = "the recipient has opted out"
    field = "to"


def optout_key(number: str) -> str:
    """The table key of `number`: hex SHA-256 of its E.164 form."""
    return hashlib.sha256(number.encode("utf-8")).hexdigest()


def ensure_can_contact(store: OptOutStore, number: str) -> None:
    """Raise RecipientOptedOutError when `number` opted out (one point read)."""
    if store.is_opted_out(number):
        raise RecipientOptedOutError(RecipientOptedOutError.message)


class TableOptOutStore:
    """OptOutStore on one table, created on first use if it is missing."""

    def __init__(self, service: TableServiceClient, table_name: str) -> None:
        self._service = service
        self._table_name = table_name
        self._table: TableClient | None = None
        self._lock = threading.Lock()

    def add(self, optout: OptOut) -> None:
        """One upsert: a second STOP refreshes the time instead of failing."""
        from azure.data.tables import UpdateMode

        entity: dict[str, Any] = {
            "PartitionKey": optout_key(optout.number),
            "RowKey": ROW_KEY,
            "Keyword": optout.keyword,
            "OptedOutAt": optout.at,
        }
        if optout.message_sid:
            entity["MessageSid"] = optout.message_sid
        with storage_errors("record an opt-out"):
            self._client().upsert_entity(entity, mode=UpdateMode.REPLACE)

    def remove(self, number: str) -> None:
        """One delete; a number that never opted out is not an error."""
        from azure.core.exceptions import ResourceNotFoundError

        # START from a number that never opted out is no error.
        with storage_errors("remove an opt-out"), contextlib.suppress(ResourceNotFoundError):
            self._client().delete_entity(optout_key(number), ROW_KEY)

    def is_opted_out(self, number: str) -> bool:
        """One point read of the entity (selecting no properties beyond its key)."""
        from azure.core.exceptions import ResourceNotFoundError

        with storage_errors("read opt-outs"):
            try:
                self._client().get_entity(optout_key(number), ROW_KEY, select=["RowKey"])
            except ResourceNotFoundError:
                return False
        return True

    def _client(self) -> TableClient:
        if self._table is None:
            with self._lock:
                if self._table is None:
                    self._table = ensure_table(self._service, self._table_name)
        return self._table
