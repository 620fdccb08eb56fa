"""A local Twilio REST API (2010-04-01) for tests and local runs: `TwilioMock` and its CLI.

Stoplight Prism mocks Twilio's own OpenAPI description, so every request is validated against
Twilio's contract, and a small aiohttp proxy in front of Prism adds what a contract mock
cannot (unique SIDs, a record of requests, fault injection, latency, a connection count).

This module is the entry point: `TwilioMock` owns the peer's lifecycle (the proxy's port,
the working directory, Prism's process and the proxy's event loop thread) and is what tests
program and read; `main` serves it from the command line. The parts live beside it:

- `twilio_spec`: the copy of Twilio's spec that Prism serves, with Twilio-shaped errors;
- `twilio_prism`: the Prism process, and `TwilioMockStartError`;
- `twilio_proxy`: the proxy; `twilio_responses`: how it rewrites Prism's answers;
- `twilio_state`: the recorded requests and fault rules tests read and program.

Run ``python -m localpeers.twilio_mock --port 4010`` to serve it in the foreground.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import signal
import socket
import tempfile
import threading
import time
import weakref
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from localpeers.twilio_prism import LOOPBACK, PrismProcess, TwilioMockStartError, start_prism
from localpeers.twilio_proxy import TwilioProxy
from localpeers.twilio_spec import ERROR_EXAMPLES, derive_spec, example_name
from localpeers.twilio_state import FaultRule, PeerState, RandomFaults, RecordedRequest

_T = TypeVar("_T")


def _listening_socket(port: int) -> socket.socket:
    """The proxy's socket on loopback `port`, bound before Prism starts and non-blocking."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((LOOPBACK, port))
    except OSError as exc:
        sock.close()
        raise TwilioMockStartError(f"cannot listen on {LOOPBACK}:{port}: {exc}") from exc
    sock.listen(128)
    sock.setblocking(False)
    return sock


class TwilioMock:
    """Twilio's REST API on loopback: Prism with Twilio's contract, behind a recording proxy.

    Point the twilio client at it with ``client.api.base_url = mock.base_url``.
    """

    def __init__(
        self,
        port: int = 0,
        *,
        prism_port: int = 0,
        work_dir: Path | None = None,
        startup_timeout: float = 30.0,
        also_serve: Sequence[Path] = (),
    ) -> None:
        """Configure the peer; `start` runs it.

        `port` is the proxy's port and `prism_port` Prism's (0 picks a free one). The derived
        spec and Prism's log go to `work_dir` (a temporary directory, removed on stop, when
        None). `also_serve` names further Twilio API descriptions (`MESSAGING_V1_SPEC`) that
        the same Prism serves beside the 2010 API, each under its own path prefix.
        """
        self._port = port
        self._also_serve = tuple(also_serve)
        self._prism_port = prism_port
        self._work_dir = work_dir
        self._remove_work_dir: weakref.finalize[Any, Any] | None = None
        self._startup_timeout = startup_timeout
        self._state = PeerState()
        self._prism: PrismProcess | None = None
        self._proxy: TwilioProxy | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._base_url: str | None = None
        self._bound_port: int | None = None
        # Holds the port while the proxy is offline (bound, not listening).
        self._placeholder: socket.socket | None = None
        self.spec_path: Path | None = None
        self.startup_seconds: float | None = None

    # lifecycle ---------------------------------------------------------------

    def start(self) -> TwilioMock:
        """Derive the spec, start Prism and the proxy; return self. Raises TwilioMockStartError."""
        if self._base_url is not None:
            raise RuntimeError("TwilioMock is already running")
        began = time.monotonic()
        sock = _listening_socket(self._port)
        try:
            work_dir = self._ensure_work_dir()
            self.spec_path = derive_spec(work_dir, also=self._also_serve)
            self._prism = start_prism(
                self.spec_path, self._prism_port, work_dir / "prism.log", self._startup_timeout
            )
            self._start_proxy(sock, f"http://{LOOPBACK}:{self._prism.port}")
        except BaseException:
            sock.close()
            self.stop()
            raise
        self._bound_port = sock.getsockname()[1]
        self._base_url = f"http://{LOOPBACK}:{self._bound_port}"
        self.startup_seconds = time.monotonic() - began
        return self

    def stop(self) -> None:
        """Stop the proxy and Prism and remove the temporary directory. Safe to call twice."""
        if self._proxy is not None and self._loop is not None:
            with contextlib.suppress(Exception):
                self._run(self._proxy.stop(), timeout=10)
        self._proxy = None
        self._release_placeholder()
        self._stop_loop()
        if self._prism is not None:
            self._prism.stop()
            self._prism = None
        if self._remove_work_dir is not None:
            self._remove_work_dir()
            self._remove_work_dir = None
            self._work_dir = None
        self._base_url = None

    def __enter__(self) -> TwilioMock:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # what tests read ---------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The proxy's URL, e.g. ``http://127.0.0.1:40123``; use it as the API base URL."""
        if self._base_url is None:
            raise RuntimeError("TwilioMock is not running")
        return self._base_url

    @property
    def prism_url(self) -> str:
        """Prism's own URL, bypassing the proxy (no SID rewriting, recording or faults)."""
        if self._prism is None:
            raise RuntimeError("TwilioMock is not running")
        return f"http://{LOOPBACK}:{self._prism.port}"

    @property
    def log_path(self) -> Path | None:
        """Prism's log (errors only), or None before start."""
        return self._prism.log_path if self._prism is not None else None

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the requests answered so far, oldest first."""
        return self._state.records()

    def find_requests(
        self, path_contains: str = "", *, method: str | None = None
    ) -> list[RecordedRequest]:
        """Recorded requests whose path contains `path_contains` (and of `method`, if given)."""
        return [
            r
            for r in self._state.records()
            if path_contains in r.path and method in (None, r.method)
        ]

    @property
    def connections_opened(self) -> int:
        """TCP connections the proxy accepted since start (or the last `reset`)."""
        return self._state.connections

    @property
    def latency(self) -> float:
        """Seconds added before every response (0 by default)."""
        return self._state.latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        self._state.latency = seconds

    # what tests program ---------------------------------------------------------------

    def clear(self) -> None:
        """Forget the recorded requests."""
        self._state.clear()

    def reset(self) -> None:
        """Forget recorded requests, pending and random faults, latency and the connection
        count."""
        self._state.clear(records=True, rules=True, counters=True)
        self._state.latency = 0.0

    def fail_next(
        self,
        status: int,
        *,
        twilio_code: int | None = None,
        count: int | None = 1,
        path_contains: str = "",
        method: str | None = None,
    ) -> None:
        """Answer the next `count` matching requests (None: all of them) with a Twilio error.

        The error body is Prism's example for `status` named by `twilio_code` (default: the
        first code in `ERROR_EXAMPLES[status]`). A request that breaks Twilio's contract still
        gets Prism's 400 instead, as it would from Twilio.
        """
        codes = ERROR_EXAMPLES.get(status)
        if codes is None:
            raise ValueError(f"no error response for {status}; known: {sorted(ERROR_EXAMPLES)}")
        code = next(iter(codes)) if twilio_code is None else twilio_code
        if code not in codes:
            raise ValueError(f"no example {code} for {status}; add it to ERROR_EXAMPLES")
        rule = FaultRule(status, example_name(code), 0.0, count, path_contains, method)
        self._state.add_rule(rule)

    def drop_next(
        self, *, count: int | None = 1, path_contains: str = "", method: str | None = None
    ) -> None:
        """Close the connection of the next `count` matching requests without an answer.

        The request reaches Prism and is recorded first: the resource exists, and the
        client sees the connection closed (``RemoteDisconnected``), as when Twilio's answer
        is lost on the way back.
        """
        self._state.add_rule(FaultRule(None, None, 0.0, count, path_contains, method, drop=True))

    def fail_randomly(
        self,
        errors: Mapping[int, float] | None = None,
        *,
        hang: float = 0.0,
        drop: float = 0.0,
        hang_seconds: float = 30.0,
        path_contains: str = "",
        method: str | None = None,
        seed: int | None = None,
    ) -> None:
        """From now on, draw a fault at random for every matching request.

        `errors` maps a status to the share of requests answered with it (Twilio's error,
        as `fail_next` gives it: ``{429: 0.10, 500: 0.05}``); `hang` is the share held for
        `hang_seconds` (as `hang_next`), `drop` the share whose connection is closed
        without an answer (as `drop_next`). The shares add up to at most 1. Rules from
        `fail_next`, `hang_next` and `drop_next` are used first. `seed` makes the draws
        repeatable; `stop_failing_randomly` or `reset` ends it.
        """
        choices: list[tuple[FaultRule, float]] = []
        for status, rate in (errors or {}).items():
            codes = ERROR_EXAMPLES.get(status)
            if codes is None:
                raise ValueError(f"no error response for {status}; known: {sorted(ERROR_EXAMPLES)}")
            example = example_name(next(iter(codes)))
            choices.append((FaultRule(status, example, 0.0, None, path_contains, method), rate))
        if hang:
            choices.append((FaultRule(None, None, hang_seconds, None, path_contains, method), hang))
        if drop:
            rule = FaultRule(None, None, 0.0, None, path_contains, method, drop=True)
            choices.append((rule, drop))
        faults = RandomFaults(choices, path_contains=path_contains, method=method, seed=seed)
        self._state.set_random_faults(faults)

    def stop_failing_randomly(self) -> None:
        """End `fail_randomly`; rules from `fail_next` and the like stay."""
        self._state.set_random_faults(None)

    def go_offline(self) -> None:
        """Make the API unreachable: connecting to its port is refused until `go_online`.

        Requests already being served are answered, then their connections close; idle
        keep-alive connections close at once. The port stays reserved meanwhile (bound,
        not listening), so `go_online` gets it back.
        """
        if self._proxy is None or self._bound_port is None:
            raise RuntimeError("TwilioMock is not running")
        if self._placeholder is not None:
            return
        self._run(self._proxy.stop_listening(), timeout=10)
        placeholder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        placeholder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            placeholder.bind((LOOPBACK, self._bound_port))
        except OSError:
            placeholder.close()
            raise
        self._placeholder = placeholder

    def go_online(self) -> None:
        """Listen again on the same port after `go_offline`."""
        if self._proxy is None or self._bound_port is None:
            raise RuntimeError("TwilioMock is not running")
        if self._placeholder is None:
            return
        sock = _listening_socket(self._bound_port)
        try:
            self._run(self._proxy.listen(sock), timeout=10)
        except BaseException:
            sock.close()
            raise
        self._release_placeholder()

    @contextlib.contextmanager
    def unreachable(self) -> Iterator[None]:
        """`go_offline` for the duration of the block."""
        self.go_offline()
        try:
            yield
        finally:
            self.go_online()

    @property
    def online(self) -> bool:
        """Whether the API accepts connections (running and not offline)."""
        return self._base_url is not None and self._placeholder is None

    def hang_next(
        self,
        seconds: float = 30.0,
        *,
        count: int | None = 1,
        path_contains: str = "",
        method: str | None = None,
    ) -> None:
        """Hold the next `count` matching responses for `seconds` (for client timeout tests).

        The request still reaches Prism and is recorded first: like a Twilio request whose
        answer was lost, the resource exists although the client saw a timeout.
        """
        self._state.add_rule(FaultRule(None, None, seconds, count, path_contains, method))

    # internals ---------------------------------------------------------------

    def _release_placeholder(self) -> None:
        placeholder, self._placeholder = self._placeholder, None
        if placeholder is not None:
            placeholder.close()

    def _ensure_work_dir(self) -> Path:
        if self._work_dir is None:
            self._work_dir = Path(tempfile.mkdtemp(prefix="twilio-mock-"))
            # Also removed at interpreter exit when stop() is never called.
            self._remove_work_dir = weakref.finalize(
                self, shutil.rmtree, self._work_dir, ignore_errors=True
            )
        self._work_dir.mkdir(parents=True, exist_ok=True)
        return self._work_dir

    def _start_proxy(self, sock: socket.socket, prism_url: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="twilio-mock-proxy", daemon=True
        )
        self._thread.start()
        self._proxy = TwilioProxy(self._state, prism_url)
        self._run(self._proxy.start(sock), timeout=10)

    def _run(self, coro: Coroutine[Any, Any, _T], timeout: float) -> _T:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _stop_loop(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=10)
        loop.close()


# ----------------------------------------------------------------------------- cli


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Local Twilio REST API (Prism + proxy).")
    parser.add_argument("--port", type=int, default=4010, help="proxy port (default 4010)")
    parser.add_argument("--prism-port", type=int, default=0, help="Prism port (default: free)")
    parser.add_argument("--work-dir", type=Path, help="where the spec and Prism's log go")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Serve the peer in the foreground until SIGINT or SIGTERM."""
    args = _parse_args(argv)
    stop = threading.Event()
    # Installed before start so a signal during Prism's start-up still ends the run cleanly.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with TwilioMock(args.port, prism_port=args.prism_port, work_dir=args.work_dir) as mock:
        print(
            f"Twilio API mock on {mock.base_url} (Prism {mock.prism_url}, "
            f"log {mock.log_path}, ready in {mock.startup_seconds:.1f}s)",
            flush=True,
        )
        stop.wait()


if __name__ == "__main__":
    main()
