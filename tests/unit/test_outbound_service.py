"""OutboundService: every message ends in exactly one recorded outcome, one send per key."""

from __future__ import annotations

import json

import pytest

from telephony.adapters.twilio_rest import OutboundCall, OutboundSms
from telephony.errors import (
    CommandRejectedError,
    RetryLaterError,
    TwilioOutcomeUnknownError,
    TwilioRejectedError,
    TwilioUnavailableError,
)
from telephony.outbound.commands import CommandRules
from telephony.outbound.records import CLAIMED, DeliveryRecord
from telephony.outbound.sender import SenderDefaults
from telephony.outbound.service import (
    LEASE,
    MAX_DEQUEUE_COUNT,
    OutboundService,
    SendOutcome,
)
from tests.fakes import Clock, MemoryOptOutStore, MemoryStore, ScriptedSender

HOME = frozenset({"US"})  # the destination guard: the sender's country

SMS = {"kind": "sms", "to": "+15558675310", "body": "Your order shipped"}
BASE = "https://calls.example.net"


def service(
    sender: ScriptedSender, store: MemoryStore | None = None, clock: Clock | None = None,
    queue: list[str] | None = None, **defaults: str | None,
) -> tuple[OutboundService, MemoryStore]:  # fmt: skip
    store = store or MemoryStore()
    values = {
        "phone_number": "+15017122661",
        "messaging_service_sid": None,
        "public_base_url": BASE,
    }
    values.update(defaults)
    rules = CommandRules(HOME, messaging_service_sid=values["messaging_service_sid"])
    svc = OutboundService(
        store, sender, rules, SenderDefaults(**values), MemoryOptOutStore(),
        (queue if queue is not None else []).append, clock or Clock(),
    )  # fmt: skip
    return svc, store


def record(store: MemoryStore, key: str) -> DeliveryRecord:
    found = store.records[key]
    return found


def test_accepted_sms_is_recorded_with_its_sid_in_two_round_trips() -> None:
    sender = ScriptedSender()
    svc, store = service(sender)
    assert svc.handle(json.dumps(SMS), "msg-1", 1) is SendOutcome.SENT
    rec = record(store, "msg-1")
    assert (rec.status, rec.kind, rec.attempts, rec.lease_until) == ("queued", "sms", 1, None)
    assert rec.twilio_sid and rec.twilio_sid.startswith("SM")
    assert store.round_trips == 2  # claim (conditional insert), record
    sms = sender.sent[0]
    assert isinstance(sms, OutboundSms)
    assert (sms.to, sms.from_, sms.body) == ("+15558675310", "+15017122661", "Your order shipped")
    assert sms.status_callback == f"{BASE}/api/status_callback?id=msg-1"


def test_redelivery_and_a_second_message_with_the_same_key_send_nothing_more() -> None:
    sender = ScriptedSender()
    svc, store = service(sender)
    command = json.dumps({**SMS, "idempotency_key": "order-42-shipped"})
    assert svc.handle(command, "msg-1", 1) is SendOutcome.SENT
    assert svc.handle(command, "msg-1", 2) is SendOutcome.DUPLICATE
    assert svc.handle(command, "msg-2", 1) is SendOutcome.DUPLICATE
    assert len(sender.sent) == 1
    assert list(store.records) == ["order-42-shipped"]


def test_permanent_twilio_error_is_failed_with_its_code_and_never_retried() -> None:
    sender = ScriptedSender(TwilioRejectedError(400, 21211, "Invalid 'To' Phone Number"))
    svc, store = service(sender)
    assert svc.handle(json.dumps(SMS), "m", 1) is SendOutcome.FAILED
    rec = record(store, "m")
    assert (rec.status, rec.error_code) == ("failed", 21211)
    assert svc.handle(json.dumps(SMS), "m", 2) is SendOutcome.DUPLICATE
    assert len(sender.sent) == 1


def test_transient_errors_retry_then_poison_on_the_last_attempt() -> None:
    errors = [TwilioUnavailableError("Twilio answered 429", 429, 20429)] * MAX_DEQUEUE_COUNT
    sender = ScriptedSender(*errors)
    svc, store = service(sender)
    for attempt in range(1, MAX_DEQUEUE_COUNT):
        with pytest.raises(RetryLaterError):
            svc.handle(json.dumps(SMS), "m", attempt)
        rec = record(store, "m")
        assert (rec.status, rec.attempts, rec.error_code) == ("retrying", attempt, 20429)
    with pytest.raises(RetryLaterError):
        svc.handle(json.dumps(SMS), "m", MAX_DEQUEUE_COUNT)
    rec = record(store, "m")
    assert (rec.status, rec.attempts) == ("poison", MAX_DEQUEUE_COUNT)
    assert "429" in (rec.reason or "")
    assert len(sender.sent) == MAX_DEQUEUE_COUNT


def test_transient_error_then_success() -> None:
    sender = ScriptedSender(TwilioUnavailableError("Twilio answered 500", 500, 20500), None)
    svc, store = service(sender)
    with pytest.raises(RetryLaterError):
        svc.handle(json.dumps(SMS), "m", 1)
    assert svc.handle(json.dumps(SMS), "m", 2) is SendOutcome.SENT
    assert (record(store, "m").status, record(store, "m").attempts) == ("queued", 2)


def test_requeued_poison_message_tries_again() -> None:
    sender = ScriptedSender(*[TwilioUnavailableError("down")] * MAX_DEQUEUE_COUNT)
    svc, _store = service(sender)
    for attempt in range(1, MAX_DEQUEUE_COUNT + 1):
        with pytest.raises(RetryLaterError):
            svc.handle(json.dumps(SMS), "m", attempt)
    assert svc.handle(json.dumps(SMS), "m", 1) is SendOutcome.SENT


def test_no_answer_from_twilio_is_in_doubt_and_never_resent() -> None:
    sender = ScriptedSender(TwilioOutcomeUnknownError("no answer from Twilio (ReadTimeout)"))
    svc, store = service(sender)
    assert svc.handle(json.dumps(SMS), "m", 1) is SendOutcome.IN_DOUBT
    assert record(store, "m").status == "in_doubt"
    assert svc.handle(json.dumps(SMS), "m", 2) is SendOutcome.DUPLICATE
    assert len(sender.sent) == 1


def test_crash_between_claim_and_record_parks_the_command_in_doubt() -> None:
    # GIVEN a claim left by a worker that died before it could record the outcome
    clock = Clock()
    sender = ScriptedSender()
    svc, store = service(sender, clock=clock)
    store.insert(
        DeliveryRecord(
            key="m",
            kind="sms",
            to="+15558675310",
            status=CLAIMED,
            created_at=clock.now,
            updated_at=clock.now,
            attempts=1,
            lease_until=clock.now + LEASE,
        )
    )
    # WHEN the message is redelivered while the lease is live, THEN it waits
    with pytest.raises(RetryLaterError):
        svc.handle(json.dumps(SMS), "m", 2)
    # WHEN it is redelivered after the lease expired, THEN it is parked, not resent
    clock.advance(seconds=LEASE.total_seconds() + 1)
    assert svc.handle(json.dumps(SMS), "m", 3) is SendOutcome.IN_DOUBT
    assert record(store, "m").status == "in_doubt"
    assert sender.sent == []


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("not json at all", "m"),
        ("[1, 2]", "m"),
        (json.dumps({**SMS, "kind": "fax"}), "m"),
        (json.dumps({**SMS, "bdy": "typo", "idempotency_key": "k1"}), "k1"),
        (json.dumps({**SMS, "body": "x" * 2000}), "m"),
        (json.dumps({**SMS, "to": "+1 555 867 5310"}), "m"),
        (json.dumps({**SMS, "media_urls": ["https://a.example/i.png"] * 11}), "m"),
    ],
)
def test_invalid_messages_are_rejected_with_a_reason(text: str, key: str) -> None:
    sender = ScriptedSender()
    svc, store = service(sender)
    assert svc.handle(text, "m", 1) is SendOutcome.REJECTED
    rec = record(store, key)
    assert rec.status == "rejected"
    assert rec.reason
    assert "555 867" not in rec.reason  # never the submitted value
    assert sender.sent == []


def test_rejection_never_overwrites_an_accepted_record() -> None:
    sender = ScriptedSender()
    svc, store = service(sender)
    svc.handle(json.dumps({**SMS, "idempotency_key": "k"}), "m1", 1)
    assert svc.handle(json.dumps({**SMS, "idempotency_key": "k", "bdy": 1}), "m2", 1) is (
        SendOutcome.DUPLICATE
    )
    assert record(store, "k").status == "queued"


def test_event_grid_and_cloud_events_carry_the_command_and_its_id() -> None:
    sender = ScriptedSender()
    svc, store = service(sender)
    grid = {"id": "evt-1", "eventType": "Orders.Shipped", "subject": "o/42", "dataVersion": "1",
            "eventTime": "2026-11-26T12:00:00Z", "data": SMS}  # fmt: skip
    cloud = {"id": "evt-2", "specversion": "1.0", "type": "Orders.Shipped", "source": "/orders",
             "data": SMS}  # fmt: skip
    assert svc.handle(json.dumps(grid), "m1", 1) is SendOutcome.SENT
    assert svc.handle(json.dumps(grid), "m2", 1) is SendOutcome.DUPLICATE  # redelivered event
    assert svc.handle(json.dumps(cloud), "m3", 1) is SendOutcome.SENT
    assert set(store.records) == {"evt-1", "evt-2"}


def test_base64_wrapped_json_is_accepted() -> None:
    import base64

    sender = ScriptedSender()
    svc, _ = service(sender)
    text = base64.b64encode(json.dumps(SMS).encode()).decode()
    assert svc.handle(text, "m", 1) is SendOutcome.SENT


def test_scheduled_sms_uses_the_messaging_service() -> None:
    clock = Clock()
    sender = ScriptedSender()
    svc, _ = service(sender, clock=clock, messaging_service_sid="MG" + "0" * 32)
    send_at = "2026-11-27T12:00:00Z"
    assert svc.handle(json.dumps({**SMS, "send_at": send_at}), "m", 1) is SendOutcome.SENT
    sms = sender.sent[0]
    assert isinstance(sms, OutboundSms)
    assert sms.messaging_service_sid == "MG" + "0" * 32
    assert sms.send_at is not None and sms.send_at.isoformat() == "2026-11-27T12:00:00+00:00"


@pytest.mark.parametrize("send_at", ["2026-11-26T12:10:00Z", "2027-01-05T12:00:00Z"])
def test_schedule_outside_the_window_is_rejected(send_at: str) -> None:
    sender = ScriptedSender()
    svc, store = service(sender, messaging_service_sid="MG" + "0" * 32)
    assert svc.handle(json.dumps({**SMS, "send_at": send_at}), "m", 1) is SendOutcome.REJECTED
    assert "15 minutes and 35 days" in (record(store, "m").reason or "")


def test_schedule_without_messaging_service_is_rejected() -> None:
    sender = ScriptedSender()
    svc, store = service(sender)
    assert svc.handle(json.dumps({**SMS, "send_at": "2026-11-27T12:00:00Z"}), "m", 1) is (
        SendOutcome.REJECTED
    )
    assert "TWILIO_MESSAGING_SERVICE_SID" in (record(store, "m").reason or "")


def test_call_with_say_asks_the_sender_to_say_it_with_a_callback() -> None:
    sender = ScriptedSender()
    svc, store = service(sender)
    text = json.dumps({"kind": "call", "to": "+15558675310", "say": "Your code is 1 2 3 4"})
    assert svc.handle(text, "otp-7781", 1) is SendOutcome.SENT
    call = sender.sent[0]
    assert isinstance(call, OutboundCall)
    assert (call.say, call.twiml, call.url) == ("Your code is 1 2 3 4", None, None)
    assert call.status_callback == f"{BASE}/api/status_callback?id=otp-7781"
    assert record(store, "otp-7781").kind == "call"


def test_call_without_content_needs_a_public_url() -> None:
    sender = ScriptedSender()
    svc, _store = service(sender, public_base_url=None)
    text = json.dumps({"kind": "call", "to": "+15558675310"})
    assert svc.handle(text, "m", 1) is SendOutcome.REJECTED
    assert sender.sent == []


def test_submit_validates_enqueues_and_is_idempotent() -> None:
    sender = ScriptedSender()
    queue: list[str] = []
    svc, store = service(sender, queue=queue)
    rec, created = svc.submit({**SMS, "idempotency_key": "k"})
    assert (created, rec.status, json.loads(queue[0])["idempotency_key"]) == (True, "pending", "k")
    assert svc.record_of("k") == rec
    again, created = svc.submit({**SMS, "idempotency_key": "k"})
    assert (created, again.key, len(queue)) == (False, "k", 1)
    with pytest.raises(CommandRejectedError) as info:
        svc.submit({**SMS, "to": "nope"})
    assert info.value.field == "to"
    assert len(queue) == 1
    # the queued message is then sent once, claimed in one round trip like any other
    before = store.round_trips
    assert svc.handle(queue[0], "q1", 1) is SendOutcome.SENT
    assert store.round_trips - before == 2
    assert record(store, "k").status == "queued"
    assert svc.record_of("k").status == "queued"  # type: ignore[union-attr]


def test_callbacks_advance_forward_only() -> None:
    sender = ScriptedSender()
    svc, store = service(sender)
    svc.handle(json.dumps(SMS), "m", 1)
    sid = record(store, "m").twilio_sid
    for status in ["sent", "delivered", "sent", "queued", "delivered"]:
        svc.apply_status("m", status, sid, None)
    assert record(store, "m").status == "delivered"
    assert svc.apply_status("unknown", "delivered", sid, None) is None


def test_callback_before_the_worker_records_keeps_the_later_status() -> None:
    sender = ScriptedSender()
    svc, store = service(sender)
    original = sender.send_message

    def send_then_callback(sms: OutboundSms):  # type: ignore[no-untyped-def]
        created = original(sms)
        svc.apply_status("m", "sent", created.sid, None)  # Twilio is faster than our write
        return created

    sender.send_message = send_then_callback  # type: ignore[method-assign]
    assert svc.handle(json.dumps(SMS), "m", 1) is SendOutcome.SENT
    rec = record(store, "m")
    assert (rec.status, rec.lease_until) == ("sent", None)
    assert rec.twilio_sid is not None


def test_callback_resolves_an_in_doubt_record() -> None:
    sender = ScriptedSender(TwilioOutcomeUnknownError("no answer"))
    svc, store = service(sender)
    svc.handle(json.dumps(SMS), "m", 1)
    svc.apply_status("m", "delivered", "SM" + "9" * 32, None)
    rec = record(store, "m")
    assert (rec.status, rec.twilio_sid) == ("delivered", "SM" + "9" * 32)


def test_corrected_command_under_a_rejected_key_is_sent() -> None:
    sender = ScriptedSender()
    svc, store = service(sender)
    bad = json.dumps({**SMS, "bdy": "typo", "idempotency_key": "k"})
    assert svc.handle(bad, "m1", 1) is SendOutcome.REJECTED
    assert svc.handle(bad, "m1", 2) is SendOutcome.REJECTED
    assert svc.handle(json.dumps({**SMS, "idempotency_key": "k"}), "m2", 1) is SendOutcome.SENT
    assert record(store, "k").status == "queued"
    assert len(sender.sent) == 1


def flow_service(sender: ScriptedSender, *flows: str) -> tuple[OutboundService, MemoryStore]:
    """A service whose flow document defines `flows`."""
    store = MemoryStore()
    rules = CommandRules(HOME, flow_exists=set(flows).__contains__)
    defaults = SenderDefaults("+15017122661", None, BASE)
    svc = OutboundService(store, sender, rules, defaults, MemoryOptOutStore(), [].append, Clock())
    return svc, store


def test_call_with_a_flow_fetches_voice_url_for_that_flow() -> None:
    sender = ScriptedSender()
    svc, store = flow_service(sender, "appointment-reminder")
    text = json.dumps({"kind": "call", "to": "+15558675310", "flow": "appointment-reminder"})
    assert svc.handle(text, "remind-1", 1) is SendOutcome.SENT
    call = sender.sent[0]
    assert isinstance(call, OutboundCall)
    assert call.url == f"{BASE}/api/voice_url?flow=appointment-reminder"
    assert call.twiml is None
    assert record(store, "remind-1").kind == "call"


def test_call_with_an_unknown_flow_is_rejected_before_any_send() -> None:
    sender = ScriptedSender()
    svc, store = flow_service(sender, "ivr-menu")
    text = json.dumps({"kind": "call", "to": "+15558675310", "flow": "ivr-menuu"})
    assert svc.handle(text, "m", 1) is SendOutcome.REJECTED
    assert sender.sent == []
    assert "flow ivr-menuu is not defined" in (record(store, "m").reason or "")


def test_call_with_a_flow_needs_a_public_url() -> None:
    sender = ScriptedSender()
    svc, store = service(sender, public_base_url=None)
    text = json.dumps({"kind": "call", "to": "+15558675310", "flow": "ivr-menu"})
    assert svc.handle(text, "m", 1) is SendOutcome.REJECTED
    assert sender.sent == []
    assert "PUBLIC_BASE_URL" in (record(store, "m").reason or "")


@pytest.mark.parametrize(
    "other", [{"say": "Hi"}, {"url": "https://a.example/x"}, {"twiml": "<Response/>"}]
)
def test_flow_excludes_the_other_call_contents(other: dict[str, str]) -> None:
    svc, store = service(ScriptedSender())
    text = json.dumps({"kind": "call", "to": "+15558675310", "flow": "ivr-menu", **other})
    assert svc.handle(text, "m", 1) is SendOutcome.REJECTED
    assert record(store, "m").reason == "give at most one of say, url, twiml, flow"
