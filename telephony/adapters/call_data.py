"""The data of calls in a flow that declares data, in Azure Table Storage (azure-data-tables).

One row per call, written before the call is placed and read by each of its webhooks:
PartitionKey is the data id (32 hex digits, telephony/flows/data.py call_data_id), RowKey
is `data`, and the row holds the flow (`Flow`), the values as compact JSON (`Values`, at
most 8,192 characters: one string property holds 32 K) and when it was written (`At`).
A partition per call spreads the load, and a webhook costs one point read (none when the
process has read the row before: CachedCallData).

The row is deleted when Twilio's final status callback of the call arrives. What no
callback deletes (a call Twilio never placed, a callback that failed) stays: Table Storage
has no time to live, so an operator deletes rows whose `Timestamp` is more than a day old
(longer than any call: Twilio's default time limit is 4 hours; a retried queued command is
placed within minutes), e.g. with `az storage entity query` and the filter
`Timestamp lt datetime'2026-01-01T00:00:00Z'`, then `az storage entity delete` for each row.

The table is created on first use if it is missing; the SDK is imported on first use.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from telephony.adapters.storage import LazyTable, storage_errors
from telephony.flows.data import CallData

DATA_ROW = "data"


class TableCallDataStore(LazyTable):
    """CallDataStore on one table (CALL_DATA_TABLE_NAME)."""

    def put(self, data_id: str, data: CallData) -> None:
        from azure.data.tables import UpdateMode

        entity = {
            "PartitionKey": data_id,
            "RowKey": DATA_ROW,
            "Flow": data.flow,
            "Values": json.dumps(dict(data.values), ensure_ascii=False, separators=(",", ":")),
            "At": datetime.now(UTC),
        }
        with storage_errors("keep a call's data"):
            # Replace: a command delivered again (after a failed attempt) writes its own.
            self._client().upsert_entity(entity, mode=UpdateMode.REPLACE)

    def get(self, data_id: str) -> CallData | None:
        from azure.core.exceptions import ResourceNotFoundError

        with storage_errors("read a call's data"):
            try:
                row = self._client().get_entity(data_id, DATA_ROW)
            except ResourceNotFoundError:
                return None
        return _call_data(row)

    def forget(self, data_id: str) -> None:
        with storage_errors("delete a call's data"):
            # The SDK treats a row that is not there as deleted.
            self._client().delete_entity(data_id, DATA_ROW)


def _call_data(row: Any) -> CallData | None:
    """The row as CallData; None for a row this app did not write (nothing to say)."""
    flow, text = row.get("Flow"), row.get("Values")
    if not isinstance(flow, str) or not isinstance(text, str):
        return None
    try:
        values = json.loads(text)
    except ValueError:
        return None
    return CallData(flow, values) if isinstance(values, dict) else None
