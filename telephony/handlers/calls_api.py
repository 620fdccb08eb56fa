"""make_call: place a call now, on an authenticated JSON request."""

from __future__ import annotations

import logging

import azure.functions as func

from telephony.container import get_container
from telephony.handlers.http import answers_errors, base_url, json_response, read_json
from telephony.logs import log_event
from telephony.phone import mask

logger = logging.getLogger(__name__)
bp = func.Blueprint()  # type: ignore[no-untyped-call]


@bp.function_name("make_call")
@bp.route(route="make_call", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@answers_errors("make_call")
def make_call(req: func.HttpRequest) -> func.HttpResponse:
    """POST /api/make_call {"to", "from"?, "say"? | "url"? | "twiml"? | "flow"?} -> 201."""
    container = get_container()
    # Twilio calls back there: PUBLIC_BASE_URL, never the caller's Host (but in development).
    base = base_url(req, container.settings)
    call, created = container.calls.place(read_json(req), base)
    log_event(logger, "call_placed", function="make_call", CallSid=created.sid, to=call.to)
    return json_response({"sid": created.sid, "status": created.status, "to": mask(call.to)}, 201)
