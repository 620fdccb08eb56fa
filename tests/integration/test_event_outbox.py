"""The outbox on the real path: Table Storage (Azurite), the events queue, Twilio's contract.

GIVEN the app on Azurite and the Twilio mock, WHEN the process is killed between a record's
write and the publish of its event, or the events queue refuses it, THEN the event waits in
the record and reconcile publishes it, once; and reconcile asks Twilio (Prism checks the
request against Twilio's spec) about a record no callback settled.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient

from localpeers.azurite import Azurite
from localpeers.twilio_mock import TwilioMock
from telephony.container import Container, build_container
from telephony.events import DELIVERY_UPDATED
from telephony.events.publisher import OUTBOX_GRACE
from tests.app_client import TEST_ACCOUNT_SID, TEST_AUTH_TOKEN
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
SMS = {"kind": "sms", "to": "+15558675310", "body": "Your order shipped"}


def settings(azurite: Azurite, twilio: TwilioMock, **changes: str) -> dict[str, str]:
    suffix = uuid.uuid4().hex[:10]
    return {
        "AzureWebJobsStorage": azurite.connection_string,
        "DELIVERIES_TABLE_NAME": f"deliveries{suffix}",
        "EVENTS_QUEUE_NAME": f"events-{suffix}",
        "OUTBOUND_QUEUE_NAME": f"outbound-{suffix}",
        "TWILIO_ACCOUNT_SID": TEST_ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": TEST_AUTH_TOKEN,
        "TWILIO_PHONE_NUMBER": "+15017122661",
        "TWILIO_API_BASE_URL": twilio.base_url,
        "PUBLIC_BASE_URL": "https://calls.contoso.com",
        **changes,
    }


def events_on(azurite: Azurite, name: str, expected: int = 0) -> list[dict[str, object]]:
    """The events on queue `name`, once there are `expected` of them (Azurite shows a new
    message to receivers up to a second after it took it), and a moment for any more."""
    queue = QueueClient.from_connection_string(azurite.connection_string, name)
    with contextlib.suppress(ResourceExistsError):
        queue.create_queue()  # nothing was ever published there
    wait_for(lambda: _count(queue) >= expected, 5, f"{expected} events on the queue")
    time.sleep(1.5)  # visible by now, any event beyond the expected ones
    return [
        json.loads(base64.b64decode(message.content))
        for message in queue.receive_messages(max_messages=32, visibility_timeout=60)
    ]


def _count(queue: QueueClient) -> int:
    return queue.get_queue_properties().approximate_message_count or 0


def later(minutes: float) -> Callable[[], datetime]:
    return lambda: datetime.now(UTC) + timedelta(minutes=minutes)


@pytest.fixture
def env(azurite: Azurite, twilio_mock: TwilioMock) -> dict[str, str]:
    return settings(azurite, twilio_mock)


def test_a_worker_killed_before_the_publish_loses_no_event(
    env: dict[str, str], azurite: Azurite, twilio_mock: TwilioMock
) -> None:
    command = json.dumps({**SMS, "idempotency_key": "killed-42"})
    worker = subprocess.run(
        [sys.executable, "-m", "tests.integration.outbox_crash_worker", command],
        cwd=ROOT, env={**os.environ, **env}, capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert worker.returncode == -signal.SIGKILL, worker.stderr.decode()
    assert len(twilio_mock.find_requests("/Messages.json", method="POST")) == 1
    app = build_container(env)
    record = app.outbound.record_of("killed-42")
    assert record is not None and record.status == "queued"
    assert [event.data["status"] for event in record.outbox] == ["queued"]
    assert events_on(azurite, env["EVENTS_QUEUE_NAME"]) == []

    assert build_container(env).reconciler.run().records == 0  # not due: it may be live
    report = build_container(
        env, clock=later(OUTBOX_GRACE.total_seconds() / 60 + 1)
    ).reconciler.run()

    assert report.records == 1
    [event] = events_on(azurite, env["EVENTS_QUEUE_NAME"], 1)
    assert (event["type"], event["data"]["status"]) == (DELIVERY_UPDATED, "queued")  # type: ignore[index]
    assert event["id"] == record.outbox[0].id
    assert app.outbound.record_of("killed-42").outbox == ()  # type: ignore[union-attr]
    assert len(twilio_mock.find_requests("/Messages.json", method="POST")) == 1


def test_an_event_the_queue_refused_is_published_by_reconcile_once_it_takes_events_again(
    env: dict[str, str], azurite: Azurite
) -> None:
    refusing = build_container({**env, "EVENTS_QUEUE_NAME": "no_such-queue!"})
    refusing.outbound.handle(json.dumps({**SMS, "idempotency_key": "refused-7"}), "m", 1)
    record = refusing.outbound.record_of("refused-7")
    assert record is not None and len(record.outbox) == 1

    build_container(env, clock=later(3)).reconciler.run()
    build_container(env, clock=later(6)).reconciler.run()  # a second run publishes nothing

    published = events_on(azurite, env["EVENTS_QUEUE_NAME"], 1)
    assert [e["data"]["status"] for e in published] == ["queued"]  # type: ignore[index]


def test_events_on_the_queue_are_what_a_functions_queue_trigger_decodes(
    env: dict[str, str], azurite: Azurite
) -> None:
    app = build_container(env)
    app.outbound.handle(json.dumps({**SMS, "idempotency_key": "decoded-1"}), "m", 1)
    queue = QueueClient.from_connection_string(azurite.connection_string, env["EVENTS_QUEUE_NAME"])
    [message] = wait_for(lambda: list(queue.receive_messages(max_messages=32)), 5, "the event")
    event = json.loads(base64.b64decode(message.content, validate=True).decode("utf-8"))
    assert event["specversion"] == "1.0" and event["source"] == "https://calls.contoso.com"
    assert app.outbound.record_of("decoded-1").outbox == ()  # type: ignore[union-attr]


def test_reconcile_asks_twilio_about_a_stale_message_and_advances_it(
    env: dict[str, str], azurite: Azurite, twilio_mock: TwilioMock
) -> None:
    then = later(-31)  # sent 31 minutes ago; no callback came
    sender: Container = build_container(env, clock=then)
    sender.outbound.handle(json.dumps({**SMS, "idempotency_key": "stale-sms"}), "m", 1)
    sid = sender.outbound.record_of("stale-sms").twilio_sid  # type: ignore[union-attr]
    twilio_mock.clear()

    report = build_container(env).reconciler.run()

    [fetch] = twilio_mock.find_requests(f"/Messages/{sid}.json", method="GET")
    assert fetch.violations == [] and fetch.status == 200
    assert (report.twilio_requests, report.advanced) == (1, 1)
    record = build_container(env).outbound.record_of("stale-sms")
    # Prism answers with the spec's example: sent, with error 30007 (carrier filtering)
    assert record is not None and (record.status, record.error_code) == ("sent", 30007)
    published = events_on(azurite, env["EVENTS_QUEUE_NAME"], 2)
    statuses = [e["data"]["status"] for e in published]  # type: ignore[index]
    assert statuses == ["queued", "sent"]
    # Still short of a final status: asked again RECONCILE_AFTER_MINUTES later, not before.
    assert build_container(env).reconciler.run().twilio_requests == 0
    assert build_container(env, clock=later(31)).reconciler.run().twilio_requests == 1


def test_the_largest_inbound_message_event_can_be_staged_and_published(
    env: dict[str, str], azurite: Azurite
) -> None:
    """4,096 emoji (a WhatsApp body's limit): staged in a Table row, then on the queue."""
    from telephony.sms.routing import InboundSms, SmsDecision, received_event

    body = "\U0001f600" * 5_000  # cut to MAX_EVENT_BODY_CHARS by the event
    message = InboundSms("SM" + "9" * 32, "+15558675310", "+15017122661", body)
    event = received_event(message, SmsDecision("no_match"), False, datetime.now(UTC))
    refusing = build_container({**env, "EVENTS_QUEUE_NAME": "no_such-queue!"})
    refusing.publisher.publish_or_stage([event])  # refused: staged in the deliveries table

    assert build_container(env, clock=later(1)).reconciler.run().staged_published == 1

    [published] = events_on(azurite, env["EVENTS_QUEUE_NAME"], 1)
    assert published["data"]["body"] == "\U0001f600" * 4_096  # type: ignore[index]


def test_two_reconcile_runs_at_once_advance_every_stale_record_and_lose_no_event(
    env: dict[str, str], azurite: Azurite, twilio_mock: TwilioMock
) -> None:
    sender = build_container(env, clock=later(-31))
    keys = [f"both-{n}" for n in range(12)]
    for key in keys:
        sender.outbound.handle(json.dumps({**SMS, "idempotency_key": key}), key, 1)
    events_on(azurite, env["EVENTS_QUEUE_NAME"], len(keys))  # the sends' own, taken off

    runs = [build_container(env).reconciler for _ in range(2)]
    threads = [threading.Thread(target=run.run) for run in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    app = build_container(env)
    assert all(app.outbound.record_of(key).status == "sent" for key in keys)  # type: ignore[union-attr]
    published = events_on(azurite, env["EVENTS_QUEUE_NAME"], len(keys))
    assert {e["data"]["id"] for e in published} == set(keys)  # type: ignore[index]
    assert {e["data"]["status"] for e in published} == {"sent"}  # type: ignore[index]
    assert all(app.outbound.record_of(key).outbox == () for key in keys)  # type: ignore[union-attr]
