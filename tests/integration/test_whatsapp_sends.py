"""WhatsApp and Content templates end to end: Azurite, and Twilio's contract in Prism.

GIVEN the app on Azurite and the Twilio peer, WHEN a queued command goes to a WhatsApp
address or sends a Content template with a validity period, THEN the request Twilio gets
carries them as Twilio names them (To/From with whatsapp:, ContentSid, ContentVariables as
one JSON text, ValidityPeriod) and Prism finds no violation of Twilio's contract; a
WhatsApp send outside the 24-hour window (Twilio's 63016) fails for good and says why; and
a STOP on either channel stops sends on the other.
"""

from __future__ import annotations

import json
import uuid

import pytest

from tests.app_client import signed_post
from tests.integration.test_outbound_queue import PUBLIC, Stack, StackFactory, make_stack
from tests.integration.test_sms_optouts import text

__all__ = ["make_stack"]  # the fixture, shared with the queue tests

CUSTOMER = "+15558675310"
WHATSAPP = f"whatsapp:{CUSTOMER}"
OURS = "+15017122661"  # TWILIO_PHONE_NUMBER of the test environment
TEMPLATE = "HX" + "0123456789abcdef" * 2
SERVICE = "MG" + "b" * 32
REMINDER = {
    "kind": "sms",
    "to": WHATSAPP,
    "content_sid": TEMPLATE,
    "content_variables": {"1": "Ada", "2": "Tuesday 9:30, Café Zürich"},
    "validity_period": 600,
}


@pytest.fixture
def stack(make_stack: StackFactory) -> Stack:
    table = f"optouts{uuid.uuid4().hex[:10]}"
    return make_stack(SMS_RULES_FILE="flows/sms-rules.yaml", OPTOUTS_TABLE_NAME=table)


def test_a_whatsapp_template_reaches_twilio_as_its_contract_names_it(stack: Stack) -> None:
    stack.put({**REMINDER, "idempotency_key": "wa-template"})
    assert stack.deliver() is None
    record = stack.record("wa-template")
    assert (record.status, record.to) == ("queued", WHATSAPP)
    [sent] = stack.twilio.find_requests("/Messages.json", method="POST")
    assert sent.violations == []
    assert (sent.param("To"), sent.param("From")) == (WHATSAPP, f"whatsapp:{OURS}")
    assert sent.param("ContentSid") == TEMPLATE
    assert json.loads(sent.param("ContentVariables") or "") == REMINDER["content_variables"]
    assert sent.param("ValidityPeriod") == "600"
    assert sent.param("Body") is None


def test_a_whatsapp_message_without_from_goes_through_the_messaging_service(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(TWILIO_MESSAGING_SERVICE_SID=SERVICE)
    stack.put(
        {"kind": "sms", "to": WHATSAPP, "body": "Your table is ready", "idempotency_key": "wa"}
    )
    assert stack.deliver() is None
    [sent] = stack.twilio.find_requests("/Messages.json", method="POST")
    assert sent.violations == []
    assert (sent.param("MessagingServiceSid"), sent.param("From")) == (SERVICE, None)
    assert sent.param("To") == WHATSAPP


def test_a_validity_period_on_an_sms_is_sent_too(stack: Stack) -> None:
    stack.put({"kind": "sms", "to": CUSTOMER, "body": "Your code is 1234", "validity_period": 60,
               "idempotency_key": "otp"})  # fmt: skip
    assert stack.deliver() is None
    [sent] = stack.twilio.find_requests("/Messages.json", method="POST")
    assert sent.violations == []
    assert (sent.param("From"), sent.param("ValidityPeriod")) == (OURS, "60")


def test_outside_the_24_hour_window_fails_for_good_and_says_to_send_a_template(
    stack: Stack,
) -> None:
    stack.twilio.fail_next(400, twilio_code=63016, path_contains="/Messages.json")
    stack.put({"kind": "sms", "to": WHATSAPP, "body": "Are you still there?",
               "idempotency_key": "wa-late"})  # fmt: skip
    assert stack.deliver() is None  # deleted: never retried
    record = stack.record("wa-late")
    assert (record.status, record.error_code) == ("failed", 63016)
    assert (
        record.reason == "outside WhatsApp's 24-hour window: send a Content template (content_sid)"
    )
    assert len(stack.twilio.find_requests("/Messages.json")) == 1
    assert stack.queue_length() == 0


def test_a_63016_reported_by_callback_says_so_too(stack: Stack) -> None:
    """Twilio usually accepts the message and reports the window later."""
    stack.put({"kind": "sms", "to": WHATSAPP, "body": "Hello again", "idempotency_key": "wa-cb"})
    assert stack.deliver() is None
    sid = stack.record("wa-cb").twilio_sid or ""
    params = {"MessageSid": sid, "MessageStatus": "failed", "To": WHATSAPP, "ErrorCode": "63016"}
    url = f"{PUBLIC}/api/status_callback?id=wa-cb"
    assert signed_post("status_callback", params, url=url).status_code == 204
    record = stack.record("wa-cb")
    assert (record.status, record.error_code) == ("failed", 63016)
    assert "24-hour window" in (record.reason or "")


def test_an_sms_stop_refuses_a_queued_whatsapp_send(stack: Stack) -> None:
    assert text("STOP", sender=CUSTOMER) is None
    stack.put({**REMINDER, "idempotency_key": "after-sms-stop"})
    assert stack.deliver() is None
    assert stack.record("after-sms-stop").reason == "opted_out"
    assert stack.twilio.find_requests("/Messages.json") == []
