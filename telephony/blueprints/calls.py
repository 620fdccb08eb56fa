"""make_call: place a call now, on an authenticated JSON request."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import azure.functions as func

from telephony.blueprints.http import (
    HANDLED_ERRORS,
    base_url,
    error_response,
    json_error,
    json_response,
    read_json,
    unavailable,
)
from telephony.calls import CallRequest, parse_call_request
from telephony.container import get_container
from telephony.logs import log_event
from telephony.optouts import ensure_can_contact
from telephony.phone import mask
from telephony.twilio_errors import (
    CredentialsUnavailableError,
    TwilioRejectedError,
    TwilioUnavailableError,
)
from telephony.twiml import say_response

if TYPE_CHECKING:
    from telephony.twilio_gateway import OutboundCall

logger = logging.getLogger(__name__)
bp = func.Blueprint()  # type: ignore[no-untyped-call]

# Twilio error codes that point at a field of our request.
_FIELD_OF_TWILIO_CODE = {21211: "to", 21217: "to", 21210: "from", 21212: "from", 21205: "url"}
# Twilio statuses that mean the request itself was wrong, not our account or Twilio.
_CALLER_ERRORS = {400, 422}


@bp.function_name("make_call")
@bp.route(route="make_call", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def make_call(req: func.HttpRequest) -> func.HttpResponse:
    """POST /api/make_call {"to", "from"?, "say"? | "url"? | "twiml"? | "flow"?} -> 201."""
    try:
        container = get_container()
        settings = container.settings
        call = parse_call_request(
            read_json(req), settings.phone_number, settings.allowed_countries, container.has_flow
        )
        ensure_can_contact(container.optout_store(), call.to)
        base = base_url(req, settings.public_base_url)
        created = container.gateway.place_call(_outbound(call, base))
    except HANDLED_ERRORS as exc:
        return error_response(exc, "make_call")
    except TwilioRejectedError as exc:
        return _rejected(exc)
    except CredentialsUnavailableError as exc:
        return unavailable(exc, "make_call")
    except TwilioUnavailableError as exc:
        log_event(
            logger, "twilio_unavailable", logging.WARNING, function="make_call", reason=str(exc)
        )
        return json_error(503, "Twilio is unavailable, try again later", twilio_code=exc.code)
    log_event(logger, "call_placed", function="make_call", CallSid=created.sid, to=call.to)
    return json_response({"sid": created.sid, "status": created.status, "to": mask(call.to)}, 201)


def _outbound(call: CallRequest, base: str) -> OutboundCall:
    """Say becomes TwiML; a flow, or no content at all, lets Twilio fetch our voice_url."""
    from telephony.twilio_gateway import OutboundCall  # the gateway loads on first call

    twiml = say_response(call.say) if call.say else call.twiml
    url = call.url if call.url or twiml else f"{base}/api/voice_url"
    if call.flow is not None:
        from telephony.flows.render import CallUrls  # only calls with a flow need it

        url = CallUrls.for_base(base).flow(call.flow)
    return OutboundCall(
        to=call.to,
        from_=call.from_,
        status_callback=f"{base}/api/status_callback",
        url=url,
        twiml=twiml,
    )


def _rejected(exc: TwilioRejectedError) -> func.HttpResponse:
    log_event(
        logger,
        "twilio_rejected",
        logging.WARNING,
        function="make_call",
        status=exc.status,
        twilio_code=exc.code,
    )
    if exc.status in _CALLER_ERRORS:
        field = _FIELD_OF_TWILIO_CODE.get(exc.code or 0)
        return json_error(
            400, f"Twilio rejected the call: {exc.message}", field, twilio_code=exc.code
        )
    # 401/403/404 from Twilio mean our account or credentials, not the caller's input.
    return json_error(502, "Twilio refused the request", twilio_code=exc.code)
