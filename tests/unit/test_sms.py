"""Inbound SMS decisions, the responder's effects, and opt-out enforcement on sends.

GIVEN an inbound message and a rules document, WHEN the app decides and carries out the
decision with in-memory stores, THEN keywords come before rules, opt-outs are recorded,
forwards are keyed by the inbound MessageSid, and no send reaches an opted-out number.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from telephony.errors import CommandRejectedError, RecipientOptedOutError, StorageUnavailableError
from telephony.outbound.commands import CommandRules
from telephony.outbound.sender import SenderDefaults
from telephony.outbound.service import OutboundService, SendOutcome
from telephony.sms.optouts import OPTED_OUT, OptOut, optout_key
from telephony.sms.routing import (
    DEFAULT_HELP_REPLY,
    DEFAULT_START_REPLY,
    InboundSms,
    SmsDecision,
    SmsResponder,
    decide,
    forward_text,
)
from telephony.sms.rules import SmsRules, parse_rules
from tests.fakes import Clock, MemoryOptOutStore, MemoryStore, ScriptedSender

CUSTOMER = "+15558675310"
OURS = "+15017122661"
DESK = "+15551230001"
SID = "SM" + "1" * 32
RULES = parse_rules(
    {
        "version": 1,
        "help": "Help for {from} at {to}",
        "start": "Welcome back",
        "rules": [
            {"name": "hours", "exact": "hours", "reply": "9 to 5"},
            {"name": "order", "prefix": "order", "reply": "Got {body}", "forward": [DESK]},
            {"name": "refund", "regex": r"\brefund\b", "forward": [DESK, "+15551230002"]},
        ],
        "default": {"reply": "Thanks"},
    }
)


def sms(body: str, sid: str | None = SID) -> InboundSms:
    return InboundSms(sid=sid, from_=CUSTOMER, to=OURS, body=body)


# Decisions


@pytest.mark.parametrize("rules", [RULES, None])
@pytest.mark.parametrize("word", ["STOP", "stop", " Unsubscribe ", "optout", "REVOKE"])
def test_opt_out_words_are_recorded_and_never_answered(rules: SmsRules | None, word: str) -> None:
    decision = decide(sms(word), rules, "auto")
    assert decision == SmsDecision("opt_out", keyword=word.strip().upper())


def test_help_and_start_use_the_document_texts() -> None:
    assert decide(sms("help"), RULES, "auto").reply == f"Help for {CUSTOMER} at {OURS}"
    assert decide(sms("Info"), RULES, "auto").outcome == "help"
    assert decide(sms("start"), RULES, "auto") == SmsDecision(
        "opt_in", reply="Welcome back", keyword="START"
    )


def test_without_rules_keywords_have_default_texts_and_the_rest_the_auto_reply() -> None:
    assert decide(sms("HELP"), None, "auto").reply == DEFAULT_HELP_REPLY
    assert decide(sms("unstop"), None, "auto").reply == DEFAULT_START_REPLY
    assert decide(sms("hours"), None, "auto") == SmsDecision("auto_reply", reply="auto")


def test_keywords_come_before_any_rule() -> None:
    rules = parse_rules({"version": 1, "rules": [{"name": "all", "regex": ".", "reply": "x"}]})
    assert decide(sms("stop"), rules, None).outcome == "opt_out"
    assert decide(sms("stop it"), rules, None).outcome == "rule"


def test_rules_then_default_then_nothing() -> None:
    assert decide(sms("HOURS"), RULES, None) == SmsDecision("rule", reply="9 to 5", rule="hours")
    assert decide(sms("order 42"), RULES, None) == SmsDecision(
        "rule", reply="Got order 42", forward=(DESK,), rule="order"
    )
    assert decide(sms("a refund?"), RULES, None).reply is None
    assert decide(sms("hello"), RULES, None) == SmsDecision("default", reply="Thanks")
    assert decide(sms("hello"), parse_rules({"version": 1}), "auto") == SmsDecision("no_match")


def test_from_params_reads_twilio_fields() -> None:
    params = {"MessageSid": SID, "From": CUSTOMER, "To": OURS, "Body": "hi"}
    assert InboundSms.from_params(params) == sms("hi")
    assert InboundSms.from_params({"SmsSid": SID}) == InboundSms(SID, "", "", "")
    assert InboundSms.from_params({}).sid is None


# The responder


class Responder:
    def __init__(self, *opted_out: str) -> None:
        self.store = MemoryOptOutStore(*opted_out)
        self.store_built = 0
        self.queued: list[dict[str, object]] = []
        self.refuse: dict[str, Exception] = {}
        clock = Clock(datetime(2026, 5, 1, 9, 30, tzinfo=UTC))
        self.responder = SmsResponder(self._store, self._forward, clock)

    def _store(self) -> MemoryOptOutStore:
        self.store_built += 1
        return self.store

    def _forward(self, command: dict[str, object]) -> None:
        if command["to"] in self.refuse:
            raise self.refuse[str(command["to"])]
        self.queued.append(command)

    def respond(self, body: str, rules: SmsRules | None = RULES, **kw: Any) -> str | None:
        message = sms(body, **kw)
        return self.responder.respond(message, decide(message, rules, "auto"))


def test_stop_records_the_number_keyword_time_and_message() -> None:
    r = Responder()
    assert r.respond("Stop") is None
    optout = r.store.optouts[CUSTOMER]
    assert (optout.keyword, optout.message_sid) == ("STOP", SID)
    assert optout.at == datetime(2026, 5, 1, 9, 30, tzinfo=UTC)


def test_start_removes_the_opt_out_and_confirms() -> None:
    r = Responder(CUSTOMER)
    assert r.respond("START") == "Welcome back"
    assert CUSTOMER not in r.store.optouts
    assert r.respond("yes") == "Welcome back"  # opting in twice is harmless


def test_a_keyword_without_a_sender_records_nothing() -> None:
    r = Responder()
    message = InboundSms(SID, "", OURS, "STOP")
    assert r.responder.respond(message, decide(message, RULES, None)) is None
    assert r.store_built == 0


def test_other_messages_never_touch_the_opt_out_store() -> None:
    r = Responder()
    for body in ("hours", "order 1", "hello", "help"):
        r.respond(body)
    assert r.store_built == 0


def test_forwards_are_queued_with_keys_from_the_message_sid() -> None:
    r = Responder()
    assert r.respond("I want a refund") is None
    assert r.queued == [
        {"kind": "sms", "to": DESK, "body": f"From {CUSTOMER}: I want a refund",
         "idempotency_key": f"{SID}-forward-1"},
        {"kind": "sms", "to": "+15551230002", "body": f"From {CUSTOMER}: I want a refund",
         "idempotency_key": f"{SID}-forward-2"},
    ]  # fmt: skip


def test_a_retried_webhook_derives_the_same_keys() -> None:
    r = Responder()
    r.respond("order 42")
    r.respond("order 42")
    assert {c["idempotency_key"] for c in r.queued} == {f"{SID}-forward-1"}


def test_a_forward_without_message_sid_or_to_ourselves_is_skipped() -> None:
    r = Responder()
    assert r.respond("order 42", sid=None) == "Got order 42"
    loop = parse_rules({"version": 1, "default": {"forward": [OURS, CUSTOMER]}})
    assert r.respond("hello", rules=loop) is None
    assert r.queued == []


@pytest.mark.parametrize(
    "error",
    [RecipientOptedOutError(), CommandRejectedError("to is not allowed", "to")],
)
def test_a_refused_forward_does_not_stop_the_others_or_the_reply(error: Exception) -> None:
    r = Responder()
    r.refuse[DESK] = error
    assert r.respond("refund") is None
    assert [c["to"] for c in r.queued] == ["+15551230002"]


def test_forward_text_names_the_sender_and_fits_one_message() -> None:
    assert forward_text(sms("  hi  ")) == f"From {CUSTOMER}: hi"
    assert forward_text(sms("")) == f"From {CUSTOMER}: (no text)"
    long = forward_text(sms("x" * 1600))
    assert len(long) == 1600
    assert long.endswith("x\u2026")


# Opt-out keys


def test_optout_key_is_the_sha256_of_the_number_not_the_number() -> None:
    key = optout_key(CUSTOMER)
    assert key == hashlib.sha256(CUSTOMER.encode()).hexdigest()
    assert CUSTOMER[1:] not in key


# Enforcement on queued and HTTP sends

STOPPED = OptOut(CUSTOMER, "STOP", datetime(2026, 1, 1, tzinfo=UTC))
SEND = {"kind": "sms", "to": CUSTOMER, "body": "Your order shipped", "idempotency_key": "k1"}


def outbound(
    optouts: MemoryOptOutStore, queue: list[str] | None = None
) -> tuple[OutboundService, MemoryStore, ScriptedSender]:
    store, sender = MemoryStore(), ScriptedSender()
    defaults = SenderDefaults(OURS, None, "https://calls.example.net")
    enqueue = (queue if queue is not None else []).append
    service = OutboundService(store, sender, CommandRules(), defaults, optouts, enqueue, Clock())
    return service, store, sender


@pytest.mark.parametrize(
    "command", [SEND, {"kind": "call", "to": CUSTOMER, "say": "Hi", "idempotency_key": "k1"}]
)
def test_a_send_to_an_opted_out_number_is_rejected_before_twilio(
    command: dict[str, object],
) -> None:
    optouts = MemoryOptOutStore(CUSTOMER)
    service, store, sender = outbound(optouts)
    assert service.handle(json.dumps(command), "m1", 1) is SendOutcome.REJECTED
    record = store.records["k1"]
    assert (record.status, record.reason) == ("rejected", OPTED_OUT)
    assert (record.kind, record.to) == (command["kind"], CUSTOMER)
    assert sender.sent == []
    assert (optouts.round_trips, store.round_trips) == (1, 1)  # point read, insert


def test_after_opting_in_the_same_key_is_sent() -> None:
    optouts = MemoryOptOutStore(CUSTOMER)
    service, store, sender = outbound(optouts)
    service.handle(json.dumps(SEND), "m1", 1)
    optouts.remove(CUSTOMER)
    assert service.handle(json.dumps(SEND), "m1", 2) is SendOutcome.SENT
    assert len(sender.sent) == 1
    assert store.records["k1"].status == "queued"


def test_a_send_costs_one_opt_out_read_beside_the_two_record_round_trips() -> None:
    optouts = MemoryOptOutStore()
    service, store, _ = outbound(optouts)
    assert service.handle(json.dumps(SEND), "m1", 1) is SendOutcome.SENT
    assert (optouts.round_trips, store.round_trips) == (1, 2)


def test_a_sent_key_redelivered_after_stop_keeps_its_record() -> None:
    optouts = MemoryOptOutStore()
    service, store, sender = outbound(optouts)
    service.handle(json.dumps(SEND), "m1", 1)
    optouts.add(STOPPED)
    assert service.handle(json.dumps(SEND), "m1", 2) is SendOutcome.REJECTED
    assert store.records["k1"].status == "queued"
    assert len(sender.sent) == 1


def test_an_unreadable_opt_out_store_is_retried() -> None:
    class Broken(MemoryOptOutStore):
        def is_opted_out(self, number: str) -> bool:
            raise StorageUnavailableError("could not read opt-outs: ServiceRequestError")

    service, store, sender = outbound(Broken())
    with pytest.raises(StorageUnavailableError, match="could not read opt-outs"):
        service.handle(json.dumps(SEND), "m1", 1)
    assert sender.sent == [] and store.records == {}


def test_submit_refuses_an_opted_out_recipient_before_enqueueing() -> None:
    queued: list[str] = []
    service, store, _ = outbound(MemoryOptOutStore(CUSTOMER), queued)
    with pytest.raises(RecipientOptedOutError):
        service.submit(dict(SEND))
    assert queued == [] and store.pending == {}


def test_submit_of_a_used_key_answers_with_its_record_without_an_opt_out_read() -> None:
    optouts = MemoryOptOutStore()
    queued: list[str] = []
    service, _, _ = outbound(optouts, queued)
    service.submit(dict(SEND))
    optouts.add(STOPPED)
    before = optouts.round_trips
    _, created = service.submit(dict(SEND))
    assert (created, len(queued), optouts.round_trips) == (False, 1, before)
