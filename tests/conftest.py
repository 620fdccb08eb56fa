"""Shared fixtures: a container built from a test environment, replaced per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from telephony.container import Container, build_container, set_container
from tests.app_client import TEST_ACCOUNT_SID, TEST_AUTH_TOKEN
from tests.fakes import MemoryOptOutStore

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
    """Install a container built from BASE_ENV plus overrides; remove it afterwards.

    Without AzureWebJobsStorage the opt-out store is in memory, so tests of make_call and
    the webhooks need no Storage peer; tests/integration/test_sms_optouts.py runs the Table
    store on Azurite.
    """

    def install(**overrides: str) -> Container:
        env = {**BASE_ENV, **overrides}
        env = {k: v for k, v in env.items() if v != ""}
        container = build_container(env)
        if "AzureWebJobsStorage" not in env:
            container._optouts = MemoryOptOutStore()
        set_container(container)
        return container

    yield install
    set_container(None)
