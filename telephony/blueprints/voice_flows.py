"""voice_url when it runs a call flow: one signed webhook in, TwiML out, SMS queued.

The flow, step, event and gather attempt come from the query string, which the Twilio
signature covers, so they are trusted; what they name may still not exist (a flow changed
by a deployment while a call was in progress), and that gets a polite TwiML answer.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import azure.functions as func

from telephony.blueprints.http import base_url, unavailable, xml_response
from telephony.container import Container
from telephony.errors import InvalidInputError
from telephony.logs import log_event
from telephony.optouts import RecipientOptedOutError
from telephony.settings import SettingsError
from telephony.signature import FormParams

if TYPE_CHECKING:
    from telephony.flows.render import CallEvent, FlowSms, Rendered

logger = logging.getLogger(__name__)


def answer_with_flow(
    container: Container, flow: str, params: FormParams, req: func.HttpRequest
) -> func.HttpResponse:
    """Run `flow` for one voice webhook; 503 when the flow document is missing or invalid."""
    # Imported here: calls answered with the greeting never pay for the flow code.
    from telephony.flows.render import CallEvent, CallUrls, render

    try:
        book = container.flow_book()
    except SettingsError as exc:
        return unavailable(exc, "voice_url")
    event = CallEvent.from_webhook(flow, req.params, params)
    urls = CallUrls.for_base(base_url(req, container.settings.public_base_url))
    rendered = render(book, event, urls)
    _log(event, rendered)
    for sms in rendered.sms:
        queue_sms(container, sms, event)
    return xml_response(rendered.twiml)


def queue_sms(container: Container, sms: FlowSms, event: CallEvent) -> None:
    """Put a flow's SMS on the outbound queue; a failure is logged and the call goes on.

    The idempotency key comes from the call, step and attempt, so a webhook that Twilio
    delivers twice is queued once (and would be sent once even if it were queued twice).
    """
    command = {
        "kind": "sms",
        "to": sms.to,
        "body": sms.body,
        "idempotency_key": sms.idempotency_key,
    }
    fields: dict[str, Any] = {
        "function": "voice_url",
        "CallSid": event.call_sid,
        "key": sms.idempotency_key,
    }
    try:
        _, created = container.submit_command(command)
    except (InvalidInputError, RecipientOptedOutError) as exc:  # a refused destination
        log_event(logger, "flow_sms_rejected", logging.WARNING, reason=exc.message, **fields)
        return
    except Exception as exc:  # the caller is still on the line: never fail the call for it
        log_event(
            logger, "flow_sms_not_queued", logging.WARNING, error=type(exc).__name__, **fields
        )
        return
    log_event(logger, "flow_sms_queued", duplicate=not created or None, to=sms.to, **fields)


def _log(event: CallEvent, rendered: Rendered) -> None:
    level = logging.WARNING if rendered.problem else logging.INFO
    log_event(
        logger, "flow_answered", level, function="voice_url", CallSid=event.call_sid,
        flow=event.flow, step=event.step, callback=event.event, attempt=event.attempt,
        steps=list(rendered.steps), sms=len(rendered.sms) or None, problem=rendered.problem,
    )  # fmt: skip
