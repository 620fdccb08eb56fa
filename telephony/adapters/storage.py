"""Azure Storage clients for the queue and the table, from the Functions host's settings.

The same settings the host uses for its triggers: `AzureWebJobsStorage` as a connection
string (Azurite locally), or identity-based with `AzureWebJobsStorage__queueServiceUri`,
`__tableServiceUri` and `__clientId` (user-assigned managed identity) in Azure.
"""

from __future__ import annotations

import base64
import json
import math
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from telephony.adapters.http_pool import pooled_session
from telephony.errors import EventSinkUnavailableError, SettingsError, StorageUnavailableError

if TYPE_CHECKING:
    from azure.data.tables import TableClient, TableServiceClient
    from azure.storage.queue import QueueClient

CONNECTION = "AzureWebJobsStorage"
# As many pooled connections as the worker has threads, as for the Twilio client.
POOL_SIZE = 32
FORBIDDEN = 403


def table_service(env: Mapping[str, str]) -> TableServiceClient:
    from azure.data.tables import TableServiceClient

    connection_string = env.get(CONNECTION, "").strip()
    if connection_string:
        return TableServiceClient.from_connection_string(connection_string, **_client_options())
    endpoint = _service_uri(env, "table")
    return TableServiceClient(endpoint, credential=_credential(env), **_client_options())


def queue_client(env: Mapping[str, str], queue_name: str) -> QueueClient:
    from azure.storage.queue import QueueClient

    connection_string = env.get(CONNECTION, "").strip()
    if connection_string:
        return QueueClient.from_connection_string(connection_string, queue_name, **_queue_options())
    endpoint = _service_uri(env, "queue")
    return QueueClient(endpoint, queue_name, credential=_credential(env), **_queue_options())


def queue_sender(queue: QueueClient) -> Callable[..., None]:
    """A function that puts one message on `queue`, invisible for `delay` when given (at
    most 7 days, Storage's limit); failures are StorageUnavailableError."""

    def send(text: str, delay: timedelta | None = None) -> None:
        # Whole seconds, rounded up: a delayed message never comes back before its time.
        hidden = None if delay is None else max(1, math.ceil(delay.total_seconds()))
        with storage_errors("put a command on the outbound queue"):
            queue.send_message(text, visibility_timeout=hidden)

    return send


# GET /api/health must answer a probe in seconds: one retry (a dropped pooled connection),
# and a few seconds to connect and to read, where the SDK would wait minutes.
PING_OPTIONS: dict[str, Any] = {"retry_total": 1, "connection_timeout": 2, "read_timeout": 3}
PING_PARTITION = "health"  # no record lives there: delivery records use one hex digit


def table_pinger(service: TableServiceClient, table_name: str) -> Callable[[], None]:
    """A function that reads one row of `table_name` that no record uses (one round trip);
    failures are StorageUnavailableError."""
    table = service.get_table_client(table_name)

    def ping() -> None:
        from azure.core.exceptions import ResourceNotFoundError

        # Storage answered and the identity may read the table: not found is the expected
        # answer (locally, also before the table's first use creates it).
        with storage_errors("read the deliveries table"), suppress(ResourceNotFoundError):
            table.get_entity(PING_PARTITION, "ping", **PING_OPTIONS)

    return ping


class QueueEventSink:
    """Outcome events on a Storage queue, one per message, base64-encoded UTF-8 JSON.

    Base64 because a Functions queue trigger decodes it by default (Logic Apps:
    base64ToString); the queue is created on first use where the identity may create it.
    """

    def __init__(self, queue: Callable[[], QueueClient]) -> None:
        self._build = queue  # on the first event: a webhook that publishes none never pays
        self._queue: QueueClient | None = None
        self._lock = threading.Lock()

    def publish(self, events: Sequence[Mapping[str, object]]) -> None:
        from azure.core.exceptions import AzureError

        try:
            queue = self._ready_queue()
            for event in events:
                text = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
                queue.send_message(base64.b64encode(text.encode("utf-8")).decode("ascii"))
        except AzureError as exc:
            raise EventSinkUnavailableError(
                f"could not put an event on the events queue: {type(exc).__name__}"
            ) from exc

    def _ready_queue(self) -> QueueClient:
        from azure.core.exceptions import HttpResponseError, ResourceExistsError

        with self._lock:
            if self._queue is not None:
                return self._queue
            queue = self._build()
            try:
                queue.create_queue()
            except ResourceExistsError:
                pass
            except HttpResponseError as exc:
                if exc.status_code != FORBIDDEN:  # in Azure, Bicep made it: not ours to create
                    raise
            self._queue = queue
            return queue


def _service_uri(env: Mapping[str, str], service: str) -> str:
    name = f"{CONNECTION}__{service}ServiceUri"
    value = env.get(name, "").strip()
    if not value:
        raise SettingsError(f"set {CONNECTION} or {name}")
    return value


def _credential(env: Mapping[str, str]) -> Any:
    from azure.identity import ManagedIdentityCredential

    return ManagedIdentityCredential(client_id=env.get(f"{CONNECTION}__clientId") or None)


def _client_options() -> dict[str, Any]:
    """The pooled transport, and retries short enough for a webhook: Twilio waits 15 s for
    an answer, and a STOP makes two Table round trips. The SDK's default backoff (0.8 s,
    doubling, three retries per failure) spends about 6 s on one dropped connection."""
    return {"transport": _transport(), "retry_backoff_factor": 0.2, "retry_backoff_max": 2}


def _queue_options() -> dict[str, Any]:
    """As _client_options: azure-storage-queue has a retry policy of its own (15 s, then
    45 s...), which ignores the backoff settings, so it is given a short one (1 s, twice)."""
    from azure.storage.queue import LinearRetry

    return {
        "transport": _transport(),
        "retry_policy": LinearRetry(backoff=1, random_jitter_range=1, retry_total=2),
    }


def _transport() -> Any:
    from azure.core.pipeline.transport import RequestsTransport

    return RequestsTransport(session=pooled_session(POOL_SIZE), session_owner=False)


@contextmanager
def storage_errors(action: str) -> Iterator[None]:
    """Turn any other Azure SDK failure inside the block into StorageUnavailableError."""
    from azure.core.exceptions import AzureError

    try:
        yield
    except AzureError as exc:
        # The SDK's message can hold the request URL; the type is enough to act on.
        raise StorageUnavailableError(f"could not {action}: {type(exc).__name__}") from exc


def ensure_table(service: TableServiceClient, table_name: str) -> TableClient:
    """A client of `table_name`, creating the table when it is missing (one round trip).

    In Azure the tables come from Bicep and the identity's roles are scoped to them, so
    creating one is forbidden (403): the table is there, and its client is all we need.
    Locally (Azurite) the create makes it.
    """
    from azure.core.exceptions import HttpResponseError, ResourceExistsError

    try:
        return service.create_table(table_name)
    except ResourceExistsError:
        return service.get_table_client(table_name)
    except HttpResponseError as exc:
        if exc.status_code != FORBIDDEN:
            raise
        return service.get_table_client(table_name)


class LazyTable:
    """One table, created on first use if it is missing (one round trip, once); the Table
    stores are built on it."""

    def __init__(self, service: TableServiceClient, table_name: str) -> None:
        self._service = service
        self._table_name = table_name
        self._table: TableClient | None = None
        self._lock = threading.Lock()

    def _client(self) -> TableClient:
        if self._table is None:
            with self._lock:
                if self._table is None:
                    self._table = ensure_table(self._service, self._table_name)
        return self._table
