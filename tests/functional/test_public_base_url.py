"""Where Twilio is told to call back: PUBLIC_BASE_URL, never the caller's Host header.

GIVEN a caller with a function key who writes any Host header, WHEN make_call or POST
/api/messages builds the URLs Twilio will call (status callbacks, voice_url, flow steps) or
hands back (status_url), THEN they come from PUBLIC_BASE_URL; without it, outside local
development, the request is a configuration error (503, the reason in the log) and
nothing reaches Twilio or the queue. In development (AZURE_FUNCTIONS_ENVIRONMENT=
Development, set by Core Tools and the development host) the request's host still serves.
Signed webhooks are different: Twilio signed the URL it called, host included, so without
PUBLIC_BASE_URL their signature is checked against the request's URL and flow steps are
built on it, in production too.
"""

from __future__ import annotations

import logging
from xml.etree import ElementTree

import pytest

from telephony.errors import UnavailableError
from tests.app_client import APP_URL, body_json, post_json, signed_post
from tests.conftest import AppFactory
from tests.fakes import MemoryStore, ScriptedSender

TO = "+15558675310"
ATTACKER = "https://attacker.example"
PUBLIC = "https://calls.contoso.com"
# The key is removed when the value is empty (tests/conftest.py app_env).
PRODUCTION = {"AZURE_FUNCTIONS_ENVIRONMENT": "", "PUBLIC_BASE_URL": ""}
DEVELOPMENT = {"AZURE_FUNCTIONS_ENVIRONMENT": "Development", "PUBLIC_BASE_URL": ""}


@pytest.mark.parametrize("environment", ["", "Production", "Staging"])
@pytest.mark.parametrize("body", [{"say": "hi"}, {}, {"flow": "ivr-menu"}])
def test_make_call_without_public_base_url_outside_development_is_503_and_calls_nobody(
    app_env: AppFactory,
    caplog: pytest.LogCaptureFixture,
    environment: str,
    body: dict[str, str],
) -> None:
    sender = ScriptedSender()
    app_env({"sender": sender}, **{**PRODUCTION, "AZURE_FUNCTIONS_ENVIRONMENT": environment})
    with caplog.at_level(logging.ERROR):
        resp = post_json("make_call", {"to": TO, **body}, url=f"{ATTACKER}/api/make_call")
    assert resp.status_code == 503
    assert body_json(resp) == {"error": UnavailableError.public_message, "field": None}
    assert sender.sent == []  # before the fix: a call with callbacks to attacker.example
    assert "PUBLIC_BASE_URL is not set" in caplog.text
    assert '"event": "configuration_unavailable"' in caplog.text


def test_make_call_with_public_base_url_ignores_the_host_header(app_env: AppFactory) -> None:
    sender = ScriptedSender()
    app_env({"sender": sender}, **{**PRODUCTION, "PUBLIC_BASE_URL": PUBLIC})
    resp = post_json("make_call", {"to": TO}, url=f"{ATTACKER}/api/make_call")
    assert resp.status_code == 201
    (call,) = sender.sent
    assert call.status_callback == f"{PUBLIC}/api/status_callback"
    assert call.url == f"{PUBLIC}/api/voice_url"  # type: ignore[union-attr]


def test_make_call_in_development_falls_back_to_the_request_host(app_env: AppFactory) -> None:
    sender = ScriptedSender()
    app_env({"sender": sender}, **DEVELOPMENT)
    local = "http://127.0.0.1:7071"
    resp = post_json("make_call", {"to": TO}, url=f"{local}/api/make_call")
    assert resp.status_code == 201
    (call,) = sender.sent
    assert call.status_callback == f"{local}/api/status_callback"
    assert call.url == f"{local}/api/voice_url"  # type: ignore[union-attr]


def test_development_is_read_case_insensitively(app_env: AppFactory) -> None:
    sender = ScriptedSender()
    app_env({"sender": sender}, **{**DEVELOPMENT, "AZURE_FUNCTIONS_ENVIRONMENT": "development"})
    assert post_json("make_call", {"to": TO, "say": "hi"}).status_code == 201


def queued(app_env: AppFactory, **env: str) -> list[str]:
    sent: list[str] = []
    app_env({"deliveries": MemoryStore(), "enqueue": sent.append}, **env)
    return sent


def test_send_message_without_public_base_url_outside_development_is_503_and_queues_nothing(
    app_env: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    sent = queued(app_env, **PRODUCTION)
    command = {"kind": "sms", "to": TO, "body": "hi", "idempotency_key": "k-1"}
    with caplog.at_level(logging.ERROR):
        resp = post_json("send_message", command, url=f"{ATTACKER}/api/messages")
    assert resp.status_code == 503
    assert sent == []  # a 503 after queueing would invite a retry of a queued command
    assert "PUBLIC_BASE_URL is not set" in caplog.text


def test_send_message_status_url_is_on_public_base_url(app_env: AppFactory) -> None:
    queued(app_env, **{**PRODUCTION, "PUBLIC_BASE_URL": PUBLIC})
    command = {"kind": "sms", "to": TO, "body": "hi", "idempotency_key": "k-2"}
    resp = post_json("send_message", command, url=f"{ATTACKER}/api/messages")
    assert resp.status_code == 202
    assert body_json(resp)["status_url"] == f"{PUBLIC}/api/messages/k-2"


def test_send_message_in_development_falls_back_to_the_request_host(app_env: AppFactory) -> None:
    sent = queued(app_env, **DEVELOPMENT)
    command = {"kind": "sms", "to": TO, "body": "hi", "idempotency_key": "k-3"}
    resp = post_json("send_message", command, url="http://127.0.0.1:7071/api/messages")
    assert resp.status_code == 202
    assert body_json(resp)["status_url"] == "http://127.0.0.1:7071/api/messages/k-3"
    assert len(sent) == 1


INBOUND_CALL = {
    "CallSid": "CA" + "2" * 32,
    "From": "+15558675310",
    "To": "+15017122661",
    "CallStatus": "ringing",
}


def test_signed_webhooks_in_production_still_check_the_request_url(app_env: AppFactory) -> None:
    # Not a redirect risk: Twilio signed the URL it called, so a forged Host fails the check.
    app_env(**PRODUCTION)
    assert signed_post("voice_url", INBOUND_CALL).status_code == 200
    forged = signed_post(
        "voice_url", INBOUND_CALL, url=f"{ATTACKER}/api/voice_url",
        signed_url=f"{APP_URL}/api/voice_url",
    )  # fmt: skip
    assert forged.status_code == 403


def test_a_flow_in_production_builds_its_urls_on_the_signed_host(app_env: AppFactory) -> None:
    app_env(**PRODUCTION)
    resp = signed_post("voice_url", INBOUND_CALL, url=f"{APP_URL}/api/voice_url?flow=ivr-menu")
    assert resp.status_code == 200
    root = ElementTree.fromstring(resp.get_body())
    actions = [el.get("action") for el in root.iter() if el.get("action")]
    assert actions and all(a.startswith(f"{APP_URL}/api/voice_url?") for a in actions)  # type: ignore[union-attr]
