"""A local Twilio REST API (2010-04-01) for tests and local runs.

Stoplight Prism mocks Twilio's own OpenAPI description, so every request is validated against
Twilio's contract. A small aiohttp proxy in front of Prism adds what a contract mock cannot:

- a unique SID per created resource (Prism answers every create with the spec's one example
  SID; delivery records and status callbacks are keyed by SID);
- a record of every request, for assertions;
- fault injection (Twilio-shaped errors, latency, hanging responses), where the error bodies
  still come from Prism through the ``Prefer`` header;
- a count of accepted TCP connections, so benchmarks can check connection reuse.

Twilio's description defines no error responses, so `derive_spec` writes a copy that adds
400, 401, 404, 429, 500 and 503 responses in Twilio's error shape to every operation. Each
error response carries one named example per Twilio error code in `ERROR_EXAMPLES`, and
``Prefer: code=400, example=twilio-21408`` picks one.

Run ``python -m localpeers.twilio_mock --port 4010`` to serve it in the foreground.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import parse_qs

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from localpeers.processes import free_port, stop_group

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PRISM_BIN = PROJECT_ROOT / "node_modules" / ".bin" / "prism"
TWILIO_SPEC = (
    PROJECT_ROOT / "node_modules/@twilio-alpha/mcp/twilio-oai/spec/json/twilio_api_v2010.json"
)
LOOPBACK = "127.0.0.1"

# Twilio error codes the derived spec offers, per HTTP status; the first is the default.
# Extend here when a test needs another code: fault injection can only ask Prism for
# examples that the spec carries.
ERROR_EXAMPLES: dict[int, dict[int, str]] = {
    400: {
        21211: "Invalid 'To' Phone Number",
        21408: "Permission to send an SMS has not been enabled for the region indicated by "
        "the 'To' number",
        21610: "Attempt to send to unsubscribed recipient",
        21614: "'To' number is not a valid mobile number",
        21606: "The 'From' phone number provided is not a valid message-capable Twilio phone "
        "number for this destination",
        21612: "The 'To' phone number is not currently reachable via SMS",
        21201: "No 'To' number is specified",
        21604: "A 'To' phone number is required",
        21602: "Message body is required",
        21617: "The concatenated message body exceeds the 1600 character limit",
        21215: "Geo Permission configuration is not permitting call",
        21217: "Phone number does not appear to be valid",
        21210: "'From' phone number not verified",
    },
    401: {20003: "Authenticate"},
    404: {20404: "The requested resource was not found"},
    429: {20429: "Too Many Requests"},
    500: {20500: "Internal Server Error"},
    503: {20503: "Service Unavailable"},
}

_SID = re.compile(r"^[A-Z]{2}[0-9a-fA-F]{32}$")
_CAMEL_BOUNDARY = re.compile(r"(?<!^)(?=[A-Z])")
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
        "te",
        "trailer",
        "host",
        "content-length",
        "content-encoding",
        "date",
        "server",
    }
)
_PREFLIGHT = {"Origin": "http://localhost", "Access-Control-Request-Method": "POST"}
_HTTP_METHODS = ("get", "post", "put", "patch", "delete")
_T = TypeVar("_T")


class TwilioMockStartError(RuntimeError):
    """Prism or the proxy in front of it did not come up."""


# ----------------------------------------------------------------------------- spec


def twilio_error(status: int, code: int, message: str) -> dict[str, Any]:
    """Return an error body in the shape the Twilio REST API uses."""
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def _error_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["code", "message", "more_info", "status"],
        "properties": {
            "code": {"type": "integer"},
            "message": {"type": "string"},
            "more_info": {"type": "string", "format": "uri"},
            "status": {"type": "integer"},
            "details": {"type": "object"},
        },
    }


def example_name(twilio_code: int) -> str:
    """Name of the spec example that carries `twilio_code` (``Prefer: example=<name>``)."""
    # Not the bare number: JavaScript orders integer-like keys numerically, and Prism's
    # default (first) example must stay the first code listed in ERROR_EXAMPLES.
    return f"twilio-{twilio_code}"


def _error_response(status: int, codes: Mapping[int, str]) -> dict[str, Any]:
    examples = {
        example_name(code): {"value": twilio_error(status, code, message)}
        for code, message in codes.items()
    }
    return {
        "description": f"Twilio error ({status})",
        "content": {
            "application/json": {
                "schema": {"$ref": "#/components/schemas/twilio.error"},
                "examples": examples,
            }
        },
    }


def declare_form_arrays(spec: dict[str, Any]) -> dict[str, Any]:
    """Spell out the default form encoding of array fields (MediaUrl...), in place.

    OpenAPI's default (``style: form, explode: true``) is what Twilio and its clients use,
    but Prism only reads repeated fields into an array when the encoding is written down,
    and rejects a single ``MediaUrl`` as "must be array" otherwise.
    """
    for path_item in spec["paths"].values():
        for method in _HTTP_METHODS:
            body = path_item.get(method, {}).get("requestBody", {})
            form = body.get("content", {}).get("application/x-www-form-urlencoded")
            if form is None:
                continue
            properties = form.get("schema", {}).get("properties", {})
            encoding = form.setdefault("encoding", {})
            for name, schema in properties.items():
                if schema.get("type") == "array":
                    encoding.setdefault(name, {"style": "form", "explode": True})
    return spec


def add_error_responses(spec: dict[str, Any]) -> dict[str, Any]:
    """Add Twilio-shaped error responses (`ERROR_EXAMPLES`) to every operation, in place."""
    components = spec.setdefault("components", {})
    components.setdefault("schemas", {})["twilio.error"] = _error_schema()
    responses = components.setdefault("responses", {})
    for status, codes in ERROR_EXAMPLES.items():
        responses[f"TwilioError{status}"] = _error_response(status, codes)
    for path_item in spec["paths"].values():
        for method in _HTTP_METHODS:
            operation = path_item.get(method)
            if operation is None:
                continue
            for status in ERROR_EXAMPLES:
                ref = {"$ref": f"#/components/responses/TwilioError{status}"}
                operation["responses"].setdefault(str(status), ref)
    return spec


def derive_spec(target_dir: Path, source: Path = TWILIO_SPEC) -> Path:
    """Write the mock's copy of Twilio's spec into `target_dir`; return its path."""
    if not source.is_file():
        raise TwilioMockStartError(f"Twilio's OpenAPI spec is missing at {source}; npm install")
    spec = json.loads(source.read_text(encoding="utf-8"))
    spec = declare_form_arrays(add_error_responses(spec))
    target = target_dir / "twilio_api_v2010.mock.json"
    # Compact JSON: Prism parses this on every start.
    target.write_text(json.dumps(spec, separators=(",", ":")), encoding="utf-8")
    return target


# ----------------------------------------------------------------------------- prism


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


class _PrismProcess:
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
        if self._stop is not None:
            self._stop()


def _start_prism(spec: Path, port: int, log_path: Path, timeout: float) -> _PrismProcess:
    # A free port can be taken between choosing it and Prism binding it; choose again.
    for _ in range(2):
        prism = _PrismProcess(spec, port or free_port(), log_path)
        try:
            prism.start(timeout)
            return prism
        except TwilioMockStartError as exc:
            if port or "EADDRINUSE" not in str(exc):
                raise
    prism = _PrismProcess(spec, free_port(), log_path)
    prism.start(timeout)
    return prism


# ----------------------------------------------------------------------------- state


@dataclass(frozen=True)
class RecordedRequest:
    """One request the peer answered, as the client sent it and with the status it got.

    Header names are lower-cased. ``form`` and ``query`` map each name to all its values.
    ``violations`` are Prism's findings (``sl-violations``) against Twilio's contract.
    ``response`` is the JSON body the client got (None when it was not JSON); ``fault`` says
    what was injected (the ``Prefer`` header sent to Prism, or ``hang=N``).
    """

    method: str
    path: str
    query: dict[str, list[str]]
    form: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    status: int
    response: Any
    violations: list[dict[str, Any]] = field(default_factory=list)
    fault: str | None = None

    def param(self, name: str) -> str | None:
        """Return the first form value of `name`, or None."""
        values = self.form.get(name)
        return values[0] if values else None


@dataclass
class _Rule:
    status: int | None
    example: str | None
    hang: float
    remaining: int | None
    path_contains: str
    method: str | None

    def matches(self, method: str, path: str) -> bool:
        return self.path_contains in path and self.method in (None, method)

    def describe(self) -> str:
        if self.status is None:
            return f"hang={self.hang:g}"
        return f"code={self.status}, example={self.example}"


class _PeerState:
    """What tests program and read; shared between the test thread and the proxy loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[RecordedRequest] = []
        self._rules: list[_Rule] = []
        self._connections = 0
        self.latency = 0.0

    def record(self, entry: RecordedRequest) -> None:
        with self._lock:
            self._records.append(entry)

    def records(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._records)

    def add_rule(self, rule: _Rule) -> None:
        with self._lock:
            self._rules.append(rule)

    def take_rule(self, method: str, path: str) -> _Rule | None:
        with self._lock:
            for rule in self._rules:
                if rule.matches(method, path):
                    if rule.remaining is not None:
                        rule.remaining -= 1
                        if rule.remaining <= 0:
                            self._rules.remove(rule)
                    return rule
        return None

    def count_connection(self) -> None:
        with self._lock:
            self._connections += 1

    @property
    def connections(self) -> int:
        with self._lock:
            return self._connections

    def clear(self, *, records: bool = True, rules: bool = False, counters: bool = False) -> None:
        with self._lock:
            if records:
                self._records.clear()
            if rules:
                self._rules.clear()
            if counters:
                self._connections = 0


# ----------------------------------------------------------------------------- responses


def new_sid(prefix: str) -> str:
    """Return a fresh SID in Twilio's format: two letters and 32 hex digits."""
    return prefix + secrets.token_hex(16)


def _snake(name: str) -> str:
    return _CAMEL_BOUNDARY.sub("_", name).lower()


def _path_sids(path: str) -> list[str]:
    segments = (segment.removesuffix(".json") for segment in path.split("/"))
    return [segment for segment in segments if _SID.match(segment)]


def _created_prefix(path: str, form: Mapping[str, list[str]], example_sid: str) -> str:
    if path.endswith("/Messages.json") and form.get("MediaUrl"):
        return "MM"
    return example_sid[:2]


def _sid_replacements(
    body: Mapping[str, Any], method: str, path: str, form: Mapping[str, list[str]]
) -> dict[str, str]:
    # Example SIDs whose prefix matches a SID in the path take that SID (account_sid,
    # call_sid, the fetched resource's sid); a create gets a new sid.
    in_path = {sid[:2]: sid for sid in _path_sids(path)}
    replacements = {
        value: in_path[value[:2]]
        for value in body.values()
        if isinstance(value, str) and _SID.match(value) and value[:2] in in_path
    }
    sid = body.get("sid")
    to_collection = not _SID.match(path.rsplit("/", 1)[-1].removesuffix(".json"))
    if method == "POST" and to_collection and isinstance(sid, str) and _SID.match(sid):
        replacements[sid] = new_sid(_created_prefix(path, form, sid))
    return replacements


def _echo_params(body: dict[str, Any], form: Mapping[str, list[str]]) -> None:
    # Prism's example never matches what was sent; echo plain fields like to, from, body.
    for name, values in form.items():
        key = _snake(name)
        if len(values) == 1 and key in body and isinstance(body[key], str | None):
            body[key] = values[0]


def personalize(
    body: dict[str, Any], method: str, path: str, form: Mapping[str, list[str]]
) -> dict[str, Any]:
    """Make Prism's example look like the answer to this request.

    A create gets a new SID (``MM`` for a message with media) and echoes plain parameters
    (``to``, ``from``, ``body``...); SIDs in the path replace the example's SIDs of the same
    prefix; URIs in the body follow.
    """
    text = json.dumps(body)
    for old, new in _sid_replacements(body, method, path, form).items():
        text = text.replace(old, new)
    result: dict[str, Any] = json.loads(text)
    if method == "POST":
        _echo_params(result, form)
    return result


def _parse_violations(header: str | None) -> list[dict[str, Any]]:
    if not header:
        return []
    try:
        parsed = json.loads(header)
    except ValueError:
        return [{"message": header}]
    return parsed if isinstance(parsed, list) else [parsed]


def _explain_rejection(body: Any, violations: list[dict[str, Any]]) -> Any:
    # A request Prism rejects gets the default error example; name the broken rule in the
    # message so a failing test says why.
    request_findings = [v for v in violations if "request" in v.get("location", [])[:1]]
    if not request_findings or not isinstance(body, dict) or "message" not in body:
        return body
    detail = "; ".join(str(v.get("message")) for v in request_findings)
    return {**body, "message": f"{body['message']} (contract check: {detail})"}


# ----------------------------------------------------------------------------- proxy


class _CountingSockSite(web.SockSite):
    """A SockSite that counts the connections it accepts."""

    def __init__(self, runner: web.BaseRunner, sock: socket.socket, state: _PeerState) -> None:
        super().__init__(runner, sock)
        self._state = state

    async def start(self) -> None:
        # BaseSite.start registers the site; SockSite.start would bind the plain factory.
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None

        def accept() -> asyncio.Protocol:
            self._state.count_connection()
            return server()

        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(accept, sock=self._sock)


@dataclass(frozen=True)
class _Upstream:
    status: int
    headers: CIMultiDict[str]
    body: bytes


class _Proxy:
    """The aiohttp app that forwards to Prism and applies the programmed behaviour."""

    def __init__(self, state: _PeerState, prism_url: str) -> None:
        self._state = state
        self._prism_url = prism_url
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self._stopping: asyncio.Event | None = None

    async def start(self, sock: socket.socket) -> None:
        self._stopping = asyncio.Event()
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=30), auto_decompress=True
        )
        app = web.Application(client_max_size=10 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # Cancellation lets a client that gives up on a hanging response end the handler.
        self._runner = web.AppRunner(
            app, handler_cancellation=True, shutdown_timeout=1.0, access_log=None
        )
        await self._runner.setup()
        await _CountingSockSite(self._runner, sock, self._state).start()

    async def stop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        rule = self._state.take_rule(request.method, request.path)
        try:
            upstream = await self._forward(request, body, rule)
        except aiohttp.ClientError as exc:
            return web.Response(status=502, text=f"Prism did not answer: {exc!r}")
        entry = _record(request, body, upstream, rule)
        self._state.record(entry)
        await self._delay(rule)
        content = upstream.body if entry.response is None else json.dumps(entry.response).encode()
        return web.Response(
            status=upstream.status, body=content, headers=_response_headers(upstream)
        )

    async def _forward(self, request: web.Request, body: bytes, rule: _Rule | None) -> _Upstream:
        assert self._session is not None
        headers = CIMultiDict(
            (k, v) for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP
        )
        if rule is not None and rule.status is not None:
            headers["Prefer"] = rule.describe()
        url = URL(self._prism_url + request.raw_path, encoded=True)
        async with self._session.request(
            request.method, url, headers=headers, data=body, allow_redirects=False
        ) as reply:
            return _Upstream(reply.status, CIMultiDict(reply.headers), await reply.read())

    async def _delay(self, rule: _Rule | None) -> None:
        assert self._stopping is not None
        seconds = self._state.latency + (rule.hang if rule is not None else 0.0)
        if seconds > 0:
            # Waiting on the stop event lets stop() end hanging requests at once.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), seconds)


def _record(
    request: web.Request, body: bytes, upstream: _Upstream, rule: _Rule | None
) -> RecordedRequest:
    form = _form(request, body)
    violations = _parse_violations(upstream.headers.get("sl-violations"))
    return RecordedRequest(
        method=request.method,
        path=request.path,
        query={key: request.query.getall(key) for key in request.query},
        form=form,
        headers={key.lower(): value for key, value in request.headers.items()},
        body=body,
        status=upstream.status,
        response=_shape(request.method, request.path, form, upstream, violations),
        violations=violations,
        fault=rule.describe() if rule else None,
    )


def _shape(
    method: str,
    path: str,
    form: dict[str, list[str]],
    upstream: _Upstream,
    violations: list[dict[str, Any]],
) -> Any:
    if "json" not in upstream.headers.get("Content-Type", ""):
        return None
    try:
        payload = json.loads(upstream.body)
    except ValueError:
        return None
    if upstream.status < 300 and isinstance(payload, dict):
        return personalize(payload, method, path, form)
    if upstream.status == 400:
        return _explain_rejection(payload, violations)
    return payload


def _form(request: web.Request, body: bytes) -> dict[str, list[str]]:
    if request.content_type != "application/x-www-form-urlencoded":
        return {}
    return parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)


def _response_headers(upstream: _Upstream) -> CIMultiDict[str]:
    return CIMultiDict((k, v) for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP)


def _listening_socket(port: int) -> socket.socket:
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


# ----------------------------------------------------------------------------- public


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
    ) -> None:
        """Configure the peer; `start` runs it.

        `port` is the proxy's port and `prism_port` Prism's (0 picks a free one). The derived
        spec and Prism's log go to `work_dir` (a temporary directory, removed on stop, when
        None).
        """
        self._port = port
        self._prism_port = prism_port
        self._work_dir = work_dir
        self._remove_work_dir: weakref.finalize[Any, Any] | None = None
        self._startup_timeout = startup_timeout
        self._state = _PeerState()
        self._prism: _PrismProcess | None = None
        self._proxy: _Proxy | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._base_url: str | None = None
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
            self.spec_path = derive_spec(work_dir)
            self._prism = _start_prism(
                self.spec_path, self._prism_port, work_dir / "prism.log", self._startup_timeout
            )
            self._start_proxy(sock, f"http://{LOOPBACK}:{self._prism.port}")
        except BaseException:
            sock.close()
            self.stop()
            raise
        self._base_url = f"http://{LOOPBACK}:{sock.getsockname()[1]}"
        self.startup_seconds = time.monotonic() - began
        return self

    def stop(self) -> None:
        """Stop the proxy and Prism and remove the temporary directory. Safe to call twice."""
        if self._proxy is not None and self._loop is not None:
            with contextlib.suppress(Exception):
                self._run(self._proxy.stop(), timeout=10)
        self._proxy = None
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
        """Forget recorded requests, pending faults, latency and the connection count."""
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
        rule = _Rule(status, example_name(code), 0.0, count, path_contains, method)
        self._state.add_rule(rule)

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
        self._state.add_rule(_Rule(None, None, seconds, count, path_contains, method))

    # internals ---------------------------------------------------------------

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
        self._proxy = _Proxy(self._state, prism_url)
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
