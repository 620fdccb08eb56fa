"""Pytest fixture for the local Key Vault stand-in.

Load it from a test module with ``pytest_plugins = ("tests.peers.keyvault_fixtures",)`` (or
from the top-level conftest), then ask for ``local_key_vault``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from localpeers.keyvault import LocalKeyVault

# Variables that would send the SDK elsewhere: lowercase proxy variables win over uppercase
# ones in urllib, and other managed identity sources take precedence over App Service's.
_CONFLICTING = (
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    "HTTP_PROXY",
    "ALL_PROXY",
    "CURL_CA_BUNDLE",
    "IDENTITY_SERVER_THUMBPRINT",
    "MSI_ENDPOINT",
    "MSI_SECRET",
    "IMDS_ENDPOINT",
    "AZURE_POD_IDENTITY_AUTHORITY_HOST",
)


@pytest.fixture
def local_key_vault(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalKeyVault]:
    """A running LocalKeyVault with the process environment pointed at it.

    Sets IDENTITY_ENDPOINT, IDENTITY_HEADER, HTTPS_PROXY, NO_PROXY and REQUESTS_CA_BUNDLE, so
    a real ManagedIdentityCredential and SecretClient for `vault_url` reach the stand-in.
    Each test gets its own vault name, so no challenge or token cached by the SDK leaks
    between tests.
    """
    for name in _CONFLICTING:
        monkeypatch.delenv(name, raising=False)
    with LocalKeyVault() as vault:
        for name, value in vault.environment().items():
            monkeypatch.setenv(name, value)
        yield vault
