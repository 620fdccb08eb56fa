"""Secrets: the environment first, else Azure Key Vault, with a TTL cache.

An environment value wins: that is also how App Service Key Vault references arrive. Values
read from Key Vault are cached for `max_age` seconds (monotonic clock), so a rotated secret
is picked up without a restart. Nothing is fetched until a secret is first needed; the
vault itself is read by telephony/adapters/keyvault.py.
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


class SecretFetcher(Protocol):
    """A secret back end: returns the value, None when the secret does not exist."""

    def fetch(self, secret_name: str) -> str | None: ...


@dataclass
class _Cached:
    value: str | None
    fetched_at: float


class SecretStore:
    """Reads secret settings by their setting name (e.g. TWILIO_AUTH_TOKEN)."""

    def __init__(
        self,
        env: Mapping[str, str],
        fetcher: SecretFetcher | None,
        max_age: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._env = env
        self._fetcher = fetcher
        self._max_age = max_age
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
        # One lock: a cold cache under concurrent requests costs one vault read, not many.
        with self._lock:
            cached = self._cache.get(setting)
            if cached and not force_refresh and self._fresh(cached):
                return cached.value
            try:
                value = self._fetcher.fetch(secret_name)
            except SecretBackendError as exc:
                return self._stale_or_raise(setting, cached, exc)
            self._cache[setting] = _Cached(value, self._clock())
            return value

    def _fresh(self, cached: _Cached) -> bool:
        return self._clock() - cached.fetched_at < self._max_age

    def _stale_or_raise(
        self, setting: str, cached: _Cached | None, exc: SecretBackendError
    ) -> str | None:
        # A vault outage should not take down a running app that already knows the secret.
        if cached is not None:
            logger.warning("Key Vault read failed; reusing cached %s (%s)", setting, exc)
            return cached.value
        raise SecretUnavailableError(setting, str(exc)) from exc
