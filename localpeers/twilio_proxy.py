"""The aiohttp proxy in front of Prism: what a contract mock alone cannot do.

This module owns the HTTP server that the twilio client talks to. It forwards each request
to Prism unchanged (so Prism still checks it against Twilio's contract) and adds:

- a unique SID per created resource and parameters echoed back (see `twilio_responses`);
- a record of every request with the status and body the client got, for assertions;
- fault injection from the rules tests program, or drawn at random at programmed rates:
  Twilio-shaped errors, whose bodies still come from Prism through the ``Prefer`` header;
  hanging responses; and dropped connections, closed without an answer after Prism has
  answered (the resource exists, the client never learns it);
- added latency, and a count of accepted TCP connections, so benchmarks can check
  connection reuse;
- an outage: it stops listening (connecting is refused) and closes its connections once
  their requests are answered, then listens again on the same port.

It runs on an event loop that `TwilioMock` owns; the shared `PeerState` is how the two meet.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from localpeers.twilio_responses import explain_rejection, parse_violations, personalize
from localpeers.twilio_state import FaultRule, PeerState, RecordedRequest

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


class _CountingSockSite(web.SockSite):
    """A SockSite that counts the connections it accepts."""

    def __init__(self, runner: web.BaseRunner, sock: socket.socket, state: PeerState) -> None:
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


# How long a request in progress may still take when the proxy goes offline.
DRAIN_SECONDS = 30.0


@dataclass(frozen=True)
class _Upstream:
    status: int
    headers: CIMultiDict[str]
    body: bytes


class TwilioProxy:
    """The aiohttp app that forwards to Prism and applies the programmed behaviour."""

    def __init__(self, state: PeerState, prism_url: str) -> None:
        self._state = state
        self._prism_url = prism_url
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self._site: web.BaseSite | None = None
        self._stopping: asyncio.Event | None = None
        self._closing: set[asyncio.Task[None]] = set()

    async def start(self, sock: socket.socket) -> None:
        """Serve on `sock`, a listening socket, on the running event loop."""
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
        await self.listen(sock)

    async def listen(self, sock: socket.socket) -> None:
        """Accept connections on `sock`, a listening socket (again, after `stop_listening`)."""
        assert self._runner is not None
        site = _CountingSockSite(self._runner, sock, self._state)
        await site.start()
        self._site = site

    async def stop_listening(self) -> None:
        """Close the listening socket, so connecting is refused; close every connection
        once the request it is serving has been answered (idle ones at once)."""
        site, self._site = self._site, None
        if site is not None:
            await site.stop()
        server = self._runner.server if self._runner is not None else None
        if server is None:
            return
        server.pre_shutdown()  # no further request is read on any connection
        for connection in server.connections:
            # Closes the transport once the request in progress, if any, is answered
            # (a hanging one is cut after DRAIN_SECONDS).
            closing = asyncio.create_task(connection.shutdown(DRAIN_SECONDS))
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)
        await asyncio.sleep(0)

    async def stop(self) -> None:
        """End hanging responses, stop serving and close the connections to Prism."""
        if self._stopping is not None:
            self._stopping.set()
        for closing in list(self._closing):
            closing.cancel()
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
        if rule is not None and rule.drop and request.transport is not None:
            # Prism has answered (a create has happened); the client gets no answer at all.
            request.transport.close()
        await self._delay(rule)
        content = upstream.body if entry.response is None else json.dumps(entry.response).encode()
        return web.Response(
            status=upstream.status, body=content, headers=_response_headers(upstream)
        )

    async def _forward(
        self, request: web.Request, body: bytes, rule: FaultRule | None
    ) -> _Upstream:
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

    async def _delay(self, rule: FaultRule | None) -> None:
        assert self._stopping is not None
        seconds = self._state.latency + (rule.hang if rule is not None else 0.0)
        if seconds > 0:
            # Waiting on the stop event lets stop() end hanging requests at once.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), seconds)


def _record(
    request: web.Request, body: bytes, upstream: _Upstream, rule: FaultRule | None
) -> RecordedRequest:
    form = _form(request, body)
    violations = parse_violations(upstream.headers.get("sl-violations"))
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
        return explain_rejection(payload, violations)
    return payload


def _form(request: web.Request, body: bytes) -> dict[str, list[str]]:
    if request.content_type != "application/x-www-form-urlencoded":
        return {}
    return parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)


def _response_headers(upstream: _Upstream) -> CIMultiDict[str]:
    return CIMultiDict((k, v) for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP)
