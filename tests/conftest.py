"""Shared fixtures: a container built from a test environment, replaced per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from telephony.container import Container, build_container, set_container
from tests.app_client import TEST_ACCOUNT_SID, TEST_AUTH_TOKEN
from tests.fakes import MemoryOptOutStore
from tests.flow_fakes import MemoryCallData

# The local peers' fixtures: each starts its peer on loopback when a test first asks.
pytest_plugins = (
    "tests.peers.fixtures",
    "tests.peers.keyvault_fixtures",
    "tests.peers.eventgrid_fixtures",
    "tests.peers.azurite_fixtures",
)

TESTS_ROOT = Path(__file__).resolve().parent
# Every test gets the marker of the directory it lives in, so that `-m unit` or `-m peers`
# selects by where a test is, and nobody has to remember to mark. Markers are declared in
# pyproject.toml; tests/unit/test_test_layout.py checks that no test lives elsewhere and
# that nothing in tests/unit reaches for a peer.
MARKER_BY_DIRECTORY = {
    "unit": "unit",
    "functional": "functional",
    "integration": "peers",
    "infra": "infra",
    "contract": "contract",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        try:
            directory = item.path.resolve().relative_to(TESTS_ROOT).parts[0]
        except ValueError:  # a test outside tests/, named on the command line
            continue
        marker = MARKER_BY_DIRECTORY.get(directory)
        if marker is not None:
            item.add_marker(marker)


BASE_ENV = {
    "TWILIO_ACCOUNT_SID": TEST_ACCOUNT_SID,
    "TWILIO_AUTH_TOKEN": TEST_AUTH_TOKEN,
    "TWILIO_PHONE_NUMBER": "+15017122661",
    # As Core Tools and the development host run the app; tests of production behaviour
    # (no fallback to the request's Host for callback URLs) set it to Production.
    "AZURE_FUNCTIONS_ENVIRONMENT": "Development",
}

AppFactory = Callable[..., Container]


@pytest.fixture
def app_env() -> Iterator[AppFactory]:
    """Install a container built from BASE_ENV plus overrides; remove it afterwards.

    Without AzureWebJobsStorage the opt-out store and the data of calls are in memory and
    events are off (unless the test gives `event_sinks`), so tests of make_call and the
    webhooks need no Storage peer; tests/integration/test_sms_optouts.py and
    test_call_data.py run the Table stores on Azurite.
    """

    def install(parts: Mapping[str, object] | None = None, **overrides: str) -> Container:
        """`parts`: what the container is given instead of building it (fakes)."""
        env = {**BASE_ENV, **overrides}
        env = {k: v for k, v in env.items() if v != ""}
        given = dict(parts or {})
        if "AzureWebJobsStorage" not in env:
            given.setdefault("optouts", MemoryOptOutStore())
            given.setdefault("event_sinks", [])  # no events queue: tests give a sink
            given.setdefault("call_data", MemoryCallData())
        container = build_container(env, **given)
        set_container(container)
        return container

    yield install
    set_container(None)
