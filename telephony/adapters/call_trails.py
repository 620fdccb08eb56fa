"""The trails of calls in a flow, in Azure Table Storage (azure-data-tables).

One partition per call, keyed by the SHA-256 of its CallSid (a SID is no key of ours, and
a hash has one length and no character a key forbids), with three kinds of row:

- `e-<nnn>`: the call's webhooks, numbered from 000 in the order they were kept.
- `n`: how many were kept (`Count`), and whether more came past the bound (`Truncated`).
  An entry is written in one entity group transaction with the count it takes, conditional
  on the count's ETag, so two webhooks of one call never take one number.
- `done`: the call's event was published; a conditional insert, so one caller wins.

A webhook costs one query (the `n` and `done` rows) and one transaction; past MAX_ENTRIES
or once `done` exists, the query alone (and one write when the bound is first passed), so
neither a long call nor a replayed webhook grows a partition past 102 rows. The end of a
flow reads the partition (one query) and inserts `done`.

Table Storage has no time to live, and trails are not deleted: a trail is small (typically
a few rows of a few hundred bytes; at most 102 rows of a few KB), and nothing reads one
once its call is over. To purge old ones, an operator deletes the rows whose `Timestamp`
is more than a day old (longer than any call: Twilio's default time limit is 4 hours),
e.g. with Storage Explorer, or `az storage entity query` with the filter
`Timestamp lt datetime'2026-01-01T00:00:00Z'` and `az storage entity delete` for each row
it returns. The query scans the table, so run it off-peak.

The table is created on first use if it is missing; the SDK is imported on first use.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from telephony.adapters.storage import LazyTable, storage_errors
from telephony.errors import RecordChangedError
from telephony.flows.trail import MAX_ENTRIES, CallTrail, TrailEntry

if TYPE_CHECKING:
    pass

ENTRY_ROW = "e-"
COUNT_ROW = "n"
DONE_ROW = "done"
# Attempts at taking an entry number while other webhooks of the same call take them too.
# Twilio sends one call's webhooks one after another, so a race is rare and short.
ATTEMPTS = 5
# Properties of an entry, by TrailEntry field (steps are kept as one JSON array).
_FIELDS = {
    "flow": "Flow", "step": "Step", "event": "Event", "digits": "Digits", "speech": "Speech",
    "dial_status": "DialStatus", "recording_url": "RecordingUrl", "from_": "From", "to": "To",
    "direction": "Direction",
}  # fmt: skip


def trail_partition(call_sid: str) -> str:
    return hashlib.sha256(call_sid.encode("utf-8")).hexdigest()


def entry_row(number: int) -> str:
    return f"{ENTRY_ROW}{number:03d}"  # fixed width, so RowKey order is the order kept


@dataclass(frozen=True)
class _State:
    """The `n` and `done` rows of a call, as read."""

    count: Any | None  # the `n` entity (its ETag guards the next number), None before any
    done: bool

    @property
    def kept(self) -> int:
        return int(self.count["Count"]) if self.count is not None else 0


class TableCallTrailStore(LazyTable):
    """CallTrailStore on one table (CALL_TRAILS_TABLE_NAME)."""

    def append(self, call_sid: str, entry: TrailEntry) -> None:
        partition = trail_partition(call_sid)
        for _ in range(ATTEMPTS):
            state = self._state(partition)
            if state.done:
                return  # its event is out: a late or replayed webhook adds nothing
            if state.kept >= MAX_ENTRIES:
                self._mark_truncated(partition, state)
                return
            if self._take(partition, state, entry.bounded()):
                return
        raise RecordChangedError("a call's trail kept changing while a webhook was kept")

    def read(self, call_sid: str) -> CallTrail:
        partition = trail_partition(call_sid)
        with storage_errors("read a call's trail"):
            rows = list(
                self._client().query_entities("PartitionKey eq @pk", parameters={"pk": partition})
            )
        by_row = {row["RowKey"]: row for row in rows}
        count = by_row.get(COUNT_ROW)
        return CallTrail(
            entries=tuple(
                _entry(by_row[key]) for key in sorted(by_row) if key.startswith(ENTRY_ROW)
            ),
            truncated=bool(count is not None and count.get("Truncated")),
            finished=DONE_ROW in by_row,
        )

    def finish(self, call_sid: str) -> bool:
        from azure.core.exceptions import ResourceExistsError

        done = {"PartitionKey": trail_partition(call_sid), "RowKey": DONE_ROW}
        with storage_errors("mark a call's event published"):
            try:
                self._client().create_entity({**done, "At": datetime.now(UTC)})
            except ResourceExistsError:
                return False
        return True

    def _state(self, partition: str) -> _State:
        # The SDK substitutes @names between spaces, hence the spaced parentheses.
        query = "PartitionKey eq @pk and ( RowKey eq @count or RowKey eq @done )"
        names = {"pk": partition, "count": COUNT_ROW, "done": DONE_ROW}
        with storage_errors("read a call's trail"):
            rows = {
                row["RowKey"]: row for row in self._client().query_entities(query, parameters=names)
            }
        return _State(rows.get(COUNT_ROW), DONE_ROW in rows)

    def _take(self, partition: str, state: _State, entry: TrailEntry) -> bool:
        """Write `entry` under the next number with the new count; False when another
        webhook of the call took that number first (read again)."""
        number = state.kept
        count = {"PartitionKey": partition, "RowKey": COUNT_ROW, "Count": number + 1}
        operations: list[Any] = [
            _put(count, state.count),
            ("create", _entity(partition, entry_row(number), entry)),
        ]
        return self._transact(operations)

    def _mark_truncated(self, partition: str, state: _State) -> None:
        """Note once that a webhook past the bound was not kept; later ones only read."""
        if state.count is None or state.count.get("Truncated"):
            return
        # False: a concurrent webhook changed the count first, and noted it too.
        self._transact([_put({**state.count, "Truncated": True}, state.count)])

    def _transact(self, operations: list[Any]) -> bool:
        from azure.data.tables import TableTransactionError

        with storage_errors("keep a call's webhook"):
            try:
                self._client().submit_transaction(operations)
            except TableTransactionError as exc:
                # 409: the count or the entry was created, 412: the count changed.
                if exc.status_code in (409, 412):
                    return False
                raise
        return True


def _put(entity: dict[str, Any], current: Any | None) -> Any:
    """Create the row, or replace it if it is still as it was read."""
    from azure.core import MatchConditions
    from azure.data.tables import UpdateMode

    row = {"PartitionKey": entity["PartitionKey"], "RowKey": entity["RowKey"], **_plain(entity)}
    if current is None:
        return ("create", row)
    condition = {"etag": current.metadata["etag"], "match_condition": MatchConditions.IfNotModified}
    return ("update", row, {"mode": UpdateMode.REPLACE, **condition})


def _plain(entity: Any) -> dict[str, Any]:
    return {k: v for k, v in dict(entity).items() if k not in ("PartitionKey", "RowKey")}


def _entity(partition: str, row_key: str, entry: TrailEntry) -> dict[str, Any]:
    properties = {name: getattr(entry, field) for field, name in _FIELDS.items()}
    return {
        "PartitionKey": partition,
        "RowKey": row_key,
        "At": entry.at,
        "Steps": json.dumps(list(entry.steps), separators=(",", ":")),
        **{name: value for name, value in properties.items() if value is not None},
    }


def _entry(row: Any) -> TrailEntry:
    fields = {field: row.get(name) for field, name in _FIELDS.items()}
    return TrailEntry(at=_datetime(row["At"]), steps=_steps(row.get("Steps")), **fields)


def _steps(text: str | None) -> tuple[str, ...]:
    values: Iterable[object] = json.loads(text) if text else ()
    return tuple(str(value) for value in values)


def _datetime(value: Any) -> datetime:
    # The SDK returns its own datetime subclass; keep plain datetimes in the domain.
    return datetime.fromtimestamp(value.timestamp(), tz=value.tzinfo or UTC)
