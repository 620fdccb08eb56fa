"""Call flows with real peers: Twilio's contract in Prism, queues and tables in Azurite.

A call that names a flow reaches Twilio with the voice_url of that flow (and the id of its
data, kept in the Azurite table); the TwiML Twilio would then fetch from it is the flow's,
with the data said; an SMS a flow sends goes through the outbound queue once, however often
Twilio delivers the webhook that triggers it; the final status callback deletes the data.
"""

from __future__ import annotations

import uuid
from xml.etree.ElementTree import Element

import pytest
from defusedxml import ElementTree

from localpeers.azurite import Azurite
from localpeers.twilio_mock import TwilioMock
from telephony.flows.data import CallData, call_data_id
from telephony.flows.render import sms_key
from tests.app_client import body_json, post_json, signed_post
from tests.conftest import AppFactory
from tests.integration.test_outbound_queue import PUBLIC, Stack

CALLEE = "+15558675310"
OUR_NUMBER = "+15017122661"
DATA = {"time": "tomorrow at 10 AM", "place": "12 Elm Street"}
REMINDER = {"to": CALLEE, "flow": "appointment-reminder", "data": DATA}


def reminder_url(key: str) -> str:
    return f"{PUBLIC}/api/voice_url?flow=appointment-reminder&data={call_data_id(key)}"


@pytest.fixture
def stack(app_env: AppFactory, azurite: Azurite, twilio_mock: TwilioMock) -> Stack:
    suffix = uuid.uuid4().hex[:10]
    container = app_env(
        AzureWebJobsStorage=azurite.connection_string,
        OUTBOUND_QUEUE_NAME=f"flows-{suffix}",
        DELIVERIES_TABLE_NAME=f"flows{suffix}",
        OPTOUTS_TABLE_NAME=f"optouts{suffix}",
        CALL_DATA_TABLE_NAME=f"calldata{suffix}",
        TWILIO_API_BASE_URL=twilio_mock.base_url,
        PUBLIC_BASE_URL=PUBLIC,
    )
    return Stack(container, azurite, twilio_mock)


def placed_call(sid: str) -> dict[str, str]:
    """What Twilio posts to voice_url for a call the app placed."""
    return {
        "CallSid": sid,
        "AccountSid": "AC" + "a" * 32,
        "From": OUR_NUMBER,
        "To": CALLEE,
        "Direction": "outbound-api",
        "CallStatus": "in-progress",
    }


def twiml(url: str, params: dict[str, str]) -> Element:
    resp = signed_post("voice_url", params, url=url)
    assert resp.status_code == 200, resp.get_body()
    return ElementTree.fromstring(resp.get_body())  # type: ignore[no-any-return]


def gather_action(root: Element) -> str:
    gather = root.find("Gather")
    assert gather is not None
    return gather.get("action") or ""


def test_make_call_with_a_flow_sends_twilio_the_flow_url(stack: Stack) -> None:
    resp = post_json("make_call", REMINDER)
    assert resp.status_code == 201, resp.get_body()
    [sent] = stack.twilio.find_requests("/Calls.json", method="POST")
    assert sent.violations == []
    url = sent.param("Url") or ""
    data_id = url.rsplit("&data=", 1)[1]
    assert url == f"{PUBLIC}/api/voice_url?flow=appointment-reminder&data={data_id}"
    assert sent.param("Twiml") is None
    assert sent.param("StatusCallback") == f"{PUBLIC}/api/status_callback?data={data_id}"
    # Twilio then fetches that URL, signed: the flow answers, with the data from the table.
    call = placed_call(str(body_json(resp)["sid"]))
    root = twiml(url, call)
    assert [child.tag for child in root] == ["Say", "Gather", "Redirect"]
    assert "tomorrow at 10 AM at 12 Elm Street" in (root.findtext("Say") or "")
    # The final status callback deletes the data.
    status = {**call, "CallStatus": "completed"}
    callback = sent.param("StatusCallback") or ""
    assert signed_post("status_callback", status, url=callback).status_code == 204
    assert stack.container.call_data.get(data_id) is None


def test_make_call_with_data_that_does_not_fit_never_reaches_twilio(stack: Stack) -> None:
    resp = post_json("make_call", {**REMINDER, "data": {"time": "x" * 61, "place": "here"}})
    assert resp.status_code == 400
    assert body_json(resp)["field"] == "data.time"
    assert stack.twilio.find_requests("/Calls.json") == []


def test_make_call_with_an_unknown_flow_never_reaches_twilio(stack: Stack) -> None:
    resp = post_json("make_call", {"to": CALLEE, "flow": "appointment-remindr"})
    assert resp.status_code == 400
    assert body_json(resp)["field"] == "flow"
    assert stack.twilio.find_requests("/Calls.json") == []


def test_queued_call_with_a_flow_is_placed_with_the_flow_url(stack: Stack) -> None:
    command = {"kind": "call", **REMINDER, "idempotency_key": "remind-42"}
    stack.put(command)
    assert stack.deliver() is None
    [sent] = stack.twilio.find_requests("/Calls.json", method="POST")
    assert sent.violations == []
    assert sent.param("Url") == reminder_url("remind-42")
    data_id = call_data_id("remind-42")
    assert sent.param("StatusCallback") == (
        f"{PUBLIC}/api/status_callback?id=remind-42&data={data_id}"
    )
    assert stack.container.call_data.get(data_id) == CallData("appointment-reminder", DATA)
    record = stack.record("remind-42")
    assert record.kind == "call"
    assert (record.twilio_sid or "").startswith("CA")


def test_queued_call_with_an_unknown_flow_is_rejected_naming_it(stack: Stack) -> None:
    stack.put({"kind": "call", "to": CALLEE, "flow": "nope", "idempotency_key": "bad-flow"})
    assert stack.deliver() is None
    record = stack.record("bad-flow")
    assert record.status == "rejected"
    assert record.reason == "flow nope is not defined in CALL_FLOWS_FILE"
    assert stack.twilio.find_requests("/Calls.json") == []
    assert stack.queue_length() == 0


def test_send_message_refuses_an_unknown_flow_before_enqueueing(stack: Stack) -> None:
    resp = post_json("send_message", {"kind": "call", "to": CALLEE, "flow": "nope"})
    assert resp.status_code == 400
    assert body_json(resp)["field"] == "flow"
    assert stack.queue_length() == 0


def test_queued_call_with_bad_data_is_rejected_naming_the_field(stack: Stack) -> None:
    stack.put({"kind": "call", **REMINDER, "data": {"time": "soon"}, "idempotency_key": "bad"})
    assert stack.deliver() is None
    record = stack.record("bad")
    assert (record.status, record.reason) == ("rejected", "data.place is required")
    assert stack.twilio.find_requests("/Calls.json") == []


def placed_reminder(stack: Stack, key: str) -> str:
    """The data of a reminder placed under `key`, kept as the app keeps it; its URL."""
    stack.container.call_data.put(call_data_id(key), CallData("appointment-reminder", DATA))
    return reminder_url(key)


def test_a_flow_sms_is_queued_once_for_a_webhook_delivered_twice(stack: Stack) -> None:
    call = placed_call("CA" + "9" * 32)
    confirm_url = gather_action(twiml(placed_reminder(stack, "remind-9"), call))
    for _ in range(2):  # Twilio retries a webhook whose answer it did not get
        root = twiml(confirm_url, {**call, "Digits": "1"})
        assert [child.tag for child in root] == ["Say", "Hangup"]
    assert stack.queue_length() == 1
    assert stack.deliver() is None
    [sent] = stack.twilio.find_requests("/Messages.json", method="POST")
    assert sent.violations == []
    assert sent.param("To") == CALLEE
    assert sent.param("Body") == (
        "Your Owl Clinic appointment tomorrow at 10 AM at 12 Elm Street is confirmed. "
        f"To change it, call {OUR_NUMBER}."
    )
    key = sms_key(call["CallSid"], "appointment-reminder", "text-confirmed", 1)
    assert stack.record(key).status == "queued"


def test_the_same_step_in_another_call_sends_its_own_sms(stack: Stack) -> None:
    for sid in ("CA" + "1" * 32, "CA" + "2" * 32):
        call = placed_call(sid)
        twiml(gather_action(twiml(placed_reminder(stack, sid), call)), {**call, "Digits": "2"})
    assert stack.queue_length() == 2
