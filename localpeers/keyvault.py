"""A local stand-in for Azure Key Vault that the real Azure SDK talks to.

No Key Vault emulator exists, so three loopback servers share one event loop in a background
thread:

- the vault: HTTPS with a `trustme` certificate for ``<name>.vault.azure.net``, speaking the
  secrets part of the Key Vault REST API, including the 401 bearer challenge that
  `SecretClient` answers by asking its credential for a token;
- a managed identity endpoint in the App Service shape (``IDENTITY_ENDPOINT`` and
  ``IDENTITY_HEADER``) that issues the tokens the vault accepts;
- a CONNECT proxy (``HTTPS_PROXY``) that routes ``<name>.vault.azure.net:443`` to the vault.
  The client checks that the vault host lies under the challenge's resource domain
  (``vault.azure.net``), so the production URL shape is kept and only the route is local.

`LocalKeyVault.environment()` lists the variables that point the SDK at these servers.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import ssl
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Coroutine, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import trustme
from aiohttp import web

VAULT_RESOURCE = "https://vault.azure.net"
DEFAULT_TENANT_ID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
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
class SecretVersion:
    """One stored version of a secret."""

    version: str
    value: str
    created: int


@dataclass(frozen=True)
class _Grant:
    client_id: str
    resource: str
    expires_on: int


class _SecretBook:
    """The vault's contents, shared between the test thread and the server loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._versions: dict[str, list[SecretVersion]] = {}

    def set(self, name: str, value: str) -> SecretVersion:
        version = SecretVersion(uuid.uuid4().hex, value, int(time.time()))
        with self._lock:
            self._versions.setdefault(name, []).append(version)
        return version

    def delete(self, name: str) -> None:
        with self._lock:
            self._versions.pop(name, None)

    def lookup(self, name: str, version: str) -> SecretVersion | None:
        with self._lock:
            versions = list(self._versions.get(name, ()))
        if not version:
            return versions[-1] if versions else None
        return next((v for v in versions if v.version == version), None)


class _TokenIssuer:
    """Issues bearer tokens for known identities and recognises them later."""

    def __init__(self, client_ids: Iterable[str]) -> None:
        self._lock = threading.Lock()
        self._client_ids = {SYSTEM_ASSIGNED_CLIENT_ID, *client_ids}
        self._grants: dict[str, _Grant] = {}
        self.requests: list[TokenRequest] = []

    def issue(self, resource: str | None, client_id: str | None) -> tuple[str, _Grant] | None:
        identity = client_id or SYSTEM_ASSIGNED_CLIENT_ID
        known = resource is not None and identity in self._client_ids
        with self._lock:
            self.requests.append(TokenRequest(resource, client_id, known))
            if not known or resource is None:
                return None
            token = secrets.token_urlsafe(32)
            grant = _Grant(identity, resource, int(time.time()) + TOKEN_LIFETIME_SECONDS)
            self._grants[token] = grant
        return token, grant

    def identity_of(self, token: str, resource: str) -> str | None:
        with self._lock:
            grant = self._grants.get(token)
        if grant is None or grant.resource != resource or grant.expires_on < time.time():
            return None
        return grant.client_id


class _VaultState:
    """Counters and switches of the vault, read by tests and written by the server."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.challenges = 0
        self.failure_status: int | None = None
        self.readers: frozenset[str] | None = None  # None: every identity may read


def _error(status: int, code: str, message: str, **headers: str) -> web.Response:
    body = {"error": {"code": code, "message": message}}
    return web.json_response(body, status=status, headers=headers)


def _bearer_token(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


class _VaultApp:
    """The HTTPS side: GET /secrets/{name}/{version} with Key Vault's challenge and errors."""

    def __init__(
        self, vault_url: str, tenant_id: str, book: _SecretBook, issuer: _TokenIssuer
    ) -> None:
        self._vault_url = vault_url
        self._challenge = (
            f'Bearer authorization="https://login.microsoftonline.com/{tenant_id}", '
            f'resource="{VAULT_RESOURCE}"'
        )
        self._book = book
        self._issuer = issuer
        self.state = _VaultState()

    def application(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/secrets/{name}", self._get_secret)
        app.router.add_get("/secrets/{name}/{version:[^/]*}", self._get_secret)
        return app

    async def _get_secret(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.state.requests[name] += 1
        if self.state.failure_status is not None:
            return _error(self.state.failure_status, "ServiceUnavailable", "The vault is down.")
        if "api-version" not in request.query:
            return _error(400, "BadParameter", "The 'api-version' query parameter is missing.")
        identity = self._authenticated(request)
        if identity is None:
            self.state.challenges += 1
            return _error(
                401,
                "Unauthorized",
                "AKV10000: Request is missing a Bearer or PoP token.",
                **{"WWW-Authenticate": self._challenge},
            )
        if self.state.readers is not None and identity not in self.state.readers:
            return _error(403, "Forbidden", f"Caller {identity} is not authorized.")
        return self._secret_response(name, request.match_info.get("version", ""))

    def _authenticated(self, request: web.Request) -> str | None:
        token = _bearer_token(request)
        return self._issuer.identity_of(token, VAULT_RESOURCE) if token else None

    def _secret_response(self, name: str, version: str) -> web.Response:
        found = self._book.lookup(name, version)
        if found is None:
            shown = f"{name}/{version}" if version else name
            return _error(
                404,
                "SecretNotFound",
                f"A secret with (name/id) {shown} was not found in this key vault.",
            )
        return web.json_response(self._secret_body(name, found))

    def _secret_body(self, name: str, found: SecretVersion) -> dict[str, Any]:
        return {
            "value": found.value,
            "id": f"{self._vault_url}secrets/{name}/{found.version}",
            "attributes": {
                "enabled": True,
                "created": found.created,
                "updated": found.created,
                "recoveryLevel": "Recoverable+Purgeable",
                "recoverableDays": 90,
            },
            "tags": {},
        }


def _identity_error(status: int, message: str) -> web.Response:
    return web.json_response({"statusCode": status, "message": message}, status=status)


class _IdentityApp:
    """The App Service managed identity endpoint (api-version 2019-08-01)."""

    path = "/msi/token"

    def __init__(self, header_value: str, issuer: _TokenIssuer) -> None:
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
        await _reply(writer, "200 Connection established")
        return upstream


async def _reply(writer: asyncio.StreamWriter, status: str) -> None:
    writer.write(f"HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n".encode("ascii"))
    await writer.drain()


def _listening_socket(port: int = 0) -> socket.socket:
    # Bound here rather than by the server so the port is known up front and can be reused
    # when the vault comes back up.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


class _LoopThread:
    """An asyncio event loop running in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="local-key-vault", daemon=True)

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


class LocalKeyVault:
    """Key Vault, its managed identity endpoint and a routing proxy, all on loopback.

    Use as a context manager (or call start() and stop()), then point the process at it with
    the variables from environment() and read secrets from `vault_url`.
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        tenant_id: str = DEFAULT_TENANT_ID,
        user_assigned_client_ids: Iterable[str] = (USER_ASSIGNED_CLIENT_ID,),
    ) -> None:
        # A fresh name per instance: the SDK caches challenges per vault host process-wide.
        self.name = name or f"kv-local-{secrets.token_hex(4)}"
        self.host = f"{self.name}.vault.azure.net"
        self.vault_url = f"https://{self.host}/"
        self.identity_header = secrets.token_hex(16)
        self._issuer = _TokenIssuer(user_assigned_client_ids)
        self._book = _SecretBook()
        self._vault = _VaultApp(self.vault_url, tenant_id, self._book, self._issuer)
        self._identity = _IdentityApp(self.identity_header, self._issuer)
        self._ca = trustme.CA()
        self._files = tempfile.TemporaryDirectory(prefix="local-key-vault-")
        self.ca_bundle = Path(self._files.name) / "ca.pem"
        self._loop = _LoopThread()
        self._runners: list[web.AppRunner] = []
        self._vault_runner: web.AppRunner | None = None
        self._vault_site: web.SockSite | None = None
        self._vault_port = 0
        self._identity_port = 0
        self._proxy_port = 0
        self._proxy: ConnectProxy | None = None

    # Lifecycle

    def start(self) -> LocalKeyVault:
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

    def __enter__(self) -> LocalKeyVault:
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
        return f"http://127.0.0.1:{self._identity_port}{_IdentityApp.path}"

    @property
    def proxy_url(self) -> str:
        """HTTPS_PROXY value routing the vault host to the stand-in."""
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

    # Contents

    def set_secret(self, name: str, value: str) -> str:
        """Store a new version of a secret (creating or rotating it); returns the version."""
        return self._book.set(name, value).version

    def rotate_secret(self, name: str, value: str) -> str:
        """Same as set_secret; names the intent in rotation tests."""
        return self.set_secret(name, value)

    def delete_secret(self, name: str) -> None:
        """Remove a secret and all its versions."""
        self._book.delete(name)

    def allow_readers(self, client_ids: Iterable[str] | None) -> None:
        """Let only these identities read secrets (403 for others); None lets everyone."""
        self._vault.state.readers = None if client_ids is None else frozenset(client_ids)

    # Observations

    def request_count(self, secret_name: str) -> int:
        """HTTP requests for this secret, the unauthenticated challenge request included."""
        return self._vault.state.requests[secret_name]

    @property
    def challenge_count(self) -> int:
        """How many 401 bearer challenges the vault answered."""
        return self._vault.state.challenges

    @property
    def token_requests(self) -> list[TokenRequest]:
        """Every request the managed identity endpoint received, in order."""
        return list(self._issuer.requests)

    @property
    def token_request_count(self) -> int:
        """How many token requests the managed identity endpoint received."""
        return len(self._issuer.requests)

    # Outages

    def down(self, status: int | None = None) -> None:
        """Take the vault down.

        Without a status the vault stops listening and open connections are cut, so clients
        get connection errors; with one (e.g. 503) it answers every request with that status.
        """
        if status is not None:
            self._vault.state.failure_status = status
            return
        self._loop.call(self._close_vault_site())

    def up(self) -> None:
        """Bring the vault back after down()."""
        self._vault.state.failure_status = None
        if self._vault_site is None:
            self._loop.call(self._open_vault_site())

    # Server side, run on the loop thread

    async def _start(self) -> None:
        self._vault_runner = await self._runner(self._vault.application())
        self._vault_port = (await self._open_vault_site()).getsockname()[1]
        identity_runner = await self._runner(self._identity.application())
        identity_sock = _listening_socket()
        self._identity_port = identity_sock.getsockname()[1]
        await web.SockSite(identity_runner, identity_sock).start()
        proxy_sock = _listening_socket()
        self._proxy_port = proxy_sock.getsockname()[1]
        self._proxy = ConnectProxy({f"{self.host}:443": self._vault_port})
        await self._proxy.start(proxy_sock)

    async def _runner(self, app: web.Application) -> web.AppRunner:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        self._runners.append(runner)
        return runner

    async def _open_vault_site(self) -> socket.socket:
        assert self._vault_runner is not None
        sock = _listening_socket(self._vault_port)
        self._vault_site = web.SockSite(self._vault_runner, sock, ssl_context=self._tls())
        await self._vault_site.start()
        return sock

    async def _close_vault_site(self) -> None:
        if self._vault_site is not None:
            await self._vault_site.stop()
            self._vault_site = None
        if self._proxy is not None:
            self._proxy.drop_tunnels(self._vault_port)

    def _tls(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ca.issue_cert(self.host).configure_cert(context)
        return context

    async def _stop(self) -> None:
        if self._proxy is not None:
            await self._proxy.stop()
        for runner in reversed(self._runners):
            await runner.cleanup()
