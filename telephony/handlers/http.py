"""HTTP plumbing shared by the handlers: JSON and XML answers, errors, signed webhooks."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func

from telephony.adapters.signature import FormParams, public_url
from telephony.config.settings import Settings
from telephony.container import Container, get_container
from telephony.errors import (
    CredentialsUnavailableError,
    InvalidInputError,
    MediaTypeError,
    RecordChangedError,
    SettingsError,
    StorageUnavailableError,
    TelephonyError,
    TwilioUnavailableError,
    UnavailableError,
    UpstreamRejectedError,
)
from telephony.logs import log_event

logger = logging.getLogger(__name__)

XML = "application/xml"
FORM = "application/x-www-form-urlencoded"
SIGNATURE_HEADER = "X-Twilio-Signature"

# Twilio's webhooks are small form posts: a few KB, at most about 45 fields (an inbound MMS
# with ten media URLs and their types), and an SMS body of at most 1,600 characters. The
# caps leave ample room for those and refuse a flood before any work is spent on it: the
# body is checked for size before it is decoded or parsed, the fields are counted while
# parsing (parse_qsl's max_num_fields) and before the signature is computed over them.
MAX_WEBHOOK_BODY_BYTES = 64 * 1024
MAX_WEBHOOK_FIELDS = 100

WebhookHandler = Callable[[Container, FormParams, func.HttpRequest], func.HttpResponse]


def json_response(body: object, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype="application/json")


def json_error(
    status: int, message: str, field: str | None = None, **extra: object
) -> func.HttpResponse:
    """The error shape of every JSON endpoint: {"error": ..., "field": ...}."""
    return json_response({"error": message, "field": field, **extra}, status)


def xml_response(document: str) -> func.HttpResponse:
    return func.HttpResponse(document, status_code=200, mimetype=XML)


def read_json(req: func.HttpRequest) -> object:
    """The request's JSON body; raises InvalidInputError (400) or MediaTypeError (415)."""
    content_type = req.headers.get("Content-Type", "")
    if content_type and _media_type(content_type) != "application/json":
        raise MediaTypeError("Content-Type must be application/json")
    from telephony import schemas  # the JSON functions only; webhooks take forms

    try:
        return schemas.parse_json(req.get_body().decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidInputError("the body is not valid JSON") from None
    except schemas.JsonInputError as exc:
        field = str(exc.path[0]) if exc.path else None
        raise InvalidInputError(str(exc), field) from None


def base_url(req: func.HttpRequest, settings: Settings) -> str:
    """The externally visible scheme://host[/prefix] of this app: PUBLIC_BASE_URL.

    Twilio is told to call URLs built on it (status callbacks, voice_url, flow steps), so
    it must not come from the request: its Host header is whatever the caller wrote. Only
    in local development (AZURE_FUNCTIONS_ENVIRONMENT=Development, as Core Tools and the
    development host set it) does an unset PUBLIC_BASE_URL fall back to the request's own
    scheme and host; elsewhere it is a SettingsError (503, the reason in the log).
    """
    if settings.public_base_url:
        return settings.public_base_url
    if not settings.development:
        raise SettingsError("PUBLIC_BASE_URL is not set")
    return _request_base(req)


def signed_base_url(req: func.HttpRequest, settings: Settings) -> str:
    """The base URL for a request whose URL Twilio signed: PUBLIC_BASE_URL, else its own.

    Behind signed_webhook, an unset PUBLIC_BASE_URL means the signature was checked
    against the request's URL, host included, so that host is the one Twilio called and
    not the caller's choice: it may be handed back to Twilio, in production too.
    """
    return settings.public_base_url or _request_base(req)


def _request_base(req: func.HttpRequest) -> str:
    parts = urlsplit(req.url)
    return f"{parts.scheme}://{parts.netloc}"


Handler = Callable[[func.HttpRequest], func.HttpResponse]


def answers_errors(function: str) -> Callable[[Handler], Handler]:
    """Decorate an HTTP function so that every error of the family gets its JSON answer."""

    def decorate(handler: Handler) -> Handler:
        # The Functions worker binds parameters by name: the wrapper must take exactly `req`.
        def answered(req: func.HttpRequest) -> func.HttpResponse:
            try:
                return handler(req)
            except TelephonyError as exc:
                return error_response(exc, function)

        answered.__name__ = handler.__name__
        answered.__doc__ = handler.__doc__
        return answered

    return decorate


def error_response(exc: TelephonyError, function: str) -> func.HttpResponse:
    """The one mapping from an error to an HTTP answer: {"error", "field"} and the status.

    A 503 says only that the service is unavailable; the reason goes to the log.
    """
    status = exc.http_status()
    if isinstance(exc, UnavailableError | UpstreamRejectedError):
        level = logging.ERROR if status == 503 else logging.WARNING
        log_event(logger, _event_of(exc), level, function=function, reason=str(exc))
    message, field = exc.public()
    return json_error(status, message, field, **exc.details())


def _event_of(exc: TelephonyError) -> str:
    if isinstance(exc, UpstreamRejectedError):
        return "twilio_rejected"
    if isinstance(exc, TwilioUnavailableError) and not isinstance(exc, CredentialsUnavailableError):
        return "twilio_unavailable"
    if isinstance(exc, StorageUnavailableError | RecordChangedError):
        return "storage_unavailable"
    return "configuration_unavailable"


def signed_webhook(
    function: str, handler: WebhookHandler
) -> Callable[[func.HttpRequest], func.HttpResponse]:
    """Wrap `handler` so that it only sees requests carrying a valid Twilio signature.

    Each refusal comes as early and as cheaply as it can: no signature header (403) before
    the body is touched or a secret read; a body over MAX_WEBHOOK_BODY_BYTES (413) before
    it is decoded or parsed; more than MAX_WEBHOOK_FIELDS form fields (400) before the
    signature is computed over them. Whatever the signature check itself fails on (a URL
    or query it cannot read) is a signature that does not hold (403), never a 500; errors
    of the handler are not caught here, only the error family's answers.
    """

    # The Functions worker binds parameters by name: the wrapper must take exactly `req`.
    def webhook(req: func.HttpRequest) -> func.HttpResponse:
        signature = (req.headers.get(SIGNATURE_HEADER) or "").strip()
        if not signature:
            log_event(
                logger, "signature_rejected", logging.WARNING, function=function, reason="missing"
            )
            return _plain(403, "Forbidden")
        body = req.get_body()
        if len(body) > MAX_WEBHOOK_BODY_BYTES:
            log_event(
                logger, "webhook_too_large", logging.WARNING, function=function, bytes=len(body)
            )
            return _plain(413, "Content Too Large")
        try:
            params = _webhook_params(body, req.headers.get("Content-Type", ""))
        except ValueError:  # parse_qsl: more fields than MAX_WEBHOOK_FIELDS
            log_event(logger, "webhook_too_many_fields", logging.WARNING, function=function)
            return _plain(400, "Bad Request")
        try:
            container = get_container()
            validator = container.signature_validator()
        except TelephonyError as exc:
            return error_response(exc, function)
        try:
            url = public_url(req.url, container.settings.public_base_url)
            valid = validator.is_valid(url, params, signature)
        except Exception as exc:  # fail closed: what cannot be checked is not signed
            log_event(
                logger, "signature_check_failed", logging.WARNING,
                function=function, error=type(exc).__name__,
            )  # fmt: skip
            return _plain(403, "Forbidden")
        if not valid:
            log_event(
                logger, "signature_rejected", logging.WARNING, function=function, reason="invalid"
            )
            return _plain(403, "Forbidden")
        if isinstance(params, str):
            return _plain(415, "Unsupported Media Type")
        try:
            return handler(container, params, req)
        except TelephonyError as exc:  # a 503 makes Twilio retry the webhook
            return error_response(exc, function)

    webhook.__name__ = function
    return webhook


def _webhook_params(body: bytes, content_type: str) -> FormParams | str:
    """Form fields (at most MAX_WEBHOOK_FIELDS, else ValueError), or the raw body as text."""
    # Undecodable bytes become U+FFFD: the signature then fails, and the answer is 403.
    text = body.decode("utf-8", errors="replace")
    if not body or _media_type(content_type) == FORM:
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_WEBHOOK_FIELDS)
        return FormParams(pairs)
    return text


def _plain(status: int, text: str) -> func.HttpResponse:
    return func.HttpResponse(text, status_code=status, mimetype="text/plain")


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()
