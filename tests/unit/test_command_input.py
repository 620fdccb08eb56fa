"""Every queued message is either rejected with a reason or sent: nothing in between.

Careless producers send what Python's JSON parser has limits for (nesting past the
recursion limit, integers past the int-string limit), text no UTF-8 request can carry
(lone surrogates), and bytes that are neither JSON nor base64. Each must end `rejected`
and deleted, never an exception (retried to poison) nor a claim that fails in the HTTP
client (left in doubt though nothing reached Twilio).
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telephony.outbound.commands import CommandRules
from telephony.outbound.records import REJECTED
from telephony.outbound.sender import OutboundSms, SenderDefaults
from telephony.outbound.service import OutboundService, SendOutcome
from tests.fakes import Clock, MemoryOptOutStore, MemoryStore, ScriptedSender

HOME = frozenset({"US"})  # the destination guard: the sender's country

SMS = {"kind": "sms", "to": "+15558675310", "body": "Your order shipped"}


def service() -> tuple[OutboundService, MemoryStore, ScriptedSender]:
    store, sender = MemoryStore(), ScriptedSender()
    defaults = SenderDefaults("+15017122661", None, "https://calls.example.net")
    svc = OutboundService(
        store, sender, CommandRules(HOME), defaults, MemoryOptOutStore(), [].append, Clock()
    )
    return svc, store, sender


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"kind": "sms", "to": "+15558675310", "body": "x", "n": ' + "9" * 5000 + "}",
         "not valid JSON"),
        ('{"kind": "sms", "to": "+15558675310", "body": "x\\ud800"}', "lone surrogate"),
        ('{"kind": "sms", "to": "+15558675310", "body": "x", "idempotency_key": "\\udfff"}',
         "lone surrogate"),
        ("é", "not JSON"),
        ("\x00\xff", "not JSON"),
    ],
)  # fmt: skip
def test_input_past_the_parsers_limits_is_rejected_and_recorded(text: str, reason: str) -> None:
    svc, store, sender = service()
    assert svc.handle(text, "m-1", 1) is SendOutcome.REJECTED
    [record] = store.records.values()
    assert record.status == REJECTED and reason in (record.reason or "")
    assert sender.sent == []


def test_a_lone_surrogate_in_the_body_names_the_field() -> None:
    svc, store, _ = service()
    svc.handle('{"kind": "sms", "to": "+15558675310", "body": "\\ud83d", "idempotency_key": "k"}',
               "m-1", 1)  # fmt: skip
    assert store.records["k"].status == REJECTED
    assert "body" in (store.records["k"].reason or "")


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
COMMANDISH = st.fixed_dictionaries(
    {"kind": st.sampled_from(["sms", "call", "fax"]), "to": st.sampled_from(
        ["+15558675310", "+1555", "5558675310", "+15558675310\n"])},
    optional={"body": st.text(), "say": st.text(), "twiml": st.text(), "url": st.text(),
              "idempotency_key": st.text(), "media_urls": st.lists(st.text(), max_size=3),
              "send_at": st.text(), "flow": st.text(), "extra": JSON},
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(document=st.one_of(JSON, COMMANDISH))
def test_any_json_is_rejected_or_sent_with_text_a_request_can_carry(document: object) -> None:
    svc, store, sender = service()
    outcome = svc.handle(json.dumps(document), "m-1", 1)
    assert outcome in (SendOutcome.REJECTED, SendOutcome.SENT)
    [record] = store.records.values()
    if outcome is SendOutcome.REJECTED:
        assert record.status == REJECTED and record.reason and sender.sent == []
    else:
        [sent] = sender.sent
        assert isinstance(sent, OutboundSms) or sent.to == "+15558675310"
        for value in vars(sent).values():
            if isinstance(value, str):
                value.encode("utf-8")  # raises for anything the HTTP client could not send


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=64))
def test_any_bytes_on_the_queue_end_rejected_or_sent(raw: bytes) -> None:
    svc, store, _ = service()
    text = raw.decode("utf-8", errors="replace")  # as the queue trigger decodes the body
    assert svc.handle(text, "m-1", 1) in (SendOutcome.REJECTED, SendOutcome.SENT)
    assert len(store.records) == 1
