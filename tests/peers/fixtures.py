"""pytest fixtures for the local Twilio REST API (`TwilioMock`).

Prism takes one to two seconds to load Twilio's spec, so one peer serves the whole test
session; it starts on first use and stops when pytest ends. Make the fixtures visible from a
conftest with::

    from tests.peers.fixtures import twilio_mock, twilio_mock_session  # noqa: F401
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from localpeers.twilio_mock import TwilioMock
from localpeers.twilio_prism import TwilioMockStartError

_PEER = pytest.StashKey[TwilioMock | Exception]()


def _shared_peer(config: pytest.Config) -> TwilioMock:
    # Kept in the config's stash rather than behind a session-scoped fixture, so that each
    # fixture below works when imported alone.
    peer = config.stash.get(_PEER, None)
    if peer is None:
        try:
            peer = TwilioMock().start()
            config.add_cleanup(peer.stop)
        except (TwilioMockStartError, OSError) as exc:
            peer = exc
        config.stash[_PEER] = peer
    if isinstance(peer, Exception):
        # Remembered, so later tests fail at once instead of waiting for Prism again.
        pytest.fail(f"The local Twilio API (Prism) did not start: {peer}", pytrace=False)
    return peer


@pytest.fixture(scope="session")
def twilio_mock_session(request: pytest.FixtureRequest) -> TwilioMock:
    """The session's Twilio API peer as it is; for session-scoped fixtures that need its URL."""
    return _shared_peer(request.config)


@pytest.fixture
def twilio_mock(request: pytest.FixtureRequest) -> Iterator[TwilioMock]:
    """The session's Twilio API peer with no recorded requests, faults, latency or counts."""
    mock = _shared_peer(request.config)
    mock.reset()
    yield mock
    mock.reset()
