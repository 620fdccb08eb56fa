"""Settings parsing, TwiML builders and the signed-URL rule: pure logic."""

from __future__ import annotations

from xml.etree import ElementTree

import pytest
from twilio.request_validator import RequestValidator

from telephony.adapters.signature import FormParams, SignatureValidator, public_url
from telephony.adapters.twiml import message_reply, say_response
from telephony.config.settings import SETTINGS, Settings
from telephony.errors import SettingsError


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.outbound_queue_name == "outbound-messages"
    assert settings.deliveries_table_name == "deliveries"
    assert settings.voice_greeting == "Hello Monkey!"
    assert settings.allowed_countries == frozenset()
    assert settings.secret_cache_seconds == 300


def test_the_events_queue_is_on_by_default_and_off_when_set_empty() -> None:
    assert Settings.from_env({}).events_queue_name == "telephony-events"
    assert Settings.from_env({"EVENTS_QUEUE_NAME": " "}).events_queue_name is None
    assert Settings.from_env({"EVENTS_QUEUE_NAME": "events"}).events_queue_name == "events"
    assert Settings.from_env({"RECONCILE_AFTER_MINUTES": "45"}).reconcile_after_minutes == 45


def test_regions_and_base_url_are_normalised() -> None:
    settings = Settings.from_env(
        {"ALLOWED_DESTINATION_COUNTRIES": "us, ca ,", "PUBLIC_BASE_URL": "https://x.example/"}
    )
    assert settings.allowed_countries == {"US", "CA"}
    assert settings.public_base_url == "https://x.example"


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"ALLOWED_DESTINATION_COUNTRIES": "USA"}, "ALLOWED_DESTINATION_COUNTRIES"),
        ({"PUBLIC_BASE_URL": "calls.example.net"}, "PUBLIC_BASE_URL"),
        ({"SECRET_CACHE_SECONDS": "soon"}, "SECRET_CACHE_SECONDS"),
        ({"SECRET_CACHE_SECONDS": "-1"}, "SECRET_CACHE_SECONDS"),
        ({"RECONCILE_AFTER_MINUTES": "soon"}, "RECONCILE_AFTER_MINUTES"),
        ({"RECONCILE_AFTER_MINUTES": "0"}, "RECONCILE_AFTER_MINUTES"),
        ({"RECONCILE_AFTER_MINUTES": "nan"}, "RECONCILE_AFTER_MINUTES"),
        ({"RECONCILE_AFTER_MINUTES": "20000"}, "RECONCILE_AFTER_MINUTES"),
        ({"EVENT_GRID_TOPIC_ENDPOINT": "http://topic.example/api/events"}, "EVENT_GRID_TOPIC"),
    ],
)
def test_malformed_settings_name_the_setting(env: dict[str, str], name: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env(env)


def test_every_secret_setting_has_a_vault_name() -> None:
    secrets = {s.name: s.secret_name for s in SETTINGS if s.is_secret}
    assert secrets == {
        "TWILIO_AUTH_TOKEN": "twilio-auth-token",
        "TWILIO_AUTH_TOKEN_SECONDARY": "twilio-auth-token-secondary",
        "TWILIO_API_KEY_SECRET": "twilio-api-key-secret",
    }


def test_say_response_escapes_text() -> None:
    root = ElementTree.fromstring(say_response('</Say><Hangup/> & "x"'))
    assert [c.tag for c in root] == ["Say"]
    assert root[0].text == '</Say><Hangup/> & "x"'


def test_empty_reply_sends_nothing() -> None:
    assert list(ElementTree.fromstring(message_reply(None))) == []
    assert ElementTree.fromstring(message_reply("ok"))[0].text == "ok"


@pytest.mark.parametrize(
    ("request_url", "base", "expected"),
    [
        (
            "http://10.0.0.1/api/sms_url?a=1",
            "https://pub.example",
            "https://pub.example/api/sms_url?a=1",
        ),
        ("http://10.0.0.1/api/sms_url", "https://pub.example/", "https://pub.example/api/sms_url"),
        ("https://own.example/api/sms_url?a=1", None, "https://own.example/api/sms_url?a=1"),
    ],
)
def test_public_url(request_url: str, base: str | None, expected: str) -> None:
    assert public_url(request_url, base) == expected


def test_validator_with_no_token_accepts_nothing() -> None:
    signature = RequestValidator("").compute_signature("https://x.example/", {})
    assert not SignatureValidator([""]).is_valid("https://x.example/", FormParams([]), signature)


def test_raw_body_needs_a_body_hash_in_the_url() -> None:
    validator = SignatureValidator(["token"])
    url = "https://x.example/api/sms_url"
    signature = RequestValidator("token").compute_signature(url, {})
    assert not validator.is_valid(url, '{"a": 1}', signature)
    body = '{"a": 1}'
    hashed = f"{url}?bodySHA256={RequestValidator('token').compute_hash(body)}"
    signature = RequestValidator("token").compute_signature(hashed, {})
    assert validator.is_valid(hashed, body, signature)


def test_xml_text_drops_exactly_what_xml_1_0_cannot_carry() -> None:
    from telephony.adapters.twiml import xml_text

    def allowed(code: int) -> bool:  # the Char production of XML 1.0
        return (
            code in (0x9, 0xA, 0xD)
            or 0x20 <= code <= 0xD7FF
            or 0xE000 <= code <= 0xFFFD
            or 0x10000 <= code <= 0x10FFFF
        )

    text = "".join(map(chr, range(0x110000)))
    assert xml_text(text) == "".join(ch for ch in text if allowed(ord(ch)))


def test_twilios_message_loses_the_number_it_quotes() -> None:
    from telephony.adapters.twilio_rest import _without_numbers

    message = "The 'To' number +15005550001 is not a valid phone number."
    assert _without_numbers(message) == "The 'To' number +1********01 is not a valid phone number."
    assert _without_numbers("Error 21211 on 2026-11-29") == "Error 21211 on 2026-11-29"
