"""EventGridSink over the real Event Grid SDK, against the local Event Grid topic stand-in.

The real ManagedIdentityCredential and Event Grid client run here: the token request to the
managed identity endpoint, TLS through the CONNECT proxy to the topic's production host
name, and the SDK's own retries. Faults are the stand-in's: answers it is told to give, a
closed port, slow answers.
"""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from localpeers.azure_service import SYSTEM_ASSIGNED_CLIENT_ID
from localpeers.eventgrid import (
    BATCH_CONTENT_TYPE,
    EVENT_GRID_RESOURCE,
    MAX_REQUEST_BYTES,
    USER_ASSIGNED_CLIENT_ID,
    LocalEventGridTopic,
)
from localpeers.keyvault import VAULT_RESOURCE
from telephony.adapters.eventgrid import EventGridSink
from telephony.errors import EventSinkUnavailableError

# Loose bounds: a publish that took the SDK's default retries (ten, from 0.8 s doubling)
# or its default timeouts (minutes) would be far beyond them.
QUICK = 10.0
UNKNOWN_CLIENT_ID = "00000000-0000-0000-0000-00000000dead"
SECRET_LOOKING = "body-7f3c2a91-do-not-echo"
REPO_ROOT = Path(__file__).resolve().parents[2]


def event(number: int, **data: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"evt-{number:04d}-4f1c9a",
        "type": "telephony.delivery.updated",
        "source": "https://app.example/",
        "subject": f"messages/order-{number}",
        "time": "2026-11-29T10:00:00Z",
        "datacontenttype": "application/json",
        "data": {"status": "delivered", "previous_status": None, **data},
    }


def published_events() -> list[dict[str, Any]]:
    """Events whose JSON the SDK would be tempted to rewrite, were it to rebuild them."""
    return [
        event(1, body=SECRET_LOOKING),
        # Whole seconds, and a fraction with a trailing zero: CloudEvent objects would be
        # sent as ...:00.000Z and ...:00.12345Z.
        {
            **event(2, attempts=3, price=0.1, nested={"list": [1, "two", None, True]}),
            "time": "2026-11-29T10:00:00.123450Z",
        },
        {
            **event(3, text="Grüße, 👋"),
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        },
    ]


@pytest.fixture
def topic(local_event_grid: LocalEventGridTopic) -> LocalEventGridTopic:
    return local_event_grid


@pytest.fixture
def sink(topic: LocalEventGridTopic) -> Iterator[EventGridSink]:
    made = EventGridSink(topic.endpoint)
    yield made
    made.close()


def refusal(
    sink: EventGridSink, events: list[dict[str, Any]]
) -> tuple[EventSinkUnavailableError, float]:
    started = time.monotonic()
    with pytest.raises(EventSinkUnavailableError) as raised:
        sink.publish(events)
    return raised.value, time.monotonic() - started


def assert_nothing_leaks(
    text: str, topic: LocalEventGridTopic, events: list[dict[str, Any]]
) -> None:
    for sent in events:
        assert sent["id"] not in text
        assert sent["subject"] not in text
    assert SECRET_LOOKING not in text
    assert topic.issued_tokens
    for token in topic.issued_tokens:
        assert token not in text


# What arrives


def test_events_arrive_exactly_as_sent_in_one_request(
    topic: LocalEventGridTopic, sink: EventGridSink
) -> None:
    events = published_events()

    sink.publish(events)

    assert topic.events == events
    [batch] = topic.batches
    assert batch.content_type.split(";")[0] == BATCH_CONTENT_TYPE
    assert batch.client_id == SYSTEM_ASSIGNED_CLIENT_ID
    assert batch.api_version
    [token_request] = topic.token_requests
    assert (token_request.resource, token_request.client_id) == (EVENT_GRID_RESOURCE, None)


def test_the_exported_client_would_rewrite_time(topic: LocalEventGridTopic) -> None:
    """Why the sink uses the client azure-eventgrid keeps under `_legacy` (see its module
    docstring), and proof that the exact comparison above can fail. When this fails, the
    exported client sends dicts as they are, and the sink can move to it."""
    from azure.eventgrid import EventGridPublisherClient
    from azure.identity import ManagedIdentityCredential

    client = EventGridPublisherClient(topic.endpoint, ManagedIdentityCredential())
    client.send([event(1)])
    client.close()

    [received] = topic.events
    assert received["id"] == event(1)["id"]
    assert received["time"] != event(1)["time"]


def test_a_user_assigned_identity_is_asked_for_by_client_id(topic: LocalEventGridTopic) -> None:
    sink = EventGridSink(topic.endpoint, USER_ASSIGNED_CLIENT_ID)

    sink.publish([event(1)])

    assert [r.client_id for r in topic.token_requests] == [USER_ASSIGNED_CLIENT_ID]
    assert topic.batches[0].client_id == USER_ASSIGNED_CLIENT_ID
    sink.close()


def test_the_token_is_reused_and_a_closed_sink_publishes_again(
    topic: LocalEventGridTopic, sink: EventGridSink
) -> None:
    sink.publish([event(1)])
    sink.publish([event(2)])
    sink.close()
    sink.publish([event(3)])

    assert [e["id"] for e in topic.events] == [event(n)["id"] for n in (1, 2, 3)]
    assert topic.token_request_count == 2  # one per client: close() drops the client


def test_publishing_nothing_sends_nothing(topic: LocalEventGridTopic, sink: EventGridSink) -> None:
    sink.publish([])

    assert topic.request_count == 0
    assert topic.token_request_count == 0


def test_concurrent_publishers_share_one_sink(
    topic: LocalEventGridTopic, sink: EventGridSink
) -> None:
    errors: list[BaseException] = []

    def publish(number: int) -> None:
        try:
            sink.publish([event(number)])
        except BaseException as exc:  # reported below, with the others
            errors.append(exc)

    threads = [threading.Thread(target=publish, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    assert sorted(e["id"] for e in topic.events) == sorted(event(n)["id"] for n in range(12))


# Size


def test_large_input_is_sent_in_order_in_requests_under_the_limit(
    topic: LocalEventGridTopic, sink: EventGridSink
) -> None:
    # About 2.6 MB in all: three requests at least.
    events = [event(n, padding="x" * 100_000) for n in range(26)]

    sink.publish(events)

    assert topic.events == events
    assert len(topic.batches) >= 3
    assert all(batch.size <= MAX_REQUEST_BYTES for batch in topic.batches)
    assert all(answer.status == 200 for answer in topic.answers)


def test_an_event_over_the_limit_is_refused_and_the_others_are_sent(
    topic: LocalEventGridTopic, sink: EventGridSink
) -> None:
    too_big = event(2, padding="x" * MAX_REQUEST_BYTES)

    error, _ = refusal(sink, [event(1), too_big, event(3)])

    assert [e["id"] for e in topic.events] == [event(1)["id"], event(3)["id"]]
    assert "1 event(s) over" in str(error)
    assert all(answer.status == 200 for answer in topic.answers)  # never sent, so no 413


def test_a_batch_over_the_limit_is_refused_by_the_stand_in(topic: LocalEventGridTopic) -> None:
    # The limit the sink keeps to is one the stand-in holds the client to.
    events = [event(n, padding="x" * 100_000) for n in range(11)]
    token = topic.issue_token(EVENT_GRID_RESOURCE)

    response = post(topic, json.dumps(events), token=token)

    assert response.status_code == 413
    assert topic.events == []


# What the topic refuses


def post(
    topic: LocalEventGridTopic,
    body: str,
    *,
    token: str | None = None,
    content_type: str = BATCH_CONTENT_TYPE,
    query: str = "?api-version=2018-01-01",
    headers: dict[str, str] | None = None,
) -> requests.Response:
    """A publish request by hand, through the proxy, as the SDK would send it."""
    sent = {"Content-Type": content_type, **(headers or {})}
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    return requests.post(topic.endpoint + query, data=body.encode(), headers=sent, timeout=10)


def test_the_stand_in_takes_a_valid_token(topic: LocalEventGridTopic) -> None:
    token = topic.issue_token(EVENT_GRID_RESOURCE)

    response = post(topic, json.dumps([event(1)]), token=token)

    assert response.status_code == 200
    assert topic.events == [event(1)]


@pytest.mark.parametrize(
    "credentials",
    ["none", "made-up token", "token for Key Vault", "access key"],
)
def test_the_stand_in_refuses_a_missing_or_wrong_token(
    topic: LocalEventGridTopic, credentials: str
) -> None:
    token = {
        "none": None,
        "made-up token": "eyJ0eXAiOiJKV1QifQ.not-issued",
        "token for Key Vault": topic.issue_token(VAULT_RESOURCE),
        "access key": None,
    }[credentials]
    headers = {"aeg-sas-key": "c2VjcmV0"} if credentials == "access key" else None

    response = post(topic, json.dumps([event(1)]), token=token, headers=headers)

    assert response.status_code == 401
    assert topic.events == []


@pytest.mark.parametrize(
    ("body", "content_type", "query", "status"),
    [
        ("{not json", BATCH_CONTENT_TYPE, "?api-version=2018-01-01", 400),
        (json.dumps(event(1)), BATCH_CONTENT_TYPE, "?api-version=2018-01-01", 400),
        ("[]", BATCH_CONTENT_TYPE, "?api-version=2018-01-01", 400),
        (
            json.dumps([{**event(1), "specversion": "0.3"}]),
            BATCH_CONTENT_TYPE,
            "?api-version=2018-01-01",
            400,
        ),
        (
            json.dumps([{k: v for k, v in event(1).items() if k != "id"}]),
            BATCH_CONTENT_TYPE,
            "?api-version=2018-01-01",
            400,
        ),
        (
            json.dumps([{k: v for k, v in event(1).items() if k != "subject"}]),
            BATCH_CONTENT_TYPE,
            "?api-version=2018-01-01",
            400,
        ),
        (
            json.dumps([{**event(1), "time": "yesterday"}]),
            BATCH_CONTENT_TYPE,
            "?api-version=2018-01-01",
            400,
        ),
        (json.dumps([event(1)]), "application/json", "?api-version=2018-01-01", 415),
        (json.dumps([event(1)]), BATCH_CONTENT_TYPE, "", 400),
    ],
    ids=[
        "not JSON",
        "not an array",
        "empty array",
        "wrong specversion",
        "no id",
        "no subject",
        "bad time",
        "wrong content type",
        "no api-version",
    ],
)
def test_the_stand_in_refuses_a_malformed_batch(
    topic: LocalEventGridTopic, body: str, content_type: str, query: str, status: int
) -> None:
    token = topic.issue_token(EVENT_GRID_RESOURCE)

    response = post(topic, body, token=token, content_type=content_type, query=query)

    assert response.status_code == status
    assert topic.events == []


def test_an_identity_without_the_sender_role_is_refused(
    topic: LocalEventGridTopic, sink: EventGridSink
) -> None:
    topic.allow_senders([USER_ASSIGNED_CLIENT_ID])  # the sink signs in system-assigned
    events = published_events()

    error, elapsed = refusal(sink, events)

    assert "HTTP 403" in str(error)
    assert topic.events == []
    assert elapsed < QUICK
    assert_nothing_leaks(str(error), topic, events)


def test_an_unknown_identity_gets_no_token_and_publishes_nothing(
    topic: LocalEventGridTopic,
) -> None:
    sink = EventGridSink(topic.endpoint, UNKNOWN_CLIENT_ID)

    error, elapsed = refusal(sink, [event(1)])

    assert topic.token_requests[-1].granted is False
    assert topic.request_count == 0
    assert elapsed < QUICK
    assert UNKNOWN_CLIENT_ID not in str(error)


def test_an_event_that_is_not_a_cloud_event_is_a_bug_found_before_sending(
    topic: LocalEventGridTopic, sink: EventGridSink
) -> None:
    broken = {k: v for k, v in event(2).items() if k != "source"}

    with pytest.raises(ValueError, match="event 1 lacks the CloudEvents attribute"):
        sink.publish([event(1), broken])

    assert topic.request_count == 0


# Outages: few retries, short waits


def test_one_failed_request_is_retried(topic: LocalEventGridTopic, sink: EventGridSink) -> None:
    topic.fail_next(1)

    sink.publish([event(1)])

    assert [a.status for a in topic.answers] == [503, 200]
    assert topic.events == [event(1)]


def test_a_failing_topic_raises_after_two_retries(
    topic: LocalEventGridTopic, sink: EventGridSink
) -> None:
    topic.fail_next(100)
    events = published_events()

    error, elapsed = refusal(sink, events)

    assert "HTTP 503" in str(error)
    assert topic.request_count == 3  # the SDK alone would try four times, over about 5 s
    assert elapsed < QUICK
    assert_nothing_leaks(str(error), topic, events)


def test_a_topic_that_stopped_listening_raises_quickly(
    topic: LocalEventGridTopic, sink: EventGridSink
) -> None:
    sink.publish([event(1)])  # a pooled connection, cut by down()
    topic.down()
    events = published_events()

    error, elapsed = refusal(sink, events)

    assert elapsed < QUICK
    assert_nothing_leaks(str(error), topic, events)
    topic.up()
    sink.publish([event(4)])
    assert [e["id"] for e in topic.events] == [event(1)["id"], event(4)["id"]]


def test_an_unreachable_endpoint_raises_quickly(topic: LocalEventGridTopic) -> None:
    # Straight to a loopback port nothing listens on (NO_PROXY covers 127.0.0.1).
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sink = EventGridSink(f"https://127.0.0.1:{port}/api/events")
    events = published_events()

    error, elapsed = refusal(sink, events)

    assert elapsed < QUICK
    assert "ServiceRequestError" in str(error)
    assert str(port) not in str(error)
    assert_nothing_leaks(str(error), topic, events)


def test_a_slow_topic_is_given_up_on_after_the_sinks_timeout(topic: LocalEventGridTopic) -> None:
    topic.answer_after(3)
    sink = EventGridSink(topic.endpoint, timeout=1.0)

    error, elapsed = refusal(sink, [event(1)])

    assert elapsed < 2.5
    assert "Timeout" in str(error)


def test_no_token_or_event_content_reaches_the_logs(
    topic: LocalEventGridTopic, sink: EventGridSink, caplog: pytest.LogCaptureFixture
) -> None:
    events = published_events()
    with caplog.at_level(logging.DEBUG):
        sink.publish(events)
        topic.fail_next(100)
        refusal(sink, events)

    assert_nothing_leaks(caplog.text, topic, events)


# Cost of importing


def test_importing_the_sink_loads_no_azure_sdk() -> None:
    code = (
        "import sys, telephony.adapters.eventgrid; "
        "print(sorted(m for m in sys.modules if m.startswith('azure')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )

    assert result.stdout.strip() == "[]"
