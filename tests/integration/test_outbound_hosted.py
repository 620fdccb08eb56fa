"""The real app under the development host: queue messages' fates with the host's rules.

GIVEN the app served by `python -m devhost` against Azurite and the Twilio mock, WHEN
commands are put on its queue, THEN each ends deleted (sent, rejected) or in the poison
queue after maxDequeueCount, with its delivery record saying why.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueClient

from localpeers.azurite import Azurite
from localpeers.twilio_mock import TwilioMock
from tests.app_client import TEST_ACCOUNT_SID, TEST_AUTH_TOKEN
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
SMS = {"kind": "sms", "to": "+15558675310", "body": "Your order shipped"}


class HostedApp:
    """function_app served by the development host, with its own queue and table."""

    def __init__(self, workdir: Path, azurite: Azurite, twilio: TwilioMock) -> None:
        self.queue_name = f"outbound-{uuid.uuid4().hex[:10]}"
        self.connection_string = azurite.connection_string
        host_json = json.loads((ROOT / "host.json").read_text())
        # The host's rules, with a short back-off so that five attempts take seconds.
        host_json["extensions"]["queues"].update(
            visibilityTimeout="00:00:00", maxPollingInterval="00:00:01"
        )
        (workdir / "host.json").write_text(json.dumps(host_json))
        values = {
            "AzureWebJobsStorage": azurite.connection_string,
            "TWILIO_ACCOUNT_SID": TEST_ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": TEST_AUTH_TOKEN,
            "TWILIO_PHONE_NUMBER": "+15017122661",
            "TWILIO_API_BASE_URL": twilio.base_url,
            "OUTBOUND_QUEUE_NAME": self.queue_name,
            "RECONCILE_SCHEDULE": "0 */5 * * * *",
            "DELIVERIES_TABLE_NAME": f"deliveries{uuid.uuid4().hex[:10]}",
        }
        (workdir / "local.settings.json").write_text(json.dumps({"Values": values}))
        self.workdir = workdir
        self.url = ""
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> HostedApp:
        self.queue().create_queue()
        env = {k: v for k, v in os.environ.items() if k not in ("AzureWebJobsStorage",)}
        settings, host_json = self.workdir / "local.settings.json", self.workdir / "host.json"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "devhost", "--settings", str(settings),
             "--host-json", str(host_json), "--port", "0"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )  # fmt: skip
        assert self.process.stdout is not None
        for line in self.process.stdout:
            found = re.search(r"listening on (http://\S+)", line)
            if found:
                self.url = found[1]
                threading.Thread(target=self.process.stdout.read, daemon=True).start()
                return self
        raise AssertionError("the development host did not start")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(30)

    def queue(self, suffix: str = "") -> QueueClient:
        return QueueClient.from_connection_string(self.connection_string, self.queue_name + suffix)

    def record(self, key: str) -> dict[str, Any] | None:
        response = requests.get(f"{self.url}/api/messages/{key}", timeout=10)
        return response.json() if response.status_code == 200 else None


@pytest.fixture
def hosted(tmp_path: Path, azurite: Azurite, twilio_mock: TwilioMock) -> Iterator[HostedApp]:
    app = HostedApp(tmp_path, azurite, twilio_mock).start()
    yield app
    app.stop()


def settled(app: HostedApp, key: str, *statuses: str) -> Callable[[], dict[str, Any] | None]:
    def check() -> dict[str, Any] | None:
        record = app.record(key)
        return record if record and record["status"] in statuses else None

    return check


def queue_empty(app: HostedApp) -> bool:
    return app.queue().get_queue_properties().approximate_message_count == 0


def test_sent_message_is_deleted(hosted: HostedApp, twilio_mock: TwilioMock) -> None:
    hosted.queue().send_message(json.dumps({**SMS, "idempotency_key": "hosted-ok"}))
    record = wait_for(settled(hosted, "hosted-ok", "queued"))
    assert str(record["twilio_sid"]).startswith("SM")
    wait_for(lambda: queue_empty(hosted))
    assert len(twilio_mock.find_requests("/Messages.json")) == 1


def test_base64_message_from_a_default_producer_is_sent(hosted: HostedApp) -> None:
    text = base64.b64encode(json.dumps({**SMS, "idempotency_key": "hosted-b64"}).encode()).decode()
    hosted.queue().send_message(text)
    wait_for(settled(hosted, "hosted-b64", "queued"))


def test_throttled_message_retries_then_lands_in_the_poison_queue(
    hosted: HostedApp, twilio_mock: TwilioMock
) -> None:
    twilio_mock.fail_next(429, count=None, path_contains="/Messages.json")
    hosted.queue().send_message(json.dumps({**SMS, "idempotency_key": "hosted-429"}))
    record = wait_for(settled(hosted, "hosted-429", "poison"), timeout=60)
    assert (record["attempts"], record["error_code"]) == (5, 20429)
    # The record says poison before the host has moved the message (and made the queue).
    poisoned = wait_for(lambda: _peek_if_there(hosted.queue("-poison")))
    assert json.loads(poisoned[0].content)["idempotency_key"] == "hosted-429"
    assert queue_empty(hosted)
    assert len(twilio_mock.find_requests("/Messages.json")) == 5


def test_invalid_message_is_rejected_and_deleted(hosted: HostedApp) -> None:
    # The host creates the poison queue on first use; created here, so that "nothing was
    # poisoned" is something to look at rather than a queue that is not there.
    poison = hosted.queue("-poison")
    poison.create_queue()
    hosted.queue().send_message(
        json.dumps({**SMS, "colour": "blue", "idempotency_key": "hosted-bad"})
    )
    record = wait_for(settled(hosted, "hosted-bad", "rejected"))
    assert record["reason"] == "unknown field colour"
    wait_for(lambda: queue_empty(hosted))
    assert _exists(poison)
    assert poison.peek_messages() == []


def _exists(queue: QueueClient) -> bool:
    from azure.core.exceptions import ResourceNotFoundError

    try:
        queue.get_queue_properties()
    except ResourceNotFoundError:
        return False
    return True


def _peek_if_there(queue: QueueClient) -> list[Any]:
    try:
        return list(queue.peek_messages(max_messages=5))
    except ResourceNotFoundError:
        return []
