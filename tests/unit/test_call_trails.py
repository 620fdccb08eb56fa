"""telephony.call.completed: the trail of a call through its flows, and its one event.

GIVEN the shipped flows (or a small book), WHEN a call's webhooks arrive one after another
at the URLs each answer gave, THEN every webhook is kept in the call's trail and the end of
its flow (a hangup, reject or redirect step, the end of the flow, or the final status
callback) publishes one event with the steps in order, the answers, the dial outcome and
the recording, valid against the published schema; the trail is bounded, and neither a
store nor a sink failing changes what the caller hears.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from xml.etree.ElementTree import Element

import pytest
from defusedxml import ElementTree

from telephony import schemas
from telephony.errors import StorageUnavailableError
from telephony.events import CALL_COMPLETED
from telephony.events.model import fact_id
from telephony.events.publisher import Publisher
from telephony.flows import CallEvent, CallUrls, FlowBook, load_flow_book, parse_flow_document
from telephony.flows.data import CallData, call_data_id
from telephony.flows.render import END_OF_FLOW, HANGUP, REDIRECT, REJECT, render
from telephony.flows.trail import (
    LIST_BUDGET,
    MAX_DIGITS,
    MAX_ENTRIES,
    MAX_SPEECH,
    CallTrail,
    TrailEntry,
    call_completed_event,
)
from telephony.flows.voice import FlowCalls
from tests.fakes import Clock, MemorySink, MemoryStore
from tests.flow_fakes import MemoryCallData, MemoryCallTrails

SHIPPED = load_flow_book(Path(__file__).resolve().parents[2] / "flows" / "call-flows.yaml")
BASE = "https://calls.example.net"
URLS = CallUrls.for_base(BASE)
SID = "CA" + "7" * 32
CALLER, OUR_NUMBER = "+15558675310", "+15017122661"
INBOUND = {"CallSid": SID, "From": CALLER, "To": OUR_NUMBER, "Direction": "inbound"}
RECORDING = f"https://api.twilio.com/2010-04-01/Accounts/AC{'0' * 32}/Recordings/RE{'1' * 32}"
VALIDATOR = schemas.validator(f"events/{CALL_COMPLETED}.v1.json")


def book_of(steps: dict[str, Any], start: str = "a") -> FlowBook:
    return parse_flow_document({"version": 1, "flows": {"f": {"start": start, "steps": steps}}})


class Refused:
    """An outbox that cannot stage (Storage down too)."""

    def stage(self, *args: object) -> None:
        raise StorageUnavailableError("no outbox")

    def unstage(self, *args: object) -> None:
        raise StorageUnavailableError("no outbox")


class Call:
    """One call walked through FlowCalls: each webhook goes to the URL the last answer gave."""

    def __init__(
        self, book: FlowBook = SHIPPED, call: dict[str, str] = INBOUND, events: bool = True
    ) -> None:
        self.book = book
        self.call = call
        self.clock = Clock()
        self.trails = MemoryCallTrails()
        self.sink = MemorySink()
        self.outbox: Any = MemoryStore()
        self.publisher = Publisher(
            [self.sink] if events else [], "urn:test", lambda: self.outbox, self.clock
        )
        self.call_data = MemoryCallData()
        self.flows = FlowCalls(
            lambda: book, self._submit, lambda: self.trails, self.publisher, self.clock,
            call_data=lambda: self.call_data,
        )  # fmt: skip
        self.root: Element | None = None

    def _submit(self, command: dict[str, object]) -> tuple[object, bool]:
        return command, True

    def start(self, flow: str, data: dict[str, Any] | None = None) -> Element:
        """The call's first webhook; with `data`, kept as a placed call's would be."""
        if data is None:
            return self.post(URLS.flow(flow))
        data_id = call_data_id(self.call["CallSid"])
        self.call_data.put(data_id, CallData(flow, data))
        return self.post(URLS.flow(flow, data_id))

    def post(self, url: str, **form: str) -> Element:
        query = dict(parse_qsl(urlsplit(url).query))
        twiml = self.flows.answer(query["flow"], query, {**self.call, **form}, BASE)
        self.root = ElementTree.fromstring(twiml)
        return self.root

    def press(self, digits: str | None = None, speech: str | None = None) -> Element:
        answer = {"Digits": digits, "SpeechResult": speech}
        return self.post(self._action("Gather"), **{k: v for k, v in answer.items() if v})

    def silence(self) -> Element:
        """No input: Twilio follows the Redirect after the Gather."""
        return self.post(self._redirect())

    def dial_ended(self, status: str) -> Element:
        return self.post(self._action("Dial"), DialCallStatus=status)

    def recorded(self, url: str = RECORDING) -> Element:
        return self.post(self._action("Record"), RecordingUrl=url)

    def follow_redirect(self) -> Element:
        return self.post(self._redirect())

    def hung_up(self, status: str = "completed") -> None:
        self.flows.call_ended(self.call["CallSid"], status)

    def events(self) -> list[dict[str, Any]]:
        """The published events, each checked against the published schema."""
        found = self.sink.of_type(CALL_COMPLETED)
        for event in found:
            VALIDATOR.validate(event)
        return found

    def event(self) -> dict[str, Any]:
        (only,) = self.events()
        data: dict[str, Any] = only["data"]
        return data

    def _action(self, tag: str) -> str:
        assert self.root is not None
        element = self.root.find(tag)
        assert element is not None, [child.tag for child in self.root]
        return element.get("action") or ""

    def _redirect(self) -> str:
        assert self.root is not None
        element = self.root.find("Redirect")
        assert element is not None and element.text
        return element.text


# --- the end of a flow: which answer ends it ----------------------------------------------


@pytest.mark.parametrize(
    ("steps", "ended_by"),
    [
        ({"a": {"say": "Hi"}}, END_OF_FLOW),
        ({"a": {"say": "Hi", "next": "b"}, "b": {"hangup": None}}, HANGUP),
        ({"a": {"reject": {"reason": "busy"}}}, REJECT),
        ({"a": {"redirect": {"url": "https://twiml.example.com/x.xml"}}}, REDIRECT),
        ({"a": {"gather": {"fallback": "b"}}, "b": {"say": "Bye"}}, None),
        ({"a": {"dial": {"number": "+15558675310"}}}, None),
        ({"a": {"record": {"max_length": 10}}}, None),
    ],
)
def test_each_answer_says_whether_it_ends_the_flow(
    steps: dict[str, Any], ended_by: str | None
) -> None:
    rendered = render(book_of(steps), CallEvent("f", call_sid=SID), URLS)
    assert rendered.ended_by == ended_by


def test_a_redirect_to_another_flow_goes_on_and_an_apology_ends_the_call() -> None:
    redirect = render(SHIPPED, CallEvent("verbs", call_sid=SID), URLS)
    assert (redirect.steps, redirect.ended_by) == (("chime", "wait", "to-menu"), None)
    for event in (CallEvent("gone"), CallEvent("ivr-menu", "gone", "input")):
        rendered = render(SHIPPED, event, URLS)
        assert (rendered.problem is not None, rendered.ended_by) == (True, HANGUP)


# --- one event per call ---------------------------------------------------------------------


def test_a_menu_answered_by_key_then_a_voicemail_publishes_one_event_at_the_hangup() -> None:
    call = Call()
    call.start("ivr-menu")
    call.press("2")
    assert call.events() == []  # a record waits for Twilio's callback
    call.clock.advance(seconds=30)
    root = call.recorded()
    assert [child.tag for child in root] == ["Say", "Hangup"]
    (event,) = call.events()
    assert event["id"] == fact_id(CALL_COMPLETED, SID)
    assert event["subject"] == f"calls/{SID}"
    assert event["time"] == "2026-11-26T12:00:30Z"
    assert event["data"] == {
        "call_sid": SID, "flow": "ivr-menu", "from": CALLER, "to": OUR_NUMBER,
        "direction": "inbound", "ended_by": "hangup", "call_status": None,
        "steps": ["greeting", "menu", "voicemail", "take-message", "thanks", "end"],
        "answers": [{"step": "menu", "digits": "2", "speech": None}],
        "dial": None, "recording_url": RECORDING, "truncated": False,
    }  # fmt: skip


def test_the_status_callback_after_the_flow_published_publishes_nothing_more() -> None:
    call = Call(book_of({"a": {"say": "Hi"}}))
    call.start("f")
    assert call.event()["ended_by"] == "end_of_flow"
    reads = call.trails.calls["read"]
    call.hung_up("completed")
    call.hung_up("completed")  # Twilio may deliver it twice
    assert len(call.events()) == 1
    assert call.trails.calls["read"] == reads + 2  # one read each, nothing published


def test_a_dial_outcome_and_a_spoken_answer_are_in_the_event() -> None:
    call = Call()
    call.start("ivr-menu")
    call.press(speech="Sales, please.")
    call.dial_ended("completed")  # ring-sales has no next: the flow ends
    data = call.event()
    assert data["steps"] == ["greeting", "menu", "sales", "ring-sales"]
    assert data["answers"] == [{"step": "menu", "digits": None, "speech": "Sales, please."}]
    assert data["dial"] == {"step": "ring-sales", "status": "completed"}
    assert (data["ended_by"], data["recording_url"]) == ("end_of_flow", None)


def test_a_caller_who_hangs_up_during_a_gather_is_ended_by_the_status_callback() -> None:
    call = Call()
    call.start("ivr-menu")
    call.silence()  # asked again
    call.hung_up("in-progress")  # not final: nothing
    assert call.events() == []
    call.hung_up("completed")
    data = call.event()
    assert (data["ended_by"], data["call_status"]) == ("status_callback", "completed")
    assert (data["steps"], data["answers"]) == (["greeting", "menu"], [])


def test_a_dial_that_went_to_voicemail_and_a_caller_who_left_without_a_message() -> None:
    call = Call()
    call.start("ivr-menu")
    call.press("1")
    call.dial_ended("no-answer")
    call.hung_up("completed")
    data = call.event()
    assert data["steps"] == [
        "greeting", "menu", "sales", "ring-sales", "voicemail", "take-message",
    ]  # fmt: skip
    assert data["dial"] == {"step": "ring-sales", "status": "no-answer"}
    assert data["recording_url"] is None


def test_a_redirect_to_another_flow_keeps_one_trail_under_the_first_flow() -> None:
    call = Call()
    call.start("verbs")
    call.follow_redirect()
    call.press("1")
    call.dial_ended("busy")
    call.recorded()
    data = call.event()
    assert data["flow"] == "verbs"
    assert data["steps"] == [
        "chime", "wait", "to-menu", "greeting", "menu", "sales", "ring-sales", "voicemail",
        "take-message", "thanks", "end",
    ]  # fmt: skip
    assert (data["dial"]["status"], data["recording_url"]) == ("busy", RECORDING)


def test_a_redirect_out_of_the_app_and_a_reject_end_the_flow() -> None:
    out = Call(book_of({"a": {"redirect": {"url": "https://twiml.example.com/x.xml"}}}))
    out.start("f")
    assert out.event()["ended_by"] == "redirect"
    closed = Call()
    closed.start("closed")
    assert (closed.event()["ended_by"], closed.event()["steps"]) == ("reject", ["busy"])


def test_a_call_the_app_placed_names_its_parties_as_twilio_gave_them() -> None:
    placed = {"CallSid": SID, "From": OUR_NUMBER, "To": CALLER, "Direction": "outbound-api"}
    call = Call(call=placed)
    call.start("appointment-reminder", {"time": "tomorrow at 10 AM", "place": "12 Elm Street"})
    call.press("1")
    data = call.event()
    assert (data["from"], data["to"], data["direction"]) == (OUR_NUMBER, CALLER, "outbound-api")
    assert data["steps"] == ["reminder", "confirm-or-cancel", "confirmed", "text-confirmed"]


def test_a_replayed_last_webhook_adds_nothing_and_publishes_nothing() -> None:
    call = Call(book_of({"a": {"gather": {"branches": {"1": "b"}}}, "b": {"hangup": {}}}))
    call.start("f")
    action = call._action("Gather")
    call.press("1")
    call.post(action, Digits="1")  # the same signed webhook, again
    assert len(call.events()) == 1
    assert len(call.trails.trails[SID].entries) == 2


def test_an_unknown_call_or_a_call_without_a_sid_costs_at_most_one_read() -> None:
    call = Call()
    call.hung_up("completed")
    assert call.trails.calls == {"append": 0, "read": 1, "finish": 0}
    assert call.events() == []
    nameless = Call(call={"From": CALLER, "To": OUR_NUMBER})
    nameless.start("closed")
    assert nameless.trails.calls == {"append": 0, "read": 0, "finish": 0}


def test_with_events_off_no_trail_is_kept() -> None:
    call = Call(events=False)
    call.start("ivr-menu")
    call.press("2")
    call.hung_up()
    assert call.trails.calls == {"append": 0, "read": 0, "finish": 0}


# --- bounds ----------------------------------------------------------------------------------

LOOP = {
    "menu": {"gather": {"branches": {"1": "again", "2": "bye"}}},
    "again": {"say": "Once more.", "next": "menu"},
    "bye": {"hangup": {}},
}


def test_a_caller_pressing_keys_for_an_hour_keeps_a_hundred_webhooks_then_truncates() -> None:
    call = Call(book_of(LOOP, start="menu"))
    call.start("f")
    for _ in range(MAX_ENTRIES + 50):
        call.press("1")
    call.press("2")
    assert len(call.trails.trails[SID].entries) == MAX_ENTRIES  # no growth past the bound
    (event,) = call.events()
    data = event["data"]
    assert data["truncated"] is True
    assert data["steps"][:3] == ["menu", "again", "menu"]
    assert "bye" not in data["steps"]  # it came after the bound
    assert len(data["answers"]) == MAX_ENTRIES - 1
    assert len(json.dumps(event)) < 48 * 1024  # a queue message, base64 included


def test_every_field_is_cut_to_its_bound() -> None:
    gather = {"input": ["dtmf", "speech"], "fallback": "b"}
    call = Call(book_of({"a": {"gather": gather}, "b": {"say": "Bye"}}))
    call.start("f")
    call.press("1" * 10_000, speech="é" * 10_000)
    (entry,) = [e for e in call.trails.trails[SID].entries if e.event == "input"]
    assert (len(entry.digits or ""), len(entry.speech or "")) == (MAX_DIGITS, MAX_SPEECH)
    assert len(call.event()["answers"][0]["speech"]) == MAX_SPEECH


def test_the_lists_of_an_event_stay_within_what_a_queue_message_and_an_outbox_row_hold() -> None:
    long = TrailEntry(Clock()(), "f", ("menu",), "menu", "input", speech="日本語の長い答え" * 125)
    entries = (long,) * MAX_ENTRIES
    event = call_completed_event(SID, CallTrail(entries), "hangup", None, Clock()())
    data = event.data
    assert data["truncated"] is True and 0 < len(data["answers"]) < MAX_ENTRIES
    assert len(json.dumps(data["answers"]) + json.dumps(data["steps"])) <= LIST_BUDGET
    assert len(json.dumps(event.stored())) < 32_000  # the outbox keeps it in one property
    VALIDATOR.validate(event.cloudevent("urn:test"))


# --- failures never reach the caller ---------------------------------------------------------


def answers_to(flows: FlowCalls, webhooks: list[tuple[str, dict[str, str]]]) -> list[str]:
    """The TwiML of each webhook, posted at `url` with Twilio's `form`."""
    answers = []
    for url, form in webhooks:
        query = dict(parse_qsl(urlsplit(url).query))
        answers.append(flows.answer(query["flow"], query, {**INBOUND, **form}, BASE))
    return answers


@pytest.mark.parametrize("failing", ["append", "read", "finish"])
def test_a_failing_trail_store_never_changes_the_twiml(
    failing: str, caplog: pytest.LogCaptureFixture
) -> None:
    call = Call()
    call.trails.fail.add(failing)
    webhooks = [
        (URLS.flow("ivr-menu"), {}),
        (URLS.step("ivr-menu", "menu", "input", 1), {"Digits": "1"}),
        (URLS.step("ivr-menu", "ring-sales", "dial"), {"DialCallStatus": "completed"}),
    ]
    with caplog.at_level(logging.WARNING):
        answers = answers_to(call.flows, webhooks)
    plain = FlowCalls(lambda: SHIPPED, lambda command: (command, True))
    assert answers == answers_to(plain, webhooks)
    assert "call_trail_failed" in caplog.text
    # Published before the finish failed: the status callback may publish it again.
    assert len(call.events()) == (1 if failing == "finish" else 0)


def test_a_sink_and_an_outbox_both_down_leave_the_event_to_the_status_callback() -> None:
    call = Call(book_of({"a": {"say": "Hi"}}))
    call.sink.fail = 1
    call.outbox = Refused()
    root = call.start("f")
    assert [child.tag for child in root] == ["Say", "Hangup"]
    assert call.events() == [] and not call.trails.trails[SID].finished
    call.hung_up("completed")  # the sink is back
    data = call.event()
    assert (data["ended_by"], data["call_status"]) == ("status_callback", "completed")


def test_an_event_a_sink_refused_is_staged_and_the_call_is_finished() -> None:
    call = Call(book_of({"a": {"say": "Hi"}}))
    call.sink.fail = 1
    call.start("f")
    assert call.events() == []
    assert [event.id for event in call.outbox.staged.values()] == [fact_id(CALL_COMPLETED, SID)]
    assert call.trails.trails[SID].finished
    call.hung_up()
    assert call.events() == []  # reconcile publishes the staged one
