"""The one place where settings, secrets and adapters are put together.

Every part is built on first use, not at import, and kept for the life of the worker
process. Tests pass the parts they replace (fakes, short timeouts) to the constructor;
what they do not pass is built from the settings as in production.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast, overload

from telephony.config.secrets import SecretStore
from telephony.config.settings import Settings
from telephony.errors import DocumentError, FlowDocumentError, SettingsError

if TYPE_CHECKING:
    from telephony.adapters.signature import FormParams, SignatureValidator
    from telephony.adapters.twilio_rest import Credentials
    from telephony.events import EventSink
    from telephony.events.model import OutcomeEvent
    from telephony.events.publisher import Publisher
    from telephony.flows import FlowBook, FlowProblem
    from telephony.flows.data import CallDataStore, DataSchema
    from telephony.flows.trail import CallTrailStore
    from telephony.flows.voice import FlowCalls
    from telephony.health import HealthCheck
    from telephony.outbound.calls import CallPlacer
    from telephony.outbound.commands import CommandRules
    from telephony.outbound.reconcile import ReconcileIndex, Reconciler
    from telephony.outbound.records import DeliveryRecord, DeliveryStore, Tracking
    from telephony.outbound.sender import Sender, SenderDefaults
    from telephony.outbound.service import OutboundService
    from telephony.outbound.writer import RecordWriter
    from telephony.sms.optouts import OptOutStore
    from telephony.sms.routing import SmsResponder
    from telephony.sms.rules import SmsRules

Clock = Callable[[], datetime]
Enqueue = Callable[[str], object]
Requeue = Callable[[str, timedelta], object]  # a message, and how long it stays invisible
StoragePing = Callable[[], object]  # one cheap Storage round trip; raises when it fails
T = TypeVar("T")


class part(Generic[T]):  # lower case: a decorator, like cached_property
    """A cached property built once per container, under the container's lock.

    functools.cached_property without its lock (Python 3.12 dropped it): the worker's
    threads may all ask for a part at once, and two Twilio clients would mean two pools.
    """

    def __init__(self, build: Callable[[Any], T]) -> None:
        self._build = build
        self._name = build.__name__
        self.__doc__ = build.__doc__

    @overload
    def __get__(self, container: None, owner: type) -> part[T]: ...
    @overload
    def __get__(self, container: Container, owner: type | None = None) -> T: ...
    def __get__(self, container: Container | None, owner: type | None = None) -> T | part[T]:
        if container is None:
            return self
        found = container.__dict__.get(self._name, _MISSING)
        if found is _MISSING:
            with container.lock:
                found = container.__dict__.get(self._name, _MISSING)
                if found is _MISSING:
                    found = container.__dict__[self._name] = self._build(container)
        return found  # type: ignore[no-any-return]


_MISSING = object()


class Container:
    """Everything the handlers use, built from one environment.

    A part given to the constructor is stored under the name of the property that would
    otherwise build it, so the property never runs for it.
    """

    def __init__(
        self,
        settings: Settings,
        secrets: SecretStore,
        env: Mapping[str, str] | None = None,
        *,
        sender: Sender | None = None,
        deliveries: DeliveryStore | None = None,
        optouts: OptOutStore | None = None,
        enqueue: Enqueue | None = None,
        requeue: Requeue | None = None,
        clock: Clock | None = None,
        event_sinks: Sequence[EventSink] | None = None,
        call_trails: CallTrailStore | None = None,
        call_data: CallDataStore | None = None,
        storage_ping: StoragePing | None = None,
    ) -> None:
        self.settings = settings
        self.secrets = secrets
        self.lock = threading.RLock()  # parts build parts: re-entered on one thread
        self.env: Mapping[str, str] = env if env is not None else {}
        given = {
            "sender": sender,
            "deliveries": deliveries,
            "optouts": optouts,
            "enqueue": enqueue,
            "requeue": requeue,
            "clock": clock,
            "event_sinks": event_sinks,
            "call_trails": call_trails,
            "call_data": call_data,
            "storage_ping": storage_ping,
        }
        self.__dict__.update({name: part for name, part in given.items() if part is not None})

    # Adapters

    @part
    def sender(self) -> Sender:
        """Twilio's REST API (the webhooks never need it, so it is built on first send)."""
        from telephony.adapters.twilio_rest import TwilioGateway

        return TwilioGateway(self.credentials, self.settings.twilio_api_base_url)

    @part
    def table_service(self) -> Any:  # TableServiceClient: SDK types stay in the adapters
        """One client (one connection pool) for every table of the account."""
        from telephony.adapters.storage import table_service

        return table_service(self.env)

    @part
    def outbound_queue(self) -> Any:  # QueueClient
        """The outbound queue's client, for enqueueing and for putting deferred sends back."""
        from telephony.adapters.storage import queue_client

        return queue_client(self.env, self.settings.outbound_queue_name)

    @part
    def deliveries(self) -> DeliveryStore:
        """Delivery records in Table Storage."""
        from telephony.adapters.tables import TableDeliveryStore

        return TableDeliveryStore(self.table_service, self.settings.deliveries_table_name)

    @part
    def optouts(self) -> OptOutStore:
        """Numbers that opted out, in Table Storage."""
        from telephony.adapters.tables import TableOptOutStore

        return TableOptOutStore(self.table_service, self.settings.optouts_table_name)

    @part
    def enqueue(self) -> Enqueue:
        """Puts one message on the outbound queue (POST /api/messages, forwards, flow SMS)."""
        from telephony.adapters.storage import queue_sender

        return queue_sender(self.outbound_queue)

    @part
    def requeue(self) -> Requeue:
        """Puts a command back on the outbound queue, invisible until its quiet hours end."""
        from telephony.adapters.storage import queue_sender

        return queue_sender(self.outbound_queue)

    @part
    def storage_ping(self) -> StoragePing:
        """One read of the deliveries table with short timeouts (GET /api/health)."""
        from telephony.adapters.storage import table_pinger

        return table_pinger(self.table_service, self.settings.deliveries_table_name)

    @part
    def clock(self) -> Clock:
        return lambda: datetime.now(UTC)

    @part
    def event_sinks(self) -> Sequence[EventSink]:
        """The events queue (EVENTS_QUEUE_NAME) and the Event Grid topic, where set."""
        sinks: list[EventSink] = []
        settings = self.settings
        if settings.events_queue_name:
            from telephony.adapters.storage import QueueEventSink, queue_client

            name = settings.events_queue_name
            sinks.append(QueueEventSink(lambda: queue_client(self.env, name)))
        if settings.event_grid_endpoint:
            from telephony.adapters.eventgrid import EventGridSink

            client_id = self.env.get("AZURE_CLIENT_ID") or None
            sinks.append(EventGridSink(settings.event_grid_endpoint, client_id))
        return sinks

    @part
    def publisher(self) -> Publisher:
        """Publishes outcome events to every sink; stages what they refuse."""
        from telephony.events.publisher import Publisher

        source = self.settings.public_base_url or "urn:telephony:local"
        return Publisher(self.event_sinks, source, lambda: self.reconcile_index, self.clock)

    def webhook_publisher(self) -> Publisher | None:
        """The publisher for the webhooks' events; None while events are off, so that a
        webhook answered cold loads nothing of them."""
        return self.publisher if self.event_sinks else None

    @part
    def reconcile_index(self) -> ReconcileIndex:
        """The index of what reconcile looks at, and the event outbox: the deliveries table."""
        deliveries = self.deliveries
        if not _is_index(deliveries):
            raise TypeError("the deliveries store given must also be the reconcile index")
        return cast("ReconcileIndex", deliveries)

    @part
    def tracking(self) -> Tracking:
        from datetime import timedelta

        from telephony.outbound.records import Tracking

        minutes = timedelta(minutes=self.settings.reconcile_after_minutes)
        return Tracking(events=self.publisher.enabled, after=minutes)

    @part
    def record_writer(self) -> RecordWriter:
        from telephony.outbound.writer import RecordWriter

        return RecordWriter(self.deliveries, self.tracking, self.publisher, self.clock)

    # Services

    @part
    def outbound(self) -> OutboundService:
        """Queued sends: submit, perform, record, query."""
        from telephony.outbound.commands import QuietHours
        from telephony.outbound.service import OutboundService

        quiet = self.settings.quiet_hours
        return OutboundService(
            self.deliveries, self.sender, self.command_rules, self.sender_defaults,
            self.optouts, self._enqueue_lazily, self.clock, writer=self.record_writer,
            call_data=lambda: self.call_data,
            # The queue client is built on the first deferral, not when the worker starts.
            requeue=lambda text, delay: self.requeue(text, delay),
            quiet_hours=QuietHours(*quiet) if quiet else None,
        )  # fmt: skip

    @part
    def reconciler(self) -> Reconciler:
        """The reconcile timer's pass: Twilio asked about stale records, events republished."""
        from telephony.outbound.reconcile import Reconciler

        return Reconciler(
            self.reconcile_index, self.record_writer, self.sender, self.publisher,
            self.tracking.after, self.clock, happened=self._event_happened,
        )  # fmt: skip

    def _event_happened(self, event: OutcomeEvent) -> bool:
        """Whether the change a staged event announced was made (reconcile asks)."""
        from telephony.events import OPTOUT_CHANGED

        if event.type != OPTOUT_CHANGED:
            return True  # staged after the fact: published or refused, it happened
        from telephony.sms.optouts import consent_of

        return self.optouts.was_applied(consent_of(event))

    @part
    def calls(self) -> CallPlacer:
        """Calls placed now (make_call)."""
        from telephony.outbound.calls import CallPlacer

        return CallPlacer(
            self.sender, self.command_rules, self.sender_defaults, self.optouts, self.clock,
            call_data=lambda: self.call_data,
        )  # fmt: skip

    @part
    def sms_responder(self) -> SmsResponder:
        """Carries out inbound SMS decisions: opt-outs, and forwards through the queue."""
        from telephony.sms.routing import SmsResponder

        return SmsResponder(
            lambda: self.optouts,
            self.submit_command,
            self.clock,
            publisher=self.webhook_publisher(),
        )

    @part
    def call_trails(self) -> CallTrailStore:
        """The webhooks of calls in a flow, kept in Table Storage until each call's
        telephony.call.completed is published (built on first use, only while events are on)."""
        from telephony.adapters.call_trails import TableCallTrailStore

        return TableCallTrailStore(self.table_service, self.settings.call_trails_table_name)

    @part
    def flow_calls(self) -> FlowCalls:
        """Answers voice webhooks of calls in a flow; their SMS go through the queue, and the
        end of each call's flow is published (telephony.call.completed)."""
        from telephony.flows.voice import FlowCalls

        return FlowCalls(
            self.flow_book, self.submit_command, lambda: self.call_trails, self.webhook_publisher(),
            self.clock, call_data=lambda: self.call_data,
        )  # fmt: skip

    @part
    def call_data(self) -> CallDataStore:
        """The data of calls to flows that declare data, in Table Storage, with the rows a
        process read kept in memory (built on first use: only such calls need it)."""
        from telephony.adapters.call_data import TableCallDataStore
        from telephony.flows.data import CachedCallData

        table = self.settings.call_data_table_name
        return CachedCallData(TableCallDataStore(self.table_service, table))

    @part
    def command_rules(self) -> CommandRules:
        from telephony.adapters.twiml import say_response
        from telephony.outbound.commands import CommandRules

        settings = self.settings
        return CommandRules(
            self.destination_regions, settings.messaging_service_sid, self.has_flow,
            render_say=say_response, allowed_url_hosts=settings.allowed_url_hosts,
            flow_data_schema=self.flow_data_schema,
        )  # fmt: skip

    @part
    def destination_regions(self) -> frozenset[str]:
        """The toll-fraud guard: ALLOWED_DESTINATION_COUNTRIES, else the sender's country;
        SettingsError when neither is known (nothing could be called or texted)."""
        from telephony.phone import home_region

        settings = self.settings
        if settings.allowed_countries:
            return settings.allowed_countries
        home = home_region(settings.phone_number) if settings.phone_number else None
        if home is None:
            raise SettingsError(
                "set ALLOWED_DESTINATION_COUNTRIES, or TWILIO_PHONE_NUMBER to take its country"
            )
        return frozenset({home})

    def flow_guard_problems(self, book: FlowBook) -> list[FlowProblem]:
        """What the destination guard and ALLOWED_URL_HOSTS refuse in a call flow document
        (the app and `python -m telephony.flows check` both ask)."""
        from telephony.flows.checks import destination_problems

        return destination_problems(book, self.destination_refusal, self.settings.allowed_url_hosts)

    def rules_guard_problems(self, rules: SmsRules) -> list[str]:
        """What the destination guard refuses among an SMS rules document's forwards."""
        return [
            f"{where}: forward {reason}"
            for where, number in _forwards(rules)
            if (reason := self.destination_refusal(number)) is not None
        ]

    def destination_refusal(self, number: str) -> str | None:
        """Why the guard refuses `number`, or None (the documents' check uses it)."""
        from telephony.phone import destination_refusal

        return destination_refusal(number, self.destination_regions)

    @part
    def sender_defaults(self) -> SenderDefaults:
        from telephony.outbound.sender import SenderDefaults

        settings = self.settings
        return SenderDefaults(
            settings.phone_number, settings.messaging_service_sid, settings.public_base_url
        )

    def submit_command(self, document: object) -> tuple[DeliveryRecord, bool]:
        """Validate and enqueue an outbound command (OutboundService.submit)."""
        return self.outbound.submit(document)

    def _enqueue_lazily(self, text: str) -> object:
        # The queue client is built on the first submit, not when the worker starts.
        return self.enqueue(text)

    # Documents shipped with the app: loaded once; a broken one raises on every use.

    def flow_book(self) -> FlowBook:
        """The CALL_FLOWS_FILE document, loaded and checked on first use.

        A missing or invalid document raises SettingsError naming the file and every
        problem (flow, step, reason), on every call: it ships with the app, so only a new
        deployment can mend it.
        """
        return _usable(self._flows)

    def has_flow(self, flow_id: str) -> bool:
        """True when the call flow document defines `flow_id` (loads it on first use)."""
        return flow_id in self.flow_book()

    def flow_data_schema(self, flow_id: str) -> DataSchema | None:
        """The data flow `flow_id` declares; None when it declares none (or is not defined)."""
        flow = self.flow_book().flow(flow_id)
        return flow.data if flow is not None else None

    def sms_rules(self) -> SmsRules | None:
        """The SMS_RULES_FILE document, loaded once; None when the setting is unset."""
        return _usable(self._sms_rules)

    @part
    def _flows(self) -> FlowBook | str:
        """The book, or what is wrong with it."""
        from telephony.config.documents import app_file
        from telephony.flows import load_flow_book

        try:
            book = load_flow_book(app_file(self.settings.call_flows_file))
        except DocumentError as exc:
            return f"CALL_FLOWS_FILE {exc}"
        voice_flow = self.settings.voice_flow
        if voice_flow is not None and voice_flow not in book:
            return f"VOICE_FLOW names flow {voice_flow!r}, not in {book.source}"
        if voice_flow is not None and book.flows[voice_flow].data is not None:
            return f"VOICE_FLOW names flow {voice_flow!r}: it needs data, which inbound calls lack"
        guarded = self.flow_guard_problems(book)
        if guarded:
            return f"CALL_FLOWS_FILE {FlowDocumentError(book.source, guarded)}"
        return book

    @part
    def _sms_rules(self) -> SmsRules | str | None:
        """The rules, None when unset, or what is wrong with them."""
        name = self.settings.sms_rules_file
        if name is None:
            return None
        from telephony.config.documents import app_file
        from telephony.sms.rules import load_rules

        try:
            rules = load_rules(app_file(name))
        except DocumentError as exc:
            return f"SMS_RULES_FILE {exc}"
        refused = self.rules_guard_problems(rules)
        if refused:
            return f"SMS_RULES_FILE {rules.source}: {'; '.join(refused)}"
        return rules

    # Secrets: read on every use, so that a rotation is picked up.

    def credentials(self) -> Credentials:
        """REST credentials; an API key wins over the auth token when both are set."""
        from telephony.adapters.twilio_rest import Credentials

        account_sid = self.settings.account_sid
        if not account_sid:
            raise SettingsError("TWILIO_ACCOUNT_SID is not set")
        if self.settings.api_key_sid:
            secret = self.secrets.require("TWILIO_API_KEY_SECRET")
            return Credentials(account_sid, self.settings.api_key_sid, secret)
        return Credentials(account_sid, account_sid, self.secrets.require("TWILIO_AUTH_TOKEN"))

    def signature_validator(self) -> RotatingSignatureValidator:
        """A validator for the current auth token that reads the previous one (rotation)
        only for a request the current token did not sign."""
        from telephony.adapters.signature import SignatureValidator

        current = SignatureValidator([self.secrets.require("TWILIO_AUTH_TOKEN")])
        return RotatingSignatureValidator(current, self._previous_token_validator)

    def _previous_token_validator(self) -> SignatureValidator | None:
        # A vault that cannot say raises SecretUnavailableError: the webhook fails closed.
        previous = self.secrets.get("TWILIO_AUTH_TOKEN_SECONDARY")
        if not previous:
            return None
        from telephony.adapters.signature import SignatureValidator

        return SignatureValidator([previous])

    # Health: what GET /api/health looks at (the settings loaded with the container).

    @part
    def health(self) -> HealthCheck:
        """The secrets readable and Storage answering, checked at most once every few
        seconds: the route is anonymous, and must not hammer Key Vault or Storage."""
        from telephony.health import HealthCheck

        return HealthCheck({"secrets": self._secrets_readable, "storage": self._storage_answers})

    def _secrets_readable(self) -> None:
        self.credentials()  # the REST secret: the auth token, or the API key's secret
        self.secrets.require("TWILIO_AUTH_TOKEN")  # signatures need it with an API key too

    def _storage_answers(self) -> None:
        self.storage_ping()  # built on the first check: a missing setting fails the check


class RotatingSignatureValidator:
    """Webhook signatures checked against the current auth token and, only when that fails,
    the previous one (TWILIO_AUTH_TOKEN_SECONDARY, set during a rotation).

    The previous token is optional and usually absent: reading it up front cost every cold
    instance a Key Vault round trip (a 404) before its first answer. Read on a miss and
    cached by the store, its absence too, it costs at most one read per SECRET_CACHE_SECONDS
    however many requests the current token did not sign.
    """

    def __init__(
        self, current: SignatureValidator, previous: Callable[[], SignatureValidator | None]
    ) -> None:
        self._current = current
        self._previous = previous

    def is_valid(self, url: str, params: FormParams | str, signature: str | None) -> bool:
        """True when the current token, or else the previous one, signed the request."""
        if not signature:
            return False
        if self._current.is_valid(url, params, signature):
            return True
        previous = self._previous()
        return previous is not None and previous.is_valid(url, params, signature)


def _is_index(store: object) -> bool:
    return all(callable(getattr(store, name, None)) for name in ("due", "stage", "unstage"))


def _usable(loaded: T | str) -> T:
    if isinstance(loaded, str):
        # A new error each time: re-raising one object would grow its traceback.
        raise SettingsError(loaded)
    return loaded


def _forwards(rules: SmsRules) -> list[tuple[str, str]]:
    """Every number an SMS rules document forwards to, with where it is."""
    found = [
        (f"rule {rule.name}", number) for rule in rules.rules for number in rule.action.forward
    ]
    if rules.default is not None:
        found += [("default", number) for number in rules.default.forward]
    return found


def build_container(env: Mapping[str, str], **parts: object) -> Container:
    """A container for `env` (os.environ in the app); `parts` as Container takes them."""
    settings = Settings.from_env(env)
    fetcher = None
    if settings.key_vault_uri:
        from telephony.adapters.keyvault import KeyVaultSecretFetcher

        fetcher = KeyVaultSecretFetcher(settings.key_vault_uri, env.get("AZURE_CLIENT_ID") or None)
    secrets = SecretStore(env, fetcher, max_age=settings.secret_cache_seconds)
    return Container(settings, secrets, env, **parts)  # type: ignore[arg-type]


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
