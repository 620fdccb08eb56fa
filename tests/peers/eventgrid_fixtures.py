"""Pytest fixture for the local Event Grid topic stand-in.

Registered by the top-level conftest (``pytest_plugins``); ask for ``local_event_grid``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from localpeers.eventgrid import LocalEventGridTopic
from tests.peers.keyvault_fixtures import _CONFLICTING


@pytest.fixture
def local_event_grid(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalEventGridTopic]:
    """A running LocalEventGridTopic with the process environment pointed at it.

    Sets IDENTITY_ENDPOINT, IDENTITY_HEADER, HTTPS_PROXY, NO_PROXY and REQUESTS_CA_BUNDLE
    (and clears the variables that would send the SDK elsewhere, as for the Key Vault
    stand-in), so a real ManagedIdentityCredential and Event Grid client for `endpoint`
    reach the stand-in. Each test gets its own topic, with its own name and tokens.
    """
    for name in _CONFLICTING:
        monkeypatch.delenv(name, raising=False)
    with LocalEventGridTopic() as topic:
        for name, value in topic.environment().items():
            monkeypatch.setenv(name, value)
        yield topic
