"""WhatsApp through the app's functions, in-process: signed webhooks and JSON requests in.

GIVEN the app with the shipped SMS rules and in-memory stores, queue and event sink, WHEN
Twilio posts signed WhatsApp messages (From and To are whatsapp: addresses) and producers
post WhatsApp commands, THEN the rules, opt-outs and events work as for SMS: a STOP on
either channel stops every send to the person, events carry the whatsapp: addresses (and
the bare number where the contract says so) and validate against their schemas, forwards
go to plain numbers, and calls refuse WhatsApp addresses with a 400 naming the field.
"""

from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree

import pytest

from telephony import schemas
from telephony.events import DELIVERY_UPDATED, OPTOUT_CHANGED, SMS_RECEIVED
from telephony.outbound.sender import OutboundSms
from tests.app_client import body_json, post_json, signed_post
from tests.conftest import AppFactory
from tests.fakes import Clock, MemoryOptOutStore, MemorySink, MemoryStore, ScriptedSender

CUSTOMER = "+15558675310"
OURS = "+15017122661"
DESK = "+15551230001"  # the order desk in flows/sms-rules.yaml
TEMPLATE = "HX" + "0123456789abcdef" * 2


def whatsapp(number: str) -> str:
    return f"whatsapp:{number}"


class WhatsAppApp:
    """The app with in-memory opt-outs, records, outbound queue, sender and event sink."""

    def __init__(self, app_env: AppFactory, rules_file: str = "flows/sms-rules.yaml") -> None:
        self.sink, self.optouts = MemorySink(), MemoryOptOutStore()
        self.queue: list[str] = []
        self.sender, self.clock = ScriptedSender(), Clock()
        parts = {
            "event_sinks": [self.sink], "deliveries": MemoryStore(), "optouts": self.optouts,
            "enqueue": self.queue.append, "sender": self.sender, "clock": self.clock,
        }  # fmt: skip
        self.container = app_env(parts, SMS_RULES_FILE=rules_file)
        self.sids = iter(f"SM{n:032x}" for n in range(1, 1000))

    def text(self, body: str, sender: str = whatsapp(CUSTOMER)) -> str | None:
        """A signed inbound message to our WhatsApp sender (or number); the reply or None."""
        to = whatsapp(OURS) if sender.startswith("whatsapp:") else OURS
        params = {"MessageSid": next(self.sids), "From": sender, "To": to, "Body": body}
        resp = signed_post("sms_url", params)
        assert resp.status_code == 200, resp.get_body()
        root = ElementTree.fromstring(resp.get_body())
        return root[0].text if len(root) else None

    def data(self, kind: str) -> list[dict[str, object]]:
        return [event["data"] for event in self.sink.of_type(kind)]  # type: ignore[misc]

    def forwards(self) -> list[dict[str, object]]:
        return [json.loads(text) for text in self.queue]

    def send_queued(self) -> None:
        """Run the outbound worker on every enqueued command."""
        for number, text in enumerate(self.queue):
            self.container.outbound.handle(text, f"msg-{number}", 1)


@pytest.fixture
def app(app_env: AppFactory) -> WhatsAppApp:
    return WhatsAppApp(app_env)


def assert_valid_events(app: WhatsAppApp) -> None:
    assert app.sink.events
    for event in app.sink.events:
        schemas.validator(f"events/{event['type']}.v1.json").validate(event)


def test_a_whatsapp_message_follows_the_rules_and_its_event_keeps_the_addresses(
    app: WhatsAppApp,
) -> None:
    assert app.text("hours") == "We are open Monday to Saturday, 9am to 6pm."
    [received] = app.data(SMS_RECEIVED)
    assert (received["from"], received["to"]) == (whatsapp(CUSTOMER), whatsapp(OURS))
    assert (received["outcome"], received["rule"]) == ("rule", "hours")
    assert_valid_events(app)


def test_a_whatsapp_stop_opts_the_person_out_everywhere(app: WhatsAppApp) -> None:
    assert app.text("STOP") is None
    [change] = app.data(OPTOUT_CHANGED)
    assert (change["address"], change["number"], change["state"]) == (
        whatsapp(CUSTOMER), CUSTOMER, "opted_out",
    )  # fmt: skip
    [event] = app.sink.of_type(OPTOUT_CHANGED)
    assert event["subject"] == f"numbers/{CUSTOMER}"
    assert_valid_events(app)
    for to in (CUSTOMER, whatsapp(CUSTOMER)):
        resp = post_json("send_message", {"kind": "sms", "to": to, "body": "Sale on now"})
        assert resp.status_code == 409
        assert body_json(resp) == {"error": "the recipient has opted out", "field": "to"}
    assert post_json("make_call", {"to": CUSTOMER, "say": "Hello"}).status_code == 409
    assert app.queue == [] and app.sender.sent == []


def test_an_sms_stop_refuses_a_whatsapp_send_and_a_whatsapp_start_undoes_it(
    app: WhatsAppApp,
) -> None:
    assert app.text("STOP", sender=CUSTOMER) is None
    command = {"kind": "sms", "to": whatsapp(CUSTOMER), "content_sid": TEMPLATE}
    assert post_json("send_message", command).status_code == 409
    app.clock.advance(minutes=1)  # at the same second, a STOP stands
    assert app.text("START") is not None
    assert post_json("send_message", command).status_code == 202
    assert [c["state"] for c in app.data(OPTOUT_CHANGED)] == ["opted_out", "opted_in"]


def test_a_rule_forwards_a_whatsapp_message_to_a_plain_number(app: WhatsAppApp) -> None:
    app.text("Order 1234 where is it?")
    [forward] = app.forwards()
    assert forward["to"] == DESK
    assert forward["body"] == f"From {whatsapp(CUSTOMER)}: Order 1234 where is it?"
    app.send_queued()
    [sent] = app.sender.sent
    assert (sent.to, sent.from_) == (DESK, OURS)


def test_a_forward_to_the_senders_or_our_own_number_is_skipped_on_whatsapp_too(
    app_env: AppFactory, tmp_path: Path
) -> None:
    rules = tmp_path / "forward.yaml"
    rules.write_text(f"version: 1\ndefault:\n  forward: ['{CUSTOMER}', '{OURS}', '{DESK}']\n")
    app = WhatsAppApp(app_env, str(rules))
    app.text("Hello?")
    assert [forward["to"] for forward in app.forwards()] == [DESK]


def test_a_whatsapp_template_is_queued_sent_and_its_record_masked(app: WhatsAppApp) -> None:
    command = {
        "kind": "sms", "to": whatsapp(CUSTOMER), "content_sid": TEMPLATE,
        "content_variables": {"1": "Ada"}, "validity_period": 900, "idempotency_key": "wa-1",
    }  # fmt: skip
    resp = post_json("send_message", command)
    assert resp.status_code == 202, resp.get_body()
    assert body_json(resp)["to"] == "whatsapp:+1********10"
    app.send_queued()
    [sent] = app.sender.sent
    assert isinstance(sent, OutboundSms)
    assert (sent.to, sent.from_, sent.content_sid) == (whatsapp(CUSTOMER), whatsapp(OURS), TEMPLATE)
    assert (sent.content_variables, sent.validity_period) == ({"1": "Ada"}, 900)
    [updated] = app.data(DELIVERY_UPDATED)
    assert (updated["to"], updated["status"]) == (whatsapp(CUSTOMER), "queued")
    assert_valid_events(app)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "sms", "to": whatsapp(CUSTOMER), "from": OURS, "body": "Hi"}, "from"),
        ({"kind": "sms", "to": whatsapp(CUSTOMER), "content_sid": TEMPLATE, "body": "Hi"},
         "content_sid"),
        ({"kind": "sms", "to": CUSTOMER, "body": "Hi", "content_variables": {"1": "x"}},
         "content_variables"),
        ({"kind": "sms", "to": "whatsapp:+447700900123", "body": "Hi"}, "to"),
        ({"kind": "call", "to": whatsapp(CUSTOMER), "say": "Hi"}, "to"),
    ],
)  # fmt: skip
def test_what_send_message_refuses_is_a_400_naming_the_field(
    app: WhatsAppApp, body: dict[str, object], field: str
) -> None:
    resp = post_json("send_message", body)
    assert resp.status_code == 400
    assert body_json(resp)["field"] == field
    assert app.queue == []


def test_make_call_refuses_a_whatsapp_address_naming_the_field(app: WhatsAppApp) -> None:
    resp = post_json("make_call", {"to": whatsapp(CUSTOMER), "say": "Hello"})
    assert resp.status_code == 400
    assert body_json(resp) == {
        "error": "to must be an E.164 number such as +15558675310 (calls cannot go to WhatsApp)",
        "field": "to",
    }
    assert app.sender.sent == []
