"""telephony.call.completed through the app: signed voice_url and status_callback webhooks.

GIVEN the app with the shipped flows, an events sink and an in-memory trail store, WHEN a
call walks a flow with signed webhooks and Twilio then reports its final status, THEN one
event is published, valid against its schema; a caller who hangs up during a gather is
ended by the status callback.
"""

from __future__ import annotations

from telephony import schemas
from telephony.events import CALL_COMPLETED
from tests.app_client import APP_URL, signed_post
from tests.conftest import AppFactory
from tests.fakes import MemorySink, MemoryStore, ScriptedSender
from tests.flow_fakes import MemoryCallTrails

VOICE = f"{APP_URL}/api/voice_url"
CALL = {"CallSid": "CA" + "8" * 32, "From": "+15558675310", "To": "+15017122661",
        "Direction": "inbound"}  # fmt: skip


def install(app_env: AppFactory) -> MemorySink:
    sink = MemorySink()
    parts = {
        "deliveries": MemoryStore(), "sender": ScriptedSender(), "enqueue": lambda text: None,
        "event_sinks": [sink], "call_trails": MemoryCallTrails(),
    }  # fmt: skip
    app_env(parts, VOICE_FLOW="ivr-menu")
    return sink


def post(function: str, url: str, **form: str) -> None:
    resp = signed_post(function, {**CALL, **form}, url=url)
    assert resp.status_code in (200, 204), resp.get_body()


def completed(sink: MemorySink) -> list[dict[str, object]]:
    events = sink.of_type(CALL_COMPLETED)
    for event in events:
        schemas.validator(f"events/{CALL_COMPLETED}.v1.json").validate(event)
    return events


def test_a_flow_ended_by_its_answer_publishes_once(app_env: AppFactory) -> None:
    sink = install(app_env)
    post("voice_url", VOICE)
    post("voice_url", f"{VOICE}?flow=ivr-menu&step=menu&event=input&attempt=1", Digits="2")
    post("voice_url", f"{VOICE}?flow=ivr-menu&step=take-message&event=recorded",
         RecordingUrl="https://api.twilio.com/r/RE1")  # fmt: skip
    post("status_callback", f"{APP_URL}/api/status_callback", CallStatus="completed")
    (event,) = completed(sink)
    data: dict[str, object] = event["data"]  # type: ignore[assignment]
    assert data["ended_by"] == "hangup"
    assert data["steps"] == ["greeting", "menu", "voicemail", "take-message", "thanks", "end"]


def test_a_caller_who_hangs_up_during_the_menu_is_ended_by_the_status_callback(
    app_env: AppFactory,
) -> None:
    sink = install(app_env)
    post("voice_url", VOICE)
    post("status_callback", f"{APP_URL}/api/status_callback", CallStatus="ringing")
    assert completed(sink) == []
    post("status_callback", f"{APP_URL}/api/status_callback", CallStatus="completed")
    (event,) = completed(sink)
    data: dict[str, object] = event["data"]  # type: ignore[assignment]
    assert (data["ended_by"], data["call_status"]) == ("status_callback", "completed")
