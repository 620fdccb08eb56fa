"""Queued sends end to end in-process: real Azurite queue and table, Twilio's contract in Prism.

Messages are put on and read from a real Azurite queue; the `outbound` function gets a
real azure.functions.QueueMessage, as the host would pass it. Each test has its own queue
and table.
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

import azure.functions as func
import pytest
from azure.data.tables import TableServiceClient
from azure.functions.queue import QueueMessage as TriggerMessage
from azure.storage.queue import QueueClient

from localpeers.azurite import Azurite
from localpeers.twilio_mock import TwilioMock
from telephony.container import Container
from telephony.errors import RetryLaterError
from telephony.outbound.records import CLAIMED, DeliveryRecord
from telephony.outbound.service import MAX_DEQUEUE_COUNT
from tests.app_client import (
    body_json,
    function,
    impatient_gateway,
    post_json,
    signed_post,
)
from tests.conftest import AppFactory

SMS = {"kind": "sms", "to": "+15558675310", "body": "Your order shipped"}
PUBLIC = "https://calls.contoso.com"


class Stack:
    """The app wired to Azurite and the Twilio peer, with its own queue and table."""

    def __init__(self, container: Container, azurite: Azurite, twilio: TwilioMock) -> None:
        self.container = container
        self.twilio = twilio
        self.queue = QueueClient.from_connection_string(
            azurite.connection_string, container.settings.outbound_queue_name
        )
        self.queue.create_queue()
        self.tables = TableServiceClient.from_connection_string(azurite.connection_string)

    def put(self, document: object, *, raw: str | None = None) -> None:
        self.queue.send_message(raw if raw is not None else json.dumps(document))

    def deliver(self, dequeue_count: int | None = None) -> Exception | None:
        """Receive one message and run the function on it as the host does."""
        message = next(iter(self.queue.receive_messages(max_messages=1, visibility_timeout=1)))
        queue_message = TriggerMessage(
            id=message.id,
            body=message.content.encode(),
            dequeue_count=dequeue_count or message.dequeue_count,
            pop_receipt=message.pop_receipt,
        )
        try:
            function("outbound")(queue_message)
        except Exception as exc:  # the host would make it visible again
            self.queue.update_message(message, visibility_timeout=0)
            return exc
        self.queue.delete_message(message)
        return None

    def record(self, key: str) -> DeliveryRecord:
        found = self.container.outbound.record_of(key)
        assert found is not None, f"no record for {key}"
        return found

    def sends(self) -> list[object]:
        return [r for r in self.twilio.requests if r.method == "POST" and r.status < 500]

    def queue_length(self) -> int:
        return self.queue.get_queue_properties().approximate_message_count


StackFactory = Callable[..., Stack]


@pytest.fixture
def make_stack(app_env: AppFactory, azurite: Azurite, twilio_mock: TwilioMock) -> StackFactory:
    """Builds the app on Azurite and the Twilio peer; settings may be overridden."""

    def build(parts: Mapping[str, object] | None = None, **overrides: str) -> Stack:
        suffix = uuid.uuid4().hex[:10]
        settings = {
            "AzureWebJobsStorage": azurite.connection_string,
            "OUTBOUND_QUEUE_NAME": f"outbound-{suffix}",
            "DELIVERIES_TABLE_NAME": f"deliveries{suffix}",
            "TWILIO_API_BASE_URL": twilio_mock.base_url,
            "PUBLIC_BASE_URL": PUBLIC,
            "TWILIO_MESSAGING_SERVICE_SID": "",
        }
        return Stack(app_env(parts, **{**settings, **overrides}), azurite, twilio_mock)

    return build


@pytest.fixture
def stack(make_stack: StackFactory) -> Stack:
    return make_stack()


def test_sms_is_sent_once_and_recorded(stack: Stack) -> None:
    stack.put({**SMS, "idempotency_key": "order-42-shipped"})
    assert stack.deliver() is None
    record = stack.record("order-42-shipped")
    assert record.status == "queued"
    assert record.twilio_sid is not None and record.twilio_sid.startswith("SM")
    [sent] = stack.twilio.find_requests("/Messages.json", method="POST")
    assert sent.violations == []
    assert (sent.param("To"), sent.param("Body")) == ("+15558675310", "Your order shipped")
    assert sent.param("StatusCallback") == f"{PUBLIC}/api/status_callback?id=order-42-shipped"
    assert stack.queue_length() == 0


def test_same_message_delivered_twice_sends_once(stack: Stack) -> None:
    stack.put(SMS)
    message = next(iter(stack.queue.receive_messages(max_messages=1)))
    for count in (1, 2):
        function("outbound")(
            TriggerMessage(id=message.id, body=message.content.encode(), dequeue_count=count)
        )
    assert len(stack.twilio.find_requests("/Messages.json")) == 1
    assert stack.record(message.id).status == "queued"


def test_two_messages_with_one_key_send_once(stack: Stack) -> None:
    stack.put({**SMS, "idempotency_key": "k"})
    stack.put({**SMS, "idempotency_key": "k", "body": "Your order shipped!"})
    assert stack.deliver() is None
    assert stack.deliver() is None
    assert len(stack.twilio.find_requests("/Messages.json")) == 1
    assert stack.queue_length() == 0


def test_two_workers_racing_on_one_key_send_once(stack: Stack) -> None:
    stack.twilio.latency = 0.2  # widen the window in which both could send
    stack.put({**SMS, "idempotency_key": "race"})
    stack.put({**SMS, "idempotency_key": "race"})
    messages = list(stack.queue.receive_messages(max_messages=2, visibility_timeout=30))
    assert len(messages) == 2
    start = threading.Barrier(2)
    outcomes: list[object] = []

    def worker(message: object) -> None:
        start.wait()
        try:
            function("outbound")(
                TriggerMessage(id=message.id, body=message.content.encode(), dequeue_count=1)  # type: ignore[attr-defined]
            )
            outcomes.append("done")
        except RetryLaterError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=worker, args=(m,)) for m in messages]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(stack.twilio.find_requests("/Messages.json")) == 1
    # the loser was told to retry; its redelivery is a duplicate
    assert sorted(map(str, outcomes)).count("done") >= 1
    function("outbound")(
        TriggerMessage(id=messages[1].id, body=messages[1].content.encode(), dequeue_count=2)
    )
    assert len(stack.twilio.find_requests("/Messages.json")) == 1
    assert stack.record("race").status == "queued"


@pytest.mark.parametrize(("status", "code"), [(429, 20429), (500, 20500)])
def test_transient_errors_retry_then_poison(stack: Stack, status: int, code: int) -> None:
    stack.twilio.fail_next(status, count=None, path_contains="/Messages.json")
    stack.put({**SMS, "idempotency_key": "flaky"})
    for attempt in range(1, MAX_DEQUEUE_COUNT + 1):
        error = stack.deliver(dequeue_count=attempt)
        assert isinstance(error, RetryLaterError)
        record = stack.record("flaky")
        assert record.attempts == attempt
        assert record.error_code == code
        assert record.status == ("poison" if attempt == MAX_DEQUEUE_COUNT else "retrying")
    assert str(status) in (stack.record("flaky").reason or "")
    assert len(stack.twilio.find_requests("/Messages.json")) == MAX_DEQUEUE_COUNT


def test_invalid_number_at_twilio_fails_without_retry(stack: Stack) -> None:
    stack.twilio.fail_next(400, twilio_code=21211, path_contains="/Messages.json")
    stack.put({**SMS, "idempotency_key": "bad-to"})
    assert stack.deliver() is None  # deleted: never retried
    record = stack.record("bad-to")
    assert (record.status, record.error_code) == ("failed", 21211)
    assert stack.queue_length() == 0
    assert len(stack.twilio.find_requests("/Messages.json")) == 1


def _in_window() -> str:
    return (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ("this is not json", None),
        ('"just a string"', None),
        (json.dumps({**SMS, "kind": "fax"}), "kind"),
        (json.dumps({**SMS, "colour": "blue"}), "colour"),
        (json.dumps({**SMS, "body": "x" * 2000}), "body"),
        (json.dumps({**SMS, "to": "555-867-5310"}), "to"),
        (json.dumps({**SMS, "media_urls": ["https://cdn.example/a.png"] * 11}), "media_urls"),
        (json.dumps({**SMS, "send_at": "2026-01-01T00:00:00Z"}), "send_at"),
    ],
)
def test_invalid_messages_are_rejected_and_deleted(
    stack: Stack, raw: str, field: str | None
) -> None:
    stack.put(None, raw=raw)
    message_id = stack.queue.peek_messages()[0].id
    assert stack.deliver() is None
    record = stack.record(message_id)
    assert record.status == "rejected"
    assert record.reason
    assert stack.queue_length() == 0
    assert stack.twilio.find_requests("/Messages.json") == []


def test_base64_wrapped_message_is_sent(stack: Stack) -> None:
    stack.put(
        None, raw=base64.b64encode(json.dumps({**SMS, "idempotency_key": "b64"}).encode()).decode()
    )
    assert stack.deliver() is None
    assert stack.record("b64").status == "queued"


def test_mms_with_media(stack: Stack) -> None:
    urls = ["https://cdn.example/a.png", "https://cdn.example/b.png"]
    stack.put({"kind": "sms", "to": "+15558675310", "media_urls": urls, "idempotency_key": "mms"})
    assert stack.deliver() is None
    [sent] = stack.twilio.find_requests("/Messages.json")
    assert sent.form["MediaUrl"] == urls
    assert sent.violations == []


def test_scheduled_sms_uses_twilio_scheduling(make_stack: StackFactory) -> None:
    stack = make_stack(TWILIO_MESSAGING_SERVICE_SID="MG" + "b" * 32)
    stack.put({**SMS, "send_at": _in_window(), "idempotency_key": "later"})
    assert stack.deliver() is None
    [sent] = stack.twilio.find_requests("/Messages.json")
    assert sent.violations == []
    assert sent.param("ScheduleType") == "fixed"
    assert sent.param("MessagingServiceSid") == "MG" + "b" * 32
    assert sent.param("SendAt")


def test_call_command(stack: Stack) -> None:
    stack.put({"kind": "call", "to": "+15558675310", "say": "Your code is 1 2 3 4",
               "idempotency_key": "otp-7781"})  # fmt: skip
    assert stack.deliver() is None
    [sent] = stack.twilio.find_requests("/Calls.json")
    assert sent.violations == []
    assert "Your code is 1 2 3 4" in (sent.param("Twiml") or "")
    assert stack.record("otp-7781").twilio_sid.startswith("CA")  # type: ignore[union-attr]


def test_lost_twilio_answer_is_in_doubt_and_not_resent(
    make_stack: StackFactory, twilio_mock: TwilioMock
) -> None:
    stack = make_stack({"sender": impatient_gateway(twilio_mock.base_url)})
    stack.twilio.hang_next(2.0, path_contains="/Messages.json")
    stack.put({**SMS, "idempotency_key": "lost"})
    assert stack.deliver() is None
    assert stack.record("lost").status == "in_doubt"
    stack.put({**SMS, "idempotency_key": "lost"})
    assert stack.deliver() is None
    assert len(stack.twilio.find_requests("/Messages.json")) == 1


def test_crash_between_claim_and_record_is_parked_in_doubt(stack: Stack) -> None:
    # GIVEN a claim whose worker died: its lease has run out and it has no Twilio SID
    store = stack.container.deliveries
    past = datetime.now(UTC) - timedelta(minutes=5)
    store.insert(
        DeliveryRecord(
            "crashed",
            "sms",
            "+15558675310",
            CLAIMED,
            past,
            past,
            attempts=1,
            lease_until=past + timedelta(seconds=60),
        )
    )
    stack.put({**SMS, "idempotency_key": "crashed"})
    assert stack.deliver() is None
    record = stack.record("crashed")
    assert record.status == "in_doubt"
    assert "stopped before recording" in (record.reason or "")
    assert stack.twilio.find_requests("/Messages.json") == []


def _callback(key: str, sid: str, status: str, **extra: str) -> int:
    params = {"MessageSid": sid, "MessageStatus": status, "To": "+15558675310", **extra}
    url = f"{PUBLIC}/api/status_callback?id={key}"
    return signed_post("status_callback", params, url=url).status_code


def test_callbacks_advance_forward_only(stack: Stack) -> None:
    stack.put({**SMS, "idempotency_key": "cb"})
    stack.deliver()
    sid = stack.record("cb").twilio_sid or ""
    for status in ["sent", "delivered", "delivered", "sent", "queued"]:
        assert _callback("cb", sid, status) == 204
    assert stack.record("cb").status == "delivered"


def test_failed_callback_records_the_error_code(stack: Stack) -> None:
    stack.put({**SMS, "idempotency_key": "cbf"})
    stack.deliver()
    sid = stack.record("cbf").twilio_sid or ""
    assert _callback("cbf", sid, "undelivered", ErrorCode="30003") == 204
    assert (stack.record("cbf").status, stack.record("cbf").error_code) == ("undelivered", 30003)


def test_callback_for_unknown_record_or_sid(stack: Stack) -> None:
    assert _callback("nobody", "SM" + "0" * 32, "delivered") == 204
    stack.put({**SMS, "idempotency_key": "cbx"})
    stack.deliver()
    assert _callback("cbx", "SM" + "f" * 32, "delivered") == 204  # another message's SID
    assert stack.record("cbx").status == "queued"


def test_send_message_then_get_message(stack: Stack) -> None:
    resp = post_json("send_message", {**SMS, "idempotency_key": "http-1"})
    assert resp.status_code == 202, resp.get_body()
    body = body_json(resp)
    assert body["id"] == "http-1"
    assert body["status"] == "pending"
    assert body["status_url"] == f"{PUBLIC}/api/messages/http-1"
    assert body["to"] == "+1********10"
    again = post_json("send_message", {**SMS, "idempotency_key": "http-1"})
    assert again.status_code == 200
    assert stack.queue_length() == 1
    assert stack.deliver() is None
    got = _get("http-1")
    assert got.status_code == 200
    view = body_json(got)
    assert view["status"] == "queued"
    assert str(view["twilio_sid"]).startswith("SM")
    assert view["attempts"] == 1


def _get(key: str) -> func.HttpResponse:
    req = func.HttpRequest(
        "GET", f"{PUBLIC}/api/messages/{key}", body=b"", route_params={"id": key}
    )
    return function("get_message")(req)  # type: ignore[no-any-return]


def test_get_unknown_message_is_404(stack: Stack) -> None:
    resp = _get("never-sent")
    assert resp.status_code == 404
    assert body_json(resp) == {"error": "no message with this id", "field": "id"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**SMS, "to": "+1"}, "to"),
        ({**SMS, "colour": "blue"}, "colour"),
        ({"kind": "sms", "to": "+15558675310"}, None),
        ({**SMS, "idempotency_key": "k" * 129}, "idempotency_key"),
    ],
)
def test_send_message_rejects_bad_commands_before_enqueueing(
    stack: Stack, body: dict[str, object], field: str | None
) -> None:
    resp = post_json("send_message", body)
    assert resp.status_code == 400
    assert body_json(resp)["field"] == field
    assert stack.queue_length() == 0
