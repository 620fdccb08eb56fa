"""What the local stand-ins of Azure services (Key Vault, Event Grid) share.

No emulator exists for these services, so each stand-in is a small HTTPS server that the
real Azure SDK talks to, and around it, on one event loop in a background thread:

- a managed identity endpoint in the App Service shape (``IDENTITY_ENDPOINT`` and
  ``IDENTITY_HEADER``) that issues the tokens the service accepts, each for one resource;
- a CONNECT proxy (``HTTPS_PROXY``) that routes the service's production host name (port
  443) to the loopback server, so the SDK keeps the production URL shape and only the route
  is local;
- a `trustme` certificate authority whose certificate for that host name the server
  presents, trusted through ``REQUESTS_CA_BUNDLE``.

`LocalAzureService` runs the three; a subclass gives the host name and the aiohttp
application that speaks the service's REST API.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Coroutine, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import trustme
from aiohttp import web

# The identity a token request without client_id gets (a system-assigned identity).
SYSTEM_ASSIGNED_CLIENT_ID = "5e29463d-71da-4fe0-8e69-999b57db23b0"
# A user-assigned identity the endpoint knows by default (AZURE_CLIENT_ID in the app).
USER_ASSIGNED_CLIENT_ID = "6a3bd0a5-0d4f-4c5e-9f7e-2b8e6f4a1c11"
TOKEN_LIFETIME_SECONDS = 24 * 3600  # what App Service hands out

_T = TypeVar("_T")


@dataclass(frozen=True)
class TokenRequest:
    """One request seen by the managed identity endpoint."""

    resource: str | None
    client_id: str | None
    granted: bool


@dataclass(frozen=True)
class Grant:
    """What an issued token stands for."""

    client_id: str
    resource: str
    expires_on: int


class TokenIssuer:
    """Issues bearer tokens for known identities and recognises them later."""

    def __init__(self, client_ids: Iterable[str]) -> None:
        self._lock = threading.Lock()
        self._client_ids = {SYSTEM_ASSIGNED_CLIENT_ID, *client_ids}
        self._grants: dict[str, Grant] = {}
        self.requests: list[TokenRequest] = []

    def issue(self, resource: str | None, client_id: str | None) -> tuple[str, Grant] | None:
        """A new token for `resource`, or None for an unknown identity or no resource."""
        identity = client_id or SYSTEM_ASSIGNED_CLIENT_ID
        known = resource is not None and identity in self._client_ids
        with self._lock:
            self.requests.append(TokenRequest(resource, client_id, known))
            if not known or resource is None:
                return None
            token = secrets.token_urlsafe(32)
            grant = Grant(identity, resource, int(time.time()) + TOKEN_LIFETIME_SECONDS)
            self._grants[token] = grant
        return token, grant

    def tokens(self) -> list[str]:
        """Every token issued so far."""
        with self._lock:
            return list(self._grants)

    def identity_of(self, token: str, resource: str) -> str | None:
        """The client id a live token of `resource` was issued to, else None."""
        with self._lock:
            grant = self._grants.get(token)
        if grant is None or grant.resource != resource or grant.expires_on < time.time():
            return None
        return grant.client_id


def bearer_token(request: web.Request) -> str | None:
    """The token of an ``Authorization: Bearer`` header, if the request has one."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def azure_error(status: int, code: str, message: str, **headers: str) -> web.Response:
    """An error in the ``{"error": {"code", "message"}}`` shape Azure data planes answer."""
    body = {"error": {"code": code, "message": message}}
    return web.json_response(body, status=status, headers=headers)


def _identity_error(status: int, message: str) -> web.Response:
    return web.json_response({"statusCode": status, "message": message}, status=status)


class IdentityEndpoint:
    """The App Service managed identity endpoint (api-version 2019-08-01)."""

    path = "/msi/token"

    def __init__(self, header_value: str, issuer: TokenIssuer) -> None:
        self._header_value = header_value
        self._issuer = issuer

    def application(self) -> web.Application:
        app = web.Application()
        app.router.add_get(self.path, self._token)
        return app

    async def _token(self, request: web.Request) -> web.Response:
        if request.headers.get("X-IDENTITY-HEADER") != self._header_value:
            return _identity_error(401, "The X-IDENTITY-HEADER header is missing or wrong.")
        if request.query.get("api-version") != "2019-08-01":
            return _identity_error(400, "Unsupported api-version.")
        issued = self._issuer.issue(request.query.get("resource"), request.query.get("client_id"))
        if issued is None:
            return _identity_error(400, "Unable to load the proper Managed Identity.")
        token, grant = issued
        return web.json_response(
            {
                "access_token": token,
                "expires_on": str(grant.expires_on),
                "resource": grant.resource,
                "token_type": "Bearer",
                "client_id": grant.client_id,
            }
        )


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass  # one side went away; closing the other ends the tunnel as a real proxy would
    finally:
        writer.close()


class ConnectProxy:
    """An HTTP CONNECT proxy that only opens tunnels it has a route for."""

    def __init__(self, routes: Mapping[str, int]) -> None:
        self._routes = dict(routes)  # "host:port" -> loopback port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.tunnels_opened = 0  # each one a TCP connection and a TLS handshake to the service

    async def start(self, sock: socket.socket) -> None:
        """Serve on an already bound listening socket."""
        self._server = await asyncio.start_server(self._handle, sock=sock)

    async def stop(self) -> None:
        """Stop listening and cut every open tunnel."""
        if self._server is not None:
            self._server.close()
        self.drop_tunnels()
        if self._server is not None:
            await self._server.wait_closed()

    def drop_tunnels(self, port: int | None = None) -> None:
        """Cut open tunnels (to one upstream port, or all), as a dying server would."""
        for writer in list(self._writers):
            if port is None or writer.get_extra_info("peername", ("", 0))[1] == port:
                writer.transport.abort()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            upstream = await self._open_tunnel(reader, writer)
            if upstream is not None:
                self._writers.add(upstream[1])
                await asyncio.gather(_pipe(reader, upstream[1]), _pipe(upstream[0], writer))
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # a client that hangs up or sends garbage before the tunnel opens gets no answer
        finally:
            if upstream is not None:
                self._writers.discard(upstream[1])
            self._writers.discard(writer)
            writer.close()

    async def _open_tunnel(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        head = await reader.readuntil(b"\r\n\r\n")
        method, _, rest = head.decode("latin-1").partition(" ")
        port = self._routes.get(rest.partition(" ")[0].lower())
        if method != "CONNECT" or port is None:
            await _reply(writer, "403 Forbidden")
            return None
        try:
            upstream = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await _reply(writer, "502 Bad Gateway")
            return None
        self.tunnels_opened += 1
        await _reply(writer, "200 Connection established")
        return upstream


async def _reply(writer: asyncio.StreamWriter, status: str) -> None:
    writer.write(f"HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n".encode("ascii"))
    await writer.drain()


def listening_socket(port: int = 0) -> socket.socket:
    """A non-blocking loopback socket, bound and listening."""
    # Bound here rather than by the server so the port is known up front and can be reused
    # when the service comes back up.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


class LoopThread:
    """An asyncio event loop running in a daemon thread."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def call(self, coro: Coroutine[Any, Any, _T], timeout: float = 10.0) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()
        pending = asyncio.all_tasks(self.loop)
        for task in pending:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.close()


class LocalAzureService:
    """A service's HTTPS stand-in, its managed identity endpoint and a routing proxy.

    Use a subclass as a context manager (or call start() and stop()), then point the process
    at it with the variables from environment().
    """

    def __init__(self, host: str, *, user_assigned_client_ids: Iterable[str], label: str) -> None:
        self.host = host
        self.identity_header = secrets.token_hex(16)
        self._issuer = TokenIssuer(user_assigned_client_ids)
        self._identity = IdentityEndpoint(self.identity_header, self._issuer)
        self._ca = trustme.CA()
        self._files = tempfile.TemporaryDirectory(prefix=f"{label}-")
        self.ca_bundle = Path(self._files.name) / "ca.pem"
        self._loop = LoopThread(label)
        self._runners: list[web.AppRunner] = []
        self._service_runner: web.AppRunner | None = None
        self._service_site: web.SockSite | None = None
        self._service_port = 0
        self._identity_port = 0
        self._proxy_port = 0
        self._proxy: ConnectProxy | None = None

    def application(self) -> web.Application:
        """The service's REST API; called once, on start()."""
        raise NotImplementedError

    # Lifecycle

    def start(self) -> Self:
        """Start the three servers; returns self."""
        self._ca.cert_pem.write_to_path(str(self.ca_bundle))
        self._loop.start()
        try:
            self._loop.call(self._start())
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the servers, cut open connections and remove the CA file."""
        try:
            self._loop.call(self._stop())
        finally:
            self._loop.stop()
            self._files.cleanup()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # Where things are

    @property
    def identity_endpoint(self) -> str:
        """IDENTITY_ENDPOINT of the managed identity endpoint."""
        return f"http://127.0.0.1:{self._identity_port}{IdentityEndpoint.path}"

    @property
    def proxy_url(self) -> str:
        """HTTPS_PROXY value routing the service's host to the stand-in."""
        return f"http://127.0.0.1:{self._proxy_port}"

    def environment(self) -> dict[str, str]:
        """Variables that point azure-identity and the HTTP stack at the stand-in."""
        return {
            "IDENTITY_ENDPOINT": self.identity_endpoint,
            "IDENTITY_HEADER": self.identity_header,
            "HTTPS_PROXY": self.proxy_url,
            "NO_PROXY": "127.0.0.1,localhost",
            "REQUESTS_CA_BUNDLE": str(self.ca_bundle),
        }

    # Identities

    def issue_token(self, resource: str, client_id: str | None = None) -> str:
        """A token as the identity endpoint would issue it, for tests that send their own."""
        issued = self._issuer.issue(resource, client_id)
        if issued is None:
            raise ValueError("the identity endpoint does not know that identity")
        return issued[0]

    def identity_of(self, token: str | None, resource: str) -> str | None:
        """The client id behind a live token of `resource`, else None."""
        return self._issuer.identity_of(token, resource) if token else None

    @property
    def issued_tokens(self) -> list[str]:
        """Every token the identity endpoint (or issue_token) handed out, for tests that
        check none of them leaks into a message or a log."""
        return self._issuer.tokens()

    @property
    def token_requests(self) -> list[TokenRequest]:
        """Every request the managed identity endpoint received, in order."""
        return list(self._issuer.requests)

    @property
    def token_request_count(self) -> int:
        """How many token requests the managed identity endpoint received."""
        return len(self._issuer.requests)

    @property
    def connection_count(self) -> int:
        """How many connections to the service the proxy opened (CONNECT requests it granted)."""
        return self._proxy.tunnels_opened if self._proxy is not None else 0

    # Outages of the service itself (the identity endpoint and the proxy stay up)

    def stop_listening(self) -> None:
        """Close the service's port and cut open connections: clients get connection errors
        (through the proxy, a refused CONNECT)."""
        self._loop.call(self._close_service_site())

    def listen_again(self) -> None:
        """Serve on the same port again after stop_listening()."""
        if self._service_site is None:
            self._loop.call(self._open_service_site())

    # Server side, run on the loop thread

    async def _start(self) -> None:
        self._service_runner = await self._runner(self.application())
        self._service_port = (await self._open_service_site()).getsockname()[1]
        identity_runner = await self._runner(self._identity.application())
        identity_sock = listening_socket()
        self._identity_port = identity_sock.getsockname()[1]
        await web.SockSite(identity_runner, identity_sock).start()
        proxy_sock = listening_socket()
        self._proxy_port = proxy_sock.getsockname()[1]
        self._proxy = ConnectProxy({f"{self.host}:443": self._service_port})
        await self._proxy.start(proxy_sock)

    async def _runner(self, app: web.Application) -> web.AppRunner:
        # A handler whose client has gone is cancelled, as a slow answer nobody waits for
        # would otherwise hold up stop().
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await runner.setup()
        self._runners.append(runner)
        return runner

    async def _open_service_site(self) -> socket.socket:
        assert self._service_runner is not None
        sock = listening_socket(self._service_port)
        self._service_site = web.SockSite(self._service_runner, sock, ssl_context=self._tls())
        await self._service_site.start()
        return sock

    async def _close_service_site(self) -> None:
        if self._service_site is not None:
            await self._service_site.stop()
            self._service_site = None
        if self._proxy is not None:
            self._proxy.drop_tunnels(self._service_port)

    def _tls(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ca.issue_cert(self.host).configure_cert(context)
        return context

    async def _stop(self) -> None:
        if self._proxy is not None:
            await self._proxy.stop()
        for runner in reversed(self._runners):
            await runner.cleanup()
