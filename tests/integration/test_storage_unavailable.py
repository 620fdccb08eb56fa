"""Storage that cannot be reached: the real SDK clients fail, the adapters say so in one
error type, and the HTTP functions answer 503 (never a 500) while the worker retries.

The endpoints are loopback ports where nothing listens, so each failure is immediate.
"""

from __future__ import annotations

import json

import azure.functions as func
import pytest
from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueClient

from localpeers.azurite import AzuritePorts, connection_string
from localpeers.processes import free_port
from telephony.adapters.storage import queue_sender
from telephony.adapters.tables import TableDeliveryStore, TableOptOutStore
from telephony.errors import StorageUnavailableError
from tests.app_client import body_json, function, post_json
from tests.conftest import AppFactory
from tests.fakes import MemoryStore

SMS = {"kind": "sms", "to": "+15558675310", "body": "Your order shipped"}
NOWHERE = connection_string("127.0.0.1", AzuritePorts(free_port(), free_port(), free_port()))


def dead_tables() -> TableServiceClient:
    return TableServiceClient.from_connection_string(NOWHERE, retry_total=0)


def test_delivery_store_failures_are_storage_unavailable() -> None:
    store = TableDeliveryStore(dead_tables(), "deliveries")
    with pytest.raises(StorageUnavailableError) as caught:
        store.get("order-42-shipped")
    assert "order-42-shipped" not in str(caught.value)
    assert str(caught.value).startswith("could not read a delivery record")
    with pytest.raises(StorageUnavailableError):
        store.lookup("order-42-shipped")


def test_optout_store_failures_are_storage_unavailable() -> None:
    with pytest.raises(StorageUnavailableError) as caught:
        TableOptOutStore(dead_tables(), "optouts").is_opted_out("+15558675310")
    assert "+1555" not in str(caught.value)


def test_get_message_answers_503_when_the_table_is_down(app_env: AppFactory) -> None:
    app_env({"deliveries": TableDeliveryStore(dead_tables(), "deliveries")})
    req_id = "order-42"
    req = func.HttpRequest("GET", f"https://x.example/api/messages/{req_id}", body=b"",
                           route_params={"id": req_id})  # fmt: skip
    resp = function("get_message")(req)
    assert resp.status_code == 503
    assert body_json(resp)["field"] is None


def test_send_message_answers_503_when_the_queue_is_down(app_env: AppFactory) -> None:
    dead_queue = QueueClient.from_connection_string(NOWHERE, "outbound", retry_total=0)
    container = app_env({"deliveries": MemoryStore(), "enqueue": queue_sender(dead_queue)})
    resp = post_json("send_message", {**SMS, "idempotency_key": "k"})
    assert resp.status_code == 503
    assert "error" in body_json(resp)
    assert container.outbound.record_of("k") is None  # nothing claims it was queued


def test_the_worker_lets_the_host_retry_when_the_table_is_down(app_env: AppFactory) -> None:
    from azure.functions.queue import QueueMessage

    app_env({"deliveries": TableDeliveryStore(dead_tables(), "deliveries")})
    message = QueueMessage(id="m", body=json.dumps(SMS).encode(), dequeue_count=1)  # type: ignore[no-untyped-call]
    with pytest.raises(StorageUnavailableError):
        function("outbound")(message)
