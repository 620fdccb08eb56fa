"""The one place where settings, secrets and adapters are put together.

Built on first use, not at import, and cached for the life of the worker process; tests
replace it with `set_container`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from telephony.secrets import KeyVaultSecretFetcher, SecretStore
from telephony.settings import Settings, SettingsError
from telephony.signature import SignatureValidator

if TYPE_CHECKING:
    from azure.storage.queue import QueueClient

    from telephony.commands import CommandRules
    from telephony.outbound import OutboundService
    from telephony.twilio_gateway import Credentials, TwilioGateway


@dataclass
class Container:
    """Everything the handlers use, built from one environment."""

    settings: Settings
    secrets: SecretStore
    env: Mapping[str, str] = field(default_factory=dict)
    _gateway: TwilioGateway | None = field(init=False, default=None)
    _outbound: OutboundService | None = field(init=False, default=None)
    _queue: QueueClient | None = field(init=False, default=None)

    @property
    def gateway(self) -> TwilioGateway:
        """The Twilio gateway (built on first use: the webhooks never need it)."""
        if self._gateway is None:
            from telephony.twilio_gateway import TwilioGateway

            self._gateway = TwilioGateway(self.credentials, self.settings.twilio_api_base_url)
        return self._gateway

    def outbound_service(self) -> OutboundService:
        """The queued-send service, with its Table Storage records (built on first use)."""
        if self._outbound is None:
            from telephony.outbound import OutboundService, SenderDefaults
            from telephony.storage import table_service
            from telephony.table_store import TableDeliveryStore

            settings = self.settings
            store = TableDeliveryStore(table_service(self.env), settings.deliveries_table_name)
            defaults = SenderDefaults(
                settings.phone_number, settings.messaging_service_sid, settings.public_base_url
            )
            self._outbound = OutboundService(store, self.gateway, self.command_rules(), defaults)
        return self._outbound

    def command_rules(self) -> CommandRules:
        from telephony.commands import CommandRules

        return CommandRules(self.settings.allowed_countries, self.settings.messaging_service_sid)

    def command_queue(self) -> QueueClient:
        """The outbound queue, for producers inside the app (POST /api/messages)."""
        if self._queue is None:
            from telephony.storage import queue_client

            self._queue = queue_client(self.env, self.settings.outbound_queue_name)
        return self._queue

    def credentials(self) -> Credentials:
        """REST credentials; an API key wins over the auth token when both are set."""
        from telephony.twilio_gateway import Credentials

        account_sid = self.settings.account_sid
        if not account_sid:
            raise SettingsError("TWILIO_ACCOUNT_SID is not set")
        if self.settings.api_key_sid:
            secret = self.secrets.require("TWILIO_API_KEY_SECRET")
            return Credentials(account_sid, self.settings.api_key_sid, secret)
        return Credentials(account_sid, account_sid, self.secrets.require("TWILIO_AUTH_TOKEN"))

    def signature_validator(self) -> SignatureValidator:
        """A validator for the current auth token and, during a rotation, the previous one."""
        primary = self.secrets.require("TWILIO_AUTH_TOKEN")
        secondary = self.secrets.get("TWILIO_AUTH_TOKEN_SECONDARY")
        return SignatureValidator([primary] + ([secondary] if secondary else []))


def build_container(env: Mapping[str, str]) -> Container:
    """A container for `env` (os.environ in the app)."""
    settings = Settings.from_env(env)
    fetcher = (
        KeyVaultSecretFetcher(settings.key_vault_uri, env.get("AZURE_CLIENT_ID") or None)
        if settings.key_vault_uri
        else None
    )
    secrets = SecretStore(env, fetcher, max_age=settings.secret_cache_seconds)
    return Container(settings, secrets, env)


_container: Container | None = None
_lock = threading.Lock()


def get_container() -> Container:
    """The process's container, built from os.environ on first use."""
    global _container
    if _container is None:
        with _lock:
            if _container is None:
                _container = build_container(os.environ)
    return _container


def set_container(container: Container | None) -> None:
    """Replace the container (tests); None makes the next use build a fresh one."""
    global _container
    _container = container
