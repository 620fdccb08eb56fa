"""What can go wrong with a Twilio request, sorted by what to do next.

Apart from the gateway, so that handlers can name these errors without loading it.
"""

from __future__ import annotations


class TwilioGatewayError(Exception):
    """Base of every Twilio failure."""


class TwilioRejectedError(TwilioGatewayError):
    """Twilio refused the request (a 4xx other than 429): retrying will not help."""

    def __init__(self, status: int, code: int | None, message: str) -> None:
        super().__init__(f"Twilio refused the request: {code or status}")
        self.status = status
        self.code = code
        self.message = message


class TwilioUnavailableError(TwilioGatewayError):
    """Twilio could not be reached, timed out, throttled (429) or failed (5xx): retry later."""

    def __init__(self, reason: str, status: int | None = None, code: int | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.code = code


class TwilioOutcomeUnknownError(TwilioUnavailableError):
    """The request was sent but no answer came back: Twilio may have accepted it."""


class CredentialsUnavailableError(TwilioUnavailableError):
    """The REST credentials could not be read (a missing setting or secret)."""
