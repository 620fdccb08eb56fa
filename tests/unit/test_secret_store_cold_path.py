"""SecretStore on the path of a cold webhook: known values never wait, failures are brief.

A cached secret is answered without the store's lock, so a request whose token is known
does not queue behind a read of another secret (the previous token, read on a signature
miss). A failed read is remembered for `retry_after` seconds: the requests queued behind it,
and those that follow, get the stale value or the failure at once instead of each waiting
on the SDK's retries again. A blocking secret back end, threads and a fake clock; no I/O.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from telephony.config.secrets import SecretStore
from telephony.errors import SecretBackendError, SecretUnavailableError
from tests.fakes import MonotonicClock

PRIMARY, SECONDARY = "TWILIO_AUTH_TOKEN", "TWILIO_AUTH_TOKEN_SECONDARY"
PRIMARY_SECRET, SECONDARY_SECRET = "twilio-auth-token", "twilio-auth-token-secondary"
VALUE = "vault-value-41c7"
TTL, RETRY_AFTER = 300.0, 5.0
WAIT = 5.0  # seconds a test waits on another thread before it calls the test failed


class GatedFetcher:
    """A secret back end whose reads of the secrets in `gated` wait until `release` is set."""

    def __init__(self, gated: set[str] | None = None) -> None:
        self.secrets = {PRIMARY_SECRET: VALUE}
        self.reads: list[str] = []
        self.failing = False
        self.gated = gated or set()
        self.inside = threading.Event()
        self.release = threading.Event()

    def fetch(self, secret_name: str) -> str | None:
        self.reads.append(secret_name)
        if secret_name in self.gated:
            self.inside.set()
            assert self.release.wait(WAIT)
        if self.failing:
            raise SecretBackendError(f"Key Vault read of {secret_name} failed (test outage)")
        return self.secrets.get(secret_name)


@pytest.fixture
def clock() -> MonotonicClock:
    return MonotonicClock()


def make_store(fetcher: GatedFetcher, clock: MonotonicClock) -> SecretStore:
    return SecretStore({}, fetcher, max_age=TTL, clock=clock, retry_after=RETRY_AFTER)


def test_a_cached_secret_is_answered_while_another_secret_is_being_read(
    clock: MonotonicClock,
) -> None:
    fetcher = GatedFetcher(gated={SECONDARY_SECRET})
    store = make_store(fetcher, clock)
    store.require(PRIMARY)

    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(store.get, SECONDARY)
        assert fetcher.inside.wait(WAIT)  # the slow read holds the store's lock now
        assert store.require(PRIMARY) == VALUE
        fetcher.release.set()
        assert slow.result(WAIT) is None


def test_reads_queued_behind_a_failed_read_fail_without_reading_again(
    clock: MonotonicClock,
) -> None:
    fetcher = GatedFetcher(gated={PRIMARY_SECRET})
    fetcher.failing = True
    store = make_store(fetcher, clock)

    def read() -> str:
        try:
            return store.require(PRIMARY)
        except SecretUnavailableError as exc:
            return type(exc.__cause__).__name__

    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(read)
        assert fetcher.inside.wait(WAIT)
        queued = [pool.submit(read) for _ in range(7)]
        fetcher.release.set()
        answers = [first.result(WAIT), *(f.result(WAIT) for f in queued)]

    assert answers == ["SecretBackendError"] * 8
    assert fetcher.reads == [PRIMARY_SECRET]


def test_a_failed_read_is_tried_again_after_retry_after(clock: MonotonicClock) -> None:
    fetcher = GatedFetcher()
    fetcher.failing = True
    store = make_store(fetcher, clock)
    with pytest.raises(SecretUnavailableError):
        store.get(PRIMARY)
    fetcher.failing = False

    clock.advance(RETRY_AFTER - 1)
    with pytest.raises(SecretUnavailableError, match=PRIMARY):
        store.get(PRIMARY)
    clock.advance(1)

    assert store.require(PRIMARY) == VALUE
    assert fetcher.reads == [PRIMARY_SECRET, PRIMARY_SECRET]


def test_a_stale_value_is_kept_through_the_retry_window_with_one_warning(
    clock: MonotonicClock, caplog: pytest.LogCaptureFixture
) -> None:
    fetcher = GatedFetcher()
    store = make_store(fetcher, clock)
    store.require(PRIMARY)
    clock.advance(TTL)
    fetcher.failing = True

    with caplog.at_level(logging.WARNING):
        assert [store.require(PRIMARY) for _ in range(3)] == [VALUE] * 3

    assert fetcher.reads == [PRIMARY_SECRET, PRIMARY_SECRET]
    assert len(caplog.records) == 1
    assert VALUE not in caplog.text

    clock.advance(RETRY_AFTER)
    fetcher.failing = False
    fetcher.secrets[PRIMARY_SECRET] = "rotated"
    assert store.require(PRIMARY) == "rotated"


def test_a_forced_refresh_reads_the_vault_within_the_retry_window(clock: MonotonicClock) -> None:
    fetcher = GatedFetcher()
    fetcher.failing = True
    store = make_store(fetcher, clock)
    with pytest.raises(SecretUnavailableError):
        store.get(PRIMARY)
    fetcher.failing = False

    assert store.require(PRIMARY, force_refresh=True) == VALUE


def test_clear_cache_forgets_a_failure(clock: MonotonicClock) -> None:
    fetcher = GatedFetcher()
    fetcher.failing = True
    store = make_store(fetcher, clock)
    with pytest.raises(SecretUnavailableError):
        store.get(PRIMARY)
    fetcher.failing = False

    store.clear_cache()

    assert store.require(PRIMARY) == VALUE
