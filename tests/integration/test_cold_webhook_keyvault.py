"""The first signed webhook of a cold instance, its secrets in the local Key Vault stand-in.

GIVEN the app with KEY_VAULT_URI and no auth token in its environment (the real
ManagedIdentityCredential and SecretClient, through the CONNECT proxy), WHEN Twilio's first
webhook arrives, THEN it is answered after three round trips: a token from the managed
identity endpoint, the SDK's unauthenticated request that fetches the vault's challenge,
and the read of the auth token, over one connection. The previous token is read only for a
request the current token did not sign: rotation works, and costs that read once; an unset
previous token is one 404 per cache period, however many requests miss.
"""

from __future__ import annotations

import pytest
from twilio.request_validator import RequestValidator

from localpeers.keyvault import LocalKeyVault
from tests.app_client import TEST_AUTH_TOKEN, TEST_SECONDARY_TOKEN, signed_post
from tests.conftest import AppFactory

CURRENT_SECRET, PREVIOUS_SECRET = "twilio-auth-token", "twilio-auth-token-secondary"
INBOUND_SMS = {
    "MessageSid": "SM" + "1" * 32,
    "AccountSid": "AC" + "a" * 32,
    "From": "+15558675310",
    "To": "+15017122661",
    "Body": "hello",
}


@pytest.fixture
def vault(local_key_vault: LocalKeyVault, app_env: AppFactory) -> LocalKeyVault:
    """The stand-in holding the current token, and a cold app reading it (no token in env)."""
    local_key_vault.set_secret(CURRENT_SECRET, TEST_AUTH_TOKEN)
    app_env(TWILIO_AUTH_TOKEN="", KEY_VAULT_URI=local_key_vault.vault_url)
    return local_key_vault


def round_trips(vault: LocalKeyVault) -> dict[str, int]:
    return {
        "token": vault.token_request_count,
        "challenge": vault.challenge_count,
        "current": vault.request_count(CURRENT_SECRET),
        "previous": vault.request_count(PREVIOUS_SECRET),
        "not_found": vault.response_count(404),
        "connections": vault.connection_count,
    }


def test_a_cold_instance_answers_its_first_webhook_after_three_round_trips(
    vault: LocalKeyVault,
) -> None:
    assert signed_post("sms_url", INBOUND_SMS).status_code == 200

    expected = {"token": 1, "challenge": 1, "current": 2, "previous": 0, "not_found": 0}
    assert round_trips(vault) == {**expected, "connections": 1}
    assert signed_post("sms_url", INBOUND_SMS).status_code == 200
    assert round_trips(vault) == {**expected, "connections": 1}


def test_a_webhook_signed_with_the_previous_token_is_answered_and_reads_it_once(
    vault: LocalKeyVault,
) -> None:
    vault.set_secret(PREVIOUS_SECRET, TEST_SECONDARY_TOKEN)

    for _ in range(3):
        resp = signed_post("sms_url", INBOUND_SMS, token=TEST_SECONDARY_TOKEN)
        assert resp.status_code == 200
    assert signed_post("sms_url", INBOUND_SMS).status_code == 200

    assert round_trips(vault) == {
        "token": 1, "challenge": 1, "current": 2, "previous": 1, "not_found": 0, "connections": 1,
    }  # fmt: skip


def test_an_unset_previous_token_is_one_404_however_many_requests_miss(
    vault: LocalKeyVault,
) -> None:
    forged = RequestValidator("not-a-token-of-this-account").compute_signature(
        "https://calls.example.net/api/sms_url", INBOUND_SMS
    )

    for _ in range(3):
        assert signed_post("sms_url", INBOUND_SMS, signature=forged).status_code == 403
    assert signed_post("sms_url", INBOUND_SMS).status_code == 200

    assert round_trips(vault) == {
        "token": 1, "challenge": 1, "current": 2, "previous": 1, "not_found": 1, "connections": 1,
    }  # fmt: skip
