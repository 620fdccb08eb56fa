"""GET /api/health in-process: 200 {"status": "ok"} or 503 {"status": "unavailable"}, the
reason only in the log, never a 500, and a flood of requests costing one round of checks.

Storage and Key Vault are fakes here; tests/integration/test_health_and_smoke.py runs the
checks against Azurite, stopped and hanging.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import azure.functions as func
import pytest

from telephony.config.secrets import SecretStore
from telephony.config.settings import Settings
from telephony.container import Container, set_container
from telephony.errors import SecretBackendError, StorageUnavailableError
from tests.app_client import binding_dicts, function
from tests.conftest import BASE_ENV, AppFactory

ROOT = Path(__file__).resolve().parents[2]
OK = {"status": "ok"}
UNAVAILABLE = {"status": "unavailable"}


class Ping:
    """A Storage ping that counts its calls and fails while `error` is set."""

    def __init__(self, error: Exception | None = None) -> None:
        self.calls = 0
        self.error = error

    def __call__(self) -> None:
        self.calls += 1
        if self.error is not None:
            raise self.error


class DownVault:
    """A Key Vault that fails every read, counting them."""

    def __init__(self) -> None:
        self.reads = 0

    def fetch(self, secret_name: str) -> str | None:
        self.reads += 1
        raise SecretBackendError(f"Key Vault read of {secret_name} failed (ServiceRequestError)")


def get_health() -> func.HttpResponse:
    req = func.HttpRequest("GET", "https://calls.example.net/api/health", body=b"")
    return function("health")(req)  # type: ignore[no-any-return]


def answer() -> tuple[int, dict[str, object]]:
    resp = get_health()
    assert resp.mimetype == "application/json"
    return resp.status_code, json.loads(resp.get_body())


def test_ok_when_settings_secrets_and_storage_are_there(app_env: AppFactory) -> None:
    ping = Ping()
    app_env({"storage_ping": ping})
    resp = get_health()
    assert (resp.status_code, json.loads(resp.get_body())) == (200, OK)
    assert resp.headers["Cache-Control"] == "no-store"
    assert ping.calls == 1


def test_a_missing_secret_is_503_with_the_reason_in_the_log_only(
    app_env: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN no auth token anywhere (the key is dropped when empty)
    ping = Ping()
    app_env({"storage_ping": ping}, TWILIO_AUTH_TOKEN="")
    with caplog.at_level(logging.WARNING):
        status, body = answer()
    # THEN 503 with nothing but the status; the log names the secret
    assert (status, body) == (503, UNAVAILABLE)
    assert '"check": "secrets"' in caplog.text
    assert "secret TWILIO_AUTH_TOKEN is unavailable" in caplog.text
    assert ping.calls == 0  # the first failure is the verdict


def test_an_api_key_without_its_secret_is_503(
    app_env: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    app_env({"storage_ping": Ping()}, TWILIO_API_KEY_SID="SK" + "b" * 32)
    with caplog.at_level(logging.WARNING):
        assert answer() == (503, UNAVAILABLE)
    assert "TWILIO_API_KEY_SECRET" in caplog.text


def test_storage_not_answering_is_503(
    app_env: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    error = StorageUnavailableError("could not read the deliveries table: ServiceRequestError")
    app_env({"storage_ping": Ping(error)})
    with caplog.at_level(logging.WARNING):
        assert answer() == (503, UNAVAILABLE)
    assert '"check": "storage"' in caplog.text


def test_no_storage_setting_is_503_naming_the_setting(
    app_env: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN no AzureWebJobsStorage at all: the real ping cannot even be built
    app_env()
    with caplog.at_level(logging.WARNING):
        assert answer() == (503, UNAVAILABLE)
    assert "set AzureWebJobsStorage or AzureWebJobsStorage__tableServiceUri" in caplog.text


def test_settings_that_do_not_load_are_503(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN the process's own environment with a malformed setting, and no container yet
    monkeypatch.setenv("QUIET_HOURS", "all night")
    set_container(None)
    try:
        with caplog.at_level(logging.WARNING):
            assert answer() == (503, UNAVAILABLE)
    finally:
        set_container(None)
    assert '"check": "settings"' in caplog.text
    assert "QUIET_HOURS must be HH:MM-HH:MM" in caplog.text


def test_an_unexpected_failure_is_503_not_500(app_env: AppFactory) -> None:
    app_env({"storage_ping": Ping(RuntimeError("a bug"))})
    assert answer() == (503, UNAVAILABLE)


def test_no_answer_carries_a_reason(app_env: AppFactory) -> None:
    # Whatever fails, the body is exactly one of the two documents.
    for error in (StorageUnavailableError("Storage down"), KeyError("TWILIO_AUTH_TOKEN")):
        app_env({"storage_ping": Ping(error)})
        assert get_health().get_body() == b'{"status": "unavailable"}'
    app_env({"storage_ping": Ping()})
    assert get_health().get_body() == b'{"status": "ok"}'


def test_a_flood_of_requests_reads_a_down_vault_once(caplog: pytest.LogCaptureFixture) -> None:
    # GIVEN secrets from a Key Vault that fails (the store caches no failure)
    env = {k: v for k, v in BASE_ENV.items() if k != "TWILIO_AUTH_TOKEN"}
    env["KEY_VAULT_URI"] = "https://kv-telephony.vault.azure.net/"
    vault, ping = DownVault(), Ping()
    secrets = SecretStore(env, vault)
    set_container(Container(Settings.from_env(env), secrets, env, storage_ping=ping))
    try:
        # WHEN 200 requests arrive within a second
        with caplog.at_level(logging.WARNING):
            answers = [answer() for _ in range(200)]
    finally:
        set_container(None)
    # THEN every one is 503, the vault was read once, and the reason logged once
    assert answers == [(503, UNAVAILABLE)] * 200
    assert vault.reads == 1
    assert caplog.text.count('"event": "health_unavailable"') == 1
    assert ping.calls == 0


def test_a_flood_of_requests_pings_storage_once(app_env: AppFactory) -> None:
    ping = Ping()
    app_env({"storage_ping": ping})
    assert [answer() for _ in range(100)] == [(200, OK)] * 100
    assert ping.calls == 1


def test_the_route_is_get_api_health_anonymous() -> None:
    [trigger] = [b for b in binding_dicts()["health"] if b["type"] == "httpTrigger"]
    assert trigger["route"] == "health"
    assert trigger["methods"] == [func.HttpMethod.GET]
    assert trigger["authLevel"] == func.AuthLevel.ANONYMOUS


def test_importing_the_app_loads_no_storage_sdk() -> None:
    # Cold start: the health route builds its Storage client on its first check.
    code = (
        "import sys, function_app\n"
        "loaded = {m for m in sys.modules if m.startswith(('azure.data', 'azure.storage',"
        " 'azure.core', 'azure.identity', 'requests'))}\n"
        "assert not loaded, sorted(loaded)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False,
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
