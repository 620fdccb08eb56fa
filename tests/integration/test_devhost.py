"""The development host (``python -m devhost``), run as a process against Azurite.

Each host serves tests/integration/devhost_sample_app.py with its own host.json and
local.settings.json, on a free port, with queue names of its own in the shared Azurite.
Its rules without a process (queue options, timespans, route order) are tested in
tests/unit/test_devhost_rules.py.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueClient

from localpeers.azurite import PROJECT_ROOT, Azurite
from tests.waiting import wait_for

APP = "tests.integration.devhost_sample_app:app"
_LISTENING = re.compile(r"Development host listening on (http://\S+)")

RAW_HOST_JSON = {
    "version": "2.0",
    "extensions": {
        "queues": {
            "batchSize": 2,
            "newBatchThreshold": 1,
            "maxPollingInterval": "00:00:00.200",
            "visibilityTimeout": "00:00:01",
            "maxDequeueCount": 3,
            "messageEncoding": "none",
        }
    },
}
# messageEncoding left out: base64, the host's default. A route prefix of its own.
BASE64_HOST_JSON = {
    "version": "2.0",
    "extensions": {
        "http": {"routePrefix": "v1"},
        "queues": {"maxPollingInterval": "00:00:00.200", "maxDequeueCount": 2},
    },
}


class DevHost:
    """``python -m devhost`` in its own process group, with stdout collected."""

    def __init__(
        self,
        workdir: Path,
        azurite: Azurite,
        host_json: dict[str, Any],
        args: tuple[str, ...] = (),
    ) -> None:
        self.workdir = workdir
        self.args = args
        self.connection_string = azurite.connection_string
        self.work_queue = f"work-{uuid.uuid4().hex[:12]}"
        self.records_path = workdir / "records.jsonl"
        (workdir / "host.json").write_text(json.dumps(host_json))
        settings = {
            "AzureWebJobsStorage": self.connection_string,
            "SAMPLE_WORK_QUEUE": self.work_queue,
            "DEVHOST_SAMPLE_RECORDS": str(self.records_path),
            "SAMPLE_FROM_FILE": "file",
            "SAMPLE_OVERRIDDEN": "file",
        }
        (workdir / "local.settings.json").write_text(json.dumps({"Values": settings}))
        self.lines: list[str] = []
        self.base_url = ""
        self.startup_seconds = 0.0
        self._listening = threading.Event()
        self.process: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 30.0) -> DevHost:
        env = {k: v for k, v in os.environ.items() if k != "AzureWebJobsStorage"}
        env["SAMPLE_OVERRIDDEN"] = "environment"  # must win over local.settings.json
        started = time.monotonic()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "devhost",
                *("--app", APP),
                *("--settings", str(self.workdir / "local.settings.json")),
                *("--host-json", str(self.workdir / "host.json")),
                *("--port", "0"),
                *self.args,
            ],
            cwd=PROJECT_ROOT,
            env=env,
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
        self.startup_seconds = time.monotonic() - started
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

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Signal the host, wait for it, and return its exit status."""
        assert self.process is not None
        if self.process.poll() is None:
            os.kill(self.process.pid, sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path}"

    def queue(self, name: str | None = None) -> QueueClient:
        return QueueClient.from_connection_string(self.connection_string, name or self.work_queue)

    def records(self) -> list[dict[str, Any]]:
        if not self.records_path.exists():
            return []
        text = self.records_path.read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines() if line]


def peek(queue: QueueClient) -> list[str]:
    """Texts of the visible messages; none while the queue does not exist yet."""
    try:
        return [message.content for message in queue.peek_messages(max_messages=32)]
    except ResourceNotFoundError:
        return []


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def raw_host(azurite: Azurite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevHost]:
    host = DevHost(tmp_path_factory.mktemp("devhost-raw"), azurite, RAW_HOST_JSON)
    host.queue().create_queue()
    host.start()
    yield host
    assert host.stop() == 0, host.output


@pytest.fixture(scope="module")
def base64_host(azurite: Azurite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevHost]:
    host = DevHost(tmp_path_factory.mktemp("devhost-b64"), azurite, BASE64_HOST_JSON)
    host.queue().create_queue()
    host.start()
    yield host
    assert host.stop() == 0, host.output


# ------------------------------------------------------------------------------ startup


def test_startup_lists_every_function_like_core_tools(raw_host: DevHost) -> None:
    out = raw_host.output
    base = raw_host.base_url
    assert f"echo: [GET,POST] {base}/api/echo/{{name}}" in out
    assert f"plain: [*] {base}/api/plain" in out
    assert f"work: queue {raw_host.work_queue}" in out
    assert "Function keys are not enforced" in out
    assert raw_host.startup_seconds < 10


def test_local_settings_fill_the_environment_without_overriding_it(raw_host: DevHost) -> None:
    assert requests.get(raw_host.url("api/setting/SAMPLE_FROM_FILE"), timeout=5).text == "file"
    overridden = requests.get(raw_host.url("api/setting/SAMPLE_OVERRIDDEN"), timeout=5)
    assert overridden.text == "environment"


# ------------------------------------------------------------------------------ HTTP


def test_request_reaches_the_function_with_route_params_query_headers(raw_host: DevHost) -> None:
    url = raw_host.url("api/echo/alice?a=1&b=x%20y")
    response = requests.get(url, headers={"X-Test": "hello"}, timeout=5)
    assert response.status_code == 200  # a FUNCTION-level route, no key: not enforced
    assert response.headers["Content-Type"] == "application/json"
    seen = response.json()
    assert seen["method"] == "GET"
    assert seen["url"] == url
    assert seen["route_params"] == {"name": "alice"}
    assert seen["params"] == {"a": "1", "b": "x y"}
    assert seen["headers"]["x-test"] == "hello"
    assert seen["body"] == ""


def test_request_body_arrives_byte_for_byte(raw_host: DevHost) -> None:
    body = b"\x00\xff binary \xe2\x9c\x93"
    response = requests.post(
        raw_host.url("api/echo/bob"),
        data=body,
        headers={"Content-Type": "application/octet-stream"},
        timeout=5,
    )
    seen = response.json()
    assert seen["method"] == "POST"
    assert base64.b64decode(seen["body"]) == body
    assert seen["headers"]["content-type"] == "application/octet-stream"


def test_response_status_headers_content_type_and_charset(raw_host: DevHost) -> None:
    response = requests.get(raw_host.url("api/custom"), timeout=5)
    assert response.status_code == 418
    assert response.headers["X-Custom"] == "yes"
    assert response.headers["X-Multi"] == "a, b"  # two header lines, joined by requests
    assert response.headers["Content-Type"] == "text/csv; charset=iso-8859-1"
    assert response.content == "café;1".encode("iso-8859-1")


def test_a_returned_str_is_a_text_response_and_no_methods_means_any(raw_host: DevHost) -> None:
    response = requests.delete(raw_host.url("api/plain"), timeout=5)
    assert response.status_code == 200
    assert response.text == "plain DELETE"
    assert response.headers["Content-Type"].startswith("text/plain")


def test_async_functions_are_awaited(raw_host: DevHost) -> None:
    assert requests.get(raw_host.url("api/async"), timeout=5).text == "async ok"


def test_host_pages_answer_readiness_probes(raw_host: DevHost) -> None:
    assert requests.get(raw_host.url(""), timeout=5).status_code == 200
    status = requests.get(raw_host.url("admin/host/status"), timeout=5)
    assert status.json() == {"state": "Running"}


def test_route_constraints_optional_parameters_and_case(raw_host: DevHost) -> None:
    assert requests.get(raw_host.url("api/items/12"), timeout=5).json() == {"id": "12"}
    with_label = requests.get(raw_host.url("api/items/12/blue"), timeout=5).json()
    assert with_label == {"id": "12", "label": "blue"}
    assert requests.get(raw_host.url("API/Items/7/"), timeout=5).json() == {"id": "7"}
    assert requests.get(raw_host.url("api/items/abc"), timeout=5).status_code == 404


def test_unknown_route_is_404(raw_host: DevHost) -> None:
    assert requests.get(raw_host.url("api/nothing-here"), timeout=5).status_code == 404
    assert requests.get(raw_host.url("echo/alice"), timeout=5).status_code == 404  # no prefix
    assert requests.get(raw_host.url("api/echo/a/b"), timeout=5).status_code == 404


def test_known_route_with_a_wrong_method_is_405_with_allow(raw_host: DevHost) -> None:
    response = requests.put(raw_host.url("api/echo/alice"), timeout=5)
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, POST"


def test_a_raising_function_is_an_empty_500(raw_host: DevHost) -> None:
    response = requests.get(raw_host.url("api/boom"), timeout=5)
    assert response.status_code == 500
    assert response.content == b""


def test_slow_functions_do_not_block_each_other(raw_host: DevHost) -> None:
    started = time.monotonic()
    with ThreadPoolExecutor(3) as pool:
        calls = [
            pool.submit(requests.get, raw_host.url("api/slow?seconds=1"), timeout=10)
            for _ in range(3)
        ]
        assert [call.result().text for call in calls] == ["done"] * 3
    assert time.monotonic() - started < 2.5


def test_route_prefix_comes_from_host_json(base64_host: DevHost) -> None:
    assert requests.get(base64_host.url("v1/echo/x"), timeout=5).status_code == 200
    assert requests.get(base64_host.url("api/echo/x"), timeout=5).status_code == 404


# ------------------------------------------------------------------------------ queues


def records_of(host: DevHost, message_id: str) -> list[dict[str, Any]]:
    return [record for record in host.records() if record["id"] == message_id]


def test_failing_message_is_retried_after_visibility_timeout_then_poisoned(
    raw_host: DevHost,
) -> None:
    poison = raw_host.queue(raw_host.work_queue + "-poison")
    sent = raw_host.queue().send_message("please fail")

    moved = wait_for(lambda: peek(poison), what="the poison queue")

    attempts = records_of(raw_host, sent.id)
    assert [a["dequeue_count"] for a in attempts] == [1, 2, 3]  # maxDequeueCount 3
    gaps = [later["started"] - earlier["ended"] for earlier, later in pairwise(attempts)]
    assert all(gap >= 0.9 for gap in gaps), gaps  # visibilityTimeout 00:00:01
    assert moved == ["please fail"]
    assert raw_host.queue().get_queue_properties().approximate_message_count == 0


def test_raw_encoding_passes_the_message_text_unchanged(raw_host: DevHost) -> None:
    text = '{"kind": "sms", "body": "héllo ✓"}'
    already_base64 = base64.b64encode(text.encode()).decode()  # a producer that encodes
    sent = [raw_host.queue().send_message(body) for body in (text, already_base64)]

    def both_processed() -> list[dict[str, Any]]:
        found = [records_of(raw_host, message.id) for message in sent]
        return [r[0] for r in found] if all(found) else []

    first, second = wait_for(both_processed, what="both messages")
    assert base64.b64decode(first["body"]) == text.encode("utf-8")
    assert base64.b64decode(second["body"]) == already_base64.encode("ascii")
    assert first["dequeue_count"] == 1
    assert first["insertion_time"] and first["expiration_time"] and first["pop_receipt"]
    wait_for(
        lambda: raw_host.queue().get_queue_properties().approximate_message_count == 0,
        what="the messages to be deleted",
    )


def test_batch_size_and_new_batch_threshold_bound_concurrency(raw_host: DevHost) -> None:
    # batchSize 2, newBatchThreshold 1: at most 3 at once. The short ones free a slot early.
    sleeps = ["1.0", "0.2", "1.0", "1.0", "0.2", "0.2"]
    ids = {raw_host.queue().send_message(f"sleep {s}").id for s in sleeps}

    def done() -> list[dict[str, Any]]:
        found = [r for r in raw_host.records() if r["id"] in ids]
        return found if len(found) == len(ids) else []

    runs = wait_for(done, what="the sleeping messages")
    events = sorted([(r["started"], 1) for r in runs] + [(r["ended"], -1) for r in runs])
    running, most = 0, 0
    for _, change in events:
        running += change
        most = max(most, running)
    assert most == 3


def test_base64_encoding_decodes_and_poisons_what_does_not_decode(base64_host: DevHost) -> None:
    payload = b"\x00\xfe binary \xe2\x9c\x93"
    queue = base64_host.queue()
    good = queue.send_message(base64.b64encode(payload).decode("ascii"))
    bad = queue.send_message("not base64 at all!")
    poison = base64_host.queue(base64_host.work_queue + "-poison")

    record = wait_for(lambda: records_of(base64_host, good.id), what="the base64 message")[0]
    assert base64.b64decode(record["body"]) == payload
    moved = wait_for(lambda: peek(poison), what="the undecodable message")
    assert moved == ["not base64 at all!"]
    assert records_of(base64_host, bad.id) == []  # the function never saw it


def test_a_running_function_keeps_its_message_leased(azurite: Azurite, tmp_path: Path) -> None:
    # A 2 s lease, renewed every second, under a function that runs for 3.5 s.
    host = DevHost(tmp_path, azurite, RAW_HOST_JSON, args=("--message-lease", "2"))
    host.queue().create_queue()
    host.start()
    try:
        sent = host.queue().send_message("sleep 3.5")
        wait_for(lambda: "Executing 'Functions.work'" in host.output, what="the function")

        def finished() -> bool:
            assert peek(host.queue()) == [], "the message came back while its function ran"
            return bool(records_of(host, sent.id))

        wait_for(finished, what="the function to finish")
        wait_for(
            lambda: host.queue().get_queue_properties().approximate_message_count == 0,
            what="the message to be deleted with the renewed pop receipt",
        )
    finally:
        assert host.stop() == 0, host.output
    assert len(records_of(host, sent.id)) == 1
    assert "renewing the lease" not in host.output


def test_a_killed_hosts_message_comes_back_after_its_lease(
    azurite: Azurite, tmp_path: Path
) -> None:
    host = DevHost(tmp_path, azurite, RAW_HOST_JSON, args=("--message-lease", "2"))
    host.queue().create_queue()
    host.start()
    assert host.process is not None
    sent = host.queue().send_message("sleep 30")
    wait_for(lambda: "Executing 'Functions.work'" in host.output, what="the function")
    killed_at = time.monotonic()

    host.stop(signal.SIGKILL)

    back = wait_for(lambda: host.queue().peek_messages(max_messages=1), what="the message")
    assert back[0].id == sent.id and back[0].dequeue_count == 1
    assert time.monotonic() - killed_at < 10


# ------------------------------------------------------------------------------ shutdown


def test_sigterm_finishes_in_flight_work_and_leaves_no_process(
    azurite: Azurite, tmp_path: Path
) -> None:
    host = DevHost(tmp_path, azurite, RAW_HOST_JSON)
    host.queue().create_queue()
    host.start()
    assert host.process is not None
    pgid = host.process.pid
    sent = host.queue().send_message("sleep 1.0")
    wait_for(lambda: "Executing 'Functions.work'" in host.output, what="the queue function")
    with ThreadPoolExecutor(1) as pool:
        request = pool.submit(requests.get, host.url("api/slow?seconds=1"), timeout=10)
        wait_for(lambda: "Executing 'Functions.slow'" in host.output, what="the HTTP function")

        assert host.stop(signal.SIGTERM) == 0, host.output
        assert request.result().text == "done"

    assert records_of(host, sent.id), "the queue function finished"
    assert host.queue().get_queue_properties().approximate_message_count == 0
    assert not group_alive(pgid)
