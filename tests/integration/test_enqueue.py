"""The producer helper and command line put valid commands on the real (Azurite) queue."""

from __future__ import annotations

import json
import uuid

import pytest
from azure.storage.queue import QueueClient

from localpeers.azurite import Azurite
from telephony.errors import CommandRejectedError
from telephony.outbound.enqueue import enqueue, main


@pytest.fixture
def queue(azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> QueueClient:
    name = f"enqueue-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("AzureWebJobsStorage", azurite.connection_string)
    monkeypatch.setenv("OUTBOUND_QUEUE_NAME", name)
    client = QueueClient.from_connection_string(azurite.connection_string, name)
    client.create_queue()
    return client


def test_enqueue_puts_raw_json_with_a_key(queue: QueueClient) -> None:
    key = enqueue({"kind": "sms", "to": "+15558675310", "body": "hi", "idempotency_key": "k-1"})
    [message] = queue.receive_messages()
    assert key == "k-1"
    assert json.loads(message.content) == {
        "kind": "sms", "to": "+15558675310", "body": "hi", "idempotency_key": "k-1"
    }  # fmt: skip


def test_enqueue_refuses_an_invalid_command(queue: QueueClient) -> None:
    with pytest.raises(CommandRejectedError) as info:
        enqueue({"kind": "sms", "to": "+15558675310"})
    assert "body, media_urls or content_sid" in info.value.message
    assert queue.get_queue_properties().approximate_message_count == 0


def test_command_line(queue: QueueClient, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["call", "+15558675310", "--say", "Your code is 1 2 3 4"]) == 0
    key = capsys.readouterr().out.strip()
    [message] = queue.receive_messages()
    document = json.loads(message.content)
    assert document == {
        "kind": "call", "to": "+15558675310", "say": "Your code is 1 2 3 4", "idempotency_key": key
    }  # fmt: skip
    assert main(["sms", "+1555", "hello"]) == 2
    assert "invalid command" in capsys.readouterr().err


def test_command_line_with_a_flow_and_its_data(
    queue: QueueClient, capsys: pytest.CaptureFixture[str]
) -> None:
    data = {"time": "tomorrow at 10 AM", "place": "12 Elm Street"}
    argv = ["call", "+15558675310", "--flow", "appointment-reminder", "--data", json.dumps(data)]
    assert main(argv) == 0
    [message] = queue.receive_messages()
    assert json.loads(message.content)["data"] == data
    with pytest.raises(SystemExit):
        main(["call", "+15558675310", "--flow", "appointment-reminder", "--data", "[1]"])
    assert "not a JSON object" in capsys.readouterr().err
