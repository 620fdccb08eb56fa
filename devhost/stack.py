"""``make run``: the whole app offline, on loopback, with its local peers.

Starts Azurite (queues, tables), the Twilio API mock (Prism with Twilio's OpenAPI
description, behind the SID-giving proxy), then the function app: `func start` where Azure
Functions Core Tools is installed, else the development host. Ctrl-C (SIGINT) or SIGTERM
stops every process it started, by process group.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from localpeers.azurite import Azurite, AzuritePorts
from localpeers.processes import free_port, stop_group
from localpeers.twilio_mock import TwilioMock

SETTINGS = Path("local.settings.json")
EXAMPLE = Path("local.settings.json.example")
READY_TIMEOUT = 60.0


class StackError(Exception):
    """A part of the stack did not start; the message says which and why."""


def ensure_settings(settings: Path = SETTINGS, example: Path = EXAMPLE) -> bool:
    """Create local.settings.json from the example on first run; True when created."""
    if settings.exists():
        return False
    shutil.copyfile(example, settings)
    return True


def host_command(port: int) -> list[str]:
    """`func start` where Core Tools is installed, else the development host."""
    func = shutil.which("func")
    if func and not os.environ.get("DEVHOST_ONLY"):
        return [func, "start", "--port", str(port)]
    return [sys.executable, "-m", "devhost", "--port", str(port)]


class Stack:
    """Azurite, the Twilio mock and the function host, started and stopped together."""

    def __init__(self, app_port: int, twilio_port: int | None, storage: AzuritePorts) -> None:
        self.app_port = app_port
        self.azurite = Azurite(ports=storage)
        # None: the app talks to the Twilio API its settings name (a real account).
        self.twilio = TwilioMock(port=twilio_port) if twilio_port is not None else None
        self.host: subprocess.Popen[bytes] | None = None

    @property
    def app_url(self) -> str:
        return f"http://127.0.0.1:{self.app_port}"

    def start(self) -> None:
        twilio = self.twilio
        starts: list[Callable[[], object]] = [self.azurite.start]
        if twilio is not None:
            starts.append(twilio.start)
        peers = [threading.Thread(target=start) for start in starts]
        for peer in peers:  # in parallel: each spends its start-up waiting on Node
            peer.start()
        for peer in peers:
            peer.join()
        if self.azurite.pid is None or (twilio is not None and twilio.startup_seconds is None):
            raise StackError("a local peer did not start (see the messages above)")
        self._create_queue()
        self.host = subprocess.Popen(  # noqa: S603 - our own command line
            host_command(self.app_port), env=self._host_env(), start_new_session=True
        )
        self._wait_until_serving()

    def stop(self) -> None:
        if self.host is not None:
            stop_group(self.host, grace=15)
        if self.twilio:
            self.twilio.stop()
        self.azurite.stop()

    def _host_env(self) -> dict[str, str]:
        # The environment wins over local.settings.json for func and the development host
        # alike, so the peers' actual addresses reach the app whatever the file says.
        env = {
            **os.environ,
            "AzureWebJobsStorage": self.azurite.connection_string,
            "PUBLIC_BASE_URL": os.environ.get("PUBLIC_BASE_URL", self.app_url),
        }
        if self.twilio:
            env["TWILIO_API_BASE_URL"] = self.twilio.base_url
        return env

    def _create_queue(self) -> None:
        from azure.core.exceptions import ResourceExistsError
        from azure.storage.queue import QueueClient

        values = json.loads(SETTINGS.read_text())["Values"]
        name = os.environ.get("OUTBOUND_QUEUE_NAME") or values.get(
            "OUTBOUND_QUEUE_NAME", "outbound-messages"
        )
        with contextlib.suppress(ResourceExistsError):
            QueueClient.from_connection_string(self.azurite.connection_string, name).create_queue()

    def _wait_until_serving(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.host is not None and self.host.poll() is not None:
                raise StackError(f"the function host exited with {self.host.returncode}")
            try:
                with urllib.request.urlopen(f"{self.app_url}/admin/host/status", timeout=1):  # noqa: S310
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(0.05)
        raise StackError(f"the function host did not answer on {self.app_url}")

    def describe(self) -> str:
        azurite = self.azurite
        twilio = (
            f"{self.twilio.base_url} (Prism, Twilio's OpenAPI description)"
            if self.twilio
            else "off: the app uses the Twilio account in local.settings.json"
        )
        return (
            f"Function app     {self.app_url}/api/... (function keys are not enforced)\n"
            f"Twilio API mock  {twilio}\n"
            f"Azurite          {azurite.queue_endpoint} (queues)\n"
            "Try `make demo` in another terminal; Ctrl-C stops everything."
        )


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devhost.stack", description=__doc__)
    parser.add_argument("--port", type=int, default=7071, help="function app port (0: any free)")
    parser.add_argument("--twilio-port", type=int, default=4010, help="Twilio mock port (0: any)")
    parser.add_argument(
        "--real-twilio",
        action="store_true",
        help="no Twilio mock: use the account and API that local.settings.json names",
    )
    parser.add_argument(
        "--storage-ports", default="10000,10001,10002", help="Azurite blob,queue,table (0,0,0: any)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    blob, queue, table = (int(p) for p in args.storage_ports.split(","))
    if ensure_settings():
        print(f"Created {SETTINGS} from {EXAMPLE} (local peers, a mock Twilio account).")
    twilio_port = None if args.real_twilio else args.twilio_port
    stack = Stack(args.port or free_port(), twilio_port, AzuritePorts(blob, queue, table))
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    started = time.monotonic()
    try:
        stack.start()
        print(f"Serving in {time.monotonic() - started:.1f} s.\n{stack.describe()}", flush=True)
        while not stopping.wait(0.5):
            if stack.host is not None and stack.host.poll() is not None:
                print(f"The function host exited with {stack.host.returncode}.", file=sys.stderr)
                return 1
    except StackError as exc:
        print(f"make run failed: {exc}", file=sys.stderr)
        return 1
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
