"""Storage going away under a running app: every function that needs it answers 503, so
Twilio (or the caller) retries, never a 500; and a STOP that could not be recorded is
recorded when Twilio retries it, never lost.

A real Azurite of the test's own is stopped (its process ends) while the app runs against
it, then started again on the same ports.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import azure.functions as func
import pytest
from azure.storage.queue import QueueClient

from localpeers.azurite import Azurite
from tests.app_client import body_json, function, post_json, signed_post
from tests.conftest import AppFactory

CUSTOMER = "+15558675310"
SMS = {"kind": "sms", "to": CUSTOMER, "body": "Your order shipped", "idempotency_key": "k-1"}


@pytest.fixture
def storage() -> Iterator[Azurite]:
    """An Azurite of this test's own, which the test stops and starts again."""
    instance = Azurite().start()
    try:
        yield instance
    finally:
        instance.stop()


def stop_message(sid: str) -> func.HttpResponse:
    return signed_post(
        "sms_url", {"MessageSid": sid, "From": CUSTOMER, "To": "+15017122661", "Body": "STOP"}
    )


def get_message(key: str) -> func.HttpResponse:
    req = func.HttpRequest(
        "GET", f"https://calls.example.net/api/messages/{key}", body=b"",
        route_params={"id": key},
    )  # fmt: skip
    return function("get_message")(req)  # type: ignore[no-any-return]


def test_storage_going_away_is_503_everywhere_and_a_retried_stop_is_kept(
    app_env: AppFactory, storage: Azurite
) -> None:
    # GIVEN the app on a working Storage
    queue_name = f"outbound-{uuid.uuid4().hex[:8]}"
    settings = {**storage.environment(), "OUTBOUND_QUEUE_NAME": queue_name}
    app_env(**settings)
    QueueClient.from_connection_string(storage.connection_string, queue_name).create_queue()
    assert post_json("send_message", SMS).status_code == 202
    ports = storage.ports
    # WHEN Storage goes away
    storage.stop()
    stop = stop_message("SM" + "a" * 32)
    callback = signed_post(
        "status_callback",
        {"MessageSid": "SM" + "b" * 32, "MessageStatus": "delivered"},
        url="https://calls.example.net/api/status_callback?id=k-1",
    )
    answers = {
        "sms_url (STOP)": stop.status_code,
        "status_callback": callback.status_code,
        "send_message": post_json("send_message", {**SMS, "idempotency_key": "k-2"}).status_code,
        "get_message": get_message("k-1").status_code,
    }
    # THEN each answers 503, which Twilio (and any caller) retries
    assert answers == dict.fromkeys(answers, 503)
    # AND the STOP, retried by Twilio once Storage is back, is recorded
    storage.requested_ports = ports
    storage.start()
    app_env(**{**storage.environment(), "OUTBOUND_QUEUE_NAME": queue_name})
    assert stop_message("SM" + "a" * 32).status_code == 200
    call = post_json("make_call", {"to": CUSTOMER, "say": "Hi"})
    assert (call.status_code, body_json(call)["field"]) == (409, "to")


def test_a_503_body_says_nothing_about_storage(app_env: AppFactory, storage: Azurite) -> None:
    app_env(**storage.environment())
    storage.stop()
    resp = post_json("send_message", SMS)
    assert resp.status_code == 503
    text = json.dumps(body_json(resp))
    assert "127.0.0.1" not in text and "Storage" not in text and "devstoreaccount1" not in text
