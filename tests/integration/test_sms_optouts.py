"""Opt-outs and forwards end to end: signed sms_url, Azurite's queue and tables, Twilio's mock.

GIVEN the app with the example SMS rules on Azurite and the Twilio peer, WHEN a number
texts STOP, THEN every later send to it (queued, POST /api/messages, make_call) ends
without a Twilio request, until it texts START. Forwards land on the outbound queue once
however often Twilio delivers the webhook.
"""

from __future__ import annotations

import hashlib
import uuid
from xml.etree import ElementTree

import pytest

from tests.app_client import body_json, post_json, signed_post
from tests.integration.test_outbound_queue import PUBLIC, SMS, Stack, StackFactory, make_stack

__all__ = ["make_stack"]  # the fixture, shared with the queue tests

CUSTOMER = SMS["to"]
DESK = "+15551230001"  # the order desk in flows/sms-rules.yaml


@pytest.fixture
def stack(make_stack: StackFactory) -> Stack:
    table = f"optouts{uuid.uuid4().hex[:10]}"
    return make_stack(SMS_RULES_FILE="flows/sms-rules.yaml", OPTOUTS_TABLE_NAME=table)


def text(body: str, sender: str = CUSTOMER, sid: str | None = None) -> str | None:
    """Post a signed inbound SMS; the reply text, or None for an empty <Response/>."""
    params = {
        "MessageSid": sid or "SM" + uuid.uuid4().hex,
        "From": sender,
        "To": "+15017122661",
        "Body": body,
    }
    resp = signed_post("sms_url", params, url=f"{PUBLIC}/api/sms_url")
    assert resp.status_code == 200, resp.get_body()
    root = ElementTree.fromstring(resp.get_body())
    return root[0].text if len(root) else None


def optout_entities(stack: Stack) -> list[dict[str, object]]:
    table = stack.container.settings.optouts_table_name
    return list(stack.tables.get_table_client(table).list_entities())


def test_stop_is_stored_by_hash_with_the_keyword_and_time(stack: Stack) -> None:
    assert text("Stop", sid="SM" + "5" * 32) is None
    [entity] = optout_entities(stack)
    assert entity["PartitionKey"] == hashlib.sha256(CUSTOMER.encode()).hexdigest()
    assert (entity["Keyword"], entity["MessageSid"]) == ("STOP", "SM" + "5" * 32)
    assert entity["OptedOutAt"]
    assert not any(CUSTOMER[2:] in str(value) for value in entity.values())


def test_stop_then_a_queued_send_is_rejected_without_a_twilio_request(stack: Stack) -> None:
    text("STOP")
    stack.put({**SMS, "idempotency_key": "after-stop"})
    assert stack.deliver() is None  # deleted, never retried
    record = stack.record("after-stop")
    assert (record.status, record.reason, record.to) == ("rejected", "opted_out", CUSTOMER)
    assert stack.twilio.requests == []
    assert stack.queue_length() == 0


def test_start_restores_sends(stack: Stack) -> None:
    text("unsubscribe")
    stack.put({**SMS, "idempotency_key": "while-out"})
    stack.deliver()
    assert text("START") == (
        "Welcome back to Acme Bikes messages. Reply HELP for help, STOP to opt out."
    )
    assert optout_entities(stack) == []
    stack.put({**SMS, "idempotency_key": "back-in"})
    assert stack.deliver() is None
    assert stack.record("back-in").status == "queued"
    [sent] = stack.twilio.find_requests("/Messages.json", method="POST")
    assert sent.param("To") == CUSTOMER


def test_make_call_to_an_opted_out_number_is_409_without_a_twilio_request(stack: Stack) -> None:
    text("quit")
    resp = post_json("make_call", {"to": CUSTOMER, "say": "Your code is 1 2 3 4"})
    assert resp.status_code == 409
    assert body_json(resp) == {"error": "the recipient has opted out", "field": "to"}
    assert stack.twilio.requests == []
    assert post_json("make_call", {"to": DESK}).status_code == 201  # others still get calls


def test_post_messages_to_an_opted_out_number_is_409_and_enqueues_nothing(stack: Stack) -> None:
    text("STOP")
    resp = post_json("send_message", {**SMS, "idempotency_key": "http-out"})
    assert resp.status_code == 409
    assert body_json(resp) == {"error": "the recipient has opted out", "field": "to"}
    assert stack.queue_length() == 0


def test_forwards_land_on_the_queue_once_across_a_repeated_webhook(stack: Stack) -> None:
    sid = "SM" + "7" * 32
    for _ in range(2):  # Twilio delivering the same inbound message twice
        assert text("order 42", sid=sid) == (
            "Thanks! We will text you the status of your order shortly."
        )
    assert stack.queue_length() == 1
    assert stack.deliver() is None
    [sent] = stack.twilio.find_requests("/Messages.json", method="POST")
    assert sent.violations == []
    assert (sent.param("To"), sent.param("Body")) == (DESK, f"From {CUSTOMER}: order 42")
    assert stack.record(f"{sid}-forward-1").status == "queued"


def test_a_forward_to_an_opted_out_number_is_not_queued(stack: Stack) -> None:
    text("STOP", sender=DESK)
    assert text("Do you sell helmets?") is not None  # the customer still gets the reply
    assert stack.queue_length() == 0
