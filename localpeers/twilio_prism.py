"""The ``prism mock`` child process that serves the mock's copy of Twilio's contract.

This module owns Stoplight Prism as a process: where npm installed it (`PRISM_BIN`), how it
is started (its own process group, errors logged to a file), how start-up is detected
(Prism's answer to a CORS preflight), and how it is stopped, also when its owner forgets.
It also defines `TwilioMockStartError`, which every start-up step of the mock raises: most
failures to come up are Prism's.
"""

from __future__ import annotations

import http.client
import subprocess
import time
import weakref
from pathlib import Path
from typing import Any

from localpeers.processes import free_port, stop_group

PRISM_BIN = Path(__file__).resolve().parents[1] / "node_modules" / ".bin" / "prism"
LOOPBACK = "127.0.0.1"

_PREFLIGHT = {"Origin": "http://localhost", "Access-Control-Request-Method": "POST"}


class TwilioMockStartError(RuntimeError):
    """Prism or the proxy in front of it did not come up."""


def _answers_like_prism(port: int) -> bool:
    # A CORS preflight: Prism answers it without logging, and a bare TCP connect would
    # also succeed against whatever else might hold the port.
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=1)
    try:
        connection.request("OPTIONS", "/", headers=_PREFLIGHT)
        reply = connection.getresponse()
        return reply.status == 204 and reply.getheader("Access-Control-Allow-Methods") == "POST"
    except OSError:
        return False
    finally:
        connection.close()


class PrismProcess:
    """One ``prism mock`` process in its own process group, logging errors to a file."""

    def __init__(self, spec: Path, port: int, log_path: Path) -> None:
        self.port = port
        self.log_path = log_path
        self._command = [
            str(PRISM_BIN),
            "mock",
            str(spec),
            "--host",
            LOOPBACK,
            "--port",
            str(port),
            # Errors still reach the log (validation failures); per-request info lines
            # only cost time.
            "--verboseLevel",
            "error",
        ]
        self._stop: weakref.finalize[Any, Any] | None = None

    def start(self, timeout: float) -> None:
        """Start Prism and wait up to `timeout` seconds until it answers."""
        if not PRISM_BIN.exists():
            raise TwilioMockStartError(f"Prism is missing at {PRISM_BIN}; run npm install")
        with self.log_path.open("ab") as log:
            process = subprocess.Popen(
                self._command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        # Its own process group keeps Prism out of the terminal's Ctrl-C; the finalizer
        # still ends it if the owner is collected or the interpreter exits without stop().
        self._stop = weakref.finalize(self, stop_group, process)
        self._wait_until_listening(process, timeout)

    def _wait_until_listening(self, process: subprocess.Popen[bytes], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not _answers_like_prism(self.port):
            if process.poll() is not None:
                raise TwilioMockStartError(self._failure("exited"))
            if time.monotonic() > deadline:
                self.stop()
                raise TwilioMockStartError(self._failure(f"was not listening after {timeout}s"))
            time.sleep(0.02)

    def _failure(self, what: str) -> str:
        log_tail = self.log_path.read_text(errors="replace")[-2000:]
        return f"Prism {what}: {' '.join(self._command)}\n{log_tail}"

    def stop(self) -> None:
        """Stop Prism and its children; safe to call twice."""
        if self._stop is not None:
            self._stop()


def start_prism(spec: Path, port: int, log_path: Path, timeout: float) -> PrismProcess:
    """Start Prism on `port` (0: a free one) and wait until it answers; return it."""
    # A free port can be taken between choosing it and Prism binding it; choose again.
    for _ in range(2):
        prism = PrismProcess(spec, port or free_port(), log_path)
        try:
            prism.start(timeout)
            return prism
        except TwilioMockStartError as exc:
            if port or "EADDRINUSE" not in str(exc):
                raise
    prism = PrismProcess(spec, free_port(), log_path)
    prism.start(timeout)
    return prism
