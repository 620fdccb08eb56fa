"""Property: any inbound SMS text yields a well-formed TwiML reply.

Text is drawn from all of Unicode, surrogates and control characters included, mixed
with XML's metacharacters; the rules echo the sender and the body into replies, so
whatever arrives ends up inside the document.
"""

from __future__ import annotations

from xml.etree import ElementTree

from hypothesis import given, settings
from hypothesis import strategies as st

from telephony.adapters.twiml import message_reply, xml_text
from telephony.config.documents import app_file
from telephony.sms.routing import InboundSms, SmsResponder, decide
from telephony.sms.rules import SmsRules, load_rules, parse_rules
from tests.fakes import MemoryOptOutStore

ECHO = parse_rules(
    {
        "version": 1,
        "help": "Help for {from}: {body}",
        "rules": [{"name": "quoted", "regex": "[<&>\"']", "reply": "<{body}> & '{from}'"}],
        "default": {"reply": "You said {body} to {to}"},
    }
)
EXAMPLE = load_rules(app_file("flows/sms-rules.yaml"))

HOSTILE = st.sampled_from(
    ["<", ">", "&", '"', "'", "]]>", "<![CDATA[", "&amp;", "\x00", "\x1b", "\ufffe", "\ud800"]
)
ANY_TEXT = st.lists(st.characters(exclude_categories=()) | HOSTILE, max_size=200).map("".join)


def reply_to(body: str, sender: str, rules: SmsRules) -> tuple[str | None, str]:
    store = MemoryOptOutStore()
    responder = SmsResponder(lambda: store, lambda command: None)
    message = InboundSms("SM" + "0" * 32, sender, "+15017122661", body)
    reply = responder.respond(message, decide(message, rules, "auto"))
    return reply, message_reply(reply)


@settings(max_examples=300, deadline=None)
@given(body=ANY_TEXT, sender=ANY_TEXT)
def test_any_text_gives_a_well_formed_reply_with_the_text_intact(body: str, sender: str) -> None:
    reply, document = reply_to(body, sender, ECHO)
    root = ElementTree.fromstring(document.encode("utf-8"))
    assert root.tag == "Response"
    messages = list(root)
    assert [m.tag for m in messages] == (["Message"] if reply and xml_text(reply) else [])
    if messages:
        # Everything XML can carry survives; only what it cannot carry is dropped.
        parsed = messages[0].text or ""
        assert parsed == xml_text(reply or "").replace("\r\n", "\n").replace("\r", "\n")


@settings(max_examples=200, deadline=None)
@given(body=ANY_TEXT | st.sampled_from(["STOP", "help", " start ", "hours", "order 7", "90210"]))
def test_the_example_rules_always_render_well_formed_twiml(body: str) -> None:
    _, document = reply_to(body, "+15558675310", EXAMPLE)
    assert ElementTree.fromstring(document.encode("utf-8")).tag == "Response"
