"""make_call against the local Twilio API (Prism with Twilio's OpenAPI description).

Every request the app makes is checked by Prism against Twilio's contract; the proxy in
front gives each call its own SID, records requests and injects Twilio's errors.
"""

from __future__ import annotations

import logging

import pytest

from localpeers.twilio_mock import TwilioMock
from telephony.adapters.twilio_rest import READ_TIMEOUT_SECONDS
from tests.app_client import (
    APP_URL,
    TEST_ACCOUNT_SID,
    TEST_AUTH_TOKEN,
    body_json,
    impatient_gateway,
    post_json,
)
from tests.conftest import AppFactory

TO = "+15558675310"


@pytest.fixture
def app(app_env: AppFactory, twilio_mock: TwilioMock) -> TwilioMock:
    app_env(TWILIO_API_BASE_URL=twilio_mock.base_url)
    return twilio_mock


def only_call_request(mock: TwilioMock):  # type: ignore[no-untyped-def]
    calls = mock.find_requests("/Calls.json", method="POST")
    assert len(calls) == 1
    assert calls[0].violations == []
    return calls[0]


def test_say_places_a_call_with_twiml_and_status_callbacks(app: TwilioMock) -> None:
    resp = post_json("make_call", {"to": TO, "say": "Hello from Azure <&>"})
    assert resp.status_code == 201, resp.get_body()
    body = body_json(resp)
    assert str(body["sid"]).startswith("CA") and len(str(body["sid"])) == 34
    assert body["to"] == "+1********10"
    sent = only_call_request(app)
    assert sent.path == f"/2010-04-01/Accounts/{TEST_ACCOUNT_SID}/Calls.json"
    assert sent.param("To") == TO
    assert sent.param("From") == "+15017122661"
    assert "<Say>Hello from Azure &lt;&amp;&gt;</Say>" in (sent.param("Twiml") or "")
    assert sent.param("StatusCallback") == f"{APP_URL}/api/status_callback"
    assert sent.form["StatusCallbackEvent"] == ["initiated", "ringing", "answered", "completed"]
    assert sent.param("Url") is None


def test_basic_auth_uses_the_account_and_token(app: TwilioMock) -> None:
    import base64

    post_json("make_call", {"to": TO})
    auth = only_call_request(app).headers["authorization"]
    assert (
        auth
        == "Basic " + base64.b64encode(f"{TEST_ACCOUNT_SID}:{TEST_AUTH_TOKEN}".encode()).decode()
    )


def test_no_content_lets_twilio_fetch_voice_url_from_the_public_url(
    app_env: AppFactory, twilio_mock: TwilioMock
) -> None:
    app_env(TWILIO_API_BASE_URL=twilio_mock.base_url, PUBLIC_BASE_URL="https://calls.contoso.com")
    assert post_json("make_call", {"to": TO, "from": "+15005550006"}).status_code == 201
    sent = only_call_request(twilio_mock)
    assert sent.param("Url") == "https://calls.contoso.com/api/voice_url"
    assert sent.param("From") == "+15005550006"
    assert sent.param("StatusCallback") == "https://calls.contoso.com/api/status_callback"


def test_url_on_an_allowed_host_is_passed_through(
    app_env: AppFactory, twilio_mock: TwilioMock
) -> None:
    app_env(TWILIO_API_BASE_URL=twilio_mock.base_url, ALLOWED_URL_HOSTS="x.example")
    resp = post_json("make_call", {"to": TO, "url": "https://x.example/flow.xml"})
    assert resp.status_code == 201
    assert only_call_request(twilio_mock).param("Url") == "https://x.example/flow.xml"


def test_url_on_another_host_is_refused_before_twilio(app: TwilioMock) -> None:
    resp = post_json("make_call", {"to": TO, "url": "https://x.example/flow.xml"})
    assert (resp.status_code, body_json(resp)["field"]) == (400, "url")
    assert app.find_requests("/Calls.json") == []


def test_each_call_gets_its_own_sid(app: TwilioMock) -> None:
    sids = {body_json(post_json("make_call", {"to": TO}))["sid"] for _ in range(3)}
    assert len(sids) == 3


@pytest.mark.parametrize(("code", "field"), [(21211, "to"), (21210, "from"), (21215, None)])
def test_twilio_rejection_is_400_with_its_code(
    app: TwilioMock, code: int, field: str | None
) -> None:
    app.fail_next(400, twilio_code=code, path_contains="/Calls.json")
    resp = post_json("make_call", {"to": TO})
    assert resp.status_code == 400
    body = body_json(resp)
    assert (body["twilio_code"], body["field"]) == (code, field)


def test_bad_credentials_at_twilio_are_502(app: TwilioMock) -> None:
    app.fail_next(401, path_contains="/Calls.json")
    resp = post_json("make_call", {"to": TO})
    assert resp.status_code == 502
    assert body_json(resp)["twilio_code"] == 20003
    assert TEST_AUTH_TOKEN not in resp.get_body().decode()


@pytest.mark.parametrize(("status", "code"), [(429, 20429), (500, 20500), (503, 20503)])
def test_throttling_and_server_errors_are_503(app: TwilioMock, status: int, code: int) -> None:
    app.fail_next(status, path_contains="/Calls.json")
    resp = post_json("make_call", {"to": TO})
    assert resp.status_code == 503
    assert body_json(resp)["twilio_code"] == code


def test_twilio_unreachable_is_503(app_env: AppFactory) -> None:
    from localpeers.processes import free_port

    app_env(TWILIO_API_BASE_URL=f"http://127.0.0.1:{free_port()}")
    resp = post_json("make_call", {"to": TO})
    assert resp.status_code == 503
    assert body_json(resp)["error"] == "Twilio is unavailable, try again later"


def test_twilio_timing_out_is_503(app_env: AppFactory, twilio_mock: TwilioMock) -> None:
    # Keep the test short: the gateway is given a short read timeout, the behaviour is kept.
    assert READ_TIMEOUT_SECONDS > 0.3
    app_env({"sender": impatient_gateway(twilio_mock.base_url)})
    twilio_mock.hang_next(2.0, path_contains="/Calls.json")
    resp = post_json("make_call", {"to": TO})
    assert resp.status_code == 503


def test_logs_mask_the_number_and_hold_no_secret(
    app: TwilioMock, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        sid = body_json(post_json("make_call", {"to": TO}))["sid"]
    assert f'"CallSid": "{sid}"' in caplog.text
    assert TO not in caplog.text.replace(f"To={TO}", "")  # urllib3 debug lines aside
    assert TEST_AUTH_TOKEN not in caplog.text


def test_client_and_pool_are_reused_across_requests(app: TwilioMock) -> None:
    for _ in range(5):
        assert post_json("make_call", {"to": TO}).status_code == 201
    assert app.connections_opened == 1
