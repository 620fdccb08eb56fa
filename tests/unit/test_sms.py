"""Inbound SMS decisions, the responder's effects, and opt-out enforcement on sends.

GIVEN an inbound message and a rules document, WHEN the app decides and carries out the
decision with in-memory stores, THEN keywords come before rules, opt-outs are recorded,
forwards are keyed by the inbound MessageSid, and no send reaches an opted-out number.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from telephony.errors import (
    CommandRejectedError,
    RecipientOptedOutError,
    StorageUnavailableError,
    TwilioUnavailableError,
)
from telephony.outbound import NOT_QUIET
from telephony.outbound.commands import CommandRules
from telephony.outbound.sender import SenderDefaults
from telephony.outbound.service import OutboundService, SendOutcome
from telephony.sms.keywords import keyword_of
from telephony.sms.optouts import (
    OPTED_OUT,
    ConsentEvent,
    MessageClock,
    consent_number,
    ensure_can_contact,
    optout_key,
)
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

HOME = frozenset({"US"})  # the destination guard: the sender's country

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
    def __init__(self, *opted_out: str, message_clock: MessageClock | None = None) -> None:
        self.store = MemoryOptOutStore(*opted_out)
        self.store_built = 0
        self.queued: list[dict[str, object]] = []
        self.refuse: dict[str, Exception] = {}
        self.clock = Clock(datetime(2026, 5, 1, 9, 30, tzinfo=UTC))
        self.responder = SmsResponder(self._store, self._forward, self.clock, message_clock)

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
    assert r.respond("yes", sid="SM" + "2" * 32) == "Welcome back"  # twice is harmless


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
         "quiet_hours": NOT_QUIET, "idempotency_key": f"{SID}-forward-1"},
        {"kind": "sms", "to": "+15551230002", "body": f"From {CUSTOMER}: I want a refund",
         "quiet_hours": NOT_QUIET, "idempotency_key": f"{SID}-forward-2"},
    ]  # fmt: skip
    # a forward answers a message that just came in: QUIET_HOURS never defers it
    assert NOT_QUIET["start"] == NOT_QUIET["end"]


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

STOPPED = ConsentEvent(CUSTOMER, "STOP", datetime(2026, 1, 1, tzinfo=UTC))
STARTED = ConsentEvent(CUSTOMER, "START", datetime(2026, 2, 1, tzinfo=UTC), opted_out=False)
SEND = {"kind": "sms", "to": CUSTOMER, "body": "Your order shipped", "idempotency_key": "k1"}


def outbound(
    optouts: MemoryOptOutStore, queue: list[str] | None = None
) -> tuple[OutboundService, MemoryStore, ScriptedSender]:
    store, sender = MemoryStore(), ScriptedSender()
    defaults = SenderDefaults(OURS, None, "https://calls.example.net")
    enqueue = (queue if queue is not None else []).append
    service = OutboundService(
        store, sender, CommandRules(HOME), defaults, optouts, enqueue, Clock()
    )
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
    optouts.apply(STARTED)
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
    optouts.apply(STOPPED)
    assert service.handle(json.dumps(SEND), "m1", 2) is SendOutcome.DUPLICATE
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
    optouts.apply(STOPPED)
    before = optouts.round_trips
    _, created = service.submit(dict(SEND))
    assert (created, len(queued), optouts.round_trips) == (False, 1, before)


# Keywords: a message whose only word is an opt-out keyword opts out (DESIGN, Opt-outs)

OPTS_OUT = [
    ("Stop.", "STOP"),
    ("STOP!", "STOP"),
    (" stop all", "STOPALL"),
    ("OPT-OUT", "OPTOUT"),
    ("opt out", "OPTOUT"),
    ("Opt_Out", "OPTOUT"),
    ("'stop'", "STOP"),
    ("\u00a1Stop!", "STOP"),
    ("STOP!!! \U0001f6d1", "STOP"),
    ("...unsubscribe...", "UNSUBSCRIBE"),
    ("Cancel?", "CANCEL"),
    ("\uff33\uff34\uff2f\uff30", "STOP"),  # full-width letters
    ("stop\u200b", "STOP"),  # a zero-width space after it
    ("opt\u2013out", "OPTOUT"),  # an en dash
    ("s t o p", "STOP"),
    ("Revoke.", "REVOKE"),
    ("end\n", "END"),
]
NOT_KEYWORDS = [
    "stop by tomorrow",
    "stop please",
    "please stop",
    "don't stop",
    "stop, please",
    "STOPPED",
    "nonstop",
    "bus stop",
    "the end",
    "weekend",
    "1 stop",
    "HELPME",
    "help me",
    "Start!",  # opting back in is matched strictly
    "yes.",
    "start now",
    "un-stop",
    "",
    "  ",
    "!!!",
]


@pytest.mark.parametrize(("text", "word"), OPTS_OUT)
def test_a_message_whose_only_word_is_an_opt_out_keyword_opts_out(text: str, word: str) -> None:
    assert keyword_of(text) == ("opt_out", word)
    assert decide(sms(text), RULES, "auto") == SmsDecision("opt_out", keyword=word)


@pytest.mark.parametrize("text", NOT_KEYWORDS)
def test_other_text_is_no_keyword(text: str) -> None:
    assert keyword_of(text) is None


@pytest.mark.parametrize(
    ("text", "kind", "word"),
    [
        ("START", "opt_in", "START"),
        (" start ", "opt_in", "START"),
        ("Yes", "opt_in", "YES"),
        ("unstop", "opt_in", "UNSTOP"),
        ("Help?", "help", "HELP"),
        ("INFO.", "help", "INFO"),
        (" info ", "help", "INFO"),
    ],
)
def test_opt_in_is_the_whole_message_and_help_may_carry_punctuation(
    text: str, kind: str, word: str
) -> None:
    assert keyword_of(text) == (kind, word)


def test_the_four_reported_messages_are_recorded_as_opt_outs() -> None:
    r = Responder()
    for n, body in enumerate(["Stop.", "STOP!", " stop all", "OPT-OUT"]):
        number = f"+1555867532{n}"
        message = InboundSms(f"SM{n:032d}", number, OURS, body)
        assert r.responder.respond(message, decide(message, RULES, "auto")) is None
        assert number in r.store.optouts


# Twilio's OptOutType (Advanced Opt-Out): STOP, START or HELP on the messaging webhook


def typed(body: str, opt_out_type: str) -> InboundSms:
    params = {"MessageSid": SID, "From": CUSTOMER, "To": OURS, "Body": body}
    return InboundSms.from_params({**params, "OptOutType": opt_out_type})


def test_opt_out_type_is_read_from_the_webhook() -> None:
    assert typed("parar", " stop ").opt_out_type == "STOP"
    assert InboundSms.from_params({"Body": "x"}).opt_out_type is None


def test_opt_out_type_stop_opts_out_whatever_the_text() -> None:
    message = typed("Parar", "STOP")
    assert message.opts_out()  # sms_url then skips the rules, as for STOP
    assert decide(message, RULES, "auto") == SmsDecision(
        "opt_out", keyword="PARAR", keyword_source="opt_out_type"
    )  # Twilio matched a word of its own: the word itself is what is recorded
    by_both = decide(typed("stop", "STOP"), RULES, None)
    assert (by_both.keyword, by_both.keyword_source) == ("STOP", "keyword")


def test_opt_out_type_start_and_help_answer_as_the_keywords_do() -> None:
    assert decide(typed("Empezar", "START"), RULES, None) == SmsDecision(
        "opt_in", reply="Welcome back", keyword="EMPEZAR", keyword_source="opt_out_type"
    )
    assert decide(typed("Ayuda", "HELP"), RULES, None).outcome == "help"


@pytest.mark.parametrize(("body", "opt_out_type"), [("stop", "START"), ("START", "STOP")])
def test_when_text_and_opt_out_type_disagree_opting_out_wins(body: str, opt_out_type: str) -> None:
    assert decide(typed(body, opt_out_type), RULES, None).outcome == "opt_out"


def test_an_unknown_opt_out_type_is_ignored() -> None:
    assert decide(typed("hours", "MAYBE"), RULES, None).rule == "hours"


# One person on every channel: the key is the number without its channel prefix

WHATSAPP = f"whatsapp:{CUSTOMER}"


@pytest.mark.parametrize(
    ("address", "number"),
    [
        (WHATSAPP, CUSTOMER),
        (f"sms:{CUSTOMER}", CUSTOMER),
        (f" {CUSTOMER} ", CUSTOMER),
        (CUSTOMER, CUSTOMER),
        ("messenger:1234567890", "messenger:1234567890"),  # not a phone number
    ],
)
def test_consent_number_drops_the_channel_prefix(address: str, number: str) -> None:
    assert consent_number(address) == number


def test_the_opt_out_key_is_the_same_on_every_channel() -> None:
    assert optout_key(WHATSAPP) == optout_key(CUSTOMER) == optout_key(f"sms:{CUSTOMER}")


def test_a_whatsapp_stop_blocks_calls_and_sms_to_the_number() -> None:
    r = Responder()
    message = InboundSms(SID, WHATSAPP, f"whatsapp:{OURS}", "STOP")
    r.responder.respond(message, decide(message, RULES, None))
    with pytest.raises(RecipientOptedOutError):
        ensure_can_contact(r.store, CUSTOMER)
    service, _, sender = outbound(r.store)
    call = {"kind": "call", "to": CUSTOMER, "say": "Hi", "idempotency_key": "k1"}
    assert service.handle(json.dumps(call), "m1", 1) is SendOutcome.REJECTED
    assert service.handle(json.dumps(SEND | {"idempotency_key": "k2"}), "m2", 1) is (
        SendOutcome.REJECTED
    )
    assert sender.sent == []


def test_an_sms_stop_then_a_whatsapp_start_opts_back_in() -> None:
    r = Responder()
    r.respond("STOP")
    r.clock.advance(minutes=1)
    start = InboundSms("SM" + "2" * 32, WHATSAPP, f"whatsapp:{OURS}", "START")
    assert r.responder.respond(start, decide(start, RULES, None)) == "Welcome back"
    ensure_can_contact(r.store, CUSTOMER)
    ensure_can_contact(r.store, WHATSAPP)


# Order: an older consent event never overrides a newer one

T0 = datetime(2026, 5, 1, 9, 30, tzinfo=UTC)


def sid(n: int) -> str:
    return f"SM{n:032x}"


class TwilioTimes:
    """MessageClock: Twilio's date_created per MessageSid, or a failure to answer."""

    def __init__(self, **created: datetime) -> None:
        self.created = created
        self.error: Exception | None = None
        self.asked: list[str] = []

    def message_created_at(self, message_sid: str) -> datetime | None:
        self.asked.append(message_sid)
        if self.error is not None:
            raise self.error
        return self.created.get(message_sid)


def test_a_replayed_start_after_a_newer_stop_is_ignored() -> None:
    # Without Twilio's times, events are dated on arrival: only the MessageSid tells a
    # replay from a new START.
    r = Responder()
    r.respond("STOP", sid=sid(1))
    r.clock.advance(minutes=1)
    assert r.respond("START", sid=sid(2)) == "Welcome back"
    r.clock.advance(minutes=1)
    r.respond("STOP", sid=sid(3))
    r.clock.advance(days=30)
    assert r.respond("START", sid=sid(2)) is None  # the same signed request, again
    assert CUSTOMER in r.store.optouts
    assert r.store.optouts[CUSTOMER].message_sid == sid(3)


def test_with_twilio_times_an_older_start_never_seen_before_is_ignored() -> None:
    times = TwilioTimes(**{sid(1): T0, sid(2): T0 - timedelta(minutes=5)})
    r = Responder(message_clock=times)
    r.respond("STOP", sid=sid(1))
    r.clock.advance(hours=1)  # it arrives late: its own time still says it is older
    assert r.respond("START", sid=sid(2)) is None
    assert r.store.optouts[CUSTOMER].at == T0
    assert r.store.optouts[CUSTOMER].time_source == "twilio"


def test_with_twilio_times_a_newer_start_applies_whatever_the_arrival_order() -> None:
    times = TwilioTimes(**{sid(1): T0 + timedelta(seconds=2), sid(2): T0})
    r = Responder(message_clock=times)
    assert r.respond("START", sid=sid(1)) == "Welcome back"  # the newer one, first
    r.respond("STOP", sid=sid(2))  # the older one, second: ignored
    assert CUSTOMER not in r.store.optouts


@pytest.mark.parametrize("order", [("STOP", "START"), ("START", "STOP")])
def test_a_stop_and_a_start_in_the_same_second_leave_the_number_opted_out(
    order: tuple[str, str],
) -> None:
    times = TwilioTimes(**{sid(1): T0, sid(2): T0})
    r = Responder(message_clock=times)
    for n, body in enumerate(order, start=1):
        r.respond(body, sid=sid(n))
    assert CUSTOMER in r.store.optouts


def test_a_stop_is_kept_when_twilio_cannot_date_it() -> None:
    times = TwilioTimes()
    times.error = TwilioUnavailableError("Twilio answered 503", status=503)
    r = Responder(message_clock=times)
    r.respond("STOP")
    optout = r.store.optouts[CUSTOMER]
    assert (optout.at, optout.time_source) == (r.clock.now, "received")


def test_a_start_that_twilio_cannot_date_is_503_and_changes_nothing() -> None:
    times = TwilioTimes()
    times.error = TwilioUnavailableError("Twilio answered 503", status=503)
    r = Responder(CUSTOMER, message_clock=times)
    with pytest.raises(TwilioUnavailableError):
        r.respond("START")
    assert CUSTOMER in r.store.optouts


def test_a_message_twilio_does_not_know_is_dated_on_arrival() -> None:
    r = Responder(message_clock=TwilioTimes())
    r.respond("STOP")
    assert r.store.optouts[CUSTOMER].time_source == "received"


def test_no_time_is_asked_for_messages_that_are_not_consent() -> None:
    times = TwilioTimes()
    r = Responder(message_clock=times)
    for body in ("hours", "help", "order 7"):
        r.respond(body)
    assert times.asked == []


AT = datetime(2026, 5, 1, tzinfo=UTC)


def event(opted_out: bool, seconds: int, message: int | None = None) -> ConsentEvent:
    keyword = "STOP" if opted_out else "START"
    at = AT + timedelta(seconds=seconds)
    return ConsentEvent(CUSTOMER, keyword, at, sid(message) if message else None, opted_out)


@pytest.mark.parametrize(
    ("new", "newest", "overrides"),
    [
        (event(False, 1, 2), None, True),
        (event(False, 2, 2), event(True, 1, 1), True),  # a newer START
        (event(False, 1, 2), event(True, 2, 1), False),  # an older START
        (event(True, 1, 2), event(False, 2, 1), False),  # an older STOP, too
        (event(False, 1, 2), event(True, 1, 1), False),  # same second: the STOP stays
        (event(True, 1, 2), event(False, 1, 1), True),
        (event(True, 1, 2), event(True, 1, 1), True),  # refreshes
        (event(False, 9, 1), event(False, 1, 1), False),  # the same message again
        (event(True, 9, 1), event(False, 1, 1), True),  # same SID, other kind: not a replay
        (event(True, 9), event(True, 1), True),  # no SID: only time orders
    ],
)
def test_the_order_of_consent_events(
    new: ConsentEvent, newest: ConsentEvent | None, overrides: bool
) -> None:
    assert new.overrides(newest) is overrides


def test_the_store_ignores_an_event_it_applied_before_even_after_others() -> None:
    store = MemoryOptOutStore()
    assert store.apply(event(True, 1, 1))
    assert store.apply(event(False, 2, 2))
    assert store.apply(event(True, 3, 3))
    assert not store.apply(event(False, 4, 2))  # sid 2 is a replay, whatever its time
    assert store.is_opted_out(CUSTOMER)
