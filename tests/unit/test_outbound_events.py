"""Outcome events of delivery records: one per status change, kept until a sink has it,
and reconcile: stale records refreshed from Twilio, abandoned events published again."""

from __future__ import annotations

import contextlib
import json
import random
from datetime import timedelta

import pytest

from telephony import schemas
from telephony.errors import TwilioOutcomeUnknownError, TwilioUnavailableError
from telephony.events import DELIVERY_UPDATED
from telephony.events.publisher import OUTBOX_GRACE, Publisher
from telephony.outbound.commands import CommandRules
from telephony.outbound.reconcile import Reconciler
from telephony.outbound.records import TRACK_FOR, Tracking
from telephony.outbound.sender import SenderDefaults
from telephony.outbound.service import OutboundService, SendOutcome
from telephony.outbound.writer import RecordWriter
from tests.fakes import Clock, MemoryOptOutStore, MemorySink, MemoryStore, ScriptedSender

SMS = {"kind": "sms", "to": "+15558675310", "body": "Your order shipped"}
AFTER = timedelta(minutes=30)


class World:
    """The service, its reconciler and their fakes, sharing one store, sink and clock."""

    def __init__(self, events: bool = True, sender: ScriptedSender | None = None) -> None:
        self.clock = Clock()
        self.store = MemoryStore()
        self.sink = MemorySink()
        self.optouts = MemoryOptOutStore()
        self.sender = sender or ScriptedSender()
        self.publisher = Publisher(
            [self.sink] if events else [], "urn:test", lambda: self.store, self.clock
        )
        tracking = Tracking(events=events, after=AFTER)
        self.writer = RecordWriter(self.store, tracking, self.publisher, self.clock)
        self.service = OutboundService(
            self.store, self.sender, CommandRules(frozenset({"US"})),
            SenderDefaults("+15017122661", None, "https://calls.example.net"),
            self.optouts, [].append, self.clock, writer=self.writer,
        )  # fmt: skip
        self.reconciler = Reconciler(
            self.store, self.writer, self.sender, self.publisher, AFTER, self.clock
        )

    def send(self, key: str = "order-42", **command: object) -> SendOutcome:
        body = json.dumps({**SMS, "idempotency_key": key, **command})
        return self.service.handle(body, f"m-{key}", 1)

    def statuses(self, key: str = "order-42") -> list[tuple[object, object]]:
        return [
            (event["data"]["previous_status"], event["data"]["status"])  # type: ignore[index]
            for event in self.sink.of_type(DELIVERY_UPDATED)
            if event["data"]["id"] == key  # type: ignore[index]
        ]


def test_a_send_and_its_callbacks_publish_one_event_per_status_change() -> None:
    world = World()
    assert world.send() is SendOutcome.SENT
    sid = world.store.records["order-42"].twilio_sid
    for status in ("sent", "sent", "delivered", "sent"):  # a repeat and a late one change nothing
        world.service.apply_status("order-42", status, sid, None)
    assert world.statuses() == [("claimed", "queued"), ("queued", "sent"), ("sent", "delivered")]
    assert world.store.records["order-42"].outbox == ()  # all confirmed, none kept
    assert world.store.records["order-42"].check_after is None  # final: nothing to look at


def test_every_event_is_valid_against_its_published_schema_and_ids_are_stable() -> None:
    world = World()
    world.send()
    world.send(key="bad", to="+44 no number")
    validator = schemas.validator(f"events/{DELIVERY_UPDATED}.v1.json")
    for event in world.sink.events:
        validator.validate(event)
    ids = [event["id"] for event in world.sink.events]
    assert len(ids) == len(set(ids)) == 2
    again = World()
    again.send()
    again.send(key="bad", to="+44 no number")
    assert [event["id"] for event in again.sink.events] == ids  # the same fact, the same id


def test_events_carry_the_full_number_while_get_message_masks_it() -> None:
    world = World()
    world.send()
    assert world.sink.events[0]["data"]["to"] == "+15558675310"  # type: ignore[index]
    assert world.service.record_of("order-42") is not None


def test_a_rejected_retrying_poison_and_in_doubt_record_each_publish_their_status() -> None:
    world = World(
        sender=ScriptedSender(TwilioUnavailableError("down"), TwilioOutcomeUnknownError("lost"))
    )
    with pytest.raises(Exception, match="down"):
        world.send()
    assert world.send() is SendOutcome.IN_DOUBT
    world.send(key="bad", to="not a number")
    assert world.statuses() == [("claimed", "retrying"), ("claimed", "in_doubt")]
    assert world.statuses("bad") == [(None, "rejected")]


def test_table_round_trips_per_send_are_one_more_with_events_on() -> None:
    def round_trips(events: bool) -> int:
        world = World(events=events)
        world.send()
        return world.store.round_trips + world.optouts.round_trips

    assert round_trips(events=False) == 3  # opt-out read, claim, settle
    assert round_trips(events=True) == 4  # and the write that takes the published event out


def test_an_event_a_sink_refused_stays_with_the_record_and_reconcile_publishes_it() -> None:
    world = World()
    world.sink.fail = 1
    world.send()
    kept = world.store.records["order-42"]
    assert [e.data["status"] for e in kept.outbox] == ["queued"] and world.sink.events == []
    assert kept.check_after == world.clock() + OUTBOX_GRACE
    world.reconciler.run()
    assert world.statuses() == []  # not due yet: a live writer may still be publishing
    world.clock.advance(seconds=OUTBOX_GRACE.total_seconds() + 1)
    world.reconciler.run()
    assert world.statuses() == [("claimed", "queued")]
    assert world.store.records["order-42"].outbox == ()
    world.clock.advance(minutes=3)
    world.reconciler.run()
    assert world.statuses() == [("claimed", "queued")]  # published once, not at every run


def test_reconcile_asks_twilio_only_about_records_short_of_a_final_status_after_the_delay() -> None:
    world = World()
    world.send(key="stale")
    world.send(key="settled")
    world.service.apply_status(
        "settled", "delivered", world.store.records["settled"].twilio_sid, None
    )
    stale_sid = world.store.records["stale"].twilio_sid
    assert stale_sid is not None
    world.sender.statuses[stale_sid] = "delivered"
    world.clock.advance(minutes=29)
    assert world.reconciler.run().twilio_requests == 0
    world.clock.advance(minutes=2)
    report = world.reconciler.run()
    assert (report.twilio_requests, report.advanced) == (1, 1)
    assert world.sender.fetched == [stale_sid]
    assert world.statuses("stale")[-1] == ("queued", "delivered")
    assert world.store.records["stale"].check_after is None
    assert world.reconciler.run().twilio_requests == 0  # nothing is due any more


def test_a_record_twilio_still_calls_open_is_asked_again_later_and_given_up_after_days() -> None:
    world = World()
    world.send()
    sid = world.store.records["order-42"].twilio_sid
    assert sid is not None
    world.sender.statuses[sid] = "sent"  # a carrier that never reports delivery
    world.clock.advance(minutes=31)
    world.reconciler.run()
    world.reconciler.run()
    assert world.sender.fetched == [sid]  # once: the next look is RECONCILE_AFTER_MINUTES on
    world.clock.advance(minutes=31)
    world.reconciler.run()
    assert len(world.sender.fetched) == 2
    world.clock.advance(seconds=TRACK_FOR.total_seconds())
    world.reconciler.run()
    assert world.store.records["order-42"].check_after is None  # given up: still `sent`
    assert world.statuses() == [("claimed", "queued"), ("queued", "sent")]


def test_a_failing_fetch_leaves_the_record_due_and_changes_nothing() -> None:
    world = World()
    world.send()
    world.sender.script.append(TwilioUnavailableError("429"))
    world.clock.advance(minutes=31)
    report = world.reconciler.run()
    assert report.advanced == 0 and world.store.records["order-42"].status == "queued"
    world.clock.advance(minutes=31)
    world.sender.statuses[world.store.records["order-42"].twilio_sid or ""] = "delivered"
    world.reconciler.run()
    assert world.store.records["order-42"].status == "delivered"


def test_a_claim_abandoned_by_a_dead_worker_is_settled_in_doubt_and_never_sent() -> None:
    world = World()
    world.store.insert(world.writer.track(None, _claim(world)))
    world.clock.advance(minutes=32)
    world.reconciler.run()
    world.clock.advance(minutes=32)
    world.reconciler.run()
    assert world.store.records["order-42"].status == "in_doubt"
    assert world.sender.sent == [] and world.statuses() == [("claimed", "in_doubt")]


def test_a_run_is_bounded_in_records_and_in_time() -> None:
    world = World()
    for n in range(12):
        world.send(key=f"k{n}")
    world.clock.advance(minutes=31)
    parts = (world.store, world.writer, world.sender, world.publisher, AFTER, world.clock)
    assert Reconciler(*parts, max_records=5).run().records == 5
    ticks = iter(range(1000))
    timed = Reconciler(*parts, max_seconds=3, monotonic=lambda: float(next(ticks)))
    report = timed.run()
    assert report.stopped_early and report.records < 7


def test_staged_events_are_published_only_when_their_change_happened() -> None:
    world = World()
    publisher = world.publisher
    happened_event, vanished_event = _staged_event("a"), _staged_event("b")
    world.sink.fail = 1
    publisher.publish_or_stage([happened_event])  # refused: staged, due at once
    # Announced, then the change did not happen, and the process died before `release`.
    due = publisher.stage([vanished_event])
    world.clock.advance(seconds=OUTBOX_GRACE.total_seconds() + 1)
    parts = (world.store, world.writer, world.sender, publisher, AFTER, world.clock)
    reconciler = Reconciler(*parts, happened=lambda event: event.id != vanished_event.id)
    assert due is not None and reconciler.run().staged_published == 1
    assert [event["id"] for event in world.sink.events] == [happened_event.id]
    assert world.store.staged == {}


def test_many_sends_with_faults_publish_every_status_change_at_least_once() -> None:
    """Random sink refusals and process deaths between a write and its publish: after
    reconcile, every status a record ever had was published, and none without faults twice."""
    rng = random.Random(20261129)
    world = World()
    history: dict[str, list[str]] = {}
    real_publish = world.publisher.publish

    def flaky(events):  # type: ignore[no-untyped-def]
        if rng.random() < 0.2:
            raise SystemExit  # the process dies after the write, before the publish
        return real_publish(events)

    world.publisher.publish = flaky  # type: ignore[method-assign]
    for n in range(200):
        key = f"k{n}"
        world.sink.fail = 1 if rng.random() < 0.2 else 0
        with contextlib.suppress(SystemExit):
            world.send(key=key)
        record = world.store.records[key]
        sid = record.twilio_sid
        for status in ("sent", "delivered"):
            with contextlib.suppress(SystemExit):
                world.service.apply_status(key, status, sid, None)
        history[key] = ["queued", "sent", "delivered"]
    world.publisher.publish = real_publish  # type: ignore[method-assign]
    world.clock.advance(minutes=3)
    world.reconciler.run()
    published: dict[str, set[str]] = {}
    for event in world.sink.of_type(DELIVERY_UPDATED):
        data: dict[str, str] = event["data"]  # type: ignore[assignment]
        published.setdefault(data["id"], set()).add(data["status"])
    assert {key: set(statuses) for key, statuses in history.items()} == published
    assert all(record.outbox == () for record in world.store.records.values())


def _claim(world: World):  # type: ignore[no-untyped-def]
    from telephony.outbound.records import CLAIMED, DeliveryRecord

    now = world.clock()
    return DeliveryRecord(
        key="order-42", kind="sms", to="+15558675310", status=CLAIMED, created_at=now,
        updated_at=now, attempts=1, lease_until=now + timedelta(seconds=60),
    )  # fmt: skip


def _staged_event(name: str):  # type: ignore[no-untyped-def]
    from telephony.events.model import OutcomeEvent

    return OutcomeEvent(name * 8, "telephony.sms.received", f"sms/{name}", Clock()(), {})
