"""Queued sends inside the recipient's quiet hours: deferred, never dropped, sent once.

GIVEN a command whose recipient is inside quiet hours, WHEN the worker handles it, THEN
Twilio schedules it past them where it can (an SMS with a Messaging Service), else it goes
back on the queue, invisible until they end, under its key, with its record `deferred`;
WHEN it comes back it is sent once. Outside quiet hours a send costs what it always did.
"""

from __future__ import annotations

import base64
import json
import logging
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telephony import schemas
from telephony.errors import RetryLaterError, StorageUnavailableError, TwilioUnavailableError
from telephony.events import DELIVERY_UPDATED
from telephony.events.publisher import Publisher
from telephony.outbound.commands import CommandRules, QuietHours
from telephony.outbound.reconcile import Reconciler
from telephony.outbound.records import DeliveryRecord, Tracking
from telephony.outbound.sender import OutboundCall, OutboundSms, SenderDefaults
from telephony.outbound.service import (
    MAX_DEFERRALS,
    MAX_QUEUE_DELAY,
    OutboundService,
    SendOutcome,
)
from telephony.outbound.writer import RecordWriter
from telephony.sms.optouts import ConsentEvent
from tests.fakes import Clock, MemoryOptOutStore, MemorySink, MemoryStore, ScriptedSender

NEW_YORK = "+12125551234"  # America/New_York: 21:00-08:00 there is 02:00-13:00 UTC in winter
NIGHT = {"start": "21:00", "end": "08:00"}
SMS = {"kind": "sms", "to": NEW_YORK, "body": "Your order shipped", "quiet_hours": NIGHT}
CALL = {"kind": "call", "to": NEW_YORK, "say": "Your code is 1 2 3 4", "quiet_hours": NIGHT}
AT_SEVEN = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)  # 07:00 in New York
AT_EIGHT = datetime(2026, 11, 26, 13, 0, tzinfo=UTC)
AFTER = timedelta(minutes=30)
SERVICE_SID = "MG" + "b" * 32


class World:
    """The service with fakes: a store, Twilio, a sink, a clock, and the queue it puts
    deferred commands back on (text and delay, as the Storage adapter takes them)."""

    def __init__(
        self,
        start: datetime = AT_SEVEN,
        *,
        messaging_service: str | None = None,
        default: QuietHours | None = None,
        events: bool = False,
    ) -> None:
        self.clock = Clock(start)
        self.store = MemoryStore()
        self.optouts = MemoryOptOutStore()
        self.sender = ScriptedSender()
        self.sink = MemorySink()
        self.requeued: list[tuple[str, timedelta]] = []
        self.fail_requeue = 0
        self.publisher = Publisher(
            [self.sink] if events else [], "urn:test", lambda: self.store, self.clock
        )
        tracking = Tracking(events=events, after=AFTER)
        self.writer = RecordWriter(self.store, tracking, self.publisher, self.clock)
        self.service = OutboundService(
            self.store, self.sender,
            CommandRules(frozenset({"US"}), messaging_service_sid=messaging_service),
            SenderDefaults("+15017122661", messaging_service, "https://calls.example.net"),
            self.optouts, [].append, self.clock, writer=self.writer,
            requeue=self._requeue, quiet_hours=default,
        )  # fmt: skip

    def _requeue(self, text: str, delay: timedelta) -> None:
        if self.fail_requeue:
            self.fail_requeue -= 1
            raise StorageUnavailableError("could not put an outbound command back on the queue")
        self.requeued.append((text, delay))

    def handle(self, command: object, message_id: str = "m-1") -> SendOutcome:
        text = command if isinstance(command, str) else json.dumps(command)
        return self.service.handle(text, message_id, 1)

    def come_back(self) -> SendOutcome:
        """The last deferred message, once its delay has passed on the clock."""
        text, delay = self.requeued[-1]
        self.clock.now += delay
        return self.handle(text, "m-back")

    def record(self, key: str = "order-42") -> DeliveryRecord:
        return self.store.records[key]


def keyed(command: dict[str, object], key: str = "order-42") -> dict[str, object]:
    return {**command, "idempotency_key": key}


def test_a_command_inside_quiet_hours_goes_back_on_the_queue_until_they_end() -> None:
    world = World()
    assert world.handle(keyed(SMS)) is SendOutcome.DEFERRED
    assert world.sender.sent == []
    [(text, delay)] = world.requeued
    assert delay == AT_EIGHT - AT_SEVEN
    assert json.loads(text) == keyed(SMS)  # the same command, under the same key
    record = world.record()
    assert (record.status, record.lease_until, record.attempts) == ("deferred", AT_EIGHT, 0)
    assert record.reason == "quiet hours: deferred until 2026-11-26T13:00:00Z"


def test_the_deferred_command_is_sent_once_when_it_comes_back() -> None:
    world = World()
    world.handle(keyed(SMS))
    assert world.come_back() is SendOutcome.SENT
    [sms] = world.sender.sent
    assert isinstance(sms, OutboundSms) and sms.send_at is None  # sent now, not scheduled
    record = world.record()
    assert (record.status, record.attempts, record.lease_until) == ("queued", 1, None)
    assert world.handle(keyed(SMS), "m-again") is SendOutcome.DUPLICATE
    assert len(world.sender.sent) == 1


def test_a_redelivery_during_the_deferral_is_deferred_again_and_not_sent_early() -> None:
    world = World()
    world.handle(keyed(SMS))
    world.clock.advance(minutes=20)
    assert world.handle(keyed(SMS)) is SendOutcome.DEFERRED  # the host redelivered it
    assert world.requeued[-1][1] == timedelta(minutes=40)
    assert world.sender.sent == [] and world.record().deferrals == 2
    assert world.come_back() is SendOutcome.SENT
    assert world.handle(keyed(SMS), "m-back") is SendOutcome.DUPLICATE  # the other copy
    assert len(world.sender.sent) == 1


def test_a_copy_without_quiet_hours_is_not_sent_before_the_deferred_time() -> None:
    world = World()
    world.handle(keyed(SMS))
    other = keyed({**SMS, "quiet_hours": {"start": "00:00", "end": "00:00"}})
    assert world.handle(other, "m-2") is SendOutcome.DEFERRED
    assert world.requeued[-1][1] == AT_EIGHT - AT_SEVEN and world.sender.sent == []


def test_an_event_grid_command_comes_back_as_the_plain_command_under_the_events_id() -> None:
    world = World()
    event = {
        "id": "evt-7", "eventType": "Orders.Shipped", "subject": "orders/7",
        "dataVersion": "1", "eventTime": "2026-11-26T12:00:00Z", "data": SMS,
    }  # fmt: skip
    wrapped = base64.b64encode(json.dumps(event).encode()).decode()
    assert world.handle(wrapped) is SendOutcome.DEFERRED
    assert json.loads(world.requeued[0][0]) == keyed(SMS, "evt-7")
    assert world.come_back() is SendOutcome.SENT
    assert world.record("evt-7").status == "queued"


def test_with_a_messaging_service_twilio_schedules_it_past_quiet_hours() -> None:
    world = World(datetime(2026, 11, 26, 3, tzinfo=UTC), messaging_service=SERVICE_SID)
    assert world.handle(keyed(SMS)) is SendOutcome.SENT  # 22:00 in New York
    [sms] = world.sender.sent
    assert isinstance(sms, OutboundSms)
    assert (sms.send_at, sms.messaging_service_sid) == (AT_EIGHT, SERVICE_SID)
    assert world.requeued == []


def test_too_close_to_the_end_for_twilio_it_goes_back_on_the_queue() -> None:
    world = World(AT_EIGHT - timedelta(minutes=10), messaging_service=SERVICE_SID)
    assert world.handle(keyed(SMS)) is SendOutcome.DEFERRED  # Twilio needs 15 minutes
    assert world.requeued[0][1] == timedelta(minutes=10)
    assert world.come_back() is SendOutcome.SENT
    [sms] = world.sender.sent
    assert isinstance(sms, OutboundSms) and sms.send_at is None


def test_a_call_is_never_scheduled_by_twilio_and_goes_back_on_the_queue() -> None:
    world = World(messaging_service=SERVICE_SID)
    assert world.handle(keyed(CALL)) is SendOutcome.DEFERRED
    assert world.record().kind == "call"
    assert world.come_back() is SendOutcome.SENT
    assert isinstance(world.sender.sent[0], OutboundCall)


def test_a_send_at_inside_quiet_hours_moves_to_their_end() -> None:
    world = World(datetime(2026, 11, 25, 18, tzinfo=UTC), messaging_service=SERVICE_SID)
    command = keyed({**SMS, "send_at": "2026-11-26T04:00:00Z"})  # 23:00 in New York
    assert world.handle(command) is SendOutcome.SENT
    [sms] = world.sender.sent
    assert isinstance(sms, OutboundSms) and sms.send_at == AT_EIGHT


def test_a_send_at_pushed_past_twilios_35_days_waits_on_the_queue_first() -> None:
    now = datetime(2026, 11, 1, 3, 30, tzinfo=UTC)
    world = World(now, messaging_service=SERVICE_SID)
    command = keyed({**SMS, "send_at": "2026-12-06T03:00:00Z"})  # 22:00, 34 days 23.5 h on
    assert world.handle(command) is SendOutcome.DEFERRED
    assert world.requeued[0][1] == MAX_QUEUE_DELAY
    assert world.come_back() is SendOutcome.SENT  # now 29 days ahead: Twilio holds it
    [sms] = world.sender.sent
    assert isinstance(sms, OutboundSms)
    assert sms.send_at == datetime(2026, 12, 6, 13, tzinfo=UTC)


def test_the_default_applies_to_commands_without_their_own_and_can_be_turned_off() -> None:
    world = World(default=QuietHours(time(21), time(8)))
    plain = {key: value for key, value in SMS.items() if key != "quiet_hours"}
    assert world.handle(keyed(plain, "a")) is SendOutcome.DEFERRED
    off = {**plain, "quiet_hours": {"start": "00:00", "end": "00:00"}}
    assert world.handle(keyed(off, "b")) is SendOutcome.SENT
    early = {**plain, "quiet_hours": {"start": "21:00", "end": "06:00"}}  # the command's wins
    assert world.handle(keyed(early, "c")) is SendOutcome.SENT


def test_a_recipient_who_opts_out_during_the_deferral_gets_nothing() -> None:
    world = World()
    world.handle(keyed(SMS))
    world.optouts.add(ConsentEvent(NEW_YORK, "STOP", AT_SEVEN))
    assert world.come_back() is SendOutcome.REJECTED
    assert world.sender.sent == [] and world.record().reason == "opted_out"


def test_a_queue_that_refuses_the_command_makes_the_host_retry_and_it_is_not_lost() -> None:
    world = World()
    world.fail_requeue = 1
    with pytest.raises(StorageUnavailableError):
        world.handle(keyed(SMS))
    assert world.record().status == "deferred" and world.requeued == []
    assert world.handle(keyed(SMS)) is SendOutcome.DEFERRED  # the host's retry
    assert world.come_back() is SendOutcome.SENT
    assert len(world.sender.sent) == 1


def test_deferrals_are_bounded_so_a_clock_that_never_moves_cannot_loop_for_ever(
    caplog: pytest.LogCaptureFixture,
) -> None:
    world = World()
    world.handle(keyed(SMS))
    for _ in range(MAX_DEFERRALS - 1):  # a clock stuck at 07:00: it is always quiet
        assert world.handle(world.requeued[-1][0], "m-back") is SendOutcome.DEFERRED
    caplog.set_level(logging.ERROR)
    assert world.handle(world.requeued[-1][0], "m-back") is SendOutcome.SENT
    assert "outbound_quiet_hours_exhausted" in caplog.text
    assert len(world.sender.sent) == 1 and len(world.requeued) == MAX_DEFERRALS


def test_a_deferral_publishes_its_event_and_the_send_follows_it() -> None:
    world = World(events=True)
    world.handle(keyed(SMS))
    world.come_back()
    events = world.sink.of_type(DELIVERY_UPDATED)
    validator = schemas.validator(f"events/{DELIVERY_UPDATED}.v1.json")
    for event in events:
        validator.validate(event)
    steps = [(e["data"]["previous_status"], e["data"]["status"]) for e in events]  # type: ignore[index]
    assert steps == [(None, "deferred"), ("claimed", "queued")]
    assert events[0]["data"]["reason"] == "quiet hours: deferred until 2026-11-26T13:00:00Z"  # type: ignore[index]
    assert world.record().outbox == ()


@pytest.mark.parametrize("events", [False, True])
def test_outside_quiet_hours_a_send_costs_the_same_round_trips(events: bool) -> None:
    world = World(AT_EIGHT, default=QuietHours(time(21), time(8)), events=events)
    assert world.handle(keyed(SMS)) is SendOutcome.SENT
    # Opt-out read, claim, settle; and with events the write that takes the event out.
    assert world.store.round_trips + world.optouts.round_trips == (4 if events else 3)


@pytest.mark.parametrize("events", [False, True])
def test_a_deferral_costs_one_record_write_and_the_return_a_claim_of_a_known_key(
    events: bool,
) -> None:
    world = World(events=events)
    world.handle(keyed(SMS))
    deferral = world.store.round_trips + world.optouts.round_trips
    assert (deferral, len(world.requeued)) == (3 if events else 2, 1)  # opt-out read, insert
    world.come_back()
    # Opt-out read, the insert that finds the key, its read, the claim, the settle.
    assert world.store.round_trips + world.optouts.round_trips - deferral == (6 if events else 5)


def test_reconcile_leaves_a_deferred_record_alone_until_its_message_is_overdue() -> None:
    world = World(events=True)
    world.handle(keyed(SMS))
    assert world.record().check_after == AT_EIGHT + AFTER
    reconciler = Reconciler(
        world.store, world.writer, world.sender, world.publisher, AFTER, world.clock
    )
    world.clock.now = AT_EIGHT + AFTER - timedelta(seconds=1)
    writes = world.store.round_trips
    assert reconciler.run().records == 0 and world.store.round_trips == writes + 1  # one query
    world.clock.now = AT_EIGHT + AFTER + timedelta(seconds=1)  # the message never came back
    reconciler.run()
    record = world.record()
    assert record.status == "poison" and "did not come back" in (record.reason or "")
    assert world.come_back() is SendOutcome.SENT  # when it does come back, it is still sent


def test_a_retry_that_falls_into_quiet_hours_waits_for_their_end() -> None:
    world = World(datetime(2026, 11, 26, 1, 59, 45, tzinfo=UTC))  # 20:59:45 in New York
    world.sender.script.append(TwilioUnavailableError("Twilio answered 503", 503, None))
    with pytest.raises(RetryLaterError):
        world.handle(keyed(SMS))
    world.clock.advance(seconds=30)  # the host's visibilityTimeout: 21:00:15
    assert world.handle(keyed(SMS)) is SendOutcome.DEFERRED
    assert (world.record().status, world.record().error_code) == ("deferred", None)
    assert world.come_back() is SendOutcome.SENT
    assert (world.record().attempts, len(world.sender.sent)) == (2, 2)


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.one_of(st.integers(0, 5).map(lambda copy: ("deliver", copy)),
                  st.integers(1, 180).map(lambda minutes: ("wait", minutes))),
        max_size=20,
    ),
    start=st.integers(0, 23 * 60).map(lambda minutes: AT_SEVEN - timedelta(minutes=minutes)),
)  # fmt: skip
def test_any_redeliveries_and_waits_send_once_outside_quiet_hours_and_never_drop_it(
    steps: list[tuple[str, int]], start: datetime
) -> None:
    world = World(start)
    sent_at: list[datetime] = []
    send = world.sender.send_message

    def timed(sms: OutboundSms) -> object:
        sent_at.append(world.clock.now)
        return send(sms)

    world.sender.send_message = timed  # type: ignore[method-assign]
    copies = [json.dumps(keyed(SMS))]  # the original; each deferral adds the copy it puts back
    for action, value in steps:
        if action == "wait":
            world.clock.advance(minutes=value)
            continue
        world.handle(copies[value % len(copies)], f"m-{value}")
        copies += [text for text, _ in world.requeued[len(copies) - 1 :]]
    zone = ZoneInfo("America/New_York")
    tomorrow = (world.clock.now + timedelta(days=1)).astimezone(zone)
    world.clock.now = tomorrow.replace(hour=12, minute=0).astimezone(UTC)  # past any deferral
    world.handle(copies[-1], "m-last")  # the last copy put back, or the original, returns
    assert len(world.sender.sent) == 1  # never twice, never dropped
    assert all(8 <= moment.astimezone(zone).hour < 21 for moment in sent_at)
