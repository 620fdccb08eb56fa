"""The previous auth token is read only for a request the current token did not sign.

TWILIO_AUTH_TOKEN_SECONDARY is optional and usually absent from the vault: read up front,
it cost every cold instance a Key Vault round trip (a 404) before its first answer. Read on
a miss and cached by the store (its absence too), rotation keeps working at the price of one
read per cache period. A counting secret back end and a fake clock; no I/O.
"""

from __future__ import annotations

import pytest
from twilio.request_validator import RequestValidator

from telephony.adapters.signature import FormParams
from telephony.config.secrets import SecretStore
from telephony.config.settings import Settings
from telephony.container import Container, RotatingSignatureValidator
from telephony.errors import SecretBackendError, SecretUnavailableError
from tests.fakes import MonotonicClock

CURRENT, PREVIOUS, OTHER = "current-token-5b1e", "previous-token-88c2", "someone-else-0f3d"
CURRENT_SECRET, PREVIOUS_SECRET = "twilio-auth-token", "twilio-auth-token-secondary"
URL = "https://calls.example.net/api/sms_url"
PARAMS = {"MessageSid": "SM" + "1" * 32, "From": "+15558675310", "Body": "hi"}
TTL = 300.0


class CountingFetcher:
    """A secret back end that records each read; secrets named in `failing` fail."""

    def __init__(self, secrets: dict[str, str]) -> None:
        self.secrets = secrets
        self.reads: list[str] = []
        self.failing: set[str] = set()

    def fetch(self, secret_name: str) -> str | None:
        self.reads.append(secret_name)
        if secret_name in self.failing:
            raise SecretBackendError(f"Key Vault read of {secret_name} failed (test outage)")
        return self.secrets.get(secret_name)


@pytest.fixture
def clock() -> MonotonicClock:
    return MonotonicClock()


@pytest.fixture
def fetcher() -> CountingFetcher:
    return CountingFetcher({CURRENT_SECRET: CURRENT})


@pytest.fixture
def container(fetcher: CountingFetcher, clock: MonotonicClock) -> Container:
    settings = Settings.from_env({"TWILIO_ACCOUNT_SID": "AC" + "a" * 32})
    return Container(settings, SecretStore({}, fetcher, max_age=TTL, clock=clock))


def signed_by(container: Container, token: str) -> bool:
    signature = RequestValidator(token).compute_signature(URL, PARAMS)
    validator = container.signature_validator()
    return validator.is_valid(URL, FormParams(PARAMS.items()), signature)


def test_a_request_signed_with_the_current_token_never_reads_the_previous_one(
    container: Container, fetcher: CountingFetcher
) -> None:
    assert signed_by(container, CURRENT)
    assert signed_by(container, CURRENT)

    assert fetcher.reads == [CURRENT_SECRET]


def test_a_request_signed_with_the_previous_token_is_valid_and_costs_one_read(
    container: Container, fetcher: CountingFetcher
) -> None:
    fetcher.secrets[PREVIOUS_SECRET] = PREVIOUS

    assert signed_by(container, PREVIOUS)
    assert signed_by(container, PREVIOUS)
    assert signed_by(container, CURRENT)

    assert fetcher.reads == [CURRENT_SECRET, PREVIOUS_SECRET]


def test_an_absent_previous_token_is_one_read_per_cache_period_however_many_misses(
    container: Container, fetcher: CountingFetcher, clock: MonotonicClock
) -> None:
    assert not any(signed_by(container, OTHER) for _ in range(5))
    assert fetcher.reads.count(PREVIOUS_SECRET) == 1

    clock.advance(TTL)
    assert not signed_by(container, OTHER)

    assert fetcher.reads.count(PREVIOUS_SECRET) == 2


def test_a_previous_token_removed_from_the_vault_stops_validating_after_the_cache_period(
    container: Container, fetcher: CountingFetcher, clock: MonotonicClock
) -> None:
    fetcher.secrets[PREVIOUS_SECRET] = PREVIOUS
    assert signed_by(container, PREVIOUS)
    del fetcher.secrets[PREVIOUS_SECRET]  # the end of a rotation

    assert signed_by(container, PREVIOUS)  # still cached
    clock.advance(TTL)
    assert not signed_by(container, PREVIOUS)


def test_a_request_without_a_signature_reads_no_previous_token(
    container: Container, fetcher: CountingFetcher
) -> None:
    validator = container.signature_validator()

    assert not validator.is_valid(URL, FormParams(PARAMS.items()), "")
    assert fetcher.reads == [CURRENT_SECRET]


def test_an_unreadable_previous_token_leaves_current_token_requests_valid(
    container: Container, fetcher: CountingFetcher
) -> None:
    fetcher.failing.add(PREVIOUS_SECRET)

    assert signed_by(container, CURRENT)
    # The webhook wrapper refuses what cannot be checked (fail closed: 403).
    with pytest.raises(SecretUnavailableError, match="TWILIO_AUTH_TOKEN_SECONDARY"):
        signed_by(container, PREVIOUS)


def test_the_previous_token_is_only_asked_for_when_the_current_one_fails() -> None:
    asked: list[str] = []

    class Refusing:
        def is_valid(self, url: str, params: FormParams | str, signature: str | None) -> bool:
            return False

    def previous() -> None:
        asked.append("previous")
        return None

    validator = RotatingSignatureValidator(Refusing(), previous)  # type: ignore[arg-type]

    assert not validator.is_valid(URL, FormParams([]), "sig")
    assert asked == ["previous"]
