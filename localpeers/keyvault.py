"""A local stand-in for Azure Key Vault that the real Azure SDK talks to.

No Key Vault emulator exists, so the vault is a loopback HTTPS server with a `trustme`
certificate for ``<name>.vault.azure.net``, speaking the secrets part of the Key Vault REST
API, including the 401 bearer challenge that `SecretClient` answers by asking its credential
for a token. Beside it run a managed identity endpoint that issues the tokens the vault
accepts and a CONNECT proxy (``HTTPS_PROXY``) that routes ``<name>.vault.azure.net:443`` to
the vault (localpeers/azure_service.py). The client checks that the vault host lies under
the challenge's resource domain (``vault.azure.net``), so the production URL shape is kept
and only the route is local.

`LocalKeyVault.environment()` lists the variables that point the SDK at these servers.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from localpeers.azure_service import (
    SYSTEM_ASSIGNED_CLIENT_ID,
    TOKEN_LIFETIME_SECONDS,
    USER_ASSIGNED_CLIENT_ID,
    LocalAzureService,
    TokenRequest,
    azure_error,
    bearer_token,
)

__all__ = [
    "DEFAULT_TENANT_ID",
    "SYSTEM_ASSIGNED_CLIENT_ID",
    "TOKEN_LIFETIME_SECONDS",
    "USER_ASSIGNED_CLIENT_ID",
    "VAULT_RESOURCE",
    "LocalKeyVault",
    "SecretVersion",
    "TokenRequest",
]

VAULT_RESOURCE = "https://vault.azure.net"
DEFAULT_TENANT_ID = "72f988bf-86f1-41af-91ab-2d7cd011db47"


@dataclass(frozen=True)
class SecretVersion:
    """One stored version of a secret."""

    version: str
    value: str
    created: int


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


class _VaultState:
    """Counters and switches of the vault, read by tests and written by the server."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.challenges = 0
        self.failure_status: int | None = None
        self.readers: frozenset[str] | None = None  # None: every identity may read


class LocalKeyVault(LocalAzureService):
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
        super().__init__(
            f"{self.name}.vault.azure.net",
            user_assigned_client_ids=user_assigned_client_ids,
            label="local-key-vault",
        )
        self.vault_url = f"https://{self.host}/"
        self._challenge = (
            f'Bearer authorization="https://login.microsoftonline.com/{tenant_id}", '
            f'resource="{VAULT_RESOURCE}"'
        )
        self._book = _SecretBook()
        self._state = _VaultState()

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
        self._state.readers = None if client_ids is None else frozenset(client_ids)

    # Observations

    def request_count(self, secret_name: str) -> int:
        """HTTP requests for this secret, the unauthenticated challenge request included."""
        return self._state.requests[secret_name]

    def response_count(self, status: int) -> int:
        """Secret requests answered with this status (e.g. 404 for an unset secret)."""
        return self._state.statuses[status]

    @property
    def challenge_count(self) -> int:
        """How many 401 bearer challenges the vault answered."""
        return self._state.challenges

    # Outages

    def down(self, status: int | None = None) -> None:
        """Take the vault down.

        Without a status the vault stops listening and open connections are cut, so clients
        get connection errors; with one (e.g. 503) it answers every request with that status.
        """
        if status is not None:
            self._state.failure_status = status
            return
        self.stop_listening()

    def up(self) -> None:
        """Bring the vault back after down()."""
        self._state.failure_status = None
        self.listen_again()

    # The HTTPS side: GET /secrets/{name}/{version} with Key Vault's challenge and errors

    def application(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/secrets/{name}", self._get_secret)
        app.router.add_get("/secrets/{name}/{version:[^/]*}", self._get_secret)
        return app

    async def _get_secret(self, request: web.Request) -> web.Response:
        self._state.requests[request.match_info["name"]] += 1
        response = self._answer(request)
        self._state.statuses[response.status] += 1
        return response

    def _answer(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if self._state.failure_status is not None:
            return azure_error(
                self._state.failure_status, "ServiceUnavailable", "The vault is down."
            )
        if "api-version" not in request.query:
            return azure_error(400, "BadParameter", "The 'api-version' query parameter is missing.")
        identity = self.identity_of(bearer_token(request), VAULT_RESOURCE)
        if identity is None:
            self._state.challenges += 1
            return azure_error(
                401,
                "Unauthorized",
                "AKV10000: Request is missing a Bearer or PoP token.",
                **{"WWW-Authenticate": self._challenge},
            )
        if self._state.readers is not None and identity not in self._state.readers:
            return azure_error(403, "Forbidden", f"Caller {identity} is not authorized.")
        return self._secret_response(name, request.match_info.get("version", ""))

    def _secret_response(self, name: str, version: str) -> web.Response:
        found = self._book.lookup(name, version)
        if found is None:
            shown = f"{name}/{version}" if version else name
            return azure_error(
                404,
                "SecretNotFound",
                f"A secret with (name/id) {shown} was not found in this key vault.",
            )
        return web.json_response(self._secret_body(name, found))

    def _secret_body(self, name: str, found: SecretVersion) -> dict[str, Any]:
        return {
            "value": found.value,
            "id": f"{self.vault_url}secrets/{name}/{found.version}",
            "attributes": {
                "enabled": True,
                "created": found.created,
                "updated": found.created,
                "recoveryLevel": "Recoverable+Purgeable",
                "recoverableDays": 90,
            },
            "tags": {},
        }
