"""The data of calls in Table Storage, on Azurite: kept by id, read back, replaced, deleted.

GIVEN the Table store of call data on Azurite, WHEN a call's data is kept, THEN it reads
back as written (under its id, nothing of the values in a key), a second write under the
same id replaces it, a delete leaves nothing (twice is fine), a row the app did not write
reads as none, and an unreachable table is StorageUnavailableError, naming no value.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from azure.data.tables import TableServiceClient

from localpeers.azurite import Azurite, AzuritePorts, connection_string
from localpeers.processes import free_port
from telephony.adapters.call_data import DATA_ROW, TableCallDataStore
from telephony.adapters.storage import table_service
from telephony.errors import StorageUnavailableError
from telephony.flows.data import CallData, call_data_id

GIVEN = {"time": "Friday at 3 PM", "place": "Rue de l'Église, 3ᵉ étage", "room": 12}


@pytest.fixture
def table(azurite: Azurite) -> str:
    return f"calldata{uuid.uuid4().hex[:10]}"


def store_on(azurite: Azurite, table: str) -> TableCallDataStore:
    """A store with its own client, as another worker would have."""
    return TableCallDataStore(
        table_service({"AzureWebJobsStorage": azurite.connection_string}), table
    )


def rows(azurite: Azurite, table: str) -> list[dict[str, Any]]:
    service = TableServiceClient.from_connection_string(azurite.connection_string)
    return [dict(row) for row in service.get_table_client(table).list_entities()]


def test_data_reads_back_as_written_under_its_id(azurite: Azurite, table: str) -> None:
    data_id = call_data_id("remind-42")
    store_on(azurite, table).put(data_id, CallData("appointment-reminder", GIVEN))
    # Another worker reads it.
    assert store_on(azurite, table).get(data_id) == CallData("appointment-reminder", GIVEN)
    [row] = rows(azurite, table)
    assert (row["PartitionKey"], row["RowKey"], row["Flow"]) == (
        data_id,
        DATA_ROW,
        "appointment-reminder",
    )
    assert json.loads(row["Values"]) == GIVEN


def test_a_second_write_under_the_same_id_replaces_the_first(azurite: Azurite, table: str) -> None:
    store = store_on(azurite, table)
    data_id = call_data_id("remind-43")
    store.put(data_id, CallData("appointment-reminder", {"time": "Friday", "place": "A"}))
    store.put(data_id, CallData("appointment-reminder", {"time": "Monday", "place": "B"}))
    assert store.get(data_id) == CallData("appointment-reminder", {"time": "Monday", "place": "B"})
    assert len(rows(azurite, table)) == 1


def test_deleted_data_is_gone_and_deleting_again_is_fine(azurite: Azurite, table: str) -> None:
    store = store_on(azurite, table)
    data_id = call_data_id("remind-44")
    store.put(data_id, CallData("appointment-reminder", GIVEN))
    store.forget(data_id)
    assert store.get(data_id) is None
    store.forget(data_id)
    store.forget(call_data_id("never-written"))
    assert rows(azurite, table) == []


def test_a_row_the_app_did_not_write_reads_as_none(azurite: Azurite, table: str) -> None:
    store = store_on(azurite, table)
    store.put(call_data_id("x"), CallData("f", {}))  # creates the table
    client = TableServiceClient.from_connection_string(azurite.connection_string)
    odd = {"PartitionKey": call_data_id("odd"), "RowKey": DATA_ROW, "Flow": "f", "Values": "[1]"}
    client.get_table_client(table).create_entity(odd)
    assert store.get(call_data_id("odd")) is None
    assert store.get(call_data_id("absent")) is None


def test_an_unreachable_table_is_storage_unavailable_naming_no_value() -> None:
    nowhere = connection_string("127.0.0.1", AzuritePorts(free_port(), free_port(), free_port()))
    dead = TableServiceClient.from_connection_string(nowhere, retry_total=0)
    store = TableCallDataStore(dead, "calldata")
    for attempt in (
        lambda: store.put(call_data_id("k"), CallData("f", GIVEN)),
        lambda: store.get(call_data_id("k")),
        lambda: store.forget(call_data_id("k")),
    ):
        with pytest.raises(StorageUnavailableError) as caught:
            attempt()
        assert "Friday" not in str(caught.value)
        assert str(caught.value).startswith("could not")
