"""A phone number's and a Messaging Service's webhooks, read and set through twilio's REST
client (IncomingPhoneNumbers in the 2010 API, Services in the Messaging v1 API).

Used once per deployment by ``python -m telephony.wire_number``, with the deploying user's
credentials: a plain client per run, no pool. Errors are classified as the app's REST
adapter classifies them (TwilioRejectedError, TwilioUnavailableError). twilio.rest is
imported when the first request is made.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from telephony.errors import TwilioRejectedError
from telephony.wire_number.plan import NumberState, ServiceState

if TYPE_CHECKING:
    from twilio.rest import Client

    from telephony.adapters.twilio_rest import Credentials

_T = TypeVar("_T")

CONNECT_TIMEOUT_SECONDS = 5.0
READ_TIMEOUT_SECONDS = 15.0
NUMBER_WEBHOOKS = (
    "voice_url",
    "voice_method",
    "sms_url",
    "sms_method",
    "status_callback",
    "status_callback_method",
)
SERVICE_WEBHOOKS = ("inbound_request_url", "inbound_method", "status_callback")
# A number matched by PhoneNumber is one of a few: Twilio matches partial numbers too.
LIST_LIMIT = 50


class TwilioPhoneNumbers:
    """telephony.wire_number.plan.PhoneNumbers over twilio's REST client."""

    def __init__(self, credentials: Credentials, api_base_url: str | None = None) -> None:
        self._credentials = credentials
        # A Twilio mock (TWILIO_API_BASE_URL) serves every Twilio API under one base URL.
        self._api_base_url = api_base_url
        self._client: Client | None = None

    def find_number(self, phone_number: str) -> NumberState | None:
        """GET IncomingPhoneNumbers.json?PhoneNumber=...: the number that is exactly it."""
        found = self._call(
            lambda client: client.incoming_phone_numbers.list(
                phone_number=phone_number, limit=LIST_LIMIT
            )
        )
        # PhoneNumber also matches partial numbers; only the exact one is ours.
        match = next((n for n in found if n.phone_number == phone_number), None)
        return None if match is None else _number_state(match)

    def fetch_service(self, sid: str) -> ServiceState | None:
        """GET messaging v1 Services/{sid}; None when the account has no such service."""
        try:
            service = self._call(lambda client: client.messaging.v1.services(sid).fetch())
        except TwilioRejectedError as exc:
            if exc.twilio_status == 404:
                return None
            raise
        return ServiceState(
            sid=str(service.sid),
            webhooks=_texts(service, SERVICE_WEBHOOKS),
            use_inbound_webhook_on_number=bool(service.use_inbound_webhook_on_number),
        )

    def update_number(self, sid: str, fields: Mapping[str, str]) -> None:
        """POST IncomingPhoneNumbers/{sid}.json with `fields`."""
        self._call(lambda client: client.incoming_phone_numbers(sid).update(**fields))

    def update_service(self, sid: str, fields: Mapping[str, str]) -> None:
        """POST messaging v1 Services/{sid} with `fields`."""
        self._call(lambda client: client.messaging.v1.services(sid).update(**fields))

    def _call(self, request: Callable[[Client], _T]) -> _T:
        from requests import RequestException
        from twilio.base.exceptions import TwilioException, TwilioRestException

        from telephony.adapters.twilio_rest import _classify, _transport_error

        try:
            return request(self._rest_client())
        except TwilioRestException as exc:
            raise _classify(exc) from exc
        except TwilioException as exc:
            raise _classify(_page_error(exc)) from exc
        except RequestException as exc:
            raise _transport_error(exc) from exc

    def _rest_client(self) -> Client:
        if self._client is None:
            from twilio.http.http_client import TwilioHttpClient
            from twilio.rest import Client

            http = TwilioHttpClient()
            # Set after construction: the constructor accepts one number, requests takes both.
            http.timeout = (CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS)
            credentials = self._credentials
            client = Client(
                credentials.username,
                credentials.password,
                account_sid=credentials.account_sid,
                http_client=http,
            )
            if self._api_base_url:
                client.api.base_url = self._api_base_url
                client.messaging.base_url = self._api_base_url
            self._client = client
        return self._client


def _page_error(exc: Exception) -> Any:
    """The TwilioRestException a refused list() page stands for.

    A list() whose page Twilio refuses raises a bare TwilioException("Unable to fetch
    page", response), unlike fetch() and update(); its status and Twilio's error body
    are on that response.
    """
    from twilio.base.exceptions import TwilioRestException

    response = exc.args[1] if len(exc.args) > 1 else None
    # No response at all: as unknown as a 5xx, and as worth retrying.
    status = int(getattr(response, "status_code", 500))
    try:
        body = json.loads(getattr(response, "text", "") or "{}")
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {}
    message = str(body.get("message") or exc)
    return TwilioRestException(status, "", msg=message, code=body.get("code"))


def _number_state(number: Any) -> NumberState:
    return NumberState(
        sid=str(number.sid),
        phone_number=str(number.phone_number),
        webhooks=_texts(number, NUMBER_WEBHOOKS),
        voice_application_sid=number.voice_application_sid or "",
        sms_application_sid=number.sms_application_sid or "",
        trunk_sid=number.trunk_sid or "",
    )


def _texts(resource: Any, fields: tuple[str, ...]) -> dict[str, str]:
    # Twilio answers null or "" for a URL that is not set; both mean none.
    return {field: getattr(resource, field, None) or "" for field in fields}
