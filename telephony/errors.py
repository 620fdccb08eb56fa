"""Every error of the app, in one family rooted by what the caller should do.

| root                  | HTTP       | queue worker        | the caller should      |
|-----------------------|------------|---------------------|------------------------|
| InvalidInputError     | 400 (415)  | `rejected`, deleted | fix the named field    |
| ConflictError         | 409        | `rejected`, deleted | not send to them       |
| UpstreamRejectedError | 502 (400*) | `failed`, deleted   | fix the account/input  |
| UnavailableError      | 503        | raise: host retries | retry later            |

*400 when Twilio's refusal names a field of the caller's input.

Messages name settings, fields and operations, never a secret, a phone number or a body.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar


class TelephonyError(Exception):
    """Base of the family. `status` is the HTTP answer, `field` the input it is about."""

    status: ClassVar[int] = 500
    # What an HTTP answer says when the message itself is for the log only (503).
    public_message: ClassVar[str | None] = None

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def http_status(self) -> int:
        """The HTTP status this error is answered with."""
        return self.status

    def public(self) -> tuple[str, str | None]:
        """What an HTTP answer says: the message and the field (no detail behind a 5xx)."""
        if self.public_message is not None:
            return self.public_message, None
        return self.message, self.field

    def details(self) -> dict[str, object]:
        """Fields beyond error and field that the JSON answer carries."""
        return {}


# Invalid input: the caller must fix it (400).


class InvalidInputError(TelephonyError):
    """Input that the caller must fix; `field` names the offending field, if any."""

    status = 400


class MediaTypeError(InvalidInputError):
    """The request body has a media type the endpoint does not take (415)."""

    status = 415


class CommandRejectedError(InvalidInputError):
    """An outbound command that can never be sent as it is; `key` is its idempotency key."""

    def __init__(self, message: str, field: str | None = None, key: str | None = None) -> None:
        super().__init__(message, field)
        self.key = key


# Conflict: the request is valid but the state forbids it (409).


class ConflictError(TelephonyError):
    """The request cannot be carried out in the current state."""

    status = 409


class RecipientOptedOutError(ConflictError):
    """A send to a number that opted out; handlers answer 409, the worker rejects."""

    def __init__(self) -> None:
        super().__init__("the recipient has opted out", "to")


class RecordExistsError(ConflictError):
    """A conditional insert found a delivery record with that key."""


# Upstream refused: Twilio said no, and asking again will not help (502).


class UpstreamRejectedError(TelephonyError):
    """A service we depend on refused the request for good."""

    status = 502


# Twilio error codes whose own text does not say what the producer should do: the reason a
# record carries instead, whether Twilio refuses the send or reports it failed later.
TWILIO_CODE_REASONS: dict[int, str] = {
    63016: "outside WhatsApp's 24-hour window: send a Content template (content_sid)",
}


def twilio_code_reason(code: int | None) -> str | None:
    """What the app says of Twilio error `code`, when it says more than Twilio's text."""
    return TWILIO_CODE_REASONS.get(code or 0)


class TwilioRejectedError(UpstreamRejectedError):
    """Twilio refused the request (a 4xx other than 429): retrying will not help."""

    # Twilio statuses that mean the request itself was wrong, not our account or Twilio.
    CALLER_STATUSES: ClassVar[frozenset[int]] = frozenset({400, 422})
    # Twilio error codes that point at a field of our request.
    FIELD_OF_CODE: ClassVar[dict[int, str]] = {
        21211: "to",
        21217: "to",
        21210: "from",
        21212: "from",
        21205: "url",
    }

    def __init__(self, twilio_status: int, code: int | None, message: str) -> None:
        super().__init__(twilio_code_reason(code) or message, self.FIELD_OF_CODE.get(code or 0))
        self.twilio_status = twilio_status
        self.code = code

    def __str__(self) -> str:
        return f"Twilio refused the request: {self.code or self.twilio_status}"

    def http_status(self) -> int:
        # 401/403/404 from Twilio mean our account or credentials, not the caller's input.
        return 400 if self.twilio_status in self.CALLER_STATUSES else 502

    def public(self) -> tuple[str, str | None]:
        if self.http_status() == 400:
            return f"Twilio rejected the request: {self.message}", self.field
        return "Twilio refused the request", None

    def details(self) -> dict[str, object]:
        return {"twilio_code": self.code}


# Unavailable: something we depend on is missing or down; retry later (503).


class UnavailableError(TelephonyError):
    """A dependency (Twilio, Storage, Key Vault) or a setting is not there right now."""

    status = 503
    public_message = "the service is not configured or a secret is unavailable"


class SettingsError(UnavailableError):
    """A setting is missing or malformed; the message names the setting."""


class DocumentError(SettingsError):
    """A document shipped with the app (call flows, SMS rules) that cannot be used.

    `problems` lists every problem found, each naming where it is and why.
    """

    def __init__(self, source: str, problems: Sequence[object]) -> None:
        self.source = source
        self.problems = list(problems)
        listed = "; ".join(str(problem) for problem in self.problems)
        # One line: the message ends up in a single log event.
        super().__init__(f"{self.summary}: {listed}")

    @property
    def summary(self) -> str:
        """The head of the message: "<source>: N problems"."""
        count = len(self.problems)
        return f"{self.source}: {count} problem{'s' if count != 1 else ''}"


class FlowDocumentError(DocumentError):
    """The call flow document (CALL_FLOWS_FILE); problems are flows.problems.FlowProblem."""


class SmsRulesError(DocumentError):
    """The SMS rules document (SMS_RULES_FILE); problems are sms.rules.RuleProblem."""


class DocumentReadError(SettingsError):
    """A document cannot be read or parsed; the message is the reason, without the path."""


class SecretStoreError(UnavailableError):
    """Base of every secret store failure. Messages name the setting, never a value."""


class SecretUnavailableError(SecretStoreError):
    """A required secret could not be read (absent everywhere, or the vault failed)."""

    def __init__(self, setting: str, reason: str) -> None:
        super().__init__(f"secret {setting} is unavailable: {reason}")
        self.setting = setting
        self.reason = reason


class SecretBackendError(SecretStoreError):
    """The secret back end (Key Vault) failed; raised by back ends, wrapped by the store."""


class StorageUnavailableError(UnavailableError):
    """Azure Storage (a queue or a table) could not be reached or failed.

    Messages name the operation and the SDK's error type, never a key or a number.
    """

    public_message = "the service's storage is unavailable, try again later"


class EventSinkUnavailableError(UnavailableError):
    """An outcome event sink (the events queue, an Event Grid topic) did not accept a batch.

    Never raised to a caller of the app: the events stay in the outbox and are published
    again (telephony/events).
    """


class RecordChangedError(UnavailableError):
    """An ETag-conditional update found the record changed since it was read."""


class RetryLaterError(UnavailableError):
    """Transient: the queue function raises it so the host redelivers the message."""


class TwilioUnavailableError(UnavailableError):
    """Twilio could not be reached, timed out, throttled (429) or failed (5xx)."""

    public_message = "Twilio is unavailable, try again later"

    def __init__(self, reason: str, status: int | None = None, code: int | None = None) -> None:
        super().__init__(reason)
        self.twilio_status = status
        self.code = code

    def details(self) -> dict[str, object]:
        return {"twilio_code": self.code}


class TwilioOutcomeUnknownError(TwilioUnavailableError):
    """The request was sent but no answer came back: Twilio may have accepted it."""


class CredentialsUnavailableError(TwilioUnavailableError):
    """The REST credentials could not be read (a missing setting or secret)."""

    public_message = UnavailableError.public_message

    def details(self) -> dict[str, object]:
        return {}
