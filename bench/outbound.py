"""Throughput of the outbound queue handler against Azurite, Twilio answering in 50 ms.

Run: .venv/bin/python bench/outbound.py   (or `make bench`)

500 SMS commands run through the `outbound` function at the host's concurrency for one
instance (batchSize 16): in one Python worker process with 16 threads, then in two worker
processes with 8 threads each (FUNCTIONS_WORKER_PROCESS_COUNT=2). Twilio is a local stub
that answers every create after a fixed 50 ms, so the bound is 16 / 0.05 s = 320 messages
per second; the figure reported is throughput divided by that bound. Delivery records go
to a real Table (Azurite). Also: Table round trips per send, and the p99 time a message
spends in the handler.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WORKERS = 16
MESSAGES = 500
TWILIO_LATENCY = 0.05


class SlowTwilio:
    """Answers Messages.json creates after a fixed latency, each with its own SID.

    It runs in its own process so that it takes no time from the measured interpreter.
    """

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.url = ""
        self._process: subprocess.Popen[str] | None = None

    def start(self) -> SlowTwilio:
        self._process = subprocess.Popen(
            [sys.executable, __file__, "--serve-twilio", str(self.latency)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        self.url = self._process.stdout.readline().strip()
        return self

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def stop(self) -> None:
        if self._process:
            self._process.terminate()
            self._process.wait(10)


def serve_twilio(latency: float) -> None:
    from aiohttp import web

    sids = itertools.count(1)

    async def create(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(latency)
        return web.json_response({"sid": f"SM{next(sids):032x}", "status": "queued"}, status=201)

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{account}/Messages.json", create)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        print(f"http://127.0.0.1:{port}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


class CountingStore:
    """Wraps the real Table store to count its round trips."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = 0
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.calls += 1
            return method(*args, **kwargs)

        return counted


def _cpu_seconds(pid: int | None) -> float:
    """User and system CPU time of a live process (Linux /proc)."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def worker(connection_string: str, twilio_url: str, table: str, count: int, threads: int) -> None:
    """One worker process: warm up, wait for the start line, run `count` messages, report."""
    from azure.functions.queue import QueueMessage

    from telephony.container import build_container, set_container
    from tests.app_client import function

    env = {
        "AzureWebJobsStorage": connection_string,
        "TWILIO_ACCOUNT_SID": "AC" + "a" * 32,
        "TWILIO_AUTH_TOKEN": "bench-token",
        "TWILIO_PHONE_NUMBER": "+15017122661",
        "TWILIO_API_BASE_URL": twilio_url,
        "PUBLIC_BASE_URL": "https://bench.example",
        "DELIVERIES_TABLE_NAME": table,
    }
    # The real Table stores, counted: the opt-out read before each claim, and the records.
    tables = build_container(env)
    store = CountingStore(tables.deliveries)
    optouts = CountingStore(tables.optouts)
    set_container(build_container(env, deliveries=store, optouts=optouts))
    handler = function("outbound")
    prefix = uuid.uuid4().hex[:8]
    body = {"kind": "sms", "to": "+15558675310", "body": "Your order shipped"}
    messages = [
        QueueMessage(  # type: ignore[no-untyped-call]
            id=f"m-{i}",
            body=json.dumps({**body, "idempotency_key": f"{prefix}-{i}"}).encode(),
            dequeue_count=1,
        )
        for i in range(count + threads)
    ]
    # Warm up (table created, pools filled, code loaded); not measured.
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(handler, messages[:threads]))
    store.calls = optouts.calls = 0
    durations: list[float] = []

    def timed(message: Any) -> None:
        began = time.perf_counter()
        handler(message)
        durations.append(time.perf_counter() - began)

    print("ready", flush=True)
    sys.stdin.readline()
    cpu = time.process_time()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(timed, messages[threads:]))
    cpu = time.process_time() - cpu
    round_trips = store.calls + optouts.calls
    report = {"durations": durations, "round_trips": round_trips, "cpu": cpu}
    print(json.dumps(report), flush=True)


def run(processes: int) -> dict[str, float]:
    """MESSAGES commands over `processes` workers of WORKERS / processes threads each."""
    from localpeers.azurite import Azurite

    twilio = SlowTwilio(TWILIO_LATENCY).start()
    threads = WORKERS // processes
    with Azurite() as azurite:
        table = f"bench{uuid.uuid4().hex[:8]}"
        args = [
            azurite.connection_string,
            twilio.url,
            table,
            str(MESSAGES // processes),
            str(threads),
        ]
        workers = [
            subprocess.Popen(
                [sys.executable, __file__, "--worker", *args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(processes)
        ]
        for process in workers:
            assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        peers_cpu = _cpu_seconds(azurite.pid) + _cpu_seconds(twilio.pid)
        began = time.perf_counter()
        for process in workers:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        reports = [json.loads(process.communicate()[0]) for process in workers]
        elapsed = time.perf_counter() - began
        peers_cpu = _cpu_seconds(azurite.pid) + _cpu_seconds(twilio.pid) - peers_cpu
    twilio.stop()
    durations = [d for report in reports for d in report["durations"]]
    rate = len(durations) / elapsed
    bound = WORKERS / TWILIO_LATENCY
    return {
        "worker_processes": processes,
        "threads_per_process": threads,
        "messages": len(durations),
        "seconds": elapsed,
        "messages_per_second": rate,
        "bound_per_second": bound,
        "ratio_to_bound": rate / bound,
        "table_round_trips_per_send": sum(r["round_trips"] for r in reports) / len(durations),
        "handler_p50_ms": statistics.median(durations) * 1000,
        "handler_p99_ms": statistics.quantiles(durations, n=100)[98] * 1000,
        # Where the machine's CPU went while the messages ran: the app's workers, and the
        # local stand-ins (Azurite and the Twilio stub) that share the same cores.
        "app_cpu_ms_per_message": sum(r["cpu"] for r in reports) / len(durations) * 1000,
        "peers_cpu_ms_per_message": peers_cpu / len(durations) * 1000,
        "cores": os.cpu_count(),
    }


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve-twilio"]:
        serve_twilio(float(sys.argv[2]))
    elif sys.argv[1:2] == ["--worker"]:
        connection, url, table, count, threads = sys.argv[2:7]
        worker(connection, url, table, int(count), int(threads))
    else:
        # One Python worker process (the default), and two (FUNCTIONS_WORKER_PROCESS_COUNT=2).
        print(json.dumps([run(1), run(2)], indent=2))
