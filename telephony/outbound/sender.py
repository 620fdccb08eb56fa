"""What a send asks of Twilio, in the app's own types: the Sender interface and its requests.

The Twilio REST adapter (telephony/adapters/twilio_rest.py) implements Sender; services and
tests speak only these types, so no service imports the SDK.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class OutboundCall:
    """A call to place. At most one of say/url/twiml; say is spoken, then the call ends."""

    to: str
    from_: str
    status_callback: str | None
    url: str | None = None
    twiml: str | None = None
    say: str | None = None


@dataclass(frozen=True)
class OutboundSms:
    """A message to send (scheduled when send_at is set). `to` and `from_` are E.164 numbers
    or WhatsApp addresses (whatsapp:+E164); a Content template (content_sid, filled with
    content_variables) stands in for body; Twilio drops it after validity_period seconds."""

    to: str
    from_: str | None
    messaging_service_sid: str | None
    body: str | None
    media_urls: tuple[str, ...]
    status_callback: str | None
    send_at: datetime | None = None
    content_sid: str | None = None
    content_variables: Mapping[str, str] | None = None
    validity_period: int | None = None


@dataclass(frozen=True)
class SenderDefaults:
    """Defaults from settings: senders, and where Twilio calls back."""

    phone_number: str | None
    messaging_service_sid: str | None
    public_base_url: str | None


@dataclass(frozen=True)
class CreatedResource:
    """A call or message Twilio accepted (or, fetched later, what Twilio says of it now)."""

    sid: str
    status: str
    error_code: int | None = None


class StatusSource(Protocol):
    """What Twilio says now about a message or call it accepted (reconcile asks)."""

    def current_status(self, kind: str, sid: str) -> CreatedResource | None:
        """The resource's status now; None when Twilio does not know the SID. Raises
        TwilioUnavailableError (retry later) or TwilioRejectedError."""
        ...


class Sender(StatusSource, Protocol):
    """Sends through Twilio. Raises TwilioRejectedError (for good), TwilioUnavailableError
    (retry later) or TwilioOutcomeUnknownError (it may have been accepted)."""

    def send_message(self, sms: OutboundSms) -> CreatedResource: ...

    def place_call(self, call: OutboundCall) -> CreatedResource: ...
