"""HTTP plumbing shared by the handlers: JSON and XML answers, errors, signed webhooks."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func

from telephony.adapters.signature import FormParams, public_url
from telephony.container import Container, get_container
from telephony.errors import (
    CredentialsUnavailableError,
    InvalidInputError,
    MediaTypeError,
    TelephonyError,
    TwilioUnavailableError,
    UnavailableError,
    UpstreamRejectedError,
)
from telephony.logs import log_event

logger = logging.getLogger(__name__)

XML = "application/xml"
FORM = "application/x-www-form-urlencoded"

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
    try:
        return json.loads(req.get_body().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidInputError("the body is not valid JSON") from None


def base_url(req: func.HttpRequest, public_base_url: str | None) -> str:
    """The externally visible scheme://host[/prefix] of this app."""
    if public_base_url:
        return public_base_url
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
    return "configuration_unavailable"


def signed_webhook(
    function: str, handler: WebhookHandler
) -> Callable[[func.HttpRequest], func.HttpResponse]:
    """Wrap `handler` so that it only sees requests carrying a valid Twilio signature."""

    # The Functions worker binds parameters by name: the wrapper must take exactly `req`.
    def webhook(req: func.HttpRequest) -> func.HttpResponse:
        try:
            container = get_container()
            validator = container.signature_validator()
        except TelephonyError as exc:
            return error_response(exc, function)
        params = _webhook_params(req)
        url = public_url(req.url, container.settings.public_base_url)
        if not validator.is_valid(url, params, req.headers.get("X-Twilio-Signature")):
            log_event(logger, "signature_rejected", logging.WARNING, function=function)
            return func.HttpResponse("Forbidden", status_code=403, mimetype="text/plain")
        if isinstance(params, str):
            return func.HttpResponse(
                "Unsupported Media Type", status_code=415, mimetype="text/plain"
            )
        try:
            return handler(container, params, req)
        except TelephonyError as exc:  # a 503 makes Twilio retry the webhook
            return error_response(exc, function)

    webhook.__name__ = function
    return webhook


def _webhook_params(req: func.HttpRequest) -> FormParams | str:
    body = req.get_body()
    # Undecodable bytes become U+FFFD: the signature then fails, and the answer is 403.
    text = body.decode("utf-8", errors="replace")
    if not body or _media_type(req.headers.get("Content-Type", "")) == FORM:
        return FormParams(parse_qsl(text, keep_blank_values=True))
    return text


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()
