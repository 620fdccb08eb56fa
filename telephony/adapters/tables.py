"""Delivery records and opt-outs in Azure Table Storage (azure-data-tables).

Delivery records: one entity per idempotency key. Keys may hold characters that Table keys forbid
(/ \\ # ?), so the PartitionKey is the key's SHA-256; the key itself is a property.
Claims are inserts that fail when the entity exists; updates carry the ETag they read.

Opt-outs: one entity per number, keyed by its hash (telephony/sms/optouts.py says why).
Each table is created on first use if it is missing; the SDK is imported on first use, so
the webhook paths only load it for STOP and START.
"""

from __future__ import annotations

import contextlib
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
    """OptOutStore on one table."""

    def add(self, optout: OptOut) -> None:
        """One upsert: a second STOP refreshes the time instead of failing."""
        from azure.data.tables import UpdateMode

        entity: dict[str, Any] = {
            "PartitionKey": optout_key(optout.number),
            "RowKey": OPTOUT_ROW_KEY,
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
            self._client().delete_entity(optout_key(number), OPTOUT_ROW_KEY)

    def is_opted_out(self, number: str) -> bool:
        """One point read of the entity (selecting no properties beyond its key)."""
        from azure.core.exceptions import ResourceNotFoundError

        with storage_errors("read opt-outs"):
            try:
                self._client().get_entity(optout_key(number), OPTOUT_ROW_KEY, select=["RowKey"])
            except ResourceNotFoundError:
                return False
        return True


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
