"""A local stand-in for an Event Grid custom topic that the real Azure SDK publishes to.

No Event Grid emulator exists, so the topic is a loopback HTTPS server with a `trustme`
certificate for ``<topic>.<region>-1.eventgrid.azure.net``, speaking the publish part of the
data plane for a topic whose input schema is CloudEvents 1.0 and whose local auth is off:
``POST /api/events?api-version=...`` with an Entra ID bearer token for
``https://eventgrid.azure.net`` and a JSON array of CloudEvents (content type
``application/cloudevents-batch+json``). Beside it run a managed identity endpoint that
issues those tokens and a CONNECT proxy that routes the topic's host to it
(localpeers/azure_service.py), so the client keeps the production URL shape.

What the topic accepted is kept in memory for tests, with every answer it gave; it can be
told to fail the next requests, to answer slowly, or to stop listening.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiohttp import web

from localpeers.azure_service import (
    USER_ASSIGNED_CLIENT_ID,
    LocalAzureService,
    azure_error,
    bearer_token,
)

__all__ = [
    "BATCH_CONTENT_TYPE",
    "EVENT_GRID_RESOURCE",
    "EVENT_GRID_SCOPE",
    "MAX_REQUEST_BYTES",
    "USER_ASSIGNED_CLIENT_ID",
    "Answer",
    "LocalEventGridTopic",
    "ReceivedBatch",
]

EVENT_GRID_RESOURCE = "https://eventgrid.azure.net"
EVENT_GRID_SCOPE = f"{EVENT_GRID_RESOURCE}/.default"
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"
# Event Grid refuses a publish request, or one event, over 1 MB (its "quotas and limits");
# the stand-in takes the stricter, decimal reading.
MAX_REQUEST_BYTES = 1_000_000
# Event Grid's required CloudEvents attributes, and the two every outcome event carries.
REQUIRED_ATTRIBUTES = ("id", "source", "type", "subject", "time")


@dataclass(frozen=True)
class ReceivedBatch:
    """One publish request the topic accepted."""

    events: tuple[dict[str, Any], ...]
    content_type: str
    size: int  # bytes of the body
    client_id: str  # the identity whose token it carried
    api_version: str


@dataclass(frozen=True)
class Answer:
    """One answer the topic gave to a POST /api/events, in order."""

    status: int
    code: str  # "OK", or the error code of the body


class _TopicState:
    """What the topic accepted and answered, and its fault switches; shared by threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.batches: list[ReceivedBatch] = []
        self.answers: list[Answer] = []
        self.failures_left = 0
        self.failure_status = 503
        self.delay = 0.0
        self.senders: frozenset[str] | None = None  # None: every identity may send


class _Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class LocalEventGridTopic(LocalAzureService):
    """An Event Grid custom topic, its managed identity endpoint and a proxy, on loopback.

    Use as a context manager (or call start() and stop()), point the process at it with the
    variables from environment(), and publish to `endpoint`.
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        region: str = "westeurope",
        user_assigned_client_ids: Iterable[str] = (USER_ASSIGNED_CLIENT_ID,),
    ) -> None:
        # A fresh name per instance, so nothing a client caches per host outlives a test.
        self.name = name or f"evgt-local-{secrets.token_hex(4)}"
        super().__init__(
            f"{self.name}.{region}-1.eventgrid.azure.net",
            user_assigned_client_ids=user_assigned_client_ids,
            label="local-event-grid",
        )
        self.endpoint = f"https://{self.host}/api/events"
        self._state = _TopicState()

    # Observations

    @property
    def batches(self) -> list[ReceivedBatch]:
        """Every accepted publish request, in order."""
        with self._state.lock:
            return list(self._state.batches)

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every accepted event, in the order received."""
        return [event for batch in self.batches for event in batch.events]

    @property
    def answers(self) -> list[Answer]:
        """Every answer to a publish request (accepted or not), in order."""
        with self._state.lock:
            return list(self._state.answers)

    @property
    def request_count(self) -> int:
        """How many publish requests reached the topic."""
        with self._state.lock:
            return len(self._state.answers)

    # Switches

    def fail_next(self, count: int, status: int = 503) -> None:
        """Answer the next `count` publish requests with `status` before looking at them."""
        with self._state.lock:
            self._state.failures_left = count
            self._state.failure_status = status

    def answer_after(self, seconds: float) -> None:
        """Wait this long before answering each publish request (0: answer at once)."""
        self._state.delay = seconds

    def allow_senders(self, client_ids: Iterable[str] | None) -> None:
        """Let only these identities publish (403 for others), as the EventGrid Data Sender
        role would; None lets every identity the endpoint knows."""
        self._state.senders = None if client_ids is None else frozenset(client_ids)

    def down(self) -> None:
        """Stop listening and cut open connections: clients get connection errors."""
        self.stop_listening()

    def up(self) -> None:
        """Listen again on the same port after down()."""
        self.listen_again()

    # The HTTPS side

    def application(self) -> web.Application:
        # A batch at the limit must reach the handler, to be answered 413 as Event Grid does.
        app = web.Application(client_max_size=4 * MAX_REQUEST_BYTES)
        app.router.add_post("/api/events", self._publish)
        return app

    async def _publish(self, request: web.Request) -> web.Response:
        delay = self._state.delay
        if delay:
            await asyncio.sleep(delay)
        with self._state.lock:
            failing = self._state.failures_left > 0
            if failing:
                self._state.failures_left -= 1
            failure_status = self._state.failure_status
        if failing:
            return self._answer(_Refused(failure_status, "ServiceUnavailable", "Try again."))
        try:
            batch = self._accept(request, await _body(request))
        except _Refused as refused:
            return self._answer(refused)
        with self._state.lock:
            self._state.batches.append(batch)
        return self._answer(None)

    def _answer(self, refused: _Refused | None) -> web.Response:
        answer = Answer(200, "OK") if refused is None else Answer(refused.status, refused.code)
        with self._state.lock:
            self._state.answers.append(answer)
        if refused is None:
            return web.Response(status=200)
        return azure_error(refused.status, refused.code, refused.message)

    def _accept(self, request: web.Request, body: bytes) -> ReceivedBatch:
        api_version = request.query.get("api-version", "")
        if not api_version:
            raise _Refused(400, "BadRequest", "The api-version query parameter is missing.")
        client_id = self._sender(request)
        content_type = request.headers.get("Content-Type", "")
        if content_type.split(";", 1)[0].strip().lower() != BATCH_CONTENT_TYPE:
            raise _Refused(415, "UnsupportedMediaType", f"Expected {BATCH_CONTENT_TYPE}.")
        if len(body) > MAX_REQUEST_BYTES:
            raise _Refused(413, "RequestEntityTooLarge", "The request is over 1 MB.")
        events = _parse_batch(body)
        return ReceivedBatch(tuple(events), content_type, len(body), client_id, api_version)

    def _sender(self, request: web.Request) -> str:
        if "aeg-sas-key" in request.headers or "aeg-sas-token" in request.headers:
            raise _Refused(401, "Unauthorized", "Local auth is disabled for this topic.")
        client_id = self.identity_of(bearer_token(request), EVENT_GRID_RESOURCE)
        if client_id is None:
            raise _Refused(401, "Unauthorized", "A valid Entra ID bearer token is required.")
        senders = self._state.senders
        if senders is not None and client_id not in senders:
            raise _Refused(403, "Forbidden", f"Caller {client_id} may not publish to the topic.")
        return client_id


async def _body(request: web.Request) -> bytes:
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _Refused(413, "RequestEntityTooLarge", "The request is over 1 MB.") from None


def _parse_batch(body: bytes) -> list[dict[str, Any]]:
    try:
        events = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _Refused(400, "BadRequest", "The body is not JSON.") from None
    if not isinstance(events, list) or not events:
        raise _Refused(400, "BadRequest", "The body must be a non-empty JSON array of events.")
    for index, event in enumerate(events):
        problem = _problem(event)
        if problem:
            raise _Refused(400, "BadRequest", f"Event {index}: {problem}.")
        if len(json.dumps(event)) > MAX_REQUEST_BYTES:
            raise _Refused(413, "RequestEntityTooLarge", f"Event {index} is over 1 MB.")
    return events


def _problem(event: object) -> str | None:
    if not isinstance(event, Mapping):
        return "not a JSON object"
    if event.get("specversion") != "1.0":
        return "specversion must be 1.0"
    for name in REQUIRED_ATTRIBUTES:
        value = event.get(name)
        if not isinstance(value, str) or not value:
            return f"{name} must be a non-empty string"
    try:
        moment = datetime.fromisoformat(event["time"])
    except ValueError:
        return "time is not an RFC 3339 timestamp"
    if moment.tzinfo is None:
        return "time has no offset"
    if "data" in event and "data_base64" in event:
        return "data and data_base64 are exclusive"
    return None
