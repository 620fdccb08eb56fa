"""The appointment reminder with its data, through the functions, in-process.

GIVEN the shipped flows, WHEN make_call places the reminder with a time and a place, THEN
Twilio is given a voice URL with an opaque id and none of the values; the signed webhook
at that URL says them, the SMS after an answer texts them, and the final status callback
deletes them. Data that does not fit the flow is refused before anything is sent, naming
the field: 400 from make_call and POST /api/messages, `rejected` for a queued call.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import azure.functions as func
import pytest

from telephony.container import Container
from telephony.flows.data import CallData, call_data_id, is_data_id
from telephony.outbound.sender import OutboundCall
from tests.app_client import APP_URL, body_json, function, post_json, signed_post
from tests.conftest import AppFactory
from tests.fakes import MemoryStore, ScriptedSender
from tests.flow_fakes import MemoryCallData
from tests.functional.test_call_flows import PLACED, MemoryQueue, action, answer, said

CALLEE = PLACED["To"]
GIVEN = {"time": "Friday at 3 PM", "place": "the Oak Street clinic"}
REMINDER = {"to": CALLEE, "flow": "appointment-reminder", "data": GIVEN}


class App:
    """The app with in-memory Storage and Twilio, and what it did."""

    def __init__(self, app_env: AppFactory) -> None:
        self.sender = ScriptedSender()
        self.call_data = MemoryCallData()
        self.queue = MemoryQueue()
        self.deliveries = MemoryStore()
        self.container: Container = app_env({
            "sender": self.sender, "call_data": self.call_data, "deliveries": self.deliveries,
            "enqueue": self.queue.send_message,
        }, PUBLIC_BASE_URL=APP_URL)  # fmt: skip

    def placed(self) -> OutboundCall:
        [call] = self.sender.sent
        assert isinstance(call, OutboundCall)
        return call


@pytest.fixture
def app(app_env: AppFactory) -> App:
    return App(app_env)


def error(resp: func.HttpResponse) -> tuple[int, Any, Any]:
    body = body_json(resp)
    return resp.status_code, body["error"], body["field"]


def test_make_call_gives_twilio_an_id_and_the_webhook_says_the_data(app: App) -> None:
    resp = post_json("make_call", REMINDER)
    assert resp.status_code == 201, resp.get_body()
    url = app.placed().url or ""
    query = parse_qs(urlsplit(url).query)
    assert query.keys() == {"flow", "data"} and is_data_id(query["data"][0])
    assert "Friday" not in url and "Oak" not in url
    # Twilio fetches that URL, signed: the reminder says the time and the place.
    root = answer(url, PLACED)
    assert said(root)[0] == (
        "Hello, this is Owl Clinic with a reminder of your appointment Friday at 3 PM at "
        "the Oak Street clinic."
    )
    assert "Oak" not in action(root, "Gather")


def test_the_answer_is_confirmed_aloud_and_by_sms_with_the_data(app: App) -> None:
    post_json("make_call", REMINDER)
    confirmed = answer(action(answer(app.placed().url or "", PLACED), "Gather"), PLACED, Digits="1")
    assert said(confirmed) == ["Thank you, your appointment is confirmed. See you Friday at 3 PM."]
    [sms] = app.queue.messages
    assert sms["body"] == (
        "Your Owl Clinic appointment Friday at 3 PM at the Oak Street clinic is confirmed. "
        "To change it, call +15017122661."
    )


def test_the_final_status_callback_deletes_the_data(app: App) -> None:
    post_json("make_call", REMINDER)
    callback = app.placed().status_callback or ""
    assert len(app.call_data.rows) == 1
    status = {
        "CallSid": PLACED["CallSid"],
        "CallStatus": "completed",
        "AccountSid": "AC" + "a" * 32,
    }
    assert signed_post("status_callback", status, url=callback).status_code == 204
    assert app.call_data.rows == {}


@pytest.mark.parametrize(
    ("data", "message", "field"),
    [
        (None, "data.time is required", "data.time"),
        ({"place": "the clinic"}, "data.time is required", "data.time"),
        ({**GIVEN, "time": "x" * 61}, "data.time is longer than 60 characters", "data.time"),
        ({**GIVEN, "time": ""}, "data.time must not be empty", "data.time"),
        ({**GIVEN, "time": 15}, "data.time must be of type string", "data.time"),
        ({**GIVEN, "doctor": "Who"}, "data has an unknown field doctor", "data.doctor"),
        ("Friday", "data must be of type object", "data"),
    ],
)
def test_make_call_refuses_data_that_does_not_fit_naming_the_field(
    app: App, data: object, message: str, field: str
) -> None:
    body = (
        {**REMINDER, "data": data} if data is not None else {"to": CALLEE, "flow": REMINDER["flow"]}
    )
    assert error(post_json("make_call", body)) == (400, message, field)
    assert app.sender.sent == [] and app.call_data.rows == {}


def test_make_call_refuses_data_for_a_flow_that_takes_none(app: App) -> None:
    resp = post_json("make_call", {"to": CALLEE, "flow": "ivr-menu", "data": GIVEN})
    assert error(resp) == (400, "flow ivr-menu takes no data", "data")


def test_make_call_answers_503_and_sends_nothing_when_the_data_cannot_be_kept(app: App) -> None:
    app.call_data.fail.add("put")
    assert post_json("make_call", REMINDER).status_code == 503
    assert app.sender.sent == []


def test_post_messages_refuses_bad_data_before_enqueueing(app: App) -> None:
    command = {"kind": "call", **REMINDER, "data": {"time": "Friday"}}
    assert error(post_json("send_message", command)) == (
        400,
        "data.place is required",
        "data.place",
    )
    assert app.queue.messages == []


def test_post_messages_enqueues_a_call_with_data(app: App) -> None:
    resp = post_json("send_message", {"kind": "call", **REMINDER, "idempotency_key": "remind-7"})
    assert resp.status_code == 202
    [queued] = app.queue.messages
    assert queued["data"] == GIVEN  # in our own queue, never in a URL


def deliver(text: str, message_id: str = "msg-1") -> None:
    function("outbound")(func.QueueMessage(id=message_id, body=text.encode()))


def test_a_queued_call_with_bad_data_is_rejected_naming_the_field(app: App) -> None:
    deliver(json.dumps({"kind": "call", **REMINDER, "data": {}, "idempotency_key": "remind-8"}))
    record = app.deliveries.records["remind-8"]
    assert (record.status, record.reason) == ("rejected", "data.time is required")
    assert app.sender.sent == []


def test_a_queued_call_keeps_its_data_under_its_key_and_renders_it(app: App) -> None:
    deliver(json.dumps({"kind": "call", **REMINDER, "idempotency_key": "remind-9"}))
    data_id = call_data_id("remind-9")
    assert app.call_data.rows == {data_id: CallData("appointment-reminder", GIVEN)}
    url = app.placed().url or ""
    assert url == f"{APP_URL}/api/voice_url?flow=appointment-reminder&data={data_id}"
    assert "Friday at 3 PM" in said(answer(url, PLACED))[0]


def test_a_webhook_whose_data_is_gone_gets_an_apology(app: App) -> None:
    post_json("make_call", REMINDER)
    app.call_data.rows.clear()  # purged
    assert said(answer(app.placed().url or "", PLACED)) == [
        "Sorry, this call cannot go on. Goodbye."
    ]


def test_a_tampered_data_id_is_forbidden(app: App) -> None:
    post_json("make_call", REMINDER)
    url = app.placed().url or ""
    other = call_data_id("someone-else")
    app.call_data.rows[other] = CallData("appointment-reminder", {"time": "x", "place": "y"})
    tampered = url.split("&data=")[0] + f"&data={other}"
    assert signed_post("voice_url", PLACED, url=tampered, signed_url=url).status_code == 403


def test_voice_flow_cannot_name_a_flow_with_data(
    app_env: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    app_env(VOICE_FLOW="appointment-reminder")
    with caplog.at_level("ERROR"):
        assert signed_post("voice_url", {**PLACED, "Direction": "inbound"}).status_code == 503
    assert "VOICE_FLOW names flow 'appointment-reminder': it needs data" in caplog.text


def test_the_data_row_default_is_in_memory_without_storage(app_env: AppFactory) -> None:
    # The test environment gives every container an in-memory store (tests/conftest.py).
    container = app_env()
    assert isinstance(container.call_data, MemoryCallData)
