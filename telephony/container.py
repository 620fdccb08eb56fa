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
    from telephony.deliveries import DeliveryRecord
    from telephony.flows import FlowBook
    from telephony.optouts import OptOutStore
    from telephony.outbound import OutboundService
    from telephony.sms import SmsResponder
    from telephony.sms_rules import SmsRules
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
    _flows: FlowBook | str | None = field(init=False, default=None)  # str: why it failed
    _optouts: OptOutStore | None = field(init=False, default=None)
    _sms_rules: SmsRules | str | None = field(init=False, default=None)
    _sms_rules_loaded: bool = field(init=False, default=False)
    _sms_responder: SmsResponder | None = field(init=False, default=None)

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
            self._outbound = OutboundService(
                store, self.gateway, self.command_rules(), defaults, optouts=self.optout_store()
            )
        return self._outbound

    def optout_store(self) -> OptOutStore:
        """Numbers that opted out, in Table Storage (built on first use)."""
        if self._optouts is None:
            from telephony.optouts import TableOptOutStore
            from telephony.storage import table_service

            table = self.settings.optouts_table_name
            self._optouts = TableOptOutStore(table_service(self.env), table)
        return self._optouts

    def sms_rules(self) -> SmsRules | None:
        """The SMS_RULES_FILE document, loaded once; None when the setting is unset.

        A missing or invalid file raises SettingsError naming the setting, the file and
        every problem (rule and reason), on every call: the file ships with the app, so it
        cannot get better without a restart.
        """
        if not self._sms_rules_loaded:
            self._sms_rules = self._load_sms_rules()
            self._sms_rules_loaded = True
        if isinstance(self._sms_rules, str):
            # A new error each time: re-raising one object would grow its traceback.
            raise SettingsError(self._sms_rules)
        return self._sms_rules

    def _load_sms_rules(self) -> SmsRules | str | None:
        """The rules, None when unset, or what is wrong with them."""
        name = self.settings.sms_rules_file
        if name is None:
            return None
        from telephony.documents import app_file
        from telephony.sms_rules import SmsRulesError, load_rules

        try:
            return load_rules(app_file(name))
        except SmsRulesError as exc:
            return f"SMS_RULES_FILE {exc}"

    def sms_responder(self) -> SmsResponder:
        """Carries out inbound SMS decisions: opt-outs, and forwards through the queue."""
        if self._sms_responder is None:
            from telephony.sms import SmsResponder

            self._sms_responder = SmsResponder(self.optout_store, self.submit_command)
        return self._sms_responder

    def submit_command(self, document: object) -> tuple[DeliveryRecord, bool]:
        """Validate and enqueue an outbound command (see OutboundService.submit).

        The queue's failures become StorageUnavailableError, like the table's.
        """
        from telephony.storage import storage_errors

        queue = self.command_queue()

        def put(text: str) -> None:
            with storage_errors("enqueue an outbound command"):
                queue.send_message(text)

        return self.outbound_service().submit(document, put)

    def command_rules(self) -> CommandRules:
        from telephony.commands import CommandRules

        settings = self.settings
        return CommandRules(
            settings.allowed_countries, settings.messaging_service_sid, self.has_flow
        )

    def flow_book(self) -> FlowBook:
        """The CALL_FLOWS_FILE document, loaded and checked on first use.

        A missing or invalid document raises SettingsError naming the file and every
        problem (flow, step, reason), on every call: it ships with the app, so only a new
        deployment can mend it.
        """
        if self._flows is None:
            self._flows = self._load_flows()
        if isinstance(self._flows, str):
            # A new error each time: re-raising one object would grow its traceback.
            raise SettingsError(self._flows)
        return self._flows

    def has_flow(self, flow_id: str) -> bool:
        """True when the call flow document defines `flow_id` (loads it on first use)."""
        return flow_id in self.flow_book()

    def _load_flows(self) -> FlowBook | str:
        """The book, or what is wrong with it."""
        from telephony.documents import app_file
        from telephony.flows import FlowDocumentError, load_flow_book

        try:
            book = load_flow_book(app_file(self.settings.call_flows_file))
        except FlowDocumentError as exc:
            return f"CALL_FLOWS_FILE {exc}"
        voice_flow = self.settings.voice_flow
        if voice_flow is not None and voice_flow not in book:
            return f"VOICE_FLOW names flow {voice_flow!r}, not in {book.source}"
        return book

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
