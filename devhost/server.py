"""Run HTTP, queue and timer triggers on one event loop; stop them cleanly on SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Callable, Generator, Mapping, Sequence

import uvicorn

from devhost.admin import AdminApi, Runner
from devhost.config import HostConfig
from devhost.http import HttpApp
from devhost.invoke import Invoker
from devhost.metadata import HttpFunction, QueueFunction, TimerFunction, UnsupportedFunction
from devhost.queues import MESSAGE_LEASE_SECONDS, QueueListener, service_client
from devhost.timers import TimerListener

logger = logging.getLogger("devhost")

# Seconds that in-flight HTTP requests get to finish after a stop signal.
GRACEFUL_HTTP_SECONDS = 30


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: this host stops queues and HTTP together."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None]:
        # uvicorn would re-raise the signal after shutdown, so the process would die of
        # SIGTERM instead of exiting 0 once everything has finished.
        yield


def listen(host: str, port: int) -> socket.socket:
    """A listening socket; bound here so a taken port is a clear error, and port 0 works.

    Raises OSError (e.g. the address is in use).
    """
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    return socket.create_server((host, port), family=family)


def _admin_api(
    http_functions: Sequence[HttpFunction],
    queues: Sequence[QueueListener],
    timers: Sequence[TimerListener],
    unsupported: Sequence[UnsupportedFunction],
) -> AdminApi:
    runners: dict[str, Runner] = {q.function.name: q.run_now for q in queues}
    # A timer's input is not used: it runs as if its timer fired.
    runners.update({t.function.name: _ignoring_input(t) for t in timers})
    refusals = {f.name: f"{f.name} is HTTP-triggered: call its route" for f in http_functions}
    refusals.update(
        {f.name: f"{f.name} is not run by the development host ({f.reason})" for f in unsupported}
    )
    return AdminApi(runners, refusals)


def _ignoring_input(timer: TimerListener) -> Runner:
    async def run(_input: str) -> None:
        await timer.run_now()

    return run


async def serve(
    config: HostConfig,
    http_functions: Sequence[HttpFunction],
    queue_functions: Sequence[QueueFunction],
    *,
    sock: socket.socket,
    environ: Mapping[str, str],
    on_started: Callable[[], None],
    message_lease: float = MESSAGE_LEASE_SECONDS,
    timer_functions: Sequence[TimerFunction] = (),
    unsupported: Sequence[UnsupportedFunction] = (),
) -> None:
    """Serve until SIGINT or SIGTERM; then stop polling, finish in-flight work and return.

    `message_lease`: seconds a received queue message stays invisible to other consumers,
    renewed while its function runs. `unsupported`: functions not run here, for the admin
    API's answer about them.

    A second signal exits at once, like Core Tools, even if functions are still running.
    """
    invoker = Invoker()
    stopping = asyncio.Event()
    # Clients are built before serving, so a missing connection setting fails at startup.
    listeners = [
        QueueListener(
            q,
            service_client(q.connection, environ),
            config.queues,
            invoker,
            stopping,
            message_lease=message_lease,
        )
        for q in queue_functions
    ]
    timers = [TimerListener(t, invoker, stopping) for t in timer_functions]
    admin = _admin_api(http_functions, listeners, timers, unsupported)
    server = _Server(
        uvicorn.Config(
            HttpApp(http_functions, config.route_prefix, invoker, admin),
            lifespan="off",
            access_log=False,
            log_config=None,
            timeout_graceful_shutdown=GRACEFUL_HTTP_SECONDS,
        )
    )
    loop = asyncio.get_running_loop()

    def stop() -> None:
        if stopping.is_set():
            logger.warning("second stop signal: exiting without waiting for functions")
            os._exit(1)
        logger.info("stopping: no new work is taken; waiting for running functions")
        stopping.set()
        server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    http_task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if http_task.done():
                await http_task  # surfaces a startup failure
                if stopping.is_set():
                    return  # stopped before it started
                raise RuntimeError("the HTTP server stopped during startup")
            await asyncio.sleep(0.01)
        on_started()
        await asyncio.gather(
            http_task,
            *(listener.run() for listener in listeners),
            *(timer.run() for timer in timers),
        )
        await admin.drain()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        # Handlers still running (an HTTP client that hung up) finish before the exit.
        await asyncio.to_thread(invoker.shutdown)
