"""Secrets: the environment first, else Azure Key Vault, with a TTL cache.

An environment value wins: that is also how App Service Key Vault references arrive. Values
read from Key Vault are cached for `max_age` seconds (monotonic clock), so a rotated secret
is picked up without a restart. Nothing is fetched until a secret is first needed, not even
to warm a new instance: the worker's only start-up hook is the import of function_app, which
must stay free of network calls (docs/deploy.md). The vault itself is read by
telephony/adapters/keyvault.py.

A cached value is served without waiting on the store's lock, so a webhook whose secret is
known never queues behind another secret's read. A failed read is remembered for
`retry_after` seconds: meanwhile the stale value (or the failure) is the answer at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from telephony.config.settings import SETTINGS_BY_NAME
from telephony.errors import SecretBackendError, SecretUnavailableError

logger = logging.getLogger(__name__)

# An app setting holding an unresolved Key Vault reference keeps its literal text.
_UNRESOLVED_REFERENCE = "@Microsoft.KeyVault("

# A read the vault failed (after the SDK's own retries, which can take seconds) is not tried
# again for this long: a burst of webhooks during an outage costs one such wait, not one per
# webhook in a queue behind the lock, and each gets its answer (503, or the stale value) now.
RETRY_AFTER_FAILURE_SECONDS = 5.0


class SecretFetcher(Protocol):
    """A secret back end: returns the value, None when the secret does not exist."""

    def fetch(self, secret_name: str) -> str | None: ...


@dataclass(frozen=True)
class _Cached:
    value: str | None
    expires_at: float
    error: SecretBackendError | None = None  # a failed read with no value to fall back on


class SecretStore:
    """Reads secret settings by their setting name (e.g. TWILIO_AUTH_TOKEN)."""

    def __init__(
        self,
        env: Mapping[str, str],
        fetcher: SecretFetcher | None,
        max_age: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        retry_after: float = RETRY_AFTER_FAILURE_SECONDS,
    ) -> None:
        self._env = env
        self._fetcher = fetcher
        self._max_age = max_age
        self._retry_after = retry_after
        self._clock = clock
        self._cache: dict[str, _Cached] = {}
        self._lock = threading.Lock()

    def get(self, setting: str, *, force_refresh: bool = False) -> str | None:
        """The secret's value, or None when it is set nowhere (optional secrets)."""
        from_env = self._env.get(setting, "").strip()
        if from_env:
            if from_env.startswith(_UNRESOLVED_REFERENCE):
                raise SecretUnavailableError(setting, "the Key Vault reference did not resolve")
            return from_env
        if self._fetcher is None:
            return None
        return self._from_vault(setting, force_refresh)

    def require(self, setting: str, *, force_refresh: bool = False) -> str:
        """The secret's value; raises SecretUnavailableError when it is set nowhere."""
        value = self.get(setting, force_refresh=force_refresh)
        if value is None:
            raise SecretUnavailableError(setting, "not set in the environment or Key Vault")
        return value

    def clear_cache(self) -> None:
        """Forget every cached value (tests, or after a known rotation)."""
        with self._lock:
            self._cache.clear()

    def _from_vault(self, setting: str, force_refresh: bool) -> str | None:
        assert self._fetcher is not None
        secret_name = SETTINGS_BY_NAME[setting].secret_name
        if secret_name is None:
            raise ValueError(f"{setting} is not a secret setting")
        cached = self._cache.get(setting)  # no lock: a known value never waits on a read
        if cached and not force_refresh and self._fresh(cached):
            return self._answer(setting, cached)
        # One lock: a cold cache under concurrent requests costs one vault read, not many.
        with self._lock:
            cached = self._cache.get(setting)
            if cached and not force_refresh and self._fresh(cached):
                return self._answer(setting, cached)
            try:
                value = self._fetcher.fetch(secret_name)
            except SecretBackendError as exc:
                return self._answer(setting, self._remember_failure(setting, cached, exc))
            self._cache[setting] = _Cached(value, self._clock() + self._max_age)
            return value

    def _fresh(self, cached: _Cached) -> bool:
        return self._clock() < cached.expires_at

    def _remember_failure(
        self, setting: str, cached: _Cached | None, exc: SecretBackendError
    ) -> _Cached:
        retry_at = self._clock() + self._retry_after
        # A vault outage should not take down a running app that already knows the secret.
        if cached is not None and cached.error is None:
            logger.warning("Key Vault read failed; reusing cached %s (%s)", setting, exc)
            kept = _Cached(cached.value, retry_at)
        else:
            kept = _Cached(None, retry_at, exc)
        self._cache[setting] = kept
        return kept

    @staticmethod
    def _answer(setting: str, cached: _Cached) -> str | None:
        if cached.error is not None:
            raise SecretUnavailableError(setting, str(cached.error)) from cached.error
        return cached.value
