"""Shared fixtures: a container built from a test environment, replaced per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from telephony.container import Container, build_container, set_container
from tests.app_client import TEST_ACCOUNT_SID, TEST_AUTH_TOKEN

# The local peers' fixtures: each starts its peer on loopback when a test first asks.
pytest_plugins = (
    "tests.peers.fixtures",
    "tests.peers.keyvault_fixtures",
    "tests.peers.azurite_fixtures",
)

BASE_ENV = {
    "TWILIO_ACCOUNT_SID": TEST_ACCOUNT_SID,
    "TWILIO_AUTH_TOKEN": TEST_AUTH_TOKEN,
    "TWILIO_PHONE_NUMBER": "+15017122661",
}

AppFactory = Callable[..., Container]


@pytest.fixture
def app_env() -> Iterator[AppFactory]:
    """Install a container built from BASE_ENV plus overrides; remove it afterwards."""

    def install(**overrides: str) -> Container:
        env = {**BASE_ENV, **overrides}
        env = {k: v for k, v in env.items() if v != ""}
        container = build_container(env)
        set_container(container)
        return container

    yield install
    set_container(None)
