"""SecretStore over the real Key Vault SDK, against the local Key Vault stand-in.

The real ManagedIdentityCredential and SecretClient run here: the 401 challenge, the token
request to the managed identity endpoint, TLS through the CONNECT proxy and the SDK's own
retries. Time moves through SecretStore's clock, not by sleeping.
"""

from __future__ import annotations

import logging
import time

import pytest

from localpeers.keyvault import USER_ASSIGNED_CLIENT_ID, VAULT_RESOURCE, LocalKeyVault
from telephony.adapters.keyvault import KeyVaultSecretFetcher
from telephony.config.secrets import SecretStore
from telephony.errors import SecretUnavailableError
from tests.fakes import MonotonicClock

PRIMARY = "TWILIO_AUTH_TOKEN"
SECONDARY = "TWILIO_AUTH_TOKEN_SECONDARY"
PRIMARY_SECRET = "twilio-auth-token"
SECRET_VALUE = "kv-primary-9d41e2b7"
ROTATED_VALUE = "kv-rotated-03c8f5aa"
TTL = 300.0

logger = logging.getLogger(__name__)


@pytest.fixture
def clock() -> MonotonicClock:
    return MonotonicClock()


@pytest.fixture
def vault(local_key_vault: LocalKeyVault) -> LocalKeyVault:
    local_key_vault.set_secret(PRIMARY_SECRET, SECRET_VALUE)
    return local_key_vault


def make_store(
    vault: LocalKeyVault, clock: MonotonicClock, client_id: str | None = None
) -> SecretStore:
    fetcher = KeyVaultSecretFetcher(vault.vault_url, client_id=client_id)
    return SecretStore({}, fetcher, max_age=TTL, clock=clock)


def timed_read(store: SecretStore, setting: str) -> str | None:
    """Read a setting and log how long it took (vault outages include the SDK's retries)."""
    started = time.monotonic()
    try:
        return store.get(setting)
    finally:
        logger.info("reading %s took %.2fs", setting, time.monotonic() - started)


def test_first_read_takes_a_challenge_a_token_and_the_secret(
    vault: LocalKeyVault, clock: MonotonicClock
) -> None:
    store = make_store(vault, clock)

    assert store.require(PRIMARY) == SECRET_VALUE

    assert vault.challenge_count == 1
    assert vault.request_count(PRIMARY_SECRET) == 2  # the challenge, then the read
    assert vault.token_request_count == 1
    request = vault.token_requests[0]
    assert (request.resource, request.client_id) == (VAULT_RESOURCE, None)


def test_read_within_ttl_does_not_reach_the_vault(
    vault: LocalKeyVault, clock: MonotonicClock
) -> None:
    store = make_store(vault, clock)
    store.require(PRIMARY)
    clock.advance(TTL - 1)

    assert store.require(PRIMARY) == SECRET_VALUE

    assert vault.request_count(PRIMARY_SECRET) == 2
    assert vault.token_request_count == 1


def test_read_after_ttl_reaches_the_vault_with_the_cached_token(
    vault: LocalKeyVault, clock: MonotonicClock
) -> None:
    store = make_store(vault, clock)
    store.require(PRIMARY)
    vault.rotate_secret(PRIMARY_SECRET, ROTATED_VALUE)
    clock.advance(TTL)

    assert store.require(PRIMARY) == ROTATED_VALUE

    assert vault.request_count(PRIMARY_SECRET) == 3
    assert vault.challenge_count == 1
    assert vault.token_request_count == 1


def test_forced_refresh_picks_up_a_rotated_value(
    vault: LocalKeyVault, clock: MonotonicClock
) -> None:
    store = make_store(vault, clock)
    store.require(PRIMARY)
    vault.rotate_secret(PRIMARY_SECRET, ROTATED_VALUE)

    assert store.require(PRIMARY) == SECRET_VALUE
    assert store.require(PRIMARY, force_refresh=True) == ROTATED_VALUE
    assert store.require(PRIMARY) == ROTATED_VALUE


def test_absent_optional_secret_is_none_and_cached(
    vault: LocalKeyVault, clock: MonotonicClock
) -> None:
    store = make_store(vault, clock)

    assert store.get(SECONDARY) is None
    assert store.get(SECONDARY) is None

    assert vault.request_count("twilio-auth-token-secondary") == 2  # challenge + one 404


def test_deleted_secret_reads_as_absent_after_ttl(
    vault: LocalKeyVault, clock: MonotonicClock
) -> None:
    store = make_store(vault, clock)
    store.require(PRIMARY)
    vault.delete_secret(PRIMARY_SECRET)
    clock.advance(TTL)

    with pytest.raises(SecretUnavailableError, match=PRIMARY):
        store.require(PRIMARY)


def test_environment_value_means_no_vault_traffic(
    vault: LocalKeyVault, clock: MonotonicClock
) -> None:
    fetcher = KeyVaultSecretFetcher(vault.vault_url)
    store = SecretStore({PRIMARY: "from-app-settings"}, fetcher, max_age=TTL, clock=clock)

    assert store.require(PRIMARY) == "from-app-settings"

    assert vault.request_count(PRIMARY_SECRET) == 0
    assert vault.token_request_count == 0


def test_user_assigned_identity_is_asked_for_by_client_id(
    vault: LocalKeyVault, clock: MonotonicClock
) -> None:
    store = make_store(vault, clock, client_id=USER_ASSIGNED_CLIENT_ID)

    assert store.require(PRIMARY) == SECRET_VALUE

    assert [r.client_id for r in vault.token_requests] == [USER_ASSIGNED_CLIENT_ID]


def test_unknown_identity_makes_the_secret_unavailable(
    vault: LocalKeyVault, clock: MonotonicClock
) -> None:
    store = make_store(vault, clock, client_id="00000000-0000-0000-0000-00000000dead")

    with pytest.raises(SecretUnavailableError, match=PRIMARY) as raised:
        store.get(PRIMARY)

    assert SECRET_VALUE not in str(raised.value)
    assert vault.token_requests[-1].granted is False


def test_identity_without_access_is_an_error_not_an_absence(
    vault: LocalKeyVault, clock: MonotonicClock
) -> None:
    vault.allow_readers([USER_ASSIGNED_CLIENT_ID])
    store = make_store(vault, clock)  # system-assigned identity, not allowed

    with pytest.raises(SecretUnavailableError, match=PRIMARY) as raised:
        store.get(PRIMARY)

    assert SECRET_VALUE not in str(raised.value)


def test_vault_down_without_a_cached_value_raises(
    vault: LocalKeyVault, clock: MonotonicClock
) -> None:
    store = make_store(vault, clock)
    vault.down()

    with pytest.raises(SecretUnavailableError) as raised:
        timed_read(store, PRIMARY)

    assert raised.value.setting == PRIMARY
    assert PRIMARY in str(raised.value)
    assert SECRET_VALUE not in str(raised.value)


def test_vault_down_with_a_cached_value_reuses_it(
    vault: LocalKeyVault, clock: MonotonicClock, caplog: pytest.LogCaptureFixture
) -> None:
    store = make_store(vault, clock)
    store.require(PRIMARY)
    vault.down()
    clock.advance(TTL + 1)

    with caplog.at_level(logging.WARNING):
        assert timed_read(store, PRIMARY) == SECRET_VALUE

    assert SECRET_VALUE not in caplog.text


def test_vault_back_up_serves_reads_again(vault: LocalKeyVault, clock: MonotonicClock) -> None:
    store = make_store(vault, clock)
    store.require(PRIMARY)
    vault.down()
    vault.up()  # listens on the same port again; the client reconnects through the proxy
    vault.rotate_secret(PRIMARY_SECRET, ROTATED_VALUE)

    assert store.require(PRIMARY, force_refresh=True) == ROTATED_VALUE
