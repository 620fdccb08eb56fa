"""Queue triggers: poll Azure Storage queues with the Functions host's rules.

The rules, from host.json ``extensions.queues`` (see `devhost.config.QueueOptions`):

- fetch up to ``batchSize`` messages at a time and run them concurrently; fetch the next
  batch once the number still running drops to ``newBatchThreshold``;
- when a queue is empty, wait before the next poll, doubling the wait (with jitter) from
  100 ms up to ``maxPollingInterval``; any message resets it;
- a received message is leased (invisible to other consumers) for 10 minutes, and the
  lease is renewed every half of that while its function runs; a host that dies leaves
  its messages invisible until their lease ends (``--message-lease`` shortens it);
- a function that returns deletes the message; one that raises makes it visible again
  after ``visibilityTimeout``, or, once its dequeue count has reached ``maxDequeueCount``,
  moves it to ``<queue>-poison``;
- ``messageEncoding`` ``base64`` decodes the message text (a message that does not decode
  goes straight to the poison queue); ``none`` passes the text as it is.

Storage calls use the synchronous SDK on worker threads, so a slow Azurite or a slow
function never blocks HTTP.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import random
import uuid
from collections.abc import Mapping

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.functions.queue import QueueMessage as TriggerMessage
from azure.storage.queue import LinearRetry, QueueClient, QueueServiceClient
from azure.storage.queue import QueueMessage as StoredMessage

from devhost.config import MIN_POLLING_INTERVAL, QueueOptions
from devhost.invoke import PROGRAMMATIC_REASON, Invoker
from devhost.metadata import MetadataError, QueueFunction

logger = logging.getLogger("devhost")

POISON_SUFFIX = "-poison"
# How long a received message stays invisible to other consumers while its function runs,
# renewed every half of it; the host's lease is also 10 minutes, renewed the same way.
MESSAGE_LEASE_SECONDS = 600


def service_client(connection: str, environ: Mapping[str, str]) -> QueueServiceClient:
    """A client for the storage account that the connection setting names.

    Like the host, look for the setting itself, then for ``AzureWebJobs<name>``.
    """
    value = environ.get(connection) or environ.get(f"AzureWebJobs{connection}")
    if not value:
        if any(name.startswith(f"{connection}__") for name in environ):
            raise MetadataError(
                f"{connection}: identity-based connections are not supported by the "
                "development host; set a connection string (Azurite: UseDevelopmentStorage=true)"
            )
        raise MetadataError(f"storage connection setting {connection!r} is not set")
    # Few, quick retries: the poll loop has its own backoff, and shutdown should not wait
    # for the SDK's default retries (tens of seconds) when the emulator is down.
    return QueueServiceClient.from_connection_string(
        value, retry_policy=LinearRetry(backoff=1, random_jitter_range=0, retry_total=2)
    )


def decode_body(text: str, encoding: str) -> bytes:
    """The message body as the function sees it; raises ValueError if base64 is invalid."""
    if encoding == "none":
        return text.encode("utf-8")
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise ValueError(str(exc)) from None


def to_queue_message(message: StoredMessage, body: bytes) -> TriggerMessage:
    """The ``func.QueueMessage`` the worker builds, with the host's trigger metadata."""
    return TriggerMessage(  # type: ignore[no-untyped-call]
        id=message.id,
        body=body,
        dequeue_count=message.dequeue_count,
        insertion_time=message.inserted_on,
        expiration_time=message.expires_on,
        time_next_visible=message.next_visible_on,
        pop_receipt=message.pop_receipt,
    )


class QueueListener:
    """Drives one queue-triggered function until `stopping` is set."""

    def __init__(
        self,
        function: QueueFunction,
        service: QueueServiceClient,
        options: QueueOptions,
        invoker: Invoker,
        stopping: asyncio.Event,
        message_lease: float = MESSAGE_LEASE_SECONDS,
    ) -> None:
        self.function = function
        self.options = options
        self.invoker = invoker
        self.stopping = stopping
        self.message_lease = message_lease
        self.queue: QueueClient = service.get_queue_client(function.queue_name)
        self.poison: QueueClient = service.get_queue_client(function.queue_name + POISON_SUFFIX)
        self._in_flight: set[asyncio.Task[None]] = set()
        self._poison_created = False
        self._reported_missing = False
        self._failing = False  # a poll failed; log once per streak, not once per poll

    async def run(self) -> None:
        """Poll until stopping, then let the messages already received finish."""
        delay = MIN_POLLING_INTERVAL
        while not self.stopping.is_set():
            if len(self._in_flight) > self.options.new_batch_threshold:
                await self._wait(self._in_flight)
                continue
            messages = await self._receive()
            if messages:
                delay = MIN_POLLING_INTERVAL
                for message in messages:
                    task = asyncio.create_task(self._process(message))
                    self._in_flight.add(task)
                    task.add_done_callback(self._in_flight.discard)
                continue
            await self._wait(set(), timeout=delay * random.uniform(0.8, 1.2))  # noqa: S311
            delay = min(delay * 2, self.options.max_polling_interval)
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)

    async def run_now(self, text: str) -> None:
        """Run the function once on `text`, as the admin API asks: no Storage message.

        As in the host, `text` is the message body as it is (messageEncoding does not
        apply), and a failure is only logged: there is no message to retry or poison.
        """
        function = self.function
        message = TriggerMessage(  # type: ignore[no-untyped-call]
            id=str(uuid.uuid4()), body=text.encode("utf-8"), dequeue_count=1
        )
        with contextlib.suppress(Exception):  # the invoker logged it
            await self.invoker(
                function.name,
                function.handler,
                {function.binding_name: message},
                PROGRAMMATIC_REASON,
            )

    async def _wait(self, tasks: set[asyncio.Task[None]], timeout: float | None = None) -> None:
        """Until one of `tasks` ends, `timeout` passes, or the host is stopping."""
        stop = asyncio.create_task(self.stopping.wait())
        try:
            await asyncio.wait({stop, *tasks}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()

    async def _receive(self) -> list[StoredMessage]:
        try:
            messages = await asyncio.to_thread(self._receive_batch)
        except ResourceNotFoundError:
            # Like the host: a missing queue is an empty one; it is not created here.
            if not self._reported_missing:
                logger.info("queue %s does not exist yet; polling", self.function.queue_name)
                self._reported_missing = True
        except Exception as exc:  # a down emulator must not end the listener
            if not self._failing:
                logger.warning("polling %s failed: %s", self.function.queue_name, exc)
                self._failing = True
        else:
            if self._failing:
                logger.info("polling %s works again", self.function.queue_name)
                self._failing = False
            return messages
        return []

    def _receive_batch(self) -> list[StoredMessage]:
        size = self.options.batch_size
        pages = self.queue.receive_messages(
            messages_per_page=size, max_messages=size, visibility_timeout=self._lease_seconds
        )
        return list(pages)

    async def _process(self, message: StoredMessage) -> None:
        try:
            await self._handle(message)
        except Exception:  # storage errors after the call; the lease expiry retries it
            logger.exception("queue message %s of %s", message.id, self.function.queue_name)

    async def _handle(self, message: StoredMessage) -> None:
        max_dequeue = self.options.max_dequeue_count
        dequeue_count = message.dequeue_count or 0
        if dequeue_count > max_dequeue:
            # Received more often than allowed without a verdict (e.g. a host was killed).
            await self._to_poison(message, f"its dequeue count exceeds {max_dequeue}")
            return
        try:
            body = decode_body(message.content, self.options.message_encoding)
        except ValueError:
            await self._to_poison(message, "it is not valid base64 (check messageEncoding)")
            return
        function = self.function
        argument = {function.binding_name: to_queue_message(message, body)}
        finished = asyncio.Event()
        renewal = asyncio.create_task(self._keep_leased(message, finished))
        try:
            await self.invoker(function.name, function.handler, argument)
            succeeded = True
        except Exception:
            succeeded = False
        finally:
            finished.set()
            await renewal  # its last renewal gave the pop receipt that follows
        if succeeded:
            await asyncio.to_thread(self.queue.delete_message, message)
        elif dequeue_count >= max_dequeue:
            await self._to_poison(message, f"it has reached maxDequeueCount {max_dequeue}")
        else:
            await asyncio.to_thread(
                self.queue.update_message,
                message,
                pop_receipt=message.pop_receipt,
                visibility_timeout=int(self.options.visibility_timeout),
            )

    @property
    def _lease_seconds(self) -> int:
        return max(1, round(self.message_lease))

    async def _keep_leased(self, message: StoredMessage, finished: asyncio.Event) -> None:
        """Renew the message's lease every half lease until `finished` is set.

        Each renewal gives a new pop receipt, kept on `message` for the delete or update
        that follows the function. A renewal that fails (Storage down, or the lease lost)
        is logged; the next one is tried at the next half lease.
        """
        interval = self._lease_seconds / 2
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(finished.wait(), interval)
            if finished.is_set():
                return
            try:
                renewed = await asyncio.to_thread(
                    self.queue.update_message,
                    message,
                    pop_receipt=message.pop_receipt,
                    visibility_timeout=self._lease_seconds,
                )
            except Exception as exc:
                logger.warning("renewing the lease of message %s failed: %s", message.id, exc)
                continue
            message.pop_receipt = renewed.pop_receipt
            message.next_visible_on = renewed.next_visible_on

    async def _to_poison(self, message: StoredMessage, reason: str) -> None:
        logger.warning(
            "Moving message %s to queue '%s': %s.",
            message.id,
            self.function.queue_name + POISON_SUFFIX,
            reason,
        )
        await asyncio.to_thread(self._copy_to_poison, message)

    def _copy_to_poison(self, message: StoredMessage) -> None:
        if not self._poison_created:
            with contextlib.suppress(ResourceExistsError):
                self.poison.create_queue()
            self._poison_created = True
        # The stored text as it is, so the poison message keeps the original encoding.
        self.poison.send_message(message.content)
        self.queue.delete_message(message)
