"""sms_url's outcome events, in-process: signed webhooks in, CloudEvents out.

GIVEN the app with an in-memory sink, opt-out store and records, WHEN Twilio posts signed
inbound messages, THEN each answered message is one telephony.sms.received event and each
kept consent change one telephony.optout.changed event, valid against their schemas; a
consent event is staged before the change and published after it.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from telephony import schemas
from telephony.container import Container
from telephony.events import OPTOUT_CHANGED, SMS_RECEIVED
from tests.app_client import signed_post
from tests.conftest import AppFactory
from tests.fakes import Clock, MemoryOptOutStore, MemorySink, MemoryStore

CUSTOMER = "+15558675310"
OURS = "+15017122661"


class EventsApp:
    def __init__(self, app_env: AppFactory) -> None:
        self.sink, self.store, self.optouts = MemorySink(), MemoryStore(), MemoryOptOutStore()
        self.clock = Clock()
        parts = {
            "event_sinks": [self.sink], "deliveries": self.store, "optouts": self.optouts,
            "enqueue": lambda text: None, "clock": self.clock,
        }  # fmt: skip
        self.container: Container = app_env(parts, SMS_RULES_FILE="flows/sms-rules.yaml")

    def text(self, body: str, sid: str, **fields: str) -> None:
        params = {"MessageSid": sid, "From": CUSTOMER, "To": OURS, "Body": body, **fields}
        assert signed_post("sms_url", params).status_code == 200

    def data(self, kind: str) -> list[dict[str, object]]:
        return [event["data"] for event in self.sink.of_type(kind)]  # type: ignore[misc]


@pytest.fixture
def app(app_env: AppFactory) -> EventsApp:
    return EventsApp(app_env)


def test_an_answered_message_is_one_received_event_with_its_media_and_outcome(
    app: EventsApp,
) -> None:
    media = {
        "NumMedia": "2",
        "MediaUrl0": "https://api.twilio.com/m/0",
        "MediaUrl1": "https://api.twilio.com/m/1",
    }
    app.text("hello there", "SM" + "1" * 32, **media)
    (received,) = app.data(SMS_RECEIVED)
    assert received["from"] == CUSTOMER and received["body"] == "hello there"
    assert received["media_urls"] == [media["MediaUrl0"], media["MediaUrl1"]]
    assert received["outcome"] in ("rule", "default") and received["replied"] is True
    for event in app.sink.events:
        schemas.validator(f"events/{event['type']}.v1.json").validate(event)


def test_stop_and_start_publish_consent_changes_in_full_and_nothing_stays_staged(
    app: EventsApp,
) -> None:
    app.text("STOP", "SM" + "2" * 32)
    app.clock.advance(minutes=1)
    app.text("start", "SM" + "3" * 32)
    changes = app.data(OPTOUT_CHANGED)
    assert [(c["state"], c["keyword"], c["source"]) for c in changes] == [
        ("opted_out", "STOP", "keyword"),
        ("opted_in", "START", "keyword"),
    ]
    assert changes[0]["number"] == CUSTOMER and changes[0]["message_sid"] == "SM" + "2" * 32
    assert [r["outcome"] for r in app.data(SMS_RECEIVED)] == ["opt_out", "opt_in"]
    assert app.store.staged == {}
    for event in app.sink.events:
        schemas.validator(f"events/{event['type']}.v1.json").validate(event)


def test_a_custom_keyword_twilio_matched_is_recorded_as_the_customer_wrote_it(
    app: EventsApp,
) -> None:
    app.text(" Arrêt ", "SM" + "4" * 32, OptOutType="STOP")
    (change,) = app.data(OPTOUT_CHANGED)
    assert (change["keyword"], change["source"]) == ("ARRÊT", "opt_out_type")
    assert app.optouts.is_opted_out(CUSTOMER)


def test_a_replayed_stop_changes_nothing_and_publishes_no_second_change(app: EventsApp) -> None:
    app.text("STOP", "SM" + "5" * 32)
    app.text("STOP", "SM" + "5" * 32)
    assert len(app.data(OPTOUT_CHANGED)) == 1
    assert len(app.data(SMS_RECEIVED)) == 2  # each delivery of the webhook was answered
    assert app.store.staged == {}


def test_a_refused_sink_leaves_the_events_staged_and_reconcile_publishes_them_once(
    app: EventsApp,
) -> None:
    app.sink.fail = 2  # the consent change and the received message
    app.text("STOP", "SM" + "6" * 32)
    assert app.sink.events == [] and len(app.store.staged) == 2
    app.clock.advance(minutes=3)
    assert app.container.reconciler.run().staged_published == 2
    assert sorted(e["type"] for e in app.sink.events) == [OPTOUT_CHANGED, SMS_RECEIVED]
    app.clock.advance(minutes=3)
    app.container.reconciler.run()
    assert len(app.sink.events) == 2 and app.store.staged == {}


def test_a_staged_consent_change_that_was_never_kept_is_dropped_by_reconcile(
    app: EventsApp,
) -> None:
    """The process died between staging and the consent write: reconcile asks the store."""
    from telephony.sms.optouts import ConsentEvent, consent_changed_event

    never = ConsentEvent(CUSTOMER, "STOP", app.clock(), "SM" + "7" * 32)
    app.container.publisher.stage([consent_changed_event(never, "keyword")])
    app.clock.advance(minutes=3)
    assert app.container.reconciler.run().staged_published == 0
    assert app.sink.events == [] and app.store.staged == {}
    assert app.clock() - never.at > timedelta(minutes=2)
