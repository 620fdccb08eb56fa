"""Calling user functions: sync ones on a thread pool, async ones on the event loop."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from devhost.metadata import Handler

logger = logging.getLogger("devhost")

# The host's reason for an invocation through its admin API.
PROGRAMMATIC_REASON = "This function was programmatically called via the host APIs."


def _pool_size() -> int | None:
    # The Python worker reads the same setting; unset, ThreadPoolExecutor's default
    # (min(32, CPUs + 4)) applies, as it does in the worker.
    value = os.environ.get("PYTHON_THREADPOOL_THREAD_COUNT")
    return int(value) if value else None


class Invoker:
    """Runs function handlers without blocking the event loop that serves HTTP and queues."""

    def __init__(self, max_workers: int | None = None) -> None:
        self._pool = ThreadPoolExecutor(
            max_workers=max_workers or _pool_size(), thread_name_prefix="function"
        )

    async def __call__(
        self,
        name: str,
        handler: Handler,
        arguments: dict[str, Any],
        reason: str | None = None,
    ) -> Any:
        """Call `handler(**arguments)` and log the outcome like the host's "Executed" line.

        `reason`: why it runs, when the host's own log line says so (timers, the admin API).
        """
        invocation_id = str(uuid.uuid4())
        started = time.perf_counter()
        if reason:
            logger.info(
                "Executing 'Functions.%s' (Reason='%s', Id=%s)", name, reason, invocation_id
            )
        else:
            logger.info("Executing 'Functions.%s' (Id=%s)", name, invocation_id)
        try:
            if inspect.iscoroutinefunction(handler):
                result = await handler(**arguments)
            else:
                loop = asyncio.get_running_loop()
                call = functools.partial(handler, **arguments)
                result = await loop.run_in_executor(self._pool, call)
        except Exception:
            logger.exception(
                "Executed 'Functions.%s' (Failed, Id=%s, Duration=%dms)",
                name,
                invocation_id,
                (time.perf_counter() - started) * 1000,
            )
            raise
        logger.info(
            "Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%dms)",
            name,
            invocation_id,
            (time.perf_counter() - started) * 1000,
        )
        return result

    def shutdown(self) -> None:
        """Wait for running handlers, then release the threads."""
        self._pool.shutdown(wait=True)
