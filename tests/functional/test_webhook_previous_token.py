"""A previous auth token that cannot be read only touches requests it would have to check.

The webhooks read TWILIO_AUTH_TOKEN_SECONDARY only for a request the current token did not
sign. So an unreadable one (here an unresolved Key Vault reference) leaves every request
signed with the current token answered, and a request signed otherwise is refused (403,
fail closed) without the reference text in the answer.
"""

from __future__ import annotations

import logging

import pytest

from tests.app_client import TEST_SECONDARY_TOKEN, signed_post
from tests.conftest import AppFactory

UNRESOLVED = (
    "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/twilio-auth-token-secondary/)"
)
INBOUND_SMS = {"MessageSid": "SM" + "1" * 32, "From": "+15558675310", "Body": "hello"}


def test_an_unreadable_previous_token_leaves_current_token_webhooks_answered(
    app_env: AppFactory,
) -> None:
    app_env(TWILIO_AUTH_TOKEN_SECONDARY=UNRESOLVED)

    assert signed_post("sms_url", INBOUND_SMS).status_code == 200


def test_an_unreadable_previous_token_refuses_the_requests_it_would_check(
    app_env: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    app_env(TWILIO_AUTH_TOKEN_SECONDARY=UNRESOLVED)

    with caplog.at_level(logging.WARNING):
        resp = signed_post("sms_url", INBOUND_SMS, token=TEST_SECONDARY_TOKEN)

    assert resp.status_code == 403
    assert b"KeyVault" not in resp.get_body()
    assert "signature_check_failed" in caplog.text
