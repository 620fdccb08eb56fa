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

import contextlib
import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from telephony.adapters.storage import LazyTable, storage_errors
from telephony.errors import RecordChangedError, RecordExistsError
from telephony.events.model import OutcomeEvent
from telephony.outbound.reconcile import DueWork, StagedEvent
from telephony.outbound.records import DeliveryRecord
from telephony.sms.optouts import OptOut, optout_key

if TYPE_CHECKING:
    pass

OPTOUT_ROW_KEY = "optout"
SHARDS = "0123456789abcdef"  # a record's partition: the first hex digit of its key's hash
RECORD_ROW = "d-"  # d-<hash>: the record
PENDING_ROW = "p-"  # p-<hash>: the marker written by POST /api/messages
CHECK_ROW = "c-"  # c-<due>-<hash>: look at the record then; c-<due>-e<id>: a staged event
STAGED_EVENT = "e"
_DUE = "%Y%m%dT%H%M%S%f"  # fixed width, so RowKey order is time order


def partition_of(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def shard_of(digest: str) -> str:
    return digest[0]


def check_row(due: datetime, suffix: str) -> str:
    return f"{CHECK_ROW}{due.astimezone(UTC).strftime(_DUE)}-{suffix}"


class TableDeliveryStore(LazyTable):
    """DeliveryStore, EventOutbox and the reconcile index, on one table.

    Records are spread over 16 partitions by the first hex digit of their key's hash. Each
    partition also holds the index that reconcile reads: a `c-<due>-<hash>` row for each
    record it should look at after <due> (short of a final status, or with events no sink
    has confirmed), written in the same entity group transaction as the record, so the
    two never disagree; and `c-<due>-e<id>` rows for staged events. Reconcile reads due
    rows with one range query per partition and never scans records.
    """

    def get(self, key: str) -> DeliveryRecord | None:
        from azure.core.exceptions import ResourceNotFoundError

        digest = partition_of(key)
        with storage_errors("read a delivery record"):
            try:
                entity = self._client().get_entity(shard_of(digest), RECORD_ROW + digest)
            except ResourceNotFoundError:
                return None
        return _record(entity)

    def insert(self, record: DeliveryRecord) -> DeliveryRecord:
        entity = _entity(record)
        if record.check_after is None:
            return _with_etag(record, self._create(entity))
        index = _index_entity(record, record.check_after)
        results = self._transact([("create", entity), ("create", index)], record.key)
        return _with_etag(record, results[0])

    def insert_pending(self, record: DeliveryRecord) -> None:
        digest = partition_of(record.key)
        self._create({**_entity(record), "RowKey": PENDING_ROW + digest})

    def lookup(self, key: str) -> DeliveryRecord | None:
        # One query returns the record and the marker together.
        digest = partition_of(key)
        query = "PartitionKey eq @pk and ( RowKey eq @record or RowKey eq @pending )"
        names = {"pk": shard_of(digest), "record": RECORD_ROW + digest}
        with storage_errors("look up a delivery record"):
            entities = self._client().query_entities(
                query, parameters={**names, "pending": PENDING_ROW + digest}
            )
            by_row = {entity["RowKey"]: entity for entity in entities}
        found = by_row.get(RECORD_ROW + digest) or by_row.get(PENDING_ROW + digest)
        return _record(found) if found is not None else None

    def update(self, record: DeliveryRecord, was: DeliveryRecord) -> DeliveryRecord:
        from azure.core import MatchConditions
        from azure.data.tables import UpdateMode

        operations: list[Any] = [
            (
                "update",
                _entity(record),
                {
                    "mode": UpdateMode.REPLACE,
                    "etag": was.etag,
                    "match_condition": MatchConditions.IfNotModified,
                },
            )
        ]
        if was.check_after != record.check_after:
            if was.check_after is not None:
                operations.append(("delete", _index_entity(was, was.check_after)))
            if record.check_after is not None:
                operations.append(("upsert", _index_entity(record, record.check_after)))
        if len(operations) == 1:
            return self._replace(record, was)
        return _with_etag(record, self._transact(operations, record.key)[0])

    def due(self, now: datetime, limit: int) -> DueWork:
        """Keys of records and staged events due by `now`, oldest first per partition."""
        upper = check_row(now, "")
        found = DueWork()
        for shard in SHARDS:
            if len(found) >= limit:
                break
            query = "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high"
            names = {"pk": shard, "low": CHECK_ROW, "high": upper}
            with storage_errors("read the reconcile index"):
                rows = self._client().query_entities(
                    query, parameters=names, results_per_page=limit - len(found)
                )
                page: Any = next(rows.by_page(), [])
                for row in page:
                    _collect(found, row)
        return found

    def stage(self, events: Sequence[OutcomeEvent], due: datetime) -> None:
        by_shard: dict[str, list[Any]] = {}
        for event in events:
            row = _staged_entity(event, due)
            by_shard.setdefault(row["PartitionKey"], []).append(("upsert", row))
        for operations in by_shard.values():
            self._transact(operations, "staged events")

    def unstage(self, events: Sequence[OutcomeEvent], due: datetime) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        with storage_errors("remove a staged event"):
            for event in events:
                row = _staged_entity(event, due)
                with contextlib.suppress(ResourceNotFoundError):  # reconcile got there first
                    self._client().delete_entity(row["PartitionKey"], row["RowKey"])

    def _create(self, entity: dict[str, Any]) -> Any:
        from azure.core.exceptions import ResourceExistsError

        with storage_errors("insert a delivery record"):
            try:
                return self._client().create_entity(entity)
            except ResourceExistsError:
                raise RecordExistsError(entity["Key"]) from None

    def _replace(self, record: DeliveryRecord, was: DeliveryRecord) -> DeliveryRecord:
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError
        from azure.data.tables import UpdateMode

        with storage_errors("update a delivery record"):
            try:
                meta = self._client().update_entity(
                    _entity(record),
                    mode=UpdateMode.REPLACE,
                    etag=was.etag,
                    match_condition=MatchConditions.IfNotModified,
                )
            except ResourceModifiedError:
                raise RecordChangedError(record.key) from None
        return _with_etag(record, meta)

    def _transact(self, operations: list[Any], key: str) -> list[Any]:
        """One entity group transaction; the first operation's result is the record's."""
        from azure.data.tables import TableTransactionError

        with storage_errors("write a delivery record"):
            try:
                return list(self._client().submit_transaction(operations))
            except TableTransactionError as exc:
                if exc.status_code == 409 and operations[0][0] == "create":
                    raise RecordExistsError(key) from None
                if exc.status_code in (404, 409, 412):  # changed, or its index row did
                    raise RecordChangedError(key) from None
                raise


class TableOptOutStore(LazyTable):
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

    def was_applied(self, event: OptOut) -> bool:
        """One point read: the message's row, else (no MessageSid) the state now."""
        from azure.core.exceptions import ResourceNotFoundError

        message_row = self._message_row_key(event)
        if message_row is None:
            return self.is_opted_out(event.number) == event.opted_out
        with storage_errors("read consent"):
            try:
                self._client().get_entity(optout_key(event.number), message_row, select=["RowKey"])
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
    digest = partition_of(record.key)
    entity: dict[str, Any] = {
        "PartitionKey": shard_of(digest),
        "RowKey": RECORD_ROW + digest,
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
        "CheckAfter": record.check_after,
        "Outbox": _outbox_text(record.outbox),
        "Deferrals": record.deferrals or None,
    }
    return {name: value for name, value in entity.items() if value is not None}


def _outbox_text(outbox: tuple[OutcomeEvent, ...]) -> str | None:
    # A record has a handful of statuses, so its outbox stays far below the 64 KiB a
    # string property may hold.
    if not outbox:
        return None
    return json.dumps(
        [event.stored() for event in outbox], separators=(",", ":"), ensure_ascii=False
    )


def _index_entity(record: DeliveryRecord, due: datetime) -> dict[str, Any]:
    digest = partition_of(record.key)
    return {"PartitionKey": shard_of(digest), "RowKey": check_row(due, digest), "Key": record.key}


def _staged_entity(event: OutcomeEvent, due: datetime) -> dict[str, Any]:
    digest = partition_of(event.id)
    return {
        "PartitionKey": shard_of(digest),
        "RowKey": check_row(due, STAGED_EVENT + digest),
        "Event": json.dumps(event.stored(), separators=(",", ":"), ensure_ascii=False),
        "Due": due,
    }


def _collect(found: DueWork, row: Any) -> None:
    if "Event" in row:
        event = OutcomeEvent.from_stored(json.loads(row["Event"]))
        found.events.append(StagedEvent(event, _datetime(row["Due"])))
    elif "Key" in row:
        found.keys.append(row["Key"])


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
        outbox=tuple(
            OutcomeEvent.from_stored(stored) for stored in json.loads(entity.get("Outbox") or "[]")
        ),
        check_after=_datetime(entity["CheckAfter"]) if entity.get("CheckAfter") else None,
        deferrals=int(entity.get("Deferrals", 0)),
        etag=entity.metadata["etag"],
    )


def _datetime(value: Any) -> datetime:
    # The SDK returns its own datetime subclass; keep plain datetimes in the domain.
    return datetime.fromtimestamp(value.timestamp(), tz=value.tzinfo)


def _with_etag(record: DeliveryRecord, meta: Any) -> DeliveryRecord:
    from dataclasses import replace

    return replace(record, etag=meta["etag"])
