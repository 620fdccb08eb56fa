"""The shipped call flows walked end to end through voice_url, in-process.

GIVEN the app with flows/call-flows.yaml, WHEN Twilio's webhooks arrive signed (each one
at the URL the previous TwiML gave), THEN every answer is the next part of the flow; SMS
that a flow sends land on the outbound queue (an in-memory stand-in here; Azurite in
tests/integration) once per call, step and attempt.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from urllib.parse import parse_qs, urlsplit
from xml.etree.ElementTree import Element

import pytest
from defusedxml import ElementTree

from telephony.container import Container
from telephony.flows.data import CallData, call_data_id
from tests.app_client import APP_URL, body_json, post_json, signed_post
from tests.conftest import AppFactory
from tests.fakes import MemoryStore, ScriptedSender
from tests.flow_fakes import MemoryCallData

VOICE = f"{APP_URL}/api/voice_url"
CALLER = "+15558675310"
OUR_NUMBER = "+15017122661"
INBOUND = {"CallSid": "CA" + "5" * 32, "From": CALLER, "To": OUR_NUMBER, "Direction": "inbound"}
# A call the app placed (make_call or a queued call): Twilio's From is our number.
PLACED = {"CallSid": "CA" + "6" * 32, "From": OUR_NUMBER, "To": CALLER, "Direction": "outbound-api"}
# A reminder the app placed: its data is kept under this id (the URL has nothing else).
REMINDER_DATA = {"time": "tomorrow at 10 AM", "place": "12 Elm Street"}
REMINDER_ID = call_data_id("remind-42")
REMINDER = f"{VOICE}?flow=appointment-reminder&data={REMINDER_ID}"


class MemoryQueue:
    """The outbound queue's send_message, recorded."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.messages: list[dict[str, object]] = []
        self.fail = fail

    def send_message(self, text: str) -> None:
        if self.fail:
            raise self.fail
        self.messages.append(json.loads(text))


def with_memory_outbound(
    app_env: AppFactory, queue: MemoryQueue | None = None, **settings: str
) -> MemoryQueue:
    """Install the app with an in-memory queue and delivery store (no Azurite here)."""
    queue = queue or MemoryQueue()
    call_data = MemoryCallData()  # with the data of a reminder the app placed
    call_data.put(REMINDER_ID, CallData("appointment-reminder", REMINDER_DATA))
    parts = {"deliveries": MemoryStore(), "sender": ScriptedSender(), "enqueue": queue.send_message,
             "call_data": call_data}  # fmt: skip
    app_env(parts, **settings)
    return queue


def answer(url: str = VOICE, call: dict[str, str] = INBOUND, **form: str) -> Element:
    resp = signed_post("voice_url", {**call, **form}, url=url)
    assert resp.status_code == 200, resp.get_body()
    assert resp.mimetype == "application/xml"
    return ElementTree.fromstring(resp.get_body())  # type: ignore[no-any-return]


def verbs(root: Element) -> list[str]:
    return [child.tag for child in root]


def said(root: Element) -> list[str]:
    return [say.text or "" for say in root.iter("Say")]


def action(root: Element, tag: str) -> str:
    element = root.find(tag)
    assert element is not None, verbs(root)
    return element.get("action") or ""


def redirect(root: Element) -> str:
    element = root.find("Redirect")
    assert element is not None and element.text
    return element.text


def query(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


@pytest.fixture
def ivr(app_env: AppFactory) -> Container:
    return app_env(VOICE_FLOW="ivr-menu")


# --- ivr-menu: 1 sales (dial), 2 voicemail (record) --------------------------------------


def test_an_inbound_call_gets_the_greeting_and_the_menu(ivr: Container) -> None:
    root = answer()
    assert verbs(root) == ["Say", "Gather", "Redirect"]
    assert said(root)[0] == "Thanks for calling Owl Shop."
    assert query(action(root, "Gather")) == {
        "flow": "ivr-menu",
        "step": "menu",
        "event": "input",
        "attempt": "1",
    }
    assert query(redirect(root)) == {
        "flow": "ivr-menu",
        "step": "menu",
        "event": "timeout",
        "attempt": "1",
    }


def test_pressing_1_rings_sales_and_a_completed_call_hangs_up(ivr: Container) -> None:
    menu = answer()
    sales = answer(action(menu, "Gather"), Digits="1")
    assert verbs(sales) == ["Say", "Dial"]
    dial = sales.find("Dial")
    assert dial is not None
    assert (dial.text, dial.get("timeout"), dial.get("callerId")) == (
        "+15558675310",
        "20",
        "+15017122661",
    )
    done = answer(action(sales, "Dial"), DialCallStatus="completed", DialCallDuration="42")
    assert verbs(done) == ["Hangup"]


@pytest.mark.parametrize("status", ["no-answer", "busy", "failed"])
def test_sales_not_answering_takes_a_voicemail(ivr: Container, status: str) -> None:
    sales = answer(action(answer(), "Gather"), Digits="1")
    voicemail = answer(action(sales, "Dial"), DialCallStatus=status)
    assert verbs(voicemail) == ["Say", "Record", "Redirect"]
    assert "leave a message" in said(voicemail)[0]


def test_saying_voicemail_records_a_message_with_transcription(ivr: Container) -> None:
    voicemail = answer(
        action(answer(), "Gather"), SpeechResult="I'd like to leave a Voicemail.", Confidence="0.9"
    )
    record = voicemail.find("Record")
    assert record is not None
    assert (record.get("maxLength"), record.get("finishOnKey")) == ("120", "#")
    assert (record.get("transcribe"), record.get("playBeep")) == ("true", "true")
    assert record.get("recordingStatusCallback") == f"{APP_URL}/api/status_callback"
    recording = "https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE" + "7" * 32
    thanks = answer(
        action(voicemail, "Record"), RecordingUrl=recording, RecordingDuration="9", Digits="#"
    )
    assert verbs(thanks) == ["Say", "Hangup"]
    assert said(thanks) == ["Thanks, we got your message. Goodbye."]


def test_silence_during_the_recording_still_thanks_the_caller(ivr: Container) -> None:
    voicemail = answer(action(answer(), "Gather"), Digits="2")
    # An empty recording skips the action; Twilio follows the Redirect instead.
    assert said(answer(redirect(voicemail))) == ["Thanks, we got your message. Goodbye."]


def test_no_input_asks_again_then_says_goodbye(ivr: Container) -> None:
    root = answer()
    for attempt in ("2", "3"):
        root = answer(redirect(root))
        assert verbs(root) == ["Gather", "Redirect"]
        assert query(action(root, "Gather"))["attempt"] == attempt
        assert said(root)[0] == "Sorry, I did not get that."
    goodbye = answer(redirect(root))
    assert verbs(goodbye) == ["Say", "Hangup"]
    assert said(goodbye) == ["Sorry we could not help you this time. Goodbye."]


def test_a_key_without_a_branch_asks_again(ivr: Container) -> None:
    again = answer(action(answer(), "Gather"), Digits="9")
    assert query(action(again, "Gather"))["attempt"] == "2"


# --- appointment-reminder: a call the app placed; 1 confirms, 2 cancels, by SMS too ------


@pytest.fixture
def queue(app_env: AppFactory) -> MemoryQueue:
    return with_memory_outbound(app_env)


def test_the_reminder_asks_to_confirm_or_cancel(queue: MemoryQueue) -> None:
    root = answer(REMINDER, PLACED)
    assert verbs(root) == ["Say", "Gather", "Redirect"]
    assert "reminder of your appointment" in said(root)[0]


CONFIRMED = (
    "Your Owl Clinic appointment tomorrow at 10 AM at 12 Elm Street is confirmed. "
    "To change it, call +15017122661."
)
CANCELLED = (
    "Your Owl Clinic appointment tomorrow at 10 AM at 12 Elm Street is cancelled. "
    "Call +15017122661 to book again."
)


@pytest.mark.parametrize(
    ("form", "confirmation", "sms"),
    [
        ({"Digits": "1"}, "your appointment is confirmed", CONFIRMED),
        ({"SpeechResult": "Confirm."}, "your appointment is confirmed", CONFIRMED),
        ({"Digits": "2"}, "Your appointment is cancelled", CANCELLED),
        ({"SpeechResult": "please cancel it"}, "Your appointment is cancelled", CANCELLED),
    ],
)
def test_an_answer_is_confirmed_aloud_and_by_sms_to_the_callee(
    queue: MemoryQueue, form: dict[str, str], confirmation: str, sms: str
) -> None:
    done = answer(action(answer(REMINDER, PLACED), "Gather"), PLACED, **form)
    assert verbs(done) == ["Say", "Hangup"]
    assert confirmation in said(done)[0]
    [message] = queue.messages
    assert (message["kind"], message["to"], message["body"]) == ("sms", CALLER, sms)
    assert str(message["idempotency_key"]).startswith(f"call-{PLACED['CallSid']}-")


def test_the_same_webhook_delivered_twice_queues_the_sms_once(queue: MemoryQueue) -> None:
    url = action(answer(REMINDER, PLACED), "Gather")
    first = answer(url, PLACED, Digits="1")
    second = answer(url, PLACED, Digits="1")
    assert ElementTree.tostring(first) == ElementTree.tostring(second)
    assert len(queue.messages) == 1


def test_another_call_gets_its_own_sms(queue: MemoryQueue) -> None:
    url = action(answer(REMINDER, PLACED), "Gather")
    answer(url, PLACED, Digits="1")
    answer(url, {**PLACED, "CallSid": "CA" + "8" * 32}, Digits="1")
    assert len({str(m["idempotency_key"]) for m in queue.messages}) == 2


def test_no_answer_to_the_reminder_ends_with_the_fallback_and_no_sms(queue: MemoryQueue) -> None:
    root = answer(REMINDER, PLACED)
    for _ in range(3):
        root = answer(redirect(root), PLACED)
    assert said(root) == ["We did not get an answer, so your appointment stays as it is. Goodbye."]
    assert queue.messages == []


def test_an_sms_that_cannot_be_queued_does_not_break_the_call(
    app_env: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    with_memory_outbound(app_env, MemoryQueue(fail=ConnectionError("storage is down")))
    with caplog.at_level(logging.INFO):
        done = answer(action(answer(REMINDER, PLACED), "Gather"), PLACED, Digits="1")
    assert verbs(done) == ["Say", "Hangup"]
    assert '"flow_sms_not_queued"' in caplog.text
    assert "ConnectionError" in caplog.text


def test_an_sms_to_a_refused_destination_is_logged_and_the_call_goes_on(
    app_env: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN a call placed abroad, where the destination guard (the sender's country) forbids texting
    abroad = {**PLACED, "To": "+447911123456"}
    queue = with_memory_outbound(app_env)
    with caplog.at_level(logging.INFO):
        done = answer(action(answer(REMINDER, abroad), "Gather"), abroad, Digits="1")
    assert verbs(done) == ["Say", "Hangup"]
    assert queue.messages == []
    assert '"flow_sms_rejected"' in caplog.text
    assert abroad["To"] not in caplog.text


# --- verbs and closed ---------------------------------------------------------------------


def test_the_verbs_tour_plays_pauses_and_redirects_to_the_menu(app_env: AppFactory) -> None:
    app_env()
    tour = answer(f"{VOICE}?flow=verbs")
    assert verbs(tour) == ["Play", "Pause", "Redirect"]
    assert query(redirect(tour)) == {"flow": "ivr-menu"}
    assert said(answer(redirect(tour)))[0] == "Thanks for calling Owl Shop."


def test_closed_rejects_the_call_as_busy(app_env: AppFactory) -> None:
    app_env(VOICE_FLOW="closed")
    root = answer()
    assert verbs(root) == ["Reject"]
    assert root[0].get("reason") == "busy"


def test_a_flow_in_the_query_wins_over_voice_flow(app_env: AppFactory) -> None:
    app_env(VOICE_FLOW="closed")
    assert verbs(answer(f"{VOICE}?flow=verbs")) == ["Play", "Pause", "Redirect"]


# --- signatures, unknown places, configuration --------------------------------------------


def test_unsigned_flow_webhook_is_forbidden(ivr: Container) -> None:
    url = f"{VOICE}?flow=ivr-menu&step=menu&event=input&attempt=1"
    assert (
        signed_post("voice_url", {**INBOUND, "Digits": "1"}, url=url, signature="").status_code
        == 403
    )


def test_a_tampered_step_or_attempt_in_the_url_is_forbidden(ivr: Container) -> None:
    signed = f"{VOICE}?flow=ivr-menu&step=menu&event=input&attempt=1"
    for tampered in (
        f"{VOICE}?flow=ivr-menu&step=ring-sales&event=input&attempt=1",
        f"{VOICE}?flow=ivr-menu&step=menu&event=input&attempt=3",
        f"{VOICE}?flow=closed",
    ):
        resp = signed_post("voice_url", {**INBOUND, "Digits": "1"}, url=tampered, signed_url=signed)
        assert resp.status_code == 403


@pytest.mark.parametrize("attempt", ["%C2%B2", "9" * 5000])
def test_a_signed_attempt_that_is_not_a_number_starts_at_attempt_one(
    ivr: Container, attempt: str
) -> None:
    # "²" is str.isdigit() but not int()'s; 5,000 digits are past int()'s limit: both were 500.
    root = answer(f"{VOICE}?flow=ivr-menu&step=menu&event=timeout&attempt={attempt}")
    assert query(action(root, "Gather"))["attempt"] == "2"


def test_tampered_digits_are_forbidden(ivr: Container) -> None:
    url = f"{VOICE}?flow=ivr-menu&step=menu&event=input&attempt=1"
    resp = signed_post("voice_url", {**INBOUND, "Digits": "2"}, url=url, tamper={"Digits": "1"})
    assert resp.status_code == 403


@pytest.mark.parametrize(
    "url",
    [
        f"{VOICE}?flow=no-such-flow",
        f"{VOICE}?flow=ivr-menu&step=no-such-step&event=input",
        f"{VOICE}?flow=ivr-menu&step=greeting&event=dial",
        f"{VOICE}?flow=%3Cscript%3E&step=%00",
    ],
)
def test_an_unknown_flow_or_step_in_a_signed_url_gets_a_polite_goodbye(
    app_env: AppFactory, caplog: pytest.LogCaptureFixture, url: str
) -> None:
    app_env()
    with caplog.at_level(logging.WARNING):
        root = answer(url, Digits="1")
    assert verbs(root) == ["Say", "Hangup"]
    assert said(root) == ["Sorry, this call cannot go on. Goodbye."]
    assert '"flow_answered"' in caplog.text


def test_a_broken_flow_document_answers_503_and_the_log_names_the_problem(
    app_env: AppFactory, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    path = tmp_path / "flows.yaml"
    path.write_text(
        "version: 1\nflows:\n  main:\n    start: hi\n    steps:\n"
        "      hi: {say: Hello, next: gone}\n"
    )
    app_env(CALL_FLOWS_FILE=str(path), VOICE_FLOW="main")
    with caplog.at_level(logging.ERROR):
        resp = signed_post("voice_url", INBOUND)
    assert resp.status_code == 503
    assert b"gone" not in resp.get_body()
    assert f"CALL_FLOWS_FILE {path}: 1 problem: flow main, step hi: next goes to step" in (
        caplog.text
    )


def test_a_missing_flow_document_answers_503(
    app_env: AppFactory, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    app_env(CALL_FLOWS_FILE=str(tmp_path / "absent.yaml"), VOICE_FLOW="ivr-menu")
    with caplog.at_level(logging.ERROR):
        assert signed_post("voice_url", INBOUND).status_code == 503
    assert "absent.yaml: 1 problem: the file does not exist" in caplog.text


def test_voice_flow_naming_an_unknown_flow_answers_503(
    app_env: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    app_env(VOICE_FLOW="ivr-menuu")
    with caplog.at_level(logging.ERROR):
        assert signed_post("voice_url", INBOUND).status_code == 503
    assert "VOICE_FLOW names flow 'ivr-menuu'" in caplog.text


def test_the_greeting_needs_no_flow_document(app_env: AppFactory, tmp_path: Path) -> None:
    app_env(CALL_FLOWS_FILE=str(tmp_path / "absent.yaml"))
    assert said(answer()) == ["Hello Monkey!"]


# --- make_call names a flow ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field", "error"),
    [
        ({"flow": "no-such-flow"}, "flow", "flow no-such-flow is not defined in CALL_FLOWS_FILE"),
        ({"flow": "bad id!"}, "flow", "flow must be a flow id"),
        ({"flow": ""}, "flow", "flow must be a flow id"),
        ({"say": "Hi", "flow": "ivr-menu"}, "flow", "give at most one of say, url, twiml, flow"),
    ],
)
def test_make_call_refuses_a_flow_it_cannot_run(
    app_env: AppFactory, body: dict[str, str], field: str, error: str
) -> None:
    app_env()
    resp = post_json("make_call", {"to": CALLER, **body})
    assert resp.status_code == 400
    assert body_json(resp)["field"] == field
    assert str(body_json(resp)["error"]).startswith(error)


def test_make_call_with_a_flow_and_a_broken_document_answers_503(
    app_env: AppFactory, tmp_path: Path
) -> None:
    app_env(CALL_FLOWS_FILE=str(tmp_path / "absent.yaml"))
    assert post_json("make_call", {"to": CALLER, "flow": "ivr-menu"}).status_code == 503
