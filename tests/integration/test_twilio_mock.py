"""The local Twilio REST API peer, driven by the real twilio client."""

from __future__ import annotations

import contextlib
import re
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from localpeers.twilio_mock import TwilioMock
from localpeers.twilio_spec import ERROR_EXAMPLES, add_error_responses
from tests.waiting import wait_for

ACCOUNT_SID = "AC" + "0" * 32
AUTH_TOKEN = "token"
TO, FROM = "+15558675310", "+15017122661"
VOICE_URL = "https://example.com/voice"
# Makes the fixture visible here even where no conftest imports it.

SID = re.compile(r"^[A-Z]{2}[0-9a-f]{32}$")


def twilio_client(mock: TwilioMock, *, timeout: float | None = None) -> Client:
    client = Client(ACCOUNT_SID, AUTH_TOKEN, http_client=TwilioHttpClient(timeout=timeout))
    client.api.base_url = mock.base_url
    return client


@pytest.fixture(autouse=True)
def _no_edge_or_region(monkeypatch: pytest.MonkeyPatch) -> None:
    # The client rewrites the host of every URL, the mock's included, for an edge or region.
    monkeypatch.delenv("TWILIO_EDGE", raising=False)
    monkeypatch.delenv("TWILIO_REGION", raising=False)


@pytest.fixture
def client(twilio_mock: TwilioMock) -> Client:
    return twilio_client(twilio_mock)


def create_call(client: Client) -> str:
    call = client.calls.create(to=TO, from_=FROM, url=VOICE_URL)
    return str(call.sid)


def collection_url(mock: TwilioMock, name: str) -> str:
    return f"{mock.base_url}/2010-04-01/Accounts/{ACCOUNT_SID}/{name}.json"


def test_spec_copy_gives_every_operation_twilio_errors() -> None:
    spec: dict[str, Any] = {
        "paths": {"/x.json": {"get": {"responses": {"200": {}}}, "description": "d"}}
    }

    add_error_responses(spec)

    responses = spec["paths"]["/x.json"]["get"]["responses"]
    assert set(responses) == {"200", *map(str, ERROR_EXAMPLES)}


def test_each_created_call_gets_its_own_sid(client: Client, twilio_mock: TwilioMock) -> None:
    first, second = create_call(client), create_call(client)

    assert first != second
    assert all(SID.match(sid) and sid.startswith("CA") for sid in (first, second))
    posts = twilio_mock.find_requests("/Calls.json", method="POST")
    assert [p.status for p in posts] == [201, 201]
    assert posts[0].param("To") == TO and posts[0].param("Url") == VOICE_URL
    assert posts[0].headers["authorization"].startswith("Basic ")


def test_a_call_keeps_its_sid_in_later_requests(client: Client) -> None:
    sid = create_call(client)

    fetched = client.calls(sid).fetch()
    updated = client.calls(sid).update(status="completed")
    recording = client.calls(sid).recordings.create()

    assert (fetched.sid, updated.sid, recording.call_sid) == (sid, sid, sid)
    assert fetched.uri.endswith(f"/Calls/{sid}.json") and updated.status == "completed"
    assert recording.sid.startswith("RE") and f"/Calls/{sid}/Recordings/" in recording.uri


def test_messages_get_sm_or_mm_sids_and_echo_the_request(client: Client) -> None:
    sms = client.messages.create(to=TO, from_=FROM, body="hello")
    other = client.messages.create(to=TO, from_=FROM, body="hello")
    mms = client.messages.create(to=TO, from_=FROM, media_url=["https://example.com/a.png"])

    assert sms.sid.startswith("SM") and other.sid.startswith("SM") and sms.sid != other.sid
    assert mms.sid.startswith("MM")
    assert (sms.to, sms.body, sms.account_sid) == (TO, "hello", ACCOUNT_SID)


def test_prism_rejects_a_create_that_breaks_twilios_contract(twilio_mock: TwilioMock) -> None:
    reply = requests.post(
        collection_url(twilio_mock, "Calls"),
        data={"From": FROM, "Url": VOICE_URL},
        auth=(ACCOUNT_SID, AUTH_TOKEN),
        timeout=5,
    )

    assert reply.status_code == 400
    assert reply.json()["status"] == 400 and "required property 'To'" in reply.json()["message"]
    (recorded,) = twilio_mock.requests
    assert any("required property 'To'" in v["message"] for v in recorded.violations)


def test_request_without_credentials_gets_twilios_401(twilio_mock: TwilioMock) -> None:
    reply = requests.get(collection_url(twilio_mock, "Calls"), timeout=5)

    assert reply.status_code == 401
    assert reply.json()["code"] == 20003


@pytest.mark.parametrize(
    ("status", "twilio_code"),
    [(400, 21211), (400, 21610), (400, 21408), (429, 20429), (500, 20500), (503, 20503)],
)
def test_injected_fault_reaches_the_client_as_twilio_error(
    client: Client,
    twilio_mock: TwilioMock,
    status: int,
    twilio_code: int,
) -> None:
    twilio_mock.fail_next(status=status, twilio_code=twilio_code)

    with pytest.raises(TwilioRestException) as raised:
        create_call(client)

    assert (raised.value.status, raised.value.code) == (status, twilio_code)
    assert SID.match(create_call(client)), "the fault applies to one request only"


def test_fault_rules_match_by_path_and_count(client: Client, twilio_mock: TwilioMock) -> None:
    twilio_mock.fail_next(status=429, count=2, path_contains="/Messages.json")

    create_call(client)
    outcomes = []
    for _ in range(3):
        try:
            client.messages.create(to=TO, from_=FROM, body="x")
            outcomes.append(201)
        except TwilioRestException as exc:
            outcomes.append(exc.status)

    assert outcomes == [429, 429, 201]
    assert [r.fault is not None for r in twilio_mock.requests] == [False, True, True, False]


def test_hanging_response_outlasts_the_client_timeout(twilio_mock: TwilioMock) -> None:
    twilio_mock.hang_next(seconds=10)
    impatient = twilio_client(twilio_mock, timeout=0.3)

    started = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        create_call(impatient)

    assert time.monotonic() - started < 2
    (recorded,) = twilio_mock.requests
    assert recorded.status == 201 and recorded.fault == "hang=10"


def test_latency_delays_every_response(client: Client, twilio_mock: TwilioMock) -> None:
    create_call(client)  # connection set up outside the measurement
    twilio_mock.latency = 0.2

    started = time.monotonic()
    create_call(client)

    assert time.monotonic() - started >= 0.2


def test_connections_are_counted(client: Client, twilio_mock: TwilioMock) -> None:
    for _ in range(3):
        create_call(client)
    reused = twilio_mock.connections_opened
    for _ in range(2):
        requests.get(collection_url(twilio_mock, "Calls"), timeout=5)

    assert reused == 1
    assert twilio_mock.connections_opened == 3


def test_a_dropped_connection_loses_the_answer_of_a_create(
    client: Client, twilio_mock: TwilioMock
) -> None:
    twilio_mock.drop_next(path_contains="/Calls.json")

    with pytest.raises(requests.exceptions.ConnectionError) as raised:
        create_call(client)

    assert "RemoteDisconnected" in repr(raised.value)
    (dropped,) = twilio_mock.requests
    assert (dropped.status, dropped.fault) == (201, "drop"), "Prism created it first"
    assert SID.match(dropped.response["sid"])
    assert SID.match(create_call(client)), "the fault applies to one request only"


def test_random_faults_follow_their_rates_and_seed(client: Client, twilio_mock: TwilioMock) -> None:
    def outcomes() -> list[str | None]:
        twilio_mock.reset()
        twilio_mock.fail_randomly({429: 0.2, 500: 0.1}, drop=0.1, method="POST", seed=3)
        for _ in range(60):
            with contextlib.suppress(TwilioRestException, requests.exceptions.ConnectionError):
                client.messages.create(to=TO, from_=FROM, body="x")
        return [r.fault for r in twilio_mock.requests]

    first = outcomes()

    assert outcomes() == first, "a seed repeats the draws"
    counts = Counter((fault or "none").split(",")[0] for fault in first)
    assert set(counts) == {"code=429", "code=500", "drop", "none"}, counts
    assert counts["none"] > len(first) / 2
    client.calls.list(limit=1)  # a GET: not matched by method="POST"
    assert twilio_mock.requests[-1].fault is None


def test_explicit_faults_come_before_random_ones_and_reset_ends_both(
    client: Client, twilio_mock: TwilioMock
) -> None:
    twilio_mock.fail_randomly({500: 1.0})
    twilio_mock.fail_next(429)

    statuses = []
    for _ in range(2):
        with pytest.raises(TwilioRestException) as raised:
            create_call(client)
        statuses.append(raised.value.status)
    twilio_mock.reset()

    assert statuses == [429, 500]
    assert SID.match(create_call(client))


def test_fault_rates_must_add_up_to_at_most_one(twilio_mock: TwilioMock) -> None:
    with pytest.raises(ValueError, match="add up to at most 1"):
        twilio_mock.fail_randomly({429: 0.7}, drop=0.4)
    with pytest.raises(ValueError, match="no error response"):
        twilio_mock.fail_randomly({418: 0.1})


def test_offline_refuses_connections_then_serves_again_on_the_same_port(
    client: Client, twilio_mock: TwilioMock
) -> None:
    create_call(client)  # a pooled keep-alive connection, closed by the outage
    url = twilio_mock.base_url

    with twilio_mock.unreachable():
        assert not twilio_mock.online
        with pytest.raises(requests.exceptions.ConnectionError) as raised:
            create_call(client)
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(url, timeout=5)

    assert "NewConnectionError" in repr(raised.value), "refused, not cut off mid-request"
    assert twilio_mock.online and twilio_mock.base_url == url
    assert SID.match(create_call(client))
    assert [r.path.endswith("/Calls.json") for r in twilio_mock.requests] == [True, True]


def test_a_request_in_progress_when_the_mock_goes_offline_is_answered(
    client: Client, twilio_mock: TwilioMock
) -> None:
    twilio_mock.latency = 0.5
    with ThreadPoolExecutor(1) as pool:
        created = pool.submit(create_call, client)
        wait_for(lambda: twilio_mock.requests, what="the request to reach Prism")
        with twilio_mock.unreachable():
            sid = created.result(timeout=10)

    assert SID.match(sid)
