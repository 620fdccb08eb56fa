"""Outcome events to an Event Grid custom topic, with the app's managed identity.

The topic takes CloudEvents 1.0 (input schema CloudEventSchemaV1_0) and has local auth off,
so the app signs in with Entra ID (azure-identity, `AZURE_CLIENT_ID` for a user-assigned
identity) and needs the role EventGrid Data Sender on the topic. The SDKs are imported on
the first publish: a process that never publishes to a topic never loads them.

Which client: azure-eventgrid 4.x serves basic topics (as opposed to namespaces) with the
EventGridPublisherClient of its `_legacy` package, behind the one it exports at the top.
That outer client drops the keyword arguments of its constructor for a basic topic (so no
retry or timeout setting reaches the pipeline), and turns CloudEvent-shaped dicts into
`azure.core.messaging.CloudEvent` objects, which re-render `time` (``...:00Z`` is sent as
``...:00.000Z``); per-call retry options would also be handed to every event's model, which
logs a warning for each. The inner client takes its options and sends dicts as they are,
so that is the one used; tests/integration/test_eventgrid_sink.py holds it to both.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

from telephony.adapters.http_pool import pooled_session
from telephony.errors import EventSinkUnavailableError

if TYPE_CHECKING:
    from azure.eventgrid._legacy import EventGridPublisherClient

# Event Grid takes at most 1 MB per publish request, and per event ("Event Grid quotas and
# limits"). Read as 1,000,000 bytes, the stricter reading, so a request fits either way.
MAX_REQUEST_BYTES = 1_000_000
# The CloudEvents attributes Event Grid requires, and the two every outcome event carries.
REQUIRED_ATTRIBUTES = ("specversion", "id", "source", "type", "subject", "time")
# As many pooled connections as the worker has threads, as for the Twilio and Storage clients.
POOL_SIZE = 32

# The sink runs inside webhooks that Twilio gives 15 s, and an event that is not published
# stays in the outbox for the next try, so it gives up early: two retries, short backoff
# (the SDK's default is ten retries from 0.8 s, doubling), short waits per attempt, and the
# sink's `timeout` over the whole request, retries included.
_RETRIES = 2
_BACKOFF = 0.2
_BACKOFF_MAX = 2
_CONNECTION_TIMEOUT = 3.0
_READ_TIMEOUT = 5.0
# What json.dumps adds around and between the events of a list: "[" "]" and ", ".
_LIST_OVERHEAD = 2
_SEPARATOR = 2


class EventGridSink:
    """Publishes outcome events to an Event Grid custom topic (an EventSink)."""

    def __init__(
        self, endpoint: str, client_id: str | None = None, *, timeout: float = 10.0
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self._endpoint = endpoint
        self._client_id = client_id
        self._timeout = timeout
        self._lock = threading.Lock()
        self._client: EventGridPublisherClient | None = None

    def publish(self, events: Sequence[Mapping[str, object]]) -> None:
        """Send every event, in order, in as few requests as Event Grid's size limit allows.

        Raises EventSinkUnavailableError at the first request the topic does not accept
        (the later ones are not sent), or after the rest when an event alone is over the
        limit; ValueError for an event that is not a CloudEvent (a bug of its producer,
        which no retry fixes), before anything is sent.
        """
        encoded = [_encode(index, event) for index, event in enumerate(events)]
        fits = [text for text in encoded if len(text) + _LIST_OVERHEAD <= MAX_REQUEST_BYTES]
        for chunk in _chunks(fits):
            self._send(chunk)
        if len(fits) < len(encoded):
            # Never accepted, so it stays in the outbox, where an operator finds it.
            raise EventSinkUnavailableError(
                f"Event Grid publish refused {len(encoded) - len(fits)} event(s) "
                f"over {MAX_REQUEST_BYTES} bytes"
            )

    def close(self) -> None:
        """Close the client's connections (a later publish opens new ones)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def _send(self, chunk: list[str]) -> None:
        # Imported here: the Azure SDKs cost cold-start time that most requests never need.
        from azure.core.exceptions import AzureError

        # Plain dicts and lists, as json.loads builds them: the SDK's serializer passes
        # dict, list, str, int, float, bool and None through, and writes anything else
        # (a Mapping that is not a dict, a tuple) as its str().
        body = [json.loads(text) for text in chunk]
        try:
            self._publisher().send(body)
        except AzureError as exc:
            # The SDK's message can hold the request URL or the response body; the type and
            # the status are enough to act on.
            status = getattr(exc, "status_code", None)
            shown = f", HTTP {status}" if isinstance(status, int) else ""
            raise EventSinkUnavailableError(
                f"Event Grid publish of {len(chunk)} event(s) failed ({type(exc).__name__}{shown})"
            ) from exc

    def _publisher(self) -> EventGridPublisherClient:
        client = self._client
        if client is not None:
            return client
        with self._lock:
            if self._client is None:
                self._client = self._new_client()
            return self._client

    def _new_client(self) -> EventGridPublisherClient:
        from azure.core.pipeline.transport import RequestsTransport
        from azure.eventgrid._legacy import EventGridPublisherClient
        from azure.identity import ManagedIdentityCredential

        credential = ManagedIdentityCredential(client_id=self._client_id)
        session = pooled_session(POOL_SIZE)
        # azure-core passes its own `verify` with every request, which wins over the
        # session's: hand it the CA bundle the session read from the environment.
        transport = RequestsTransport(
            session=session,
            session_owner=True,
            connection_verify=session.verify,
            connection_timeout=min(_CONNECTION_TIMEOUT, self._timeout),
            read_timeout=min(_READ_TIMEOUT, self._timeout),
        )
        return EventGridPublisherClient(
            self._endpoint,
            credential,
            transport=transport,
            retry_total=_RETRIES,
            retry_backoff_factor=_BACKOFF,
            retry_backoff_max=_BACKOFF_MAX,
            timeout=self._timeout,
        )


def _encode(index: int, event: Mapping[str, object]) -> str:
    """The event as the SDK writes it (json.dumps with its defaults), checked first."""
    missing = [name for name in REQUIRED_ATTRIBUTES if not event.get(name)]
    if missing:
        raise ValueError(f"event {index} lacks the CloudEvents attribute(s) {', '.join(missing)}")
    if event["specversion"] != "1.0":
        raise ValueError(f"event {index} is not CloudEvents 1.0")
    return json.dumps(event, allow_nan=False, default=_plain)


def _plain(value: object) -> object:
    """A nested Mapping as the dict json.dumps can write; anything else is refused."""
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _chunks(encoded: Sequence[str]) -> Iterator[list[str]]:
    """Consecutive runs of events whose JSON array stays within MAX_REQUEST_BYTES."""
    chunk: list[str] = []
    size = _LIST_OVERHEAD
    for text in encoded:
        if chunk and size + _SEPARATOR + len(text) > MAX_REQUEST_BYTES:
            yield chunk
            chunk, size = [], _LIST_OVERHEAD
        size += len(text) + (_SEPARATOR if chunk else 0)
        chunk.append(text)
    if chunk:
        yield chunk
