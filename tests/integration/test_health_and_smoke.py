"""GET /api/health against real Storage, and `python -m telephony.smoke` against the app.

In-process: health on Azurite answers 200; with Azurite stopped it answers 503, and with a
Storage endpoint that accepts connections but never answers it still answers 503 within
seconds (the ping's own timeouts), never waiting on the SDK's minutes.

Hosted: the app served by the development host on an Azurite of its own and the Twilio
mock; the smoke command is run as an operator runs it, and its exit status and lines are
checked: all steps passing, an SMS followed to delivered (the test plays Twilio's signed
status callback), an SMS that never gets there, and Storage going away under the app.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import azure.functions as func
import pytest
import requests
from azure.data.tables import TableServiceClient
from twilio.request_validator import RequestValidator

from localpeers.azurite import Azurite, AzuritePorts, connection_string
from localpeers.processes import free_port
from localpeers.twilio_mock import TwilioMock
from tests.app_client import TEST_AUTH_TOKEN, function
from tests.conftest import AppFactory
from tests.integration.test_outbound_hosted import HostedApp
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
TO = "+15558675310"


@pytest.fixture
def storage() -> Iterator[Azurite]:
    """An Azurite of this test's own, which the test may stop."""
    instance = Azurite().start()
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture
def silent_storage() -> Iterator[str]:
    """A connection string whose endpoints accept connections and never answer."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)  # the kernel completes handshakes; nobody ever reads
        port = listener.getsockname()[1]
        yield connection_string("127.0.0.1", AzuritePorts(port, port, port))


def health_in_process() -> tuple[int, bytes]:
    req = func.HttpRequest("GET", "https://calls.example.net/api/health", body=b"")
    resp = function("health")(req)
    return resp.status_code, resp.get_body()


# ---------------------------------------------------------------------------- in-process


def test_health_reads_azurite_and_is_503_once_it_is_gone(
    app_env: AppFactory, storage: Azurite
) -> None:
    # GIVEN the app on a working Storage (its tables not created yet)
    settings = storage.environment()
    app_env(**settings)
    assert health_in_process() == (200, b'{"status": "ok"}')
    # WHEN Storage goes away (a new container: the kept verdict is per container)
    storage.stop()
    app_env(**settings)
    # THEN health is unavailable, quickly
    started = time.monotonic()
    assert health_in_process() == (503, b'{"status": "unavailable"}')
    assert time.monotonic() - started < 5


def test_storage_that_never_answers_is_503_within_seconds(
    app_env: AppFactory, silent_storage: str
) -> None:
    app_env(AzureWebJobsStorage=silent_storage)
    started = time.monotonic()
    assert health_in_process() == (503, b'{"status": "unavailable"}')
    # two attempts of 3 s to read (PING_OPTIONS), not the SDK's default of minutes
    assert time.monotonic() - started < 10


# ---------------------------------------------------------------------------- hosted


@pytest.fixture
def hosted(tmp_path: Path, storage: Azurite, twilio_mock: TwilioMock) -> Iterator[HostedApp]:
    app = HostedApp(tmp_path, storage, twilio_mock).start()
    try:
        yield app
    finally:
        app.stop()


def smoke(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "telephony.smoke", *args], cwd=ROOT, capture_output=True,
        text=True, timeout=120, check=False,
    )  # fmt: skip


def test_smoke_passes_against_the_running_app(hosted: HostedApp) -> None:
    result = smoke(hosted.url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        '1. health   ok: 200 {"status": "ok"}',
        "2. webhook  ok: an unsigned POST /api/sms_url is refused with 403",
    ]
    assert result.stderr == ""


def sent_smoke_sms(app: HostedApp) -> tuple[str, str] | None:
    """The key and Twilio SID of the smoke check's SMS, once its record has them."""
    values = json.loads((app.workdir / "local.settings.json").read_text())["Values"]
    tables = TableServiceClient.from_connection_string(app.connection_string)
    table = tables.get_table_client(values["DELIVERIES_TABLE_NAME"])
    for entity in table.list_entities():
        if str(entity.get("Key", "")).startswith("smoke-") and entity.get("TwilioSid"):
            return str(entity["Key"]), str(entity["TwilioSid"])
    return None


def test_smoke_follows_a_queued_sms_to_delivered(
    hosted: HostedApp, twilio_mock: TwilioMock
) -> None:
    # GIVEN the smoke command sending an SMS (the development host takes any function key)
    process = subprocess.Popen(
        [sys.executable, "-m", "telephony.smoke", hosted.url, "--function-key", "any",
         "--send-to", TO, "--wait", "60"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        # WHEN Twilio (the mock) got the message, and a signed callback reports it delivered
        # (without PUBLIC_BASE_URL, signatures are checked against the request's own URL)
        [sent] = wait_for(lambda: twilio_mock.find_requests("/Messages.json", method="POST"), 30)
        key, sid = wait_for(lambda: sent_smoke_sms(hosted), 30)
        callback = f"{hosted.url}/api/status_callback?id={key}"
        params = {"MessageSid": sid, "MessageStatus": "delivered", "To": TO}
        signature = RequestValidator(TEST_AUTH_TOKEN).compute_signature(callback, params)
        posted = requests.post(
            callback, data=params, headers={"X-Twilio-Signature": signature}, timeout=10
        )
        assert posted.status_code == 204
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    # THEN the sms step passes, naming the masked number and the final status
    assert process.returncode == 0, stdout + stderr
    lines = stdout.splitlines()
    assert len(lines) == 3
    assert lines[2].startswith("3. sms      ok: smoke-")
    assert lines[2].endswith("to +1********10 is delivered")
    assert sent.param("Body") and "Smoke check" in str(sent.param("Body"))


def test_smoke_fails_at_the_sms_step_when_no_final_status_comes(hosted: HostedApp) -> None:
    result = smoke(hosted.url, "--send-to", TO, "--wait", "1")
    assert result.returncode == 1
    failed = result.stdout.splitlines()[-1]
    assert failed.startswith("3. sms      FAILED: smoke-")
    assert "after 1 s" in failed
    assert result.stderr == "smoke check failed at step 3 (sms)\n"


def test_smoke_fails_at_the_health_step_when_storage_goes_away(
    hosted: HostedApp, storage: Azurite
) -> None:
    # GIVEN the app healthy, WHEN its Storage goes away
    assert smoke(hosted.url).returncode == 0
    storage.stop()

    # THEN health says unavailable, once the verdict kept for a few seconds is stale
    def health() -> tuple[int, str]:
        answer = requests.get(f"{hosted.url}/api/health", timeout=15)
        return answer.status_code, answer.text

    assert wait_for(lambda: (found := health())[0] == 503 and found, 20) == (
        503,
        '{"status": "unavailable"}',
    )
    # AND the smoke check exits 1, naming the health step and what it got
    result = smoke(hosted.url)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        '1. health   FAILED: expected 200 {"status": "ok"}, got 503 {"status": "unavailable"}'
    ]
    assert result.stderr == "smoke check failed at step 1 (health)\n"


def test_smoke_says_clearly_when_nothing_answers() -> None:
    unused_port = free_port()
    result = smoke(f"http://127.0.0.1:{unused_port}")
    assert result.returncode == 1
    assert result.stdout == (
        f"1. health   FAILED: GET http://127.0.0.1:{unused_port}/api/health: "
        "cannot connect (Connection refused)\n"
    )
    assert "Traceback" not in result.stderr


def test_the_health_body_is_the_documented_json(hosted: HostedApp) -> None:
    resp = requests.get(f"{hosted.url}/api/health", timeout=15)
    assert resp.headers["Content-Type"].startswith("application/json")
    assert json.loads(resp.text) == {"status": "ok"}
