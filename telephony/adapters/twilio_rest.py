"""The Twilio REST adapter: one pooled client per process, errors sorted by what to do next.

twilio.rest and requests are imported when the first request is made, not at import time.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from telephony.adapters.twiml import say_response
from telephony.errors import (
    CredentialsUnavailableError,
    SecretStoreError,
    SettingsError,
    TwilioOutcomeUnknownError,
    TwilioRejectedError,
    TwilioUnavailableError,
)
from telephony.outbound.sender import CreatedResource, OutboundCall, OutboundSms
from telephony.phone import mask

if TYPE_CHECKING:
    from twilio.http.http_client import TwilioHttpClient
    from twilio.rest import Client

CONNECT_TIMEOUT_SECONDS = 5.0
READ_TIMEOUT_SECONDS = 15.0
# At least the host's concurrency: the Python worker's default thread pool (32 threads)
# serves HTTP and queue triggers, so no request waits for a connection.
POOL_SIZE = 32

CALL_STATUS_EVENTS = ["initiated", "ringing", "answered", "completed"]


@dataclass(frozen=True)
class Credentials:
    """REST credentials: (API key SID, secret) or (account SID, auth token)."""

    account_sid: str
    username: str
    password: str


class TwilioGateway:
    """Places calls and sends messages through twilio's REST client."""

    def __init__(
        self,
        credentials: Callable[[], Credentials],
        api_base_url: str | None = None,
        pool_size: int = POOL_SIZE,
        connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
        read_timeout: float = READ_TIMEOUT_SECONDS,
    ) -> None:
        self._credentials = credentials
        self._api_base_url = api_base_url
        self._pool_size = pool_size
        self._timeouts = (connect_timeout, read_timeout)
        self._lock = threading.Lock()
        self._http: TwilioHttpClient | None = None
        self._client: Client | None = None
        self._client_credentials: Credentials | None = None

    def place_call(self, call: OutboundCall) -> CreatedResource:
        """Create a call; raises TwilioRejectedError or TwilioUnavailableError."""
        twiml = say_response(call.say) if call.say else call.twiml
        options: dict[str, Any] = {"url": call.url} if call.url else {"twiml": twiml}
        return self._create(
            lambda client: client.calls.create(
                to=call.to,
                from_=call.from_,
                status_callback=call.status_callback,
                status_callback_event=CALL_STATUS_EVENTS,
                status_callback_method="POST",
                **options,
            )
        )

    def send_message(self, sms: OutboundSms) -> CreatedResource:
        """Create a message (scheduled when send_at is set); raises as place_call does."""
        options: dict[str, Any] = {}
        if sms.messaging_service_sid:
            options["messaging_service_sid"] = sms.messaging_service_sid
        if sms.from_:
            options["from_"] = sms.from_
        if sms.body:
            options["body"] = sms.body
        if sms.media_urls:
            options["media_url"] = list(sms.media_urls)
        if sms.status_callback:
            options["status_callback"] = sms.status_callback
        if sms.send_at:
            options.update(schedule_type="fixed", send_at=sms.send_at)
        options.update(_template_options(sms))
        return self._create(lambda client: client.messages.create(to=sms.to, **options))

    def current_status(self, kind: str, sid: str) -> CreatedResource | None:
        """GET Messages/{sid}.json or Calls/{sid}.json; None for a SID Twilio does not know."""
        try:
            if kind == "call":
                return self._create(lambda client: client.calls(sid).fetch())
            return self._create(lambda client: client.messages(sid).fetch())
        except TwilioRejectedError as exc:
            if exc.twilio_status == 404:
                return None
            raise
        except TwilioOutcomeUnknownError as exc:
            # A read changes nothing at Twilio: a lost answer only means ask again later.
            raise TwilioUnavailableError(str(exc)) from exc

    def _create(self, create: Callable[[Client], Any]) -> CreatedResource:
        from requests import RequestException
        from twilio.base.exceptions import TwilioRestException

        try:
            resource = create(self._rest_client())
        except TwilioRestException as exc:
            raise _classify(exc) from exc
        except RequestException as exc:
            raise _transport_error(exc) from exc
        code = str(getattr(resource, "error_code", None) or "")
        return CreatedResource(
            sid=resource.sid,
            status=str(resource.status),
            error_code=int(code) if code.isascii() and code.isdecimal() else None,
        )

    def _rest_client(self) -> Client:

        try:
            credentials = self._credentials()
        except (SecretStoreError, SettingsError) as exc:
            # Nothing reached Twilio: as retryable as an outage, and reported as one.
            raise CredentialsUnavailableError(str(exc)) from exc
        with self._lock:
            # A rotated secret gives a new client that keeps the same connection pool.
            if self._client is None or credentials != self._client_credentials:
                self._client = self._build_client(credentials)
                self._client_credentials = credentials
            return self._client

    def _build_client(self, credentials: Credentials) -> Client:
        from twilio.rest import Client

        client = Client(
            credentials.username,
            credentials.password,
            account_sid=credentials.account_sid,
            http_client=self._http_client(),
        )
        if self._api_base_url:
            client.api.base_url = self._api_base_url
        return client

    def _http_client(self) -> TwilioHttpClient:
        if self._http is None:
            from twilio.http.http_client import TwilioHttpClient

            from telephony.adapters.http_pool import pooled_session

            http = TwilioHttpClient(pool_connections=True)
            http.session = pooled_session(self._pool_size)
            # Set after construction: the constructor accepts one number, requests takes both.
            http.timeout = self._timeouts
            self._http = http
        return self._http


def _template_options(sms: OutboundSms) -> dict[str, Any]:
    """The Content template, its variables and the validity period, as create() takes them."""
    options: dict[str, Any] = {}
    if sms.content_sid:
        options["content_sid"] = sms.content_sid
    if sms.content_variables:
        # Twilio takes the variables as one JSON text ({"1": "Ada"}), not as form fields.
        variables = dict(sms.content_variables)
        options["content_variables"] = json.dumps(variables, ensure_ascii=False)
    if sms.validity_period is not None:
        options["validity_period"] = sms.validity_period
    return options


def _transport_error(exc: Exception) -> TwilioUnavailableError:
    from requests.exceptions import ConnectTimeout
    from urllib3.exceptions import MaxRetryError, NewConnectionError

    reason = exc.args[0] if exc.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    if isinstance(exc, ConnectTimeout) or isinstance(reason, NewConnectionError):
        return TwilioUnavailableError(f"Twilio unreachable ({type(exc).__name__})")
    # A read timeout or a dropped response: the request may have reached Twilio.
    return TwilioOutcomeUnknownError(f"no answer from Twilio ({type(exc).__name__})")


def _classify(exc: Any) -> TwilioRejectedError | TwilioUnavailableError:
    status = int(exc.status)
    code = int(exc.code) if exc.code else None
    if status == 429 or status >= 500:
        return TwilioUnavailableError(f"Twilio answered {status}", status=status, code=code)
    return TwilioRejectedError(status, code, _without_numbers(str(exc.msg)))


# Twilio's messages quote the number they refuse ("The 'To' number +15005550001 is not a
# valid phone number"); they reach error bodies and delivery records, masked like logs.
_NUMBER = re.compile(r"\+\d{6,15}")


def _without_numbers(message: str) -> str:
    return _NUMBER.sub(lambda found: mask(found.group()), message)
