"""python -m telephony.wire_number against Prism serving Twilio's own descriptions of the
2010 API (IncomingPhoneNumbers) and the Messaging v1 API (Services), so every request the
twilio client sends is checked against Twilio's contract.

Prism answers every read with the spec's example: the number +18089255327 (PNaaa...) with
no voice, SMS or status callback URL, and a Messaging Service whose inbound request URL is
https://www.example.com/ and whose status callback is https://www.example.com. What the
command writes is never read back, so a second run that finds its own changes is tested
in tests/unit/test_wire_number.py; here, a service that already has the example's URLs
shows that a wired resource gets no request.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from localpeers.twilio_mock import TwilioMock
from localpeers.twilio_spec import MESSAGING_V1_SPEC
from localpeers.twilio_state import RecordedRequest
from telephony.wire_number.__main__ import SKIPPED, main
from tests.app_client import TEST_ACCOUNT_SID, TEST_AUTH_TOKEN

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_NUMBER = "+18089255327"  # the one number in Twilio's example list
EXAMPLE_NUMBER_SID = "PN" + "a" * 32
SERVICE_SID = "MG" + "b" * 32
BASE = "https://func-twilio.azurewebsites.net"
NUMBER_PATH = f"/2010-04-01/Accounts/{TEST_ACCOUNT_SID}/IncomingPhoneNumbers"
SERVICE_PATH = f"/v1/Services/{SERVICE_SID}"
WIRED_NUMBER_FORM = {
    "VoiceUrl": [f"{BASE}/api/voice_url"],
    "VoiceMethod": ["POST"],
    "SmsUrl": [f"{BASE}/api/sms_url"],
    "SmsMethod": ["POST"],
    "StatusCallback": [f"{BASE}/api/status_callback"],
    "StatusCallbackMethod": ["POST"],
}


@pytest.fixture(scope="module")
def twilio_apis() -> Iterator[TwilioMock]:
    """One Prism for this module, serving the 2010 API and the Messaging v1 API."""
    with TwilioMock(also_serve=[MESSAGING_V1_SPEC]) as mock:
        yield mock


@pytest.fixture
def twilio(twilio_apis: TwilioMock) -> Iterator[TwilioMock]:
    twilio_apis.reset()
    yield twilio_apis
    twilio_apis.reset()


def deploy_env(twilio: TwilioMock, **overrides: str) -> dict[str, str]:
    """What azd hands its hooks after `azd up`, pointed at the local Twilio API."""
    env = {
        "TWILIO_WIRE_NUMBER": "true",
        "TWILIO_ACCOUNT_SID": TEST_ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": TEST_AUTH_TOKEN,
        "TWILIO_PHONE_NUMBER": EXAMPLE_NUMBER,
        "PUBLIC_BASE_URL": BASE,
        "VOICE_WEBHOOK_URL": f"{BASE}/api/voice_url",
        "SMS_WEBHOOK_URL": f"{BASE}/api/sms_url",
        "STATUS_CALLBACK_URL": f"{BASE}/api/status_callback",
        "TWILIO_API_BASE_URL": twilio.base_url,
    }
    return env | overrides


def request_violations(request: RecordedRequest) -> list[object]:
    # Twilio's own examples break a few of its response rules (an empty sms_url is not a
    # "uri"); only what the client sent is ours to answer for.
    return [v for v in request.violations if v.get("location", [""])[0] == "request"]


def posts(twilio: TwilioMock) -> list[RecordedRequest]:
    return twilio.find_requests(method="POST")


def test_dry_run_prints_the_change_and_posts_nothing(
    twilio: TwilioMock, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--dry-run"], deploy_env(twilio)) == 0

    out = capsys.readouterr().out
    assert f"number +1********27 ({EXAMPLE_NUMBER_SID}):" in out
    assert f"voice_url: (none) -> {BASE}/api/voice_url" in out
    assert out.endswith("dry run; nothing changed\n")
    (read,) = twilio.requests
    assert (read.method, read.path, read.query["PhoneNumber"]) == (
        "GET",
        f"{NUMBER_PATH}.json",
        [EXAMPLE_NUMBER],
    )


def test_a_run_posts_the_numbers_webhooks_once_within_twilios_contract(
    twilio: TwilioMock, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([], deploy_env(twilio)) == 0

    (update,) = posts(twilio)
    assert update.path == f"{NUMBER_PATH}/{EXAMPLE_NUMBER_SID}.json"
    assert update.form == WIRED_NUMBER_FORM
    assert (update.status, request_violations(update)) == (200, [])
    assert all(request_violations(r) == [] for r in twilio.requests)
    assert "now points at the app" in capsys.readouterr().out


def test_a_messaging_service_gets_the_inbound_url_and_the_number_keeps_voice(
    twilio: TwilioMock,
) -> None:
    env = deploy_env(twilio, TWILIO_MESSAGING_SERVICE_SID=SERVICE_SID)

    assert main([], env) == 0

    number_update, service_update = posts(twilio)
    assert service_update.path == SERVICE_PATH
    assert service_update.form == {
        "InboundRequestUrl": [f"{BASE}/api/sms_url"],
        "InboundMethod": ["POST"],
        "StatusCallback": [f"{BASE}/api/status_callback"],
    }
    # Twilio's example service has use_inbound_webhook_on_number: each number's own SMS
    # URL wins there, so the number gets it too.
    assert number_update.form == WIRED_NUMBER_FORM
    assert all((r.status, request_violations(r)) == (200, []) for r in twilio.requests)


def test_a_service_that_already_has_the_urls_gets_no_request(twilio: TwilioMock) -> None:
    # The deployment's URLs are the example service's own: that part is already wired.
    env = deploy_env(
        twilio,
        TWILIO_MESSAGING_SERVICE_SID=SERVICE_SID,
        SMS_WEBHOOK_URL="https://www.example.com/",
        STATUS_CALLBACK_URL="https://www.example.com",
    )

    assert main([], env) == 0

    assert [r.path for r in posts(twilio)] == [f"{NUMBER_PATH}/{EXAMPLE_NUMBER_SID}.json"]
    assert twilio.find_requests(SERVICE_PATH, method="GET") != []


def test_not_opted_in_sends_no_request_at_all(
    twilio: TwilioMock, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([], deploy_env(twilio, TWILIO_WIRE_NUMBER="")) == 0

    assert capsys.readouterr().out == SKIPPED + "\n"
    assert twilio.requests == []


def test_a_number_not_in_the_account_fails_clearly(
    twilio: TwilioMock, capsys: pytest.CaptureFixture[str]
) -> None:
    # Twilio matches partial numbers too: the command keeps only the exact one.
    assert main([], deploy_env(twilio, TWILIO_PHONE_NUMBER="+15017122661")) == 1

    err = capsys.readouterr().err
    assert err == (
        f"wire_number: TWILIO_PHONE_NUMBER +1********61 is not a number of account "
        f"{TEST_ACCOUNT_SID} (IncomingPhoneNumbers has no such number)\n"
    )
    assert posts(twilio) == []


def test_an_unknown_messaging_service_fails_before_any_change(
    twilio: TwilioMock, capsys: pytest.CaptureFixture[str]
) -> None:
    twilio.fail_next(404, path_contains="/v1/Services/")

    assert main([], deploy_env(twilio, TWILIO_MESSAGING_SERVICE_SID=SERVICE_SID)) == 1

    assert "is not a Messaging Service of account" in capsys.readouterr().err
    assert posts(twilio) == []


def test_refused_credentials_fail_in_one_line_without_the_token(
    twilio: TwilioMock, capsys: pytest.CaptureFixture[str]
) -> None:
    twilio.fail_next(401, path_contains="/IncomingPhoneNumbers")

    assert main([], deploy_env(twilio)) == 1

    captured = capsys.readouterr()
    assert captured.err == (
        "wire_number: Twilio refused the credentials (HTTP 401, error 20003): check "
        "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN in the azd environment\n"
    )
    assert TEST_AUTH_TOKEN not in captured.out + captured.err


def test_a_refused_update_fails_with_twilios_reason(
    twilio: TwilioMock, capsys: pytest.CaptureFixture[str]
) -> None:
    twilio.fail_next(400, path_contains=EXAMPLE_NUMBER_SID, method="POST")

    assert main([], deploy_env(twilio)) == 1

    err = capsys.readouterr().err
    assert err.startswith("wire_number: Twilio refused the request (HTTP 400, error 21211): ")
    assert err.count("\n") == 1


def test_twilio_unreachable_fails_in_one_line(
    twilio: TwilioMock, capsys: pytest.CaptureFixture[str]
) -> None:
    with twilio.unreachable():
        assert main([], deploy_env(twilio)) == 1

    assert capsys.readouterr().err == (
        "wire_number: Twilio unreachable (ConnectionError); run it again later\n"
    )


def test_python_m_telephony_wire_number_runs_as_azds_hook_does(twilio: TwilioMock) -> None:
    env = {"PATH": os.environ.get("PATH", ""), **deploy_env(twilio)}
    result = subprocess.run(
        [sys.executable, "-m", "telephony.wire_number"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert "now points at the app" in result.stdout
    assert TEST_AUTH_TOKEN not in result.stdout + result.stderr
    assert [r.form for r in posts(twilio)] == [WIRED_NUMBER_FORM]
