"""SecretStore's rules, with a fake back end and a fake clock (no I/O)."""

from __future__ import annotations

import logging

import pytest

from telephony.config.secrets import SecretStore
from telephony.errors import SecretBackendError, SecretUnavailableError
from tests.fakes import MonotonicClock

PRIMARY = "TWILIO_AUTH_TOKEN"
SECONDARY = "TWILIO_AUTH_TOKEN_SECONDARY"
PRIMARY_SECRET = "twilio-auth-token"
VAULT_VALUE = "vault-value-7f3a9c"
TTL = 300.0


class FakeFetcher:
    """A secret back end that counts reads and can be made to fail."""

    def __init__(self, secrets: dict[str, str] | None = None) -> None:
        self.secrets = dict(secrets or {})
        self.calls: list[str] = []
        self.failing = False

    def fetch(self, secret_name: str) -> str | None:
        self.calls.append(secret_name)
        if self.failing:
            raise SecretBackendError(f"Key Vault read of {secret_name} failed (test outage)")
        return self.secrets.get(secret_name)


@pytest.fixture
def clock() -> MonotonicClock:
    return MonotonicClock()


@pytest.fixture
def fetcher() -> FakeFetcher:
    return FakeFetcher({PRIMARY_SECRET: VAULT_VALUE})


@pytest.fixture
def store(fetcher: FakeFetcher, clock: MonotonicClock) -> SecretStore:
    return SecretStore({}, fetcher, max_age=TTL, clock=clock)


def test_environment_value_wins_over_the_vault(fetcher: FakeFetcher, clock: MonotonicClock) -> None:
    store = SecretStore({PRIMARY: " from-env "}, fetcher, max_age=TTL, clock=clock)

    assert store.require(PRIMARY) == "from-env"
    assert fetcher.calls == []


def test_blank_environment_value_falls_through_to_the_vault(
    fetcher: FakeFetcher, clock: MonotonicClock
) -> None:
    store = SecretStore({PRIMARY: "  "}, fetcher, max_age=TTL, clock=clock)

    assert store.require(PRIMARY) == VAULT_VALUE


def test_unresolved_key_vault_reference_is_an_error(
    fetcher: FakeFetcher, clock: MonotonicClock
) -> None:
    reference = (
        "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/twilio-auth-token/)"
    )
    store = SecretStore({PRIMARY: reference}, fetcher, max_age=TTL, clock=clock)

    with pytest.raises(SecretUnavailableError) as raised:
        store.get(PRIMARY)

    assert raised.value.setting == PRIMARY
    assert fetcher.calls == []


def test_without_a_vault_an_unset_secret_is_none() -> None:
    store = SecretStore({}, None)

    assert store.get(SECONDARY) is None
    with pytest.raises(SecretUnavailableError, match=PRIMARY):
        store.require(PRIMARY)


def test_first_read_goes_to_the_vault_by_secret_name(
    store: SecretStore, fetcher: FakeFetcher
) -> None:
    assert store.require(PRIMARY) == VAULT_VALUE
    assert fetcher.calls == [PRIMARY_SECRET]


def test_second_read_within_ttl_is_served_from_cache(
    store: SecretStore, fetcher: FakeFetcher, clock: MonotonicClock
) -> None:
    store.require(PRIMARY)
    clock.advance(TTL - 1)

    assert store.require(PRIMARY) == VAULT_VALUE
    assert fetcher.calls == [PRIMARY_SECRET]


def test_read_after_ttl_goes_back_to_the_vault(
    store: SecretStore, fetcher: FakeFetcher, clock: MonotonicClock
) -> None:
    store.require(PRIMARY)
    fetcher.secrets[PRIMARY_SECRET] = "rotated"
    clock.advance(TTL)

    assert store.require(PRIMARY) == "rotated"
    assert fetcher.calls == [PRIMARY_SECRET, PRIMARY_SECRET]


def test_force_refresh_reads_the_vault_within_ttl(store: SecretStore, fetcher: FakeFetcher) -> None:
    store.require(PRIMARY)
    fetcher.secrets[PRIMARY_SECRET] = "rotated"

    assert store.require(PRIMARY) == VAULT_VALUE
    assert store.require(PRIMARY, force_refresh=True) == "rotated"
    assert store.require(PRIMARY) == "rotated"


def test_clear_cache_forgets_every_value(store: SecretStore, fetcher: FakeFetcher) -> None:
    store.require(PRIMARY)
    store.clear_cache()
    store.require(PRIMARY)

    assert fetcher.calls == [PRIMARY_SECRET, PRIMARY_SECRET]


def test_absent_secret_is_none_and_cached(
    store: SecretStore, fetcher: FakeFetcher, clock: MonotonicClock
) -> None:
    assert store.get(SECONDARY) is None
    clock.advance(1)
    assert store.get(SECONDARY) is None

    assert fetcher.calls == ["twilio-auth-token-secondary"]


def test_require_of_an_absent_secret_names_the_setting(store: SecretStore) -> None:
    with pytest.raises(SecretUnavailableError) as raised:
        store.require(SECONDARY)

    assert raised.value.setting == SECONDARY
    assert SECONDARY in str(raised.value)


def test_backend_failure_reuses_the_stale_value(
    store: SecretStore,
    fetcher: FakeFetcher,
    clock: MonotonicClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store.require(PRIMARY)
    clock.advance(TTL + 1)
    fetcher.failing = True

    with caplog.at_level(logging.WARNING):
        assert store.require(PRIMARY) == VAULT_VALUE

    assert fetcher.calls == [PRIMARY_SECRET, PRIMARY_SECRET]
    assert PRIMARY in caplog.text
    assert VAULT_VALUE not in caplog.text


def test_backend_failure_on_force_refresh_reuses_the_cached_value(
    store: SecretStore, fetcher: FakeFetcher
) -> None:
    store.require(PRIMARY)
    fetcher.failing = True

    assert store.require(PRIMARY, force_refresh=True) == VAULT_VALUE


def test_backend_failure_without_a_cached_value_raises(
    store: SecretStore, fetcher: FakeFetcher
) -> None:
    fetcher.failing = True

    with pytest.raises(SecretUnavailableError) as raised:
        store.get(PRIMARY)

    assert raised.value.setting == PRIMARY
    assert PRIMARY in str(raised.value)
    assert VAULT_VALUE not in str(raised.value)
    assert isinstance(raised.value.__cause__, SecretBackendError)


def test_failure_after_a_cached_absence_reuses_the_absence(
    store: SecretStore, fetcher: FakeFetcher, clock: MonotonicClock
) -> None:
    # An optional secret known to be absent stays absent through an outage.
    assert store.get(SECONDARY) is None
    clock.advance(TTL + 1)
    fetcher.failing = True

    assert store.get(SECONDARY) is None


def test_non_secret_setting_is_refused(store: SecretStore) -> None:
    with pytest.raises(ValueError, match="TWILIO_ACCOUNT_SID"):
        store.get("TWILIO_ACCOUNT_SID")
