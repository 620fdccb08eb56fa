"""Timer triggers and the admin API of the development host (``python -m devhost``), run as
a process.

The host serves tests/integration/devhost_timer_app.py, whose functions record each
invocation in a file; schedules come from settings. Parsing schedules without a process is
tested in tests/unit/test_devhost_timer_schedule.py.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator, Mapping
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.storage.queue import QueueClient
from starlette.requests import Request

from devhost.admin import AdminApi
from localpeers.azurite import PROJECT_ROOT, Azurite
from tests.waiting import wait_for

TIMER_APP = "tests.integration.devhost_timer_app:app"
SAMPLE_APP = "tests.integration.devhost_sample_app:app"
_LISTENING = re.compile(r"Development host listening on (http://\S+)")
ADMIN_BODY = {"input": ""}


class Host:
    """``python -m devhost`` serving `app` with `settings` as local.settings.json Values."""

    def __init__(
        self,
        workdir: Path,
        settings: Mapping[str, str],
        app: str = TIMER_APP,
        environment: Mapping[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.app = app
        self.records_path = workdir / "records.jsonl"
        (workdir / "host.json").write_text(json.dumps({"version": "2.0"}))
        values = {"DEVHOST_TIMER_RECORDS": str(self.records_path), **settings}
        (workdir / "local.settings.json").write_text(json.dumps({"Values": values}))
        self.environment = dict(environment or {})
        self.lines: list[str] = []
        self.base_url = ""
        self._listening = threading.Event()
        self.process: subprocess.Popen[str] | None = None

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "devhost",
            *("--app", self.app),
            *("--settings", str(self.workdir / "local.settings.json")),
            *("--host-json", str(self.workdir / "host.json")),
            *("--port", "0"),
        ]

    def env(self) -> dict[str, str]:
        return {**os.environ, **self.environment}

    def start(self, timeout: float = 30.0) -> Host:
        self.process = subprocess.Popen(
            self.command(),
            cwd=PROJECT_ROOT,
            env=self.env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._read_output, daemon=True).start()
        if not self._listening.wait(timeout):
            self.stop()
            raise AssertionError("devhost did not start:\n" + self.output)
        return self

    def _read_output(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            found = _LISTENING.search(line)
            if found:
                self.base_url = found[1]
                self._listening.set()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def stop(self, timeout: float = 20.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode

    def admin(self, name: str, body: object = ADMIN_BODY) -> requests.Response:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return requests.post(
            f"{self.base_url}/admin/functions/{name}",
            data=data,
            headers={"Content-Type": "application/json"},
            timeout=5,
        )

    def records(self, function: str) -> list[dict[str, Any]]:
        if not self.records_path.exists():
            return []
        lines = self.records_path.read_text(encoding="utf-8").splitlines()
        found = [json.loads(line) for line in lines if line]
        return sorted((r for r in found if r.get("function") == function), key=_started)


def _started(record: dict[str, Any]) -> float:
    return float(record["started"])


def at_least(host: Host, function: str, count: int) -> list[dict[str, Any]]:
    runs = host.records(function)
    return runs if len(runs) >= count else []


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    settings = {
        "TICK_SCHEDULE": "*/1 * * * * *",
        "FLAKY_SCHEDULE": "00:00:01",
        "MANUAL_SCHEDULE": "0 0 0 1 1 *",  # New Year only: runs on demand in the tests
        "SLOW_SECONDS": "1.2",
    }
    # From the environment, as the host resolves %NAME% from both.
    started = Host(
        tmp_path_factory.mktemp("devhost-timers"),
        settings,
        environment={"SLOW_SCHEDULE": "* * * * * *"},
    ).start()
    yield started
    assert started.stop() == 0, started.output


# ------------------------------------------------------------------------------ startup


def test_startup_lists_timer_functions_with_their_resolved_schedules(host: Host) -> None:
    out = host.output
    assert "tick: timer */1 * * * * * (next " in out
    assert "slow: timer * * * * * * (next " in out
    assert "flaky: timer every 00:00:01 (next " in out
    assert "nightly: timer 0 30 2 * * * (next " in out
    assert f"ping: [GET] {host.base_url}/api/ping" in out


def test_a_missing_schedule_setting_puts_that_function_in_error_and_the_rest_run(
    tmp_path: Path,
) -> None:
    settings = {"SLOW_SCHEDULE": "00:01:00", "FLAKY_SCHEDULE": "00:00:01"}
    stub = Host(tmp_path, {**settings, "MANUAL_SCHEDULE": "00:01:00"}).start()
    try:
        wait_for(lambda: stub.records("flaky"), 10, "the other timers to run")
        assert "function 'tick' is in error" in stub.output
        [in_error] = [line for line in stub.lines if "function 'tick' is in error" in line]
        assert "'TICK_SCHEDULE'" in in_error
        assert stub.admin("tick").status_code == 400  # not a function this host runs
    finally:
        stub.stop()


def test_a_five_field_cron_schedule_puts_that_function_in_error(tmp_path: Path) -> None:
    settings = {
        "TICK_SCHEDULE": "*/5 * * * *",
        "SLOW_SCHEDULE": "00:01:00",
        "FLAKY_SCHEDULE": "00:01:00",
        "MANUAL_SCHEDULE": "00:01:00",
    }
    stub = Host(tmp_path, settings).start()
    try:
        [in_error] = [line for line in stub.lines if "function 'tick' is in error" in line]
        assert "six fields" in in_error
    finally:
        stub.stop()


def test_a_timer_function_runs_on_its_schedule(host: Host) -> None:
    runs = wait_for(lambda: at_least(host, "tick", 3), what="three ticks")
    gaps = [later["started"] - earlier["started"] for earlier, later in pairwise(runs)]
    assert all(0.5 < gap < 2.5 for gap in gaps), gaps  # every second, loosely
    for run in runs:
        assert run["is_timer_request"] and run["past_due"] is False
        assert run["schedule"] == {"AdjustForDST": True}
        assert run["schedule_status"] == {}  # useMonitor false


def test_run_on_startup_runs_once_as_the_host_starts(host: Host) -> None:
    [run] = wait_for(lambda: host.records("nightly"), what="the start-up run")
    assert "Reason='RunOnStartup'" in host.output
    # useMonitor is left at the host's default (on), for a daily schedule: a status.
    status = run["schedule_status"]
    assert status["Last"] == "0001-01-01T00:00:00"
    assert "T02:30:00" in status["Next"]


def test_a_slow_function_never_overlaps_itself(host: Host) -> None:
    # Runs of 1.2 s on a 1 s schedule, and two more on demand while it runs.
    wait_for(lambda: at_least(host, "slow", 1), what="a first slow run")
    assert host.admin("slow").status_code == 202
    assert host.admin("slow").status_code == 202

    runs = wait_for(lambda: at_least(host, "slow", 4), what="four slow runs", timeout=20)
    for earlier, later in pairwise(runs):
        assert later["started"] >= earlier["ended"], (earlier, later)
    assert "ran past the next occurrence" in host.output


def test_a_failing_function_is_logged_and_its_schedule_goes_on(host: Host) -> None:
    wait_for(lambda: at_least(host, "flaky", 2), what="two runs of the failing function")
    assert "Executed 'Functions.flaky' (Failed" in host.output
    assert "RuntimeError: the timer function failed" in host.output


# ------------------------------------------------------------------------------ admin API


def test_the_admin_api_runs_a_timer_function_now(host: Host) -> None:
    assert host.records("manual") == []
    response = host.admin("manual")
    assert response.status_code == 202
    [run] = wait_for(lambda: host.records("manual"), what="the run on demand")
    assert run["is_timer_request"] and run["past_due"] is False
    assert host.admin("MANUAL", {}).status_code == 202  # names are case-insensitive
    wait_for(lambda: at_least(host, "manual", 2), what="the second run on demand")
    assert "programmatically called via the host APIs" in host.output


def test_the_admin_api_answers_404_for_an_unknown_function(host: Host) -> None:
    assert host.admin("no_such_function").status_code == 404


def test_the_admin_api_refuses_http_functions_and_bad_bodies(host: Host) -> None:
    refused = host.admin("ping")
    assert refused.status_code == 400
    assert "HTTP-triggered" in refused.text
    assert host.admin("manual", b"not json").status_code == 400
    assert host.admin("manual", ["a list"]).status_code == 400
    assert host.admin("manual", {"input": 5}).status_code == 400
    # Other methods are not this API: the host's 404 for paths no function claims.
    response = requests.get(f"{host.base_url}/admin/functions/manual", timeout=5)
    assert response.status_code == 404


def test_the_admin_api_runs_a_queue_function_on_the_input(azurite: Azurite, tmp_path: Path) -> None:
    queue = f"work-{uuid.uuid4().hex[:12]}"
    QueueClient.from_connection_string(azurite.connection_string, queue).create_queue()
    records = tmp_path / "queue-records.jsonl"
    settings = {
        "AzureWebJobsStorage": azurite.connection_string,
        "SAMPLE_WORK_QUEUE": queue,
        "DEVHOST_SAMPLE_RECORDS": str(records),
    }
    queue_host = Host(tmp_path, settings, app=SAMPLE_APP).start()
    try:
        assert queue_host.admin("work", {"input": "héllo"}).status_code == 202
        line = wait_for(lambda: records.exists() and records.read_text(), what="the run")
        record = json.loads(line.splitlines()[0])
        assert base64.b64decode(record["body"]) == "héllo".encode()
        assert record["dequeue_count"] == 1
    finally:
        assert queue_host.stop() == 0, queue_host.output


def _admin_request(client: tuple[str, int]) -> Request:
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/admin/functions/unknown",
        "headers": [],
        "query_string": b"",
        "client": client,
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    return Request(scope, receive)


@pytest.mark.parametrize(
    ("client", "status"),
    [
        (("127.0.0.1", 5000), 404),
        (("::1", 5000), 404),
        (("::ffff:127.0.0.1", 5000), 404),
        (("192.0.2.10", 5000), 403),
        (("2001:db8::1", 5000), 403),
    ],
)
def test_the_admin_api_answers_loopback_clients_only(client: tuple[str, int], status: int) -> None:
    # Without the master key the host would ask for, only local clients may run functions.
    response = asyncio.run(AdminApi({}, {}).handle(_admin_request(client)))
    assert response.status_code == status
