"""Twilio's webhooks: voice_url, sms_url and status_callback, all signature-checked."""

from __future__ import annotations

import logging

import azure.functions as func

from telephony.adapters.signature import FormParams
from telephony.adapters.twiml import message_reply, say_response
from telephony.container import Container
from telephony.handlers.http import signed_base_url, signed_webhook, xml_response
from telephony.logs import log_event
from telephony.sms.routing import InboundSms, decide

logger = logging.getLogger(__name__)
bp = func.Blueprint()  # type: ignore[no-untyped-call]

ANONYMOUS = func.AuthLevel.ANONYMOUS  # the Twilio signature is the authentication


def _voice(container: Container, params: FormParams, req: func.HttpRequest) -> func.HttpResponse:
    # A flow named in the (signed) query wins: it is a call already inside a flow.
    flow = req.params.get("flow") or container.settings.voice_flow
    log_event(
        logger, "voice_answered", function="voice_url",
        CallSid=params.get("CallSid"), From=params.get("From"), flow=flow,
    )  # fmt: skip
    if not flow:
        return xml_response(say_response(container.settings.voice_greeting))
    # The flow's next URLs go back to Twilio: the signed host is the one Twilio called.
    base = signed_base_url(req, container.settings)
    return xml_response(container.flow_calls.answer(flow, req.params, params, base))


def _sms(container: Container, params: FormParams, req: func.HttpRequest) -> func.HttpResponse:
    message = InboundSms.from_params(params)
    log_event(
        logger, "sms_received", function="sms_url", MessageSid=message.sid, From=message.from_
    )
    # An opt-out needs no rules: it is kept even while the rules file is broken.
    rules = None if message.opts_out() else container.sms_rules()
    decision = decide(message, rules, container.settings.sms_auto_reply)
    reply = container.sms_responder.respond(message, decision)
    log_event(
        logger, "sms_answered", function="sms_url", MessageSid=message.sid,
        outcome=decision.outcome, rule=decision.rule, forwards=len(decision.forward) or None,
    )  # fmt: skip
    return xml_response(message_reply(reply))


def _status(container: Container, params: FormParams, req: func.HttpRequest) -> func.HttpResponse:
    from telephony.outbound.records import StatusCallback  # the SMS and voice paths skip it

    callback = StatusCallback.from_params(params, req.params.get("id"))
    fields = callback.log_fields()
    log_event(logger, "status_received", logging.INFO, function="status_callback", **fields)
    if callback.fields["CallSid"]:
        # A final CallStatus ends a call's flow that no answer ended (never raises).
        container.flow_calls.call_ended(callback.sid, callback.status)
        # The call's data (its id is in the signed URL) is deleted once the call is over.
        container.flow_calls.forget_data(req.params.get("data"), callback.status)
    if callback.key:  # set by the queued-send path; signed with the URL
        record = container.outbound.apply_status(
            callback.key, callback.status, callback.sid, callback.error_code
        )
        if record is None:
            log_event(
                logger, "status_for_unknown_record", logging.WARNING,
                key=callback.key, sid=callback.sid,
            )  # fmt: skip
    return func.HttpResponse(status_code=204)


voice_url = bp.function_name("voice_url")(
    bp.route(route="voice_url", methods=["POST"], auth_level=ANONYMOUS)(
        signed_webhook("voice_url", _voice)
    )
)
sms_url = bp.function_name("sms_url")(
    bp.route(route="sms_url", methods=["POST"], auth_level=ANONYMOUS)(
        signed_webhook("sms_url", _sms)
    )
)
status_callback = bp.function_name("status_callback")(
    bp.route(route="status_callback", methods=["POST"], auth_level=ANONYMOUS)(
        signed_webhook("status_callback", _status)
    )
)
