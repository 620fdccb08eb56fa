"""Shows the running app at work, one readable line per step (`make demo`).

Runs against `make run` (or `func start`) on http://127.0.0.1:7071 and its local peers:
signs an inbound SMS as Twilio would, places a call, queues an SMS and follows its record
until a signed status callback marks it delivered, reads the outcome events of that SMS
from the events queue on Azurite (`DEMO_STORAGE`: its connection string, when `make run`
was given other storage ports), queues a WhatsApp message, and queues a call flow with its
data, answering the flow's first webhook as Twilio would.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests
from twilio.request_validator import RequestValidator

APP = os.environ.get("DEMO_APP_URL", "http://127.0.0.1:7071").rstrip("/")
# Azurite on its default ports, as `make run` starts it.
STORAGE = os.environ.get("DEMO_STORAGE", "UseDevelopmentStorage=true")
SETTINGS_FILE = Path("local.settings.json")


class DemoError(Exception):
    """A step did not do what it should; the message says which and why."""


def _settings() -> dict[str, str]:
    if not SETTINGS_FILE.exists():
        raise DemoError("local.settings.json is missing: start the app with `make run` first")
    values: dict[str, str] = json.loads(SETTINGS_FILE.read_text())["Values"]
    return values


def _signed_post(url: str, params: dict[str, str], token: str, public: str) -> requests.Response:
    signed_url = public + url[len(APP) :]
    signature = RequestValidator(token).compute_signature(signed_url, params)
    return requests.post(url, data=params, headers={"X-Twilio-Signature": signature}, timeout=10)


def _expect(response: requests.Response, status: int, step: str) -> requests.Response:
    if response.status_code != status:
        raise DemoError(f"{step}: expected {status}, got {response.status_code} {response.text}")
    return response


def inbound_sms(token: str, public: str) -> str:
    params = {
        "MessageSid": "SM" + uuid.uuid4().hex,
        "AccountSid": "AC" + "0" * 32,
        "From": "+15558675310",
        "To": "+15005550006",
        "Body": "Hello from the demo",
    }
    reply = _expect(_signed_post(f"{APP}/api/sms_url", params, token, public), 200, "sms_url")
    return reply.text


def place_call() -> dict[str, Any]:
    response = requests.post(
        f"{APP}/api/make_call", json={"to": "+15558675310", "say": "Hello Monkey!"}, timeout=20
    )
    body: dict[str, Any] = _expect(response, 201, "make_call").json()
    return body


def queue_sms() -> str:
    key = f"demo-{uuid.uuid4().hex[:8]}"
    command = {
        "kind": "sms",
        "to": "+15558675310",
        "body": "Your order shipped",
        "idempotency_key": key,
    }
    _expect(requests.post(f"{APP}/api/messages", json=command, timeout=10), 202, "send_message")
    return key


def queue(command: dict[str, Any]) -> str:
    key = f"demo-{uuid.uuid4().hex[:8]}"
    response = requests.post(
        f"{APP}/api/messages", json={**command, "idempotency_key": key}, timeout=10
    )
    _expect(response, 202, "send_message")
    return key


def flow_call_says(key: str, token: str, public: str) -> str:
    """What voice_url says first for the queued flow call `key`: Twilio is given the flow
    and an opaque id of its data, never the data itself, in the URL it calls back."""
    from defusedxml import ElementTree

    from telephony.flows.data import call_data_id

    url = f"{APP}/api/voice_url?flow=appointment-reminder&data={call_data_id(key)}"
    params = {"CallSid": "CA" + uuid.uuid4().hex, "From": "+15005550006", "To": "+15558675310",
              "Direction": "outbound-api"}  # fmt: skip
    twiml = _expect(_signed_post(url, params, token, public), 200, "voice_url").text
    return " ".join(e.text or "" for e in ElementTree.fromstring(twiml).iter("Say"))


def record(key: str) -> dict[str, Any]:
    response = requests.get(f"{APP}/api/messages/{quote(key, safe='')}", timeout=10)
    body: dict[str, Any] = _expect(response, 200, "get_message").json()
    return body


def wait_for(key: str, statuses: set[str], seconds: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        try:
            current = record(key)
        except DemoError:
            current = {"status": "not recorded yet"}
        if current["status"] in statuses or time.monotonic() > deadline:
            if current["status"] not in statuses:
                raise DemoError(f"record {key} is still {current['status']} after {seconds:.0f} s")
            return current
        time.sleep(0.2)


def delivered_callback(key: str, sid: str, token: str, public: str) -> None:
    params = {"MessageSid": sid, "MessageStatus": "delivered", "To": "+15558675310"}
    url = f"{APP}/api/status_callback?id={quote(key, safe='')}"
    _expect(_signed_post(url, params, token, public), 204, "status_callback")


def published(key: str, statuses: set[str], queue_name: str, seconds: float = 20.0) -> list[str]:
    """The statuses of `key` that telephony.delivery.updated events on the events queue
    carry, once they include `statuses`; the demo takes its own events off the queue."""
    from azure.storage.queue import QueueClient

    queue = QueueClient.from_connection_string(STORAGE, queue_name)
    seen: list[str] = []
    deadline = time.monotonic() + seconds
    while not statuses <= set(seen):
        if time.monotonic() > deadline:
            raise DemoError(
                f"events of {key} on {queue_name}: {seen or 'none'} after {seconds:.0f} s"
            )
        for message in queue.receive_messages(max_messages=32, visibility_timeout=5):
            event = json.loads(base64.b64decode(message.content))
            if event["type"] == "telephony.delivery.updated" and event["data"]["id"] == key:
                seen.append(event["data"]["status"])
                queue.delete_message(message)
        time.sleep(0.2)
    return seen


def run() -> None:
    settings = _settings()
    token = os.environ.get("TWILIO_AUTH_TOKEN") or settings["TWILIO_AUTH_TOKEN"]
    public = APP  # `make run` serves the app with PUBLIC_BASE_URL set to its own address
    print(f"1. inbound SMS -> sms_url answers: {inbound_sms(token, public)}")
    call = place_call()
    print(f"2. make_call -> call {call['sid']} to {call['to']} is {call['status']}")
    key = queue_sms()
    queued = wait_for(key, {"queued", "accepted", "sent", "delivered"})
    print(f"3. POST /api/messages -> {key} is {queued['status']} as {queued['twilio_sid']}")
    delivered_callback(key, queued["twilio_sid"], token, public)
    final = wait_for(key, {"delivered"})
    print(f"4. signed status callback -> {key} is {final['status']}")
    events = settings.get("EVENTS_QUEUE_NAME", "telephony-events")
    seen = published(key, {"queued", "delivered"}, events)
    print(f"5. events queue {events} -> telephony.delivery.updated for {key}: {', '.join(seen)}")
    whatsapp = queue({"kind": "sms", "to": "whatsapp:+15558675310", "body": "Your table is ready"})
    sent = wait_for(whatsapp, {"queued", "accepted", "sent", "delivered"})
    print(f"6. POST /api/messages (WhatsApp) -> {whatsapp} to {sent['to']} is {sent['status']}")
    data = {"time": "tomorrow at 10 AM", "place": "12 Elm Street"}
    reminder = {"kind": "call", "to": "+15558675310", "flow": "appointment-reminder"}
    flow_key = queue({**reminder, "data": data})
    placed = wait_for(flow_key, {"queued", "initiated", "ringing", "in-progress", "completed"})
    print(f"7. a flow call with data -> {flow_key} is {placed['status']}; voice_url says: "
          f"{flow_call_says(flow_key, token, public)}")  # fmt: skip


def main() -> int:
    try:
        run()
    except requests.ConnectionError:
        print(f"The app is not answering on {APP}: start it with `make run`.", file=sys.stderr)
        return 1
    except DemoError as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
