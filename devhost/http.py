"""HTTP triggers on Starlette: routing by the host's route templates, request/response mapping.

uvicorn parses HTTP and Starlette wraps it in Request and Response objects; this module only
matches paths against the functions' route templates and converts between Starlette and
``azure.functions`` types.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

import azure.functions as func
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

from devhost.admin import AdminApi
from devhost.invoke import Invoker
from devhost.metadata import HttpFunction

logger = logging.getLogger("devhost")

# Route constraints of ASP.NET Core routing that the Functions host uses. Others (length,
# range, regex, ...) are accepted but not checked here.
_CONSTRAINTS = {
    "int": r"-?\d+",
    "long": r"-?\d+",
    "float": r"-?\d+(?:\.\d+)?",
    "double": r"-?\d+(?:\.\d+)?",
    "decimal": r"-?\d+(?:\.\d+)?",
    "bool": r"(?:true|false)",
    "alpha": r"[a-z]+",
    "guid": r"\{?[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}\}?",
}
_PARAMETER = re.compile(r"\{([^{}]+)\}")
# Precedence of a segment, lower first: literal, mixed, constrained, plain, optional, catch-all.
_LITERAL, _MIXED, _CONSTRAINED, _PLAIN, _OPTIONAL, _CATCH_ALL = range(6)
# Hop-by-hop or framing headers that the server computes itself.
_SERVER_HEADERS = frozenset({"content-length", "transfer-encoding", "connection"})


@dataclass(frozen=True)
class Route:
    """A function's route template compiled to a regular expression over the URL path."""

    function: HttpFunction
    template: str
    pattern: re.Pattern[str]
    parameters: tuple[str, ...]
    precedence: tuple[int, ...]

    def match(self, path: str) -> dict[str, str] | None:
        found = self.pattern.fullmatch(path)
        if found is None:
            return None
        return {
            name: value
            for name, value in zip(self.parameters, found.groups(), strict=True)
            if value is not None
        }


def compile_route(function: HttpFunction, prefix: str) -> Route:
    """Compile "prefix/route" with {name}, {name?}, {name:int} and {*rest} parameters."""
    template = "/".join(part for part in (prefix, function.route) if part)
    parameters: list[str] = []
    pattern = ""
    precedence: list[int] = []
    for segment in template.split("/") if template else []:
        regex, rank = _segment(segment, parameters)
        precedence.append(rank)
        # An optional or catch-all segment may be absent together with its slash.
        pattern += f"(?:/{regex})?" if rank in (_OPTIONAL, _CATCH_ALL) else f"/{regex}"
    # Like ASP.NET Core routing: literals match case-insensitively, a trailing slash is fine.
    compiled = re.compile(f"{pattern}/?" if pattern else "/?", re.IGNORECASE)
    return Route(function, template, compiled, tuple(parameters), tuple(precedence))


def _segment(segment: str, parameters: list[str]) -> tuple[str, int]:
    pieces = _PARAMETER.split(segment)  # literal, parameter, literal, parameter, ...
    if len(pieces) == 1:
        return re.escape(segment), _LITERAL
    regex, rank = "", _MIXED
    for index, piece in enumerate(pieces):
        if index % 2 == 0:
            regex += re.escape(piece)
            continue
        name, part, piece_rank = _parameter(piece)
        parameters.append(name)
        regex += f"({part})"
        rank = piece_rank
    if len(pieces) > 3 or pieces[0] or pieces[-1]:
        rank = _MIXED  # literal text around a parameter, e.g. "file.{ext}"
    return regex, rank


def _parameter(spec: str) -> tuple[str, str, int]:
    """Name, regex and precedence of one "{...}" parameter."""
    if spec.startswith("*"):
        return spec.lstrip("*"), ".*", _CATCH_ALL
    spec = spec.split("=", 1)[0]  # a default value does not change what matches
    optional = spec.endswith("?")
    name, *constraints = spec.rstrip("?").split(":")
    part, rank = "[^/]+", _PLAIN
    for constraint in constraints:
        known = _CONSTRAINTS.get(constraint.split("(", 1)[0].lower())
        if known:
            part, rank = known, _CONSTRAINED
    return name, part, _OPTIONAL if optional else rank


class HttpApp:
    """The ASGI application: one route table, a 404 for unknown paths, 405 for wrong methods."""

    def __init__(
        self,
        functions: Sequence[HttpFunction],
        prefix: str,
        invoker: Invoker,
        admin: AdminApi | None = None,
    ) -> None:
        routes = [compile_route(function, prefix) for function in functions]
        self.routes = sorted(routes, key=lambda route: route.precedence)
        self.invoker = invoker
        self.admin = admin

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan is off; websockets are not Functions triggers
            return
        request = Request(scope, receive)
        response = await self.dispatch(request)
        await response(scope, receive, send)

    async def dispatch(self, request: Request) -> Response:
        if self.admin is not None and self.admin.claims(request):
            return await self.admin.handle(request)
        path = request.scope["path"]
        allowed: set[str] = set()
        for route in self.routes:
            route_params = route.match(path)
            if route_params is None:
                continue
            if route.function.allows(request.method):
                return await self.invoke(route.function, request, route_params)
            allowed.update(route.function.methods or ())
        if not allowed:
            return self.host_endpoint(request) or Response(status_code=404)
        return Response(status_code=405, headers={"Allow": ", ".join(sorted(allowed))})

    @staticmethod
    def host_endpoint(request: Request) -> Response | None:
        """The host's own pages that tools probe for readiness (no function claimed them)."""
        if request.method != "GET":
            return None
        if request.scope["path"] == "/":
            return PlainTextResponse("Your Functions app is up and running (development host).")
        if request.scope["path"].lower() == "/admin/host/status":
            return JSONResponse({"state": "Running"})
        return None

    async def invoke(
        self, function: HttpFunction, request: Request, route_params: dict[str, str]
    ) -> Response:
        http_request = await to_http_request(request, route_params)
        try:
            result = await self.invoker(
                function.name, function.handler, {function.binding_name: http_request}
            )
            return to_response(result)
        except Exception:
            # Logged by the invoker (or below); like the host, the client learns nothing more.
            return Response(status_code=500)


async def to_http_request(request: Request, route_params: dict[str, str]) -> func.HttpRequest:
    """Map a Starlette request to ``func.HttpRequest`` as the host and worker build it."""
    return func.HttpRequest(
        method=request.method,
        url=str(request.url),
        headers=_join(request.headers.items()),
        params=_join(request.query_params.multi_items(), separator=","),
        route_params=route_params,
        body=await request.body(),
    )


def _join(items: Sequence[tuple[str, str]], separator: str = ", ") -> dict[str, str]:
    # Repeated headers or query keys reach the worker as one comma-separated value.
    joined: dict[str, str] = {}
    for key, value in items:
        joined[key] = f"{joined[key]}{separator}{value}" if key in joined else value
    return joined


def to_response(result: object) -> Response:
    """Map a function's return value to a Starlette response, as the worker encodes it."""
    if result is None:
        return Response(status_code=204)
    if isinstance(result, str):
        return Response(result, media_type="text/plain")
    if not isinstance(result, func.HttpResponse):
        logger.error("an HTTP function returned %s, not HttpResponse or str", type(result))
        return Response(status_code=500)
    response = Response(result.get_body(), status_code=result.status_code)
    headers = list(result.headers.items())
    if not any(name.lower() == "content-type" for name, _ in headers):
        # The worker's rule: text types carry the charset, others the bare mimetype.
        mimetype = result.mimetype
        content_type = (
            f"{mimetype}; charset={result.charset}" if mimetype.startswith("text/") else mimetype
        )
        headers.append(("Content-Type", content_type))
    for name, value in headers:
        if name.lower() not in _SERVER_HEADERS:
            response.headers.append(name, value)
    return response
