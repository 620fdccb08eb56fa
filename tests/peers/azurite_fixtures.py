"""Pytest fixtures for Azurite.

Load them from a test module with ``pytest_plugins = ("tests.peers.azurite_fixtures",)`` (or
from a conftest), or import the fixture into the module: ``from tests.peers.azurite_fixtures
import azurite``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from localpeers.azurite import Azurite


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """One Azurite (queue, table, blob; in memory) for the whole test run.

    Tests share it, so each test should use its own queue and table names.
    """
    with Azurite() as instance:
        yield instance


@pytest.fixture
def azurite_env(azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> Azurite:
    """Azurite, with AzureWebJobsStorage in this process's environment pointing at it."""
    for name, value in azurite.environment().items():
        monkeypatch.setenv(name, value)
    return azurite
