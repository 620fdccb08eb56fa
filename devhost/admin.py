"""The host's admin API for running a non-HTTP function now: ``POST /admin/functions/{name}``.

The body is ``{"input": "..."}``. As in the host, the answer is 202 at once and the
function runs in the background; an unknown name is 404, a body that is not a JSON object
400. A timer function runs as if its timer fired outside the schedule (the input is not
used); a queue function gets a message whose body is the input. HTTP functions are
called through their routes, so they are refused here with 400.

The Functions host requires the master key for this API. The development host has no
keys, so it answers only clients on the loopback interface, whatever address it listens on.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

Runner = Callable[[str], Coroutine[Any, Any, None]]

# Function names are case-insensitive in the host, and so is its routing.
_PATH = re.compile(r"/admin/functions/([^/]+)/?", re.IGNORECASE)


class AdminApi:
    """Runs functions on request; `refusals` say why a known function cannot run this way."""

    def __init__(self, runners: Mapping[str, Runner], refusals: Mapping[str, str]) -> None:
        self._runners = {name.lower(): runner for name, runner in runners.items()}
        self._refusals = {name.lower(): reason for name, reason in refusals.items()}
        self._running: set[asyncio.Task[None]] = set()

    @staticmethod
    def claims(request: Request) -> bool:
        """True for requests to this API; the host reserves /admin for itself."""
        return request.method == "POST" and bool(_PATH.fullmatch(request.scope["path"]))

    async def handle(self, request: Request) -> Response:
        if not _from_loopback(request):
            return PlainTextResponse("the admin API answers local clients only", 403)
        found = _PATH.fullmatch(request.scope["path"])
        assert found is not None  # claims() said so
        text = _input(await request.body())
        if text is None:
            return PlainTextResponse('expected a JSON object like {"input": ""}', 400)
        name = found[1].lower()
        if name in self._refusals:
            return PlainTextResponse(self._refusals[name], 400)
        runner = self._runners.get(name)
        if runner is None:
            return Response(status_code=404)
        task = asyncio.create_task(runner(text))
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return Response(status_code=202)

    async def drain(self) -> None:
        """Wait for the invocations this API started (on stop)."""
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)


def _input(body: bytes) -> str | None:
    """The "input" of the request body ("" when absent), or None if the body is not valid."""
    try:
        document = json.loads(body or b"null")
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    value = document.get("input")
    if value is None:
        return ""
    return value if isinstance(value, str) else None


def _from_loopback(request: Request) -> bool:
    client = request.client
    if client is None:
        return True  # not a network client (e.g. a test transport)
    try:
        address = ipaddress.ip_address(client.host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1
    return bool(address.is_loopback or (mapped and mapped.is_loopback))
