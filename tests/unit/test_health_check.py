"""HealthCheck: one round of checks per TTL, whatever the number of callers; the first
failure is the verdict, logged with its reason; a new round once the verdict is stale."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import pytest

from telephony.errors import SecretUnavailableError, StorageUnavailableError
from telephony.health import DEFAULT_TTL, OK, HealthCheck, Verdict


class Counted:
    """A check that counts its calls and fails while `error` is set."""

    def __init__(self, error: Exception | None = None) -> None:
        self.calls = 0
        self.error = error

    def __call__(self) -> None:
        self.calls += 1
        if self.error is not None:
            raise self.error


class Ticks:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_many_calls_within_the_ttl_run_one_round_of_checks() -> None:
    # GIVEN two passing checks
    secrets, storage, ticks = Counted(), Counted(), Ticks()
    health = HealthCheck({"secrets": secrets, "storage": storage}, ttl=5.0, clock=ticks)
    # WHEN it is asked 100 times within the TTL
    verdicts = []
    for _ in range(100):
        verdicts.append(health.verdict())
        ticks.now += 0.04
    # THEN each check ran once, and every answer is ok
    assert (secrets.calls, storage.calls) == (1, 1)
    assert set(verdicts) == {OK} and OK.ok


def test_concurrent_callers_share_one_round() -> None:
    # GIVEN a slow check (a cold Key Vault read) and 20 requests arriving at once
    started = threading.Event()
    release = threading.Event()
    calls = []

    def slow() -> None:
        calls.append(1)
        started.set()
        release.wait(5)

    health = HealthCheck({"secrets": slow})
    verdicts: list[Verdict] = []
    threads = [
        threading.Thread(target=lambda: verdicts.append(health.verdict())) for _ in range(20)
    ]
    for thread in threads:
        thread.start()
    started.wait(5)
    release.set()
    for thread in threads:
        thread.join(5)
    # THEN the vault was read once, and all 20 got its verdict
    assert len(calls) == 1
    assert verdicts == [OK] * 20


def test_a_failing_check_makes_the_verdict_unavailable_and_names_it_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN readable secrets and Storage that does not answer
    storage = Counted(
        StorageUnavailableError("could not read the deliveries table: ServiceRequestError")
    )
    health = HealthCheck({"secrets": Counted(), "storage": storage}, clock=Ticks())
    # WHEN asked
    with caplog.at_level(logging.WARNING, logger="telephony.health"):
        verdict = health.verdict()
    # THEN it is unavailable because of Storage, and the log says so, once
    assert not verdict.ok
    assert verdict == Verdict("storage", "could not read the deliveries table: ServiceRequestError")
    [record] = caplog.records
    assert '"event": "health_unavailable"' in record.getMessage()
    assert '"check": "storage"' in record.getMessage()
    assert "ServiceRequestError" in record.getMessage()


def test_checks_after_a_failing_one_are_not_run() -> None:
    secrets = Counted(SecretUnavailableError("TWILIO_AUTH_TOKEN", "not set"))
    storage = Counted()
    verdict = HealthCheck({"secrets": secrets, "storage": storage}, clock=Ticks()).verdict()
    assert verdict.failed == "secrets"
    assert storage.calls == 0


def test_a_failure_is_kept_for_the_ttl_too() -> None:
    # GIVEN a vault that fails: each round would be one more vault request
    secrets, ticks = Counted(SecretUnavailableError("TWILIO_AUTH_TOKEN", "vault down")), Ticks()
    health = HealthCheck({"secrets": secrets}, ttl=5.0, clock=ticks)
    # WHEN asked repeatedly within the TTL
    for _ in range(50):
        assert not health.verdict().ok
        ticks.now += 0.09
    # THEN the vault was asked once
    assert secrets.calls == 1


def test_after_the_ttl_a_new_round_sees_the_change() -> None:
    # GIVEN Storage down at first
    storage, ticks = Counted(StorageUnavailableError("down")), Ticks()
    health = HealthCheck({"storage": storage}, ttl=5.0, clock=ticks)
    assert not health.verdict().ok
    # WHEN it comes back: within the TTL the kept verdict stands
    storage.error = None
    ticks.now += 4.9
    assert not health.verdict().ok
    # THEN once the TTL has passed, the next request checks again and sees it
    ticks.now += 0.1
    assert health.verdict().ok
    assert storage.calls == 2


def test_the_ttl_counts_from_the_end_of_a_round() -> None:
    # GIVEN a round that takes 3 s (slow answers)
    ticks = Ticks()

    def slow() -> None:
        ticks.now += 3.0

    calls = Counted()
    health = HealthCheck({"slow": slow, "counted": calls}, ttl=5.0, clock=ticks)
    health.verdict()
    # WHEN asked 4.9 s after that round ended, THEN no second round starts
    ticks.now += 4.9
    health.verdict()
    assert calls.calls == 1


def test_a_failure_outside_the_error_family_is_told_by_its_type_only() -> None:
    # Its message could carry anything (a URL with a signature, a value): only the type.
    error = ValueError("https://vault.example/secrets/x?sig=abc")
    verdict = HealthCheck({"storage": Counted(error)}, clock=Ticks()).verdict()
    assert verdict == Verdict("storage", "ValueError")


def test_a_recovery_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    storage, ticks = Counted(StorageUnavailableError("down")), Ticks()
    health = HealthCheck({"storage": storage}, ttl=1.0, clock=ticks)
    health.verdict()
    storage.error = None
    ticks.now += 1.0
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="telephony.health"):
        assert health.verdict().ok
    assert ['"event": "health_restored"' in r.getMessage() for r in caplog.records] == [True]


def test_the_default_ttl_is_a_few_seconds() -> None:
    assert 1.0 <= DEFAULT_TTL <= 10.0
    checks: dict[str, Callable[[], object]] = {}
    assert HealthCheck(checks).verdict() is OK  # no checks: nothing can be missing
