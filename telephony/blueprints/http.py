"""HTTP plumbing shared by the blueprints: JSON and XML responses, signed webhooks."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func

from telephony.container import Container, get_container
from telephony.errors import InvalidInputError, StorageUnavailableError
from telephony.logs import log_event
from telephony.optouts import RecipientOptedOutError
from telephony.secrets import SecretStoreError
from telephony.settings import SettingsError
from telephony.signature import FormParams, public_url

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


class MediaTypeError(InvalidInputError):
    """The request body has a media type the endpoint does not take (415)."""


def base_url(req: func.HttpRequest, public_base_url: str | None) -> str:
    """The externally visible scheme://host[/prefix] of this app."""
    if public_base_url:
        return public_base_url
    parts = urlsplit(req.url)
    return f"{parts.scheme}://{parts.netloc}"


# What a handler turns into an answer by itself: bad input, a refused recipient, and
# configuration, secrets or storage that are not there right now.
HANDLED_ERRORS = (
    InvalidInputError,
    RecipientOptedOutError,
    SecretStoreError,
    SettingsError,
    StorageUnavailableError,
)


def error_response(exc: Exception, function: str) -> func.HttpResponse:
    """The JSON answer to one of HANDLED_ERRORS: 415, 400 naming the field, 409, or 503."""
    if isinstance(exc, MediaTypeError):
        return json_error(415, exc.message)
    if isinstance(exc, InvalidInputError):
        return json_error(400, exc.message, exc.field)
    if isinstance(exc, RecipientOptedOutError):
        return json_error(409, exc.message, exc.field)
    return unavailable(exc, function)


def unavailable(exc: Exception, function: str) -> func.HttpResponse:
    """503 for a missing setting or secret; the log names it, the response does not."""
    log_event(
        logger, "configuration_unavailable", logging.ERROR, function=function, reason=str(exc)
    )
    return json_error(503, "the service is not configured or a secret is unavailable")


def signed_webhook(
    function: str, handler: WebhookHandler
) -> Callable[[func.HttpRequest], func.HttpResponse]:
    """Wrap `handler` so that it only sees requests carrying a valid Twilio signature."""

    # The Functions worker binds parameters by name: the wrapper must take exactly `req`.
    def webhook(req: func.HttpRequest) -> func.HttpResponse:
        try:
            container = get_container()
            validator = container.signature_validator()
        except (SecretStoreError, SettingsError) as exc:
            return unavailable(exc, function)
        params = _webhook_params(req)
        url = public_url(req.url, container.settings.public_base_url)
        if not validator.is_valid(url, params, req.headers.get("X-Twilio-Signature")):
            log_event(logger, "signature_rejected", logging.WARNING, function=function)
            return func.HttpResponse("Forbidden", status_code=403, mimetype="text/plain")
        if isinstance(params, str):
            return func.HttpResponse(
                "Unsupported Media Type", status_code=415, mimetype="text/plain"
            )
        return handler(container, params, req)

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
