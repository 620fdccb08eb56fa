"""`make run` end to end: the stack starts through its own entry point, the demo's steps run
over real HTTP against it, and stopping it leaves no process behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from localpeers.azurite import ACCOUNT_KEY, ACCOUNT_NAME
from localpeers.processes import live_descendants, still_alive

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def stack() -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`python -m devhost.stack` (what `make run` runs) on free ports, and its app URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "devhost.stack", "--port", "0", "--twilio-port", "0",
         "--storage-ports", "0,0,0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        yield process, _app_url(process)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)


def _app_url(process: subprocess.Popen[str]) -> str:
    """The app's URL and, after `|`, a connection string of Azurite's queues."""
    assert process.stdout is not None
    output: list[str] = []
    app = None
    for line in process.stdout:  # ends when the stack exits
        output.append(line)
        found = re.match(r"Function app\s+(http://127\.0\.0\.1:\d+)/api/", line)
        app = found.group(1) if found else app
        queues = re.match(r"Azurite\s+(http://127\.0\.0\.1:\d+/\w+) \(queues\)", line)
        if app and queues:
            # Keep reading, so the stack's logs never fill the pipe and block it.
            threading.Thread(target=process.stdout.read, daemon=True).start()
            storage = (
                f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};"
                f"AccountKey={ACCOUNT_KEY};QueueEndpoint={queues.group(1)};"
            )
            return f"{app}|{storage}"
    raise AssertionError("the stack did not start:\n" + "".join(output))


def test_make_run_serves_the_demo_and_stops_cleanly(
    stack: tuple[subprocess.Popen[str], str],
) -> None:
    process, started = stack
    app_url, storage = started.split("|", 1)
    # WHEN the demo runs against the stack, as a person would beside `make run`
    demo = subprocess.run(
        [sys.executable, "-m", "devhost.demo"],
        cwd=ROOT,
        env={**os.environ, "DEMO_APP_URL": app_url, "DEMO_STORAGE": storage},
        capture_output=True,
        text=True,
        timeout=120,
    )
    # THEN every step shows its result
    assert demo.returncode == 0, demo.stdout + demo.stderr
    lines = demo.stdout.splitlines()
    assert "<Message>Hey, thanks for the ping! Twilio and Azure rock!</Message>" in lines[0]
    assert re.search(r"call CA[0-9a-f]{32} to \+1\*+10", lines[1])
    assert re.search(r"demo-\w+ is queued as SM[0-9a-f]{32}", lines[2])
    assert lines[3].endswith("is delivered")
    assert re.search(r"telephony.delivery.updated for demo-\w+: queued, delivered$", lines[4])
    assert re.search(r"\(WhatsApp\) -> demo-\w+ to whatsapp:\+1\*+10 is queued$", lines[5])
    assert "reminder of your appointment tomorrow at 10 AM at 12 Elm Street" in lines[6]
    # WHEN the stack gets Ctrl-C, THEN it exits and every process it started is gone
    started = live_descendants(process.pid)
    assert len(started) >= 4  # the stack, Azurite, Prism, the function host
    process.send_signal(signal.SIGINT)
    assert process.wait(60) == 0
    deadline = time.monotonic() + 10
    while still_alive(started) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert still_alive(started) == set()


def test_demo_says_clearly_when_the_app_is_not_running() -> None:
    demo = subprocess.run(
        [sys.executable, "-m", "devhost.demo"],
        cwd=ROOT,
        env={**os.environ, "DEMO_APP_URL": "http://127.0.0.1:9"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert demo.returncode == 1
    # Either the app does not answer, or `make run` never created its settings yet.
    assert "`make run`" in demo.stderr
    assert "Traceback" not in demo.stderr
