"""Quiet hours on the real queue: a deferred command waits invisible on Azurite, then is sent.

The app runs in-process on Azurite (queue and table) and the Twilio peer (Prism), with a
clock the test sets to a few seconds before quiet hours end in New York, so the command
comes back while the test waits. The `outbound` function gets real queue messages, as the
host would pass them.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import azure.functions as func
import pytest
from azure.functions.queue import QueueMessage as TriggerMessage
from azure.storage.queue import QueueClient, QueueMessage

from localpeers.azurite import Azurite
from localpeers.twilio_mock import TwilioMock
from telephony.container import Container
from tests.app_client import body_json, function
from tests.conftest import AppFactory
from tests.fakes import Clock

PUBLIC = "https://calls.contoso.com"
NEW_YORK = "+12125551234"  # America/New_York
# 07:59:57 in New York: QUIET_HOURS 21:00-08:00 end three seconds later.
BEFORE_EIGHT = datetime(2026, 11, 26, 12, 59, 57, tzinfo=UTC)
EIGHT = datetime(2026, 11, 26, 13, 0, tzinfo=UTC)


@dataclass
class Stack:
    container: Container
    queue: QueueClient
    clock: Clock
    twilio: TwilioMock

    def deliver(self, message: QueueMessage) -> None:
        """Run the function on `message` and delete it, as the host does on success."""
        function("outbound")(
            TriggerMessage(
                id=message.id, body=message.content.encode(),
                dequeue_count=message.dequeue_count, pop_receipt=message.pop_receipt,
            )
        )  # fmt: skip
        self.queue.delete_message(message)

    def visible(self) -> list[QueueMessage]:
        return list(self.queue.receive_messages(max_messages=32, visibility_timeout=30))

    def sends(self) -> list[object]:
        return self.twilio.find_requests("/Messages.json", method="POST")


@pytest.fixture
def stack(app_env: AppFactory, azurite: Azurite, twilio_mock: TwilioMock) -> Iterator[Stack]:
    suffix = uuid.uuid4().hex[:10]
    clock = Clock(BEFORE_EIGHT)
    container = app_env(
        {"clock": clock},
        AzureWebJobsStorage=azurite.connection_string,
        OUTBOUND_QUEUE_NAME=f"quiet-{suffix}",
        DELIVERIES_TABLE_NAME=f"deliveries{suffix}",
        TWILIO_API_BASE_URL=twilio_mock.base_url,
        PUBLIC_BASE_URL=PUBLIC,
        TWILIO_MESSAGING_SERVICE_SID="",
        QUIET_HOURS="21:00-08:00",
    )
    queue = QueueClient.from_connection_string(
        azurite.connection_string, container.settings.outbound_queue_name
    )
    queue.create_queue()
    yield Stack(container, queue, clock, twilio_mock)
    queue.delete_queue()


def get_message(key: str) -> dict[str, object]:
    request = func.HttpRequest(
        "GET", f"{PUBLIC}/api/messages/{key}", body=b"", route_params={"id": key}
    )
    response = function("get_message")(request)
    assert response.status_code == 200
    return body_json(response)


def wait_for_one_visible(stack: Stack, timeout: float = 15.0) -> QueueMessage:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = stack.visible()
        if found:
            [message] = found
            return message
        time.sleep(0.2)
    raise AssertionError("the deferred command never became visible")


def test_a_command_in_quiet_hours_waits_invisible_on_the_queue_then_is_sent_once(
    stack: Stack,
) -> None:
    command = {"kind": "sms", "to": NEW_YORK, "body": "Your order shipped"}
    stack.queue.send_message(json.dumps({**command, "idempotency_key": "quiet-1"}))
    [original] = stack.visible()
    deferred_at = time.monotonic()
    stack.deliver(original)

    # On the queue, invisible; the record says deferred; Twilio heard nothing.
    assert stack.queue.get_queue_properties().approximate_message_count == 1
    assert stack.visible() == [] and list(stack.queue.peek_messages()) == []
    view = get_message("quiet-1")
    assert view["status"] == "deferred"
    assert view["reason"] == "quiet hours: deferred until 2026-11-26T13:00:00Z"
    assert stack.sends() == []

    back = wait_for_one_visible(stack)
    assert time.monotonic() - deferred_at >= 2.5  # three seconds, rounded up: never early
    assert json.loads(back.content) == {**command, "idempotency_key": "quiet-1"}
    stack.clock.now = EIGHT + timedelta(seconds=1)
    stack.deliver(back)
    [sent] = stack.sends()
    assert sent.violations == []  # type: ignore[attr-defined]
    assert sent.param("To") == NEW_YORK  # type: ignore[attr-defined]
    assert get_message("quiet-1")["status"] == "queued"
    assert stack.queue.get_queue_properties().approximate_message_count == 0


def test_an_event_grid_command_is_put_back_as_the_plain_command_under_the_event_id(
    stack: Stack,
) -> None:
    command = {"kind": "call", "to": NEW_YORK, "say": "Your code is 1 2 3 4"}
    event = {
        "id": "evt-42", "eventType": "Codes.Issued", "subject": "codes/42", "dataVersion": "1",
        "eventTime": "2026-11-26T12:59:57Z", "data": command,
    }  # fmt: skip
    stack.queue.send_message(json.dumps(event))
    [original] = stack.visible()
    stack.deliver(original)
    assert get_message("evt-42")["status"] == "deferred"
    back = wait_for_one_visible(stack)
    assert json.loads(back.content) == {**command, "idempotency_key": "evt-42"}
    stack.clock.now = EIGHT
    stack.deliver(back)
    assert len(stack.twilio.find_requests("/Calls.json", method="POST")) == 1
    assert str(get_message("evt-42")["twilio_sid"]).startswith("CA")
