"""Delivery records and opt-outs in Azure Table Storage (azure-data-tables).

Delivery records: one entity per idempotency key. Keys may hold characters that Table keys forbid
(/ \\ # ?), so the PartitionKey is the key's SHA-256; the key itself is a property.
Claims are inserts that fail when the entity exists; updates carry the ETag they read.

Opt-outs: one partition per number, keyed by its hash (telephony/sms/optouts.py says why):
an `optout` row while opted out, the newest consent event, one row per consent message;
written in entity group transactions conditional on ETags.
Each table is created on first use if it is missing; the SDK is imported on first use, so
the webhook paths only load it for STOP and START.
"""

from __future__ import annotations

import hashlib
import threading
from datetime import datetime
from typing import TYPE_CHECKING, Any

from telephony.adapters.storage import ensure_table, storage_errors
from telephony.errors import RecordChangedError, RecordExistsError
from telephony.outbound.records import DeliveryRecord
from telephony.sms.optouts import OptOut, optout_key

if TYPE_CHECKING:
    from azure.data.tables import TableClient, TableServiceClient

ROW_KEY = "delivery"
PENDING_ROW_KEY = "pending"  # the marker written by POST /api/messages
OPTOUT_ROW_KEY = "optout"


def partition_of(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class _Table:
    """One table, created on first use if it is missing (one round trip, once)."""

    def __init__(self, service: TableServiceClient, table_name: str) -> None:
        self._service = service
        self._table_name = table_name
        self._table: TableClient | None = None
        self._lock = threading.Lock()

    def _client(self) -> TableClient:
        if self._table is None:
            with self._lock:
                if self._table is None:
                    self._table = ensure_table(self._service, self._table_name)
        return self._table


class TableDeliveryStore(_Table):
    """DeliveryStore on one table."""

    def get(self, key: str) -> DeliveryRecord | None:
        from azure.core.exceptions import ResourceNotFoundError

        with storage_errors("read a delivery record"):
            try:
                entity = self._client().get_entity(partition_of(key), ROW_KEY)
            except ResourceNotFoundError:
                return None
        return _record(entity)

    def insert(self, record: DeliveryRecord) -> DeliveryRecord:
        return _with_etag(record, self._create(_entity(record)))

    def insert_pending(self, record: DeliveryRecord) -> None:
        self._create({**_entity(record), "RowKey": PENDING_ROW_KEY})

    def lookup(self, key: str) -> DeliveryRecord | None:
        # One partition query returns the record and the marker together.
        query = "PartitionKey eq @pk"
        with storage_errors("look up a delivery record"):
            entities = self._client().query_entities(query, parameters={"pk": partition_of(key)})
            by_row = {entity["RowKey"]: entity for entity in entities}
        found = by_row.get(ROW_KEY) or by_row.get(PENDING_ROW_KEY)
        return _record(found) if found is not None else None

    def _create(self, entity: dict[str, Any]) -> Any:
        from azure.core.exceptions import ResourceExistsError

        with storage_errors("insert a delivery record"):
            try:
                return self._client().create_entity(entity)
            except ResourceExistsError:
                raise RecordExistsError(entity["Key"]) from None

    def update(self, record: DeliveryRecord) -> DeliveryRecord:
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError
        from azure.data.tables import UpdateMode

        with storage_errors("update a delivery record"):
            try:
                meta = self._client().update_entity(
                    _entity(record),
                    mode=UpdateMode.REPLACE,
                    etag=record.etag,
                    match_condition=MatchConditions.IfNotModified,
                )
            except ResourceModifiedError:
                raise RecordChangedError(record.key) from None
        return _with_etag(record, meta)


class TableOptOutStore(_Table):
    """OptOutStore on one table. A number's partition (optout_key) holds up to three kinds of row:

    - `optout`, while the number is opted out: Keyword, OptedOutAt, MessageSid. Its
      existence is the opt-out, as it always was, so the check before a send stays one
      point read, and entities written before consent events were ordered still count.
    - `consent`, the newest consent event kept: OptedOut, Keyword, EventAt, TimeSource,
      MessageSid. Every write is conditional on its ETag and on the `optout` row's.
    - `message-<MessageSid>-out` (`-in`), one per consent message applied, so that a
      replay is known.

    A consent event costs one read (a query of those rows in the partition) and one entity
    group transaction, read again and retried when a concurrent write got there first.
    """

    CONSENT_ROW_KEY = "consent"
    MESSAGE_ROW_PREFIX = "message-"
    ATTEMPTS = 5  # a number's own webhooks racing each other; more is something else

    def apply(self, event: OptOut) -> bool:
        """Read, decide with ConsentEvent.overrides, write conditionally; retried on a race."""
        key = optout_key(event.number)
        message_row = self._message_row_key(event)
        for _ in range(self.ATTEMPTS):
            rows = self._consent_rows(key, message_row)
            if message_row in rows or not event.overrides(self._newest(rows)):
                return False
            if self._write(key, event, rows, message_row):
                return True
        raise RecordChangedError("the consent of a number kept changing while it was recorded")

    def is_opted_out(self, number: str) -> bool:
        """One point read of the entity (selecting no properties beyond its key)."""
        from azure.core.exceptions import ResourceNotFoundError

        with storage_errors("read opt-outs"):
            try:
                self._client().get_entity(optout_key(number), OPTOUT_ROW_KEY, select=["RowKey"])
            except ResourceNotFoundError:
                return False
        return True

    def _message_row_key(self, event: OptOut) -> str | None:
        """`message-<MessageSid>-out` (or `-in`): a replay repeats the SID and the kind."""
        sid = event.message_sid
        if sid is None:
            return None
        # Twilio SIDs are letters and digits; anything else is hashed into a valid RowKey.
        plain = sid.isascii() and sid.isalnum() and len(sid) <= 64
        kind = "out" if event.opted_out else "in"
        return f"{self.MESSAGE_ROW_PREFIX}{sid if plain else partition_of(sid)}-{kind}"

    def _consent_rows(self, key: str, message_row: str | None) -> dict[str, Any]:
        """The partition's `optout` and `consent` rows and this message's row, by RowKey."""
        wanted = {"optout": OPTOUT_ROW_KEY, "consent": self.CONSENT_ROW_KEY}
        if message_row is not None:
            wanted["message"] = message_row
        # The SDK substitutes @names between spaces, hence the spaced parentheses.
        rows = " or ".join(f"RowKey eq @{name}" for name in wanted)
        with storage_errors("read consent"):
            entities = self._client().query_entities(
                f"PartitionKey eq @pk and ( {rows} )", parameters={"pk": key, **wanted}
            )
            return {entity["RowKey"]: entity for entity in entities}

    def _newest(self, rows: dict[str, Any]) -> OptOut | None:
        """The newest consent event the rows hold; an `optout` row written before events
        were ordered is an opt-out at its OptedOutAt (the time it was received)."""
        kept: list[OptOut] = []
        if (consent := rows.get(self.CONSENT_ROW_KEY)) is not None:
            kept.append(
                OptOut(
                    "",
                    consent.get("Keyword", ""),
                    _datetime(consent["EventAt"]),
                    consent.get("MessageSid"),
                    opted_out=bool(consent["OptedOut"]),
                    time_source="twilio" if consent.get("TimeSource") == "twilio" else "received",
                )
            )
        if (optout := rows.get(OPTOUT_ROW_KEY)) is not None:
            at = _datetime(optout["OptedOutAt"])
            kept.append(OptOut("", optout.get("Keyword", ""), at, optout.get("MessageSid")))
        # The newest; at the same time, the opt-out.
        return max(kept, key=lambda kept_event: (kept_event.at, kept_event.opted_out), default=None)

    def _write(
        self, key: str, event: OptOut, rows: dict[str, Any], message_row: str | None
    ) -> bool:
        """One transaction; False when a row changed since it was read (read again)."""
        from azure.data.tables import TableTransactionError

        facts = {"OptedOut": event.opted_out, "Keyword": event.keyword, "EventAt": event.at}
        sid = {"MessageSid": event.message_sid} if event.message_sid else {}
        operations: list[Any] = []
        if message_row is not None:
            operations.append(("create", {"PartitionKey": key, "RowKey": message_row, **facts}))
        consent = {**facts, "TimeSource": event.time_source, **sid}
        operations.append(self._put(key, self.CONSENT_ROW_KEY, consent, rows))
        if event.opted_out:
            optout = {"Keyword": event.keyword, "OptedOutAt": event.at, **sid}
            operations.append(self._put(key, OPTOUT_ROW_KEY, optout, rows))
        elif OPTOUT_ROW_KEY in rows:
            current = rows[OPTOUT_ROW_KEY]
            operations.append(("delete", current, self._if_unchanged(current)))
        with storage_errors("record consent"):
            try:
                self._client().submit_transaction(operations)
            except TableTransactionError as exc:
                # 409: a row was created, 412: changed, 404: deleted since the read.
                if exc.status_code in (404, 409, 412):
                    return False
                raise
        return True

    def _put(self, key: str, row_key: str, properties: dict[str, Any], rows: dict[str, Any]) -> Any:
        """A transaction operation: create the row, or replace it if it is still as read."""
        from azure.data.tables import UpdateMode

        entity = {"PartitionKey": key, "RowKey": row_key, **properties}
        if row_key not in rows:
            return ("create", entity)
        return ("update", entity, {"mode": UpdateMode.REPLACE, **self._if_unchanged(rows[row_key])})

    @staticmethod
    def _if_unchanged(entity: Any) -> dict[str, Any]:
        from azure.core import MatchConditions

        return {"etag": entity.metadata["etag"], "match_condition": MatchConditions.IfNotModified}


def _entity(record: DeliveryRecord) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "PartitionKey": partition_of(record.key),
        "RowKey": ROW_KEY,
        "Key": record.key,
        "Kind": record.kind,
        "To": record.to,
        "Status": record.status,
        "CreatedAt": record.created_at,
        "UpdatedAt": record.updated_at,
        "Attempts": record.attempts,
        "TwilioSid": record.twilio_sid,
        "ErrorCode": record.error_code,
        "Reason": record.reason,
        "LeaseUntil": record.lease_until,
    }
    return {name: value for name, value in entity.items() if value is not None}


def _record(entity: Any) -> DeliveryRecord:
    return DeliveryRecord(
        key=entity["Key"],
        kind=entity["Kind"],
        to=entity["To"],
        status=entity["Status"],
        created_at=_datetime(entity["CreatedAt"]),
        updated_at=_datetime(entity["UpdatedAt"]),
        attempts=int(entity.get("Attempts", 0)),
        twilio_sid=entity.get("TwilioSid"),
        error_code=entity.get("ErrorCode"),
        reason=entity.get("Reason"),
        lease_until=_datetime(entity["LeaseUntil"]) if entity.get("LeaseUntil") else None,
        etag=entity.metadata["etag"],
    )


def _datetime(value: Any) -> datetime:
    # The SDK returns its own datetime subclass; keep plain datetimes in the domain.
    return datetime.fromtimestamp(value.timestamp(), tz=value.tzinfo)


def _with_etag(record: DeliveryRecord, meta: Any) -> DeliveryRecord:
    from dataclasses import replace

    return replace(record, etag=meta["etag"])
