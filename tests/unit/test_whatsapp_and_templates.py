"""WhatsApp addresses, Content templates and validity periods: the command, the send, a failure.

GIVEN the sms additions of the command contract, WHEN a command names a WhatsApp address,
a Content template or a validity period, THEN it is validated like an SMS (the number after
`whatsapp:` passes the destination guard, every refusal names its field), the send asks
Twilio for exactly that from the sender on the recipient's channel, an opt-out holds on
every channel, and Twilio's 63016 (outside the 24-hour window) fails and says what to do.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from telephony import schemas
from telephony.errors import (
    FlowDocumentError,
    InvalidInputError,
    RecipientOptedOutError,
    TwilioRejectedError,
)
from telephony.flows import CallEvent, CallUrls, parse_flow_document, render
from telephony.logs import log_event
from telephony.outbound.calls import call_command
from telephony.outbound.commands import CommandRules, parse_command
from telephony.outbound.records import DeliveryRecord, apply_callback
from telephony.outbound.sender import OutboundSms, SenderDefaults
from telephony.outbound.service import OutboundService, SendOutcome
from telephony.phone import mask
from tests.fakes import Clock, MemoryOptOutStore, MemoryStore, ScriptedSender

HOME = frozenset({"US"})  # the destination guard: the sender's country
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
CUSTOMER = "+15558675310"
WHATSAPP = f"whatsapp:{CUSTOMER}"
OURS = "+15017122661"
SERVICE = "MG" + "b" * 32
TEMPLATE = "HX" + "0123456789abcdef" * 2
TEMPLATED = {"kind": "sms", "to": WHATSAPP, "content_sid": TEMPLATE,
             "content_variables": {"1": "Ada", "2": "9:30"}, "validity_period": 600}  # fmt: skip
WINDOW = "outside WhatsApp's 24-hour window: send a Content template (content_sid)"


def parse(document: dict[str, Any]) -> Any:
    return parse_command(document, "key-1", CommandRules(HOME), NOW)


def refusal(document: dict[str, Any]) -> InvalidInputError:
    with pytest.raises(InvalidInputError) as caught:
        parse(document)
    return caught.value


# --- the command -------------------------------------------------------------------------


def test_a_whatsapp_address_is_kept_with_its_prefix() -> None:
    command = parse({"kind": "sms", "to": WHATSAPP, "from": f"whatsapp:{OURS}", "body": "Hi"})
    assert (command.to, command.from_) == (WHATSAPP, f"whatsapp:{OURS}")


def test_a_template_and_its_variables_and_validity_period_are_carried() -> None:
    command = parse(TEMPLATED)
    assert (command.content_sid, command.validity_period, command.body) == (TEMPLATE, 600, None)
    assert command.content_variables == {"1": "Ada", "2": "9:30"}


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"to": "whatsapp:+447700900123"}, "to", "to is in a destination that is not allowed"),
        ({"to": "whatsapp:+19005550100"}, "to",
         "to is a premium-rate number, which is never allowed"),
        ({"to": "whatsapp:+1555"}, "to", "to has the wrong length for its country"),
        ({"to": "whatsapp:15558675310"}, "to",
         "to must be an E.164 number such as +15558675310, or a WhatsApp address such as "
         "whatsapp:+15558675310"),
        ({"from": OURS}, "from",
         "from must be a WhatsApp address such as whatsapp:+15017122661, on the channel of to"),
        ({"to": CUSTOMER, "from": f"whatsapp:{OURS}"}, "from",
         "from must be an E.164 number such as +15017122661, on the channel of to"),
        ({"content_sid": None}, "content_variables", "content_variables needs content_sid"),
        ({"body": "Hi"}, "content_sid", "give at most one of body, content_sid"),
        ({"content_sid": "HX123"}, "content_sid",
         "content_sid must be a Content template SID: HX and 32 hex digits"),
        ({"content_variables": {"1": 5}}, "content_variables",
         "content_variables.1 must be of type string"),
        ({"validity_period": 0}, "validity_period", "validity_period must be at least 1"),
        ({"validity_period": 36001}, "validity_period", "validity_period must be at most 36000"),
        ({"validity_period": "60"}, "validity_period",
         "validity_period must be of type integer"),
    ],
)  # fmt: skip
def test_what_an_sms_cannot_be_is_refused_naming_the_field(
    change: dict[str, Any], field: str, message: str
) -> None:
    document = {k: v for k, v in {**TEMPLATED, **change}.items() if v is not None}
    error = refusal(document)
    assert (error.field, error.message) == (field, message)


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"to": WHATSAPP}, "to",
         "to must be an E.164 number such as +15558675310 (calls cannot go to WhatsApp)"),
        ({"from": f"whatsapp:{OURS}"}, "from",
         "from must be an E.164 number such as +15558675310 (calls cannot come from WhatsApp)"),
    ],
)  # fmt: skip
def test_calls_stay_on_the_phone_network_queued_or_placed_now(
    change: dict[str, str], field: str, message: str
) -> None:
    body = {"to": CUSTOMER, "say": "Your code is 1 2 3 4", **change}
    queued = refusal({**body, "kind": "call"})
    with pytest.raises(InvalidInputError) as placed:
        call_command(body, CommandRules(HOME), NOW)
    assert (queued.field, queued.message) == (placed.value.field, placed.value.message)
    assert (queued.field, queued.message) == (field, message)


# --- the send ----------------------------------------------------------------------------


def service(
    sender: ScriptedSender, optouts: MemoryOptOutStore | None = None, service_sid: str | None = None
) -> tuple[OutboundService, MemoryStore]:
    store = MemoryStore()
    queue: list[str] = []  # POST /api/messages enqueues here
    defaults = SenderDefaults(OURS, service_sid, "https://calls.example.net")
    rules = CommandRules(HOME, messaging_service_sid=service_sid)
    svc = OutboundService(
        store, sender, rules, defaults, optouts or MemoryOptOutStore(), queue.append, Clock()
    )
    return svc, store


def sent_sms(command: dict[str, Any], service_sid: str | None = None) -> OutboundSms:
    sender = ScriptedSender()
    svc, _ = service(sender, service_sid=service_sid)
    assert svc.handle(json.dumps(command), "msg-1", 1) is SendOutcome.SENT
    [sms] = sender.sent
    assert isinstance(sms, OutboundSms)
    return sms


def test_a_whatsapp_send_defaults_to_our_number_on_whatsapp() -> None:
    sms = sent_sms(TEMPLATED)
    assert (sms.to, sms.from_, sms.messaging_service_sid) == (WHATSAPP, f"whatsapp:{OURS}", None)
    assert (sms.content_sid, sms.validity_period) == (TEMPLATE, 600)
    assert sms.content_variables == {"1": "Ada", "2": "9:30"}


def test_a_messaging_service_picks_the_whatsapp_sender_itself() -> None:
    sms = sent_sms(TEMPLATED, service_sid=SERVICE)
    assert (sms.from_, sms.messaging_service_sid) == (None, SERVICE)


def test_an_sms_still_defaults_to_our_plain_number() -> None:
    sms = sent_sms({"kind": "sms", "to": CUSTOMER, "body": "Hi", "validity_period": 60})
    assert (sms.from_, sms.validity_period, sms.content_sid) == (OURS, 60, None)


@pytest.mark.parametrize(
    ("opted_out", "to"), [(CUSTOMER, WHATSAPP), (WHATSAPP, CUSTOMER)]
)  # fmt: skip
def test_an_opt_out_on_one_channel_refuses_sends_on_the_other(opted_out: str, to: str) -> None:
    sender = ScriptedSender()
    svc, store = service(sender, MemoryOptOutStore(opted_out))
    command = {"kind": "sms", "to": to, "body": "Your order shipped"}
    assert svc.handle(json.dumps(command), "msg-1", 1) is SendOutcome.REJECTED
    assert store.records["msg-1"].reason == "opted_out"
    with pytest.raises(RecipientOptedOutError):
        svc.submit(command)
    assert sender.sent == []


# --- outside the 24-hour window (63016) ----------------------------------------------------


def test_twilios_63016_fails_for_good_and_says_to_send_a_template() -> None:
    refused = TwilioRejectedError(400, 63016, "Failed to send freeform message because ...")
    sender = ScriptedSender(refused)
    svc, store = service(sender)
    command = {"kind": "sms", "to": WHATSAPP, "body": "Still there?"}
    assert svc.handle(json.dumps(command), "msg-1", 1) is SendOutcome.FAILED
    record = store.records["msg-1"]
    assert (record.status, record.error_code, record.reason) == ("failed", 63016, WINDOW)


def test_a_63016_callback_says_why_and_other_codes_keep_twilios_silence() -> None:
    sent = DeliveryRecord("k", "sms", WHATSAPP, "queued", NOW, NOW, twilio_sid="SM1")
    failed = apply_callback(sent, "failed", "SM1", 63016, NOW)
    assert (failed.status, failed.error_code, failed.reason) == ("failed", 63016, WINDOW)
    assert apply_callback(sent, "undelivered", "SM1", 30003, NOW).reason is None


# --- logs, schema messages, flows ----------------------------------------------------------


def test_a_whatsapp_address_is_masked_like_a_number(caplog: pytest.LogCaptureFixture) -> None:
    assert mask(WHATSAPP) == "whatsapp:+1********10"
    with caplog.at_level(logging.INFO):
        log_event(logging.getLogger("test"), "sent", to=WHATSAPP)
    assert json.loads(caplog.records[0].getMessage())["to"] == "whatsapp:+1********10"


@pytest.mark.parametrize(
    ("instance", "schema", "where", "expected", "field"),
    [
        ({"b": 1}, {"dependentRequired": {"b": ["a"]}}, "", "b needs a", "b"),
        ({"b": 1}, {"dependentRequired": {"b": ["a"]}}, "x", "x.b needs a", "b"),
        ({"b": 1}, {"dependentRequired": {"a": ["x"], "b": ["a", "y"]}}, "", "b needs a", "b"),
        ({"a": 1, "b": 2}, {"not": {"required": ["a", "b"]}}, "", "give at most one of a, b", "b"),
        ({"a": 1, "b": 2}, {"not": {"required": ["a", "b"]}}, "x", "x takes at most one of a, b",
         "b"),
    ],
)  # fmt: skip
def test_dependencies_and_exclusions_are_described_and_name_a_field(
    instance: object, schema: dict[str, Any], where: str, expected: str, field: str
) -> None:
    error = best_match(Draft202012Validator(schema).iter_errors(instance))
    assert error is not None
    assert schemas.describe(error, where) == expected
    assert schemas.field_of(error) == field


def flow_with_sms_to(to: str) -> Any:
    steps = {"a": {"sms": {"to": to, "body": "Your booking is confirmed"}}}
    return parse_flow_document({"version": 1, "flows": {"f": {"start": "a", "steps": steps}}})


def test_a_flow_can_send_its_sms_to_a_whatsapp_address() -> None:
    event = CallEvent("f", None, None, call_sid="CA" + "1" * 32, from_=CUSTOMER, to=OURS)
    rendered = render(flow_with_sms_to(WHATSAPP), event, CallUrls.for_base("https://x.example"))
    [sms] = rendered.sms
    assert sms.to == WHATSAPP
    queued = parse({"kind": "sms", "to": sms.to, "body": sms.body})
    assert queued.to == WHATSAPP


@pytest.mark.parametrize("to", ["whatsapp:caller", "whatsapp:15558675310", "sms:+15558675310"])
def test_a_flow_sms_to_anything_else_is_refused(to: str) -> None:
    with pytest.raises(FlowDocumentError, match=r"sms\.to must be caller"):
        flow_with_sms_to(to)
