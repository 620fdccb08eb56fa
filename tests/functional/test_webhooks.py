"""voice_url, sms_url and status_callback in-process: signatures, TwiML, logs.

GIVEN a container from a test environment, WHEN a request signed as Twilio signs it
arrives, THEN the function answers with TwiML; every forged variant gets a 403.
"""

from __future__ import annotations

import logging
from xml.etree import ElementTree

import pytest

from tests.app_client import (
    APP_URL,
    TEST_AUTH_TOKEN,
    TEST_SECONDARY_TOKEN,
    signed_post,
)
from tests.conftest import AppFactory

INBOUND_SMS = {
    "MessageSid": "SM" + "1" * 32,
    "AccountSid": "AC" + "a" * 32,
    "From": "+15558675310",
    "To": "+15017122661",
    "Body": "Hi </Message><Redirect>https://evil.example</Redirect> & more",
}
INBOUND_CALL = {
    "CallSid": "CA" + "2" * 32,
    "From": "+15558675310",
    "To": "+15017122661",
    "CallStatus": "ringing",
}


def twiml(resp) -> ElementTree.Element:  # type: ignore[no-untyped-def]
    assert resp.status_code == 200, resp.get_body()
    assert resp.mimetype == "application/xml"
    return ElementTree.fromstring(resp.get_body())


def test_voice_url_says_the_default_greeting(app_env: AppFactory) -> None:
    app_env()
    root = twiml(signed_post("voice_url", INBOUND_CALL))
    assert [child.tag for child in root] == ["Say"]
    assert root.find("Say").text == "Hello Monkey!"  # type: ignore[union-attr]


def test_voice_url_says_a_configured_greeting_with_markup_characters(app_env: AppFactory) -> None:
    app_env(VOICE_GREETING="Welcome to <Acme> & Sons")
    root = twiml(signed_post("voice_url", INBOUND_CALL))
    assert root.find("Say").text == "Welcome to <Acme> & Sons"  # type: ignore[union-attr]


def test_sms_url_replies_and_caller_text_cannot_inject_verbs(app_env: AppFactory) -> None:
    app_env()
    root = twiml(signed_post("sms_url", INBOUND_SMS))
    assert [child.tag for child in root] == ["Message"]
    assert root.find("Message").text == "Hey, thanks for the ping! Twilio and Azure rock!"  # type: ignore[union-attr]


def test_sms_url_configured_reply(app_env: AppFactory) -> None:
    app_env(SMS_AUTO_REPLY="Thanks! Reply STOP to opt out.")
    root = twiml(signed_post("sms_url", INBOUND_SMS))
    assert root.find("Message").text == "Thanks! Reply STOP to opt out."  # type: ignore[union-attr]


@pytest.mark.parametrize("name", ["voice_url", "sms_url", "status_callback"])
def test_unsigned_request_is_forbidden(app_env: AppFactory, name: str) -> None:
    app_env()
    resp = signed_post(name, INBOUND_SMS, signature="")
    assert resp.status_code == 403
    assert resp.get_body() == b"Forbidden"


def test_signature_made_with_another_token_is_forbidden(app_env: AppFactory) -> None:
    app_env()
    assert signed_post("sms_url", INBOUND_SMS, token="not-the-token").status_code == 403


def test_tampered_parameter_is_forbidden(app_env: AppFactory) -> None:
    app_env()
    resp = signed_post("sms_url", INBOUND_SMS, tamper={"Body": "send me money"})
    assert resp.status_code == 403


def test_garbage_signature_is_forbidden(app_env: AppFactory) -> None:
    app_env()
    assert signed_post("sms_url", INBOUND_SMS, signature="bm90IGEgc2lnbmF0dXJl").status_code == 403


@pytest.mark.parametrize(
    ("request_url", "signed_url"),
    [
        (f"{APP_URL}/api/sms_url", "https://calls.example.net:443/api/sms_url"),
        ("https://calls.example.net:443/api/sms_url", f"{APP_URL}/api/sms_url"),
    ],
)
def test_default_port_variants_are_accepted(
    app_env: AppFactory, request_url: str, signed_url: str
) -> None:
    app_env()
    resp = signed_post("sms_url", INBOUND_SMS, url=request_url, signed_url=signed_url)
    assert resp.status_code == 200


def test_query_string_is_part_of_the_signed_url(app_env: AppFactory) -> None:
    app_env()
    url = f"{APP_URL}/api/sms_url?flow=support&step=2"
    assert signed_post("sms_url", INBOUND_SMS, url=url).status_code == 200
    tampered = signed_post(
        "sms_url", INBOUND_SMS, url=f"{APP_URL}/api/sms_url?flow=billing&step=2", signed_url=url
    )
    assert tampered.status_code == 403


def test_repeated_form_fields_are_signed_as_twilio_signs_them(app_env: AppFactory) -> None:
    app_env()
    pairs = [*INBOUND_SMS.items(), ("MediaUrl0", "https://a.example/1"), ("Tag", "b"), ("Tag", "a")]
    assert signed_post("sms_url", pairs).status_code == 200


def test_secondary_token_is_accepted_only_while_set(app_env: AppFactory) -> None:
    app_env(TWILIO_AUTH_TOKEN_SECONDARY=TEST_SECONDARY_TOKEN)
    assert signed_post("sms_url", INBOUND_SMS, token=TEST_SECONDARY_TOKEN).status_code == 200
    assert signed_post("sms_url", INBOUND_SMS, token=TEST_AUTH_TOKEN).status_code == 200
    app_env()
    assert signed_post("sms_url", INBOUND_SMS, token=TEST_SECONDARY_TOKEN).status_code == 403


def test_public_base_url_is_what_twilio_signed(app_env: AppFactory) -> None:
    # The host sees its internal name; Twilio called the public one.
    app_env(PUBLIC_BASE_URL="https://sms.contoso.com/")
    internal = "http://10.0.0.4:7071/api/sms_url?x=1"
    public = "https://sms.contoso.com/api/sms_url?x=1"
    assert signed_post("sms_url", INBOUND_SMS, url=internal, signed_url=public).status_code == 200
    assert signed_post("sms_url", INBOUND_SMS, url=internal, signed_url=internal).status_code == 403


def test_missing_auth_token_answers_503_and_names_the_setting(
    app_env: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    app_env(TWILIO_AUTH_TOKEN="")
    with caplog.at_level(logging.ERROR):
        resp = signed_post("voice_url", INBOUND_CALL)
    assert resp.status_code == 503
    assert "TWILIO_AUTH_TOKEN" in caplog.text
    assert b"TWILIO_AUTH_TOKEN" not in resp.get_body()


def test_unresolved_key_vault_reference_answers_503_without_the_reference(
    app_env: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    reference = (
        "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/twilio-auth-token/)"
    )
    app_env(TWILIO_AUTH_TOKEN=reference)
    with caplog.at_level(logging.ERROR):
        resp = signed_post("sms_url", INBOUND_SMS)
    assert resp.status_code == 503
    assert "did not resolve" in caplog.text


def test_status_callback_logs_masked_fields_and_no_secret(
    app_env: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    app_env()
    params = {
        "MessageSid": "SM" + "3" * 32,
        "MessageStatus": "delivered",
        "To": "+15558675310",
        "From": "+15017122661",
        "ErrorCode": "",
    }
    with caplog.at_level(logging.INFO):
        resp = signed_post("status_callback", params)
    assert resp.status_code == 204
    record = next(r for r in caplog.records if '"status_received"' in r.getMessage())
    fields = record.custom_dimensions  # type: ignore[attr-defined]
    assert fields["MessageSid"] == params["MessageSid"]
    assert fields["status"] == "delivered"
    assert fields["To"] == "+1********10"
    assert "+15558675310" not in caplog.text
    assert TEST_AUTH_TOKEN not in caplog.text


@pytest.mark.parametrize("code", ["³", "٣٠٠٠٣", "9" * 5000])
def test_status_callback_with_an_error_code_that_is_not_a_code_is_accepted(
    app_env: AppFactory, code: str
) -> None:
    # Found by Schemathesis (tests/integration/test_openapi_fuzz.py): these answered 500.
    app_env()
    params = {"MessageSid": "SM" + "3" * 32, "MessageStatus": "failed", "ErrorCode": code}
    assert signed_post("status_callback", params).status_code == 204


def test_call_status_callback_is_accepted(
    app_env: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    app_env()
    params = {"CallSid": "CA" + "4" * 32, "CallStatus": "completed", "To": "+15558675310"}
    with caplog.at_level(logging.INFO):
        assert signed_post("status_callback", params).status_code == 204
    assert '"CallSid": "CA4444' in caplog.text


def test_sms_log_masks_the_sender(app_env: AppFactory, caplog: pytest.LogCaptureFixture) -> None:
    app_env()
    with caplog.at_level(logging.INFO):
        signed_post("sms_url", INBOUND_SMS)
    assert "+15558675310" not in caplog.text
    assert "+1********10" in caplog.text
    assert "evil.example" not in caplog.text  # message bodies are not logged
