"""One key, one send: whatever arrives while a send is in flight.

GIVEN a command being sent, WHEN a malformed message with its key, a STOP from the
recipient, a redelivery, a callback or another worker arrives in the middle of the send,
THEN Twilio accepts at most one send for the key, and a record that has a Twilio SID is
never demoted nor sent again. The first tests replay the attacks found by review; the
property test drives random interleavings of the same operations.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from telephony.errors import (
    TwilioOutcomeUnknownError,
    TwilioRejectedError,
    TwilioUnavailableError,
)
from telephony.outbound.commands import CommandRules
from telephony.outbound.records import CLAIMED, POISON, REJECTED, RETRYING, DeliveryRecord
from telephony.outbound.sender import CreatedResource, OutboundCall, OutboundSms, SenderDefaults
from telephony.outbound.service import OutboundService, SendOutcome
from telephony.sms.optouts import OptOut
from tests.fakes import Clock, MemoryOptOutStore, MemoryStore

HOME = frozenset({"US"})  # the destination guard: the sender's country

KEY = "order-42"
TO = "+15558675310"
GOOD = json.dumps({"kind": "sms", "to": TO, "body": "shipped", "idempotency_key": KEY})
BAD = json.dumps({"kind": "sms", "to": TO, "bdy": "typo", "idempotency_key": KEY})
NEVER_AFTER_A_SID = {REJECTED, POISON, RETRYING, CLAIMED}

Action = Callable[[], object]


@dataclass
class InterleavingSender:
    """A Sender whose calls run `during` actions (other deliveries, STOP, callbacks)
    before they answer, as another worker or webhook would meanwhile."""

    answers: list[Exception | None] = field(default_factory=list)
    during: list[list[Action]] = field(default_factory=list)
    calls: int = 0
    accepted: list[str] = field(default_factory=list)
    calls_at_accept: int | None = None  # the call Twilio accepted

    def send_message(self, sms: OutboundSms) -> CreatedResource:
        return self._answer()

    def place_call(self, call: OutboundCall) -> CreatedResource:
        return self._answer()

    def _answer(self) -> CreatedResource:
        self.calls += 1
        for action in self.during.pop(0) if self.during else []:
            action()
        answer = self.answers.pop(0) if self.answers else None
        if answer is not None:
            raise answer
        sid = f"SM{len(self.accepted) + 1:032x}"
        self.accepted.append(sid)
        self.calls_at_accept = self.calls_at_accept or self.calls
        return CreatedResource(sid, "queued")


class RacingStore:
    """The store, with another worker's whole delivery run between a read and the claim."""

    def __init__(self, inner: MemoryStore) -> None:
        self.inner = inner
        self.other_worker: Action | None = None  # runs once, inside the next claim

    def update(self, record: DeliveryRecord, was: DeliveryRecord) -> DeliveryRecord:
        if record.status == CLAIMED and self.other_worker is not None:
            other, self.other_worker = self.other_worker, None
            other()
        return self.inner.update(record, was)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def world(
    sender: InterleavingSender, store: MemoryStore | RacingStore | None = None
) -> tuple[OutboundService, MemoryStore, MemoryOptOutStore]:
    store = store or MemoryStore()
    optouts = MemoryOptOutStore()
    defaults = SenderDefaults("+15017122661", None, "https://calls.example.net")
    service = OutboundService(
        store, sender, CommandRules(HOME), defaults, optouts, [].append, Clock()
    )
    inner = store.inner if isinstance(store, RacingStore) else store
    return service, inner, optouts


def quietly(action: Action) -> Action:
    """An action whose RetryLaterError (the host would redeliver) is part of the play."""

    def run() -> object:
        try:
            return action()
        except TwilioUnavailableError:
            return None
        except Exception as exc:
            if type(exc).__name__ == "RetryLaterError":
                return None
            raise

    return run


def test_a_malformed_message_during_the_send_does_not_demote_the_record() -> None:
    sender = InterleavingSender()
    service, store, _ = world(sender)
    sender.during = [[lambda: service.handle(BAD, "m-bad", 1)]]
    assert service.handle(GOOD, "m-1", 1) is SendOutcome.SENT
    record = store.records[KEY]
    assert (record.status, record.twilio_sid) == ("queued", sender.accepted[0])
    # AND a redelivery of the good message is a duplicate: no second send
    assert service.handle(GOOD, "m-1", 2) is SendOutcome.DUPLICATE
    assert sender.calls == 1


def test_a_stop_during_the_send_leaves_the_send_recorded_and_callbacks_working() -> None:
    sender = InterleavingSender()
    service, store, optouts = world(sender)
    stop = OptOut(TO, "STOP", Clock()())
    sender.during = [[lambda: optouts.add(stop)]]
    assert service.handle(GOOD, "m-1", 1) is SendOutcome.SENT
    assert service.handle(GOOD, "m-1", 2) is SendOutcome.DUPLICATE
    service.apply_status(KEY, "delivered", sender.accepted[0], None)
    assert store.records[KEY].status == "delivered"
    assert sender.calls == 1


def test_two_workers_reclaiming_a_retrying_key_send_it_once() -> None:
    # GIVEN a key whose first attempt failed for a moment (retrying, no SID)
    sender = InterleavingSender(answers=[TwilioUnavailableError("down")])
    racing = RacingStore(MemoryStore())
    service, store, _ = world(sender, racing)
    quietly(lambda: service.handle(GOOD, "m-1", 1))()
    assert store.records[KEY].status == RETRYING
    # WHEN two workers redeliver it at once: the second reads before the first writes
    racing.other_worker = quietly(lambda: service.handle(GOOD, "m-1", 2))
    quietly(lambda: service.handle(GOOD, "m-1", 2))()
    # THEN Twilio accepted one send
    assert len(sender.accepted) == 1
    assert store.records[KEY].twilio_sid == sender.accepted[0]


# The property: random interleavings of deliveries, STOP/START, callbacks and time.

SEND_ANSWERS = st.sampled_from(
    [
        None,
        TwilioUnavailableError("Twilio answered 503", 503, 20503),
        TwilioOutcomeUnknownError("no answer from Twilio (ReadTimeout)"),
        TwilioRejectedError(400, 21211, "Invalid 'To' Phone Number"),
    ]
)
OPERATIONS = st.sampled_from(
    ["good", "bad", "stop", "start", "delivered", "failed", "wrong_sid", "later"]
)


@settings(max_examples=300, deadline=None)
@given(
    plan=st.lists(OPERATIONS, min_size=1, max_size=12),
    answers=st.lists(SEND_ANSWERS, max_size=6),
    during=st.lists(st.lists(OPERATIONS, max_size=3), max_size=6),
)
def test_any_interleaving_gives_at_most_one_accepted_send(
    plan: list[str], answers: list[Exception | None], during: list[list[str]]
) -> None:
    sender = InterleavingSender(answers=list(answers))
    service, store, optouts = world(sender)
    clock: Clock = service._clock  # type: ignore[assignment]
    deliveries = iter(range(1, 1000))

    def act(name: str) -> Action:
        actions: dict[str, Action] = {
            "good": lambda: service.handle(GOOD, "m-good", next(deliveries)),
            "bad": lambda: service.handle(BAD, "m-bad", 1),
            "stop": lambda: optouts.add(OptOut(TO, "STOP", clock())),
            "start": lambda: optouts.remove(TO),
            "delivered": lambda: service.apply_status(KEY, "delivered", sid(), None),
            "failed": lambda: service.apply_status(KEY, "failed", sid(), 30003),
            "wrong_sid": lambda: service.apply_status(KEY, "delivered", "SM" + "f" * 32, None),
            "later": lambda: clock.advance(seconds=90),
        }
        return quietly(actions[name])

    def sid() -> str | None:
        return sender.accepted[0] if sender.accepted else None

    sender.during = [[act(name) for name in step] for step in during]
    seen_sid: str | None = None
    for name in plan:
        act(name)()
        record = store.records.get(KEY)
        # Invariant: Twilio accepted at most one send for the key.
        assert len(sender.accepted) <= 1
        if record is not None and record.twilio_sid:
            # A record with a SID keeps it, is never demoted, and is never sent again.
            assert seen_sid in (None, record.twilio_sid)
            seen_sid = record.twilio_sid
            assert record.status not in NEVER_AFTER_A_SID, record
        if sender.accepted:
            # Nothing was sent after Twilio accepted the key's send.
            assert sender.calls == sender.calls_at_accept


def test_a_key_still_retrying_is_rejected_when_its_recipient_opts_out() -> None:
    # GIVEN a send that Twilio refused for a moment (retrying, nothing sent)
    sender = InterleavingSender(answers=[TwilioUnavailableError("Twilio answered 503")])
    service, store, optouts = world(sender)
    quietly(lambda: service.handle(GOOD, "m-1", 1))()
    assert store.records[KEY].status == RETRYING
    # WHEN the recipient texts STOP before the redelivery
    optouts.add(OptOut(TO, "STOP", Clock()()))
    # THEN the redelivery ends the key rejected, not retrying for ever
    assert service.handle(GOOD, "m-1", 2) is SendOutcome.REJECTED
    assert (store.records[KEY].status, store.records[KEY].reason) == (REJECTED, "opted_out")
    assert sender.accepted == []


def test_an_answer_that_arrives_after_the_claim_was_parked_settles_it() -> None:
    # GIVEN a send whose worker took so long that another parked its claim in doubt
    sender = InterleavingSender()
    service, store, _ = world(sender)
    clock: Clock = service._clock  # type: ignore[assignment]

    def another_worker_parks_it() -> None:
        clock.advance(seconds=90)
        quietly(lambda: service.handle(GOOD, "m-1", 2))()

    sender.during = [[another_worker_parks_it]]
    # WHEN Twilio's answer reaches the first worker after all
    assert service.handle(GOOD, "m-1", 1) is SendOutcome.SENT
    # THEN the record holds the send, not the doubt
    record = store.records[KEY]
    assert (record.status, record.twilio_sid) == ("queued", sender.accepted[0])
