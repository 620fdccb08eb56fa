"""Twilio's webhooks: voice_url, sms_url and status_callback, all signature-checked."""

from __future__ import annotations

import logging

import azure.functions as func

from telephony.blueprints.http import signed_webhook, unavailable, xml_response
from telephony.blueprints.voice_flows import answer_with_flow
from telephony.container import Container
from telephony.errors import StorageUnavailableError
from telephony.logs import log_event
from telephony.secrets import SecretStoreError
from telephony.settings import SettingsError
from telephony.signature import FormParams
from telephony.sms import InboundSms, decide
from telephony.twiml import message_reply, say_response

logger = logging.getLogger(__name__)
bp = func.Blueprint()  # type: ignore[no-untyped-call]

ANONYMOUS = func.AuthLevel.ANONYMOUS  # the Twilio signature is the authentication


def _voice(container: Container, params: FormParams, req: func.HttpRequest) -> func.HttpResponse:
    # A flow named in the (signed) query wins: it is a call already inside a flow.
    flow = req.params.get("flow") or container.settings.voice_flow
    log_event(
        logger,
        "voice_answered",
        function="voice_url",
        CallSid=params.get("CallSid"),
        From=params.get("From"),
        flow=flow,
    )
    if flow:
        return answer_with_flow(container, flow, params, req)
    return xml_response(say_response(container.settings.voice_greeting))


def _sms(container: Container, params: FormParams, req: func.HttpRequest) -> func.HttpResponse:
    message = InboundSms.from_params(params)
    log_event(
        logger, "sms_received", function="sms_url", MessageSid=message.sid, From=message.from_
    )
    try:
        # An opt-out needs no rules: it is kept even while the rules file is broken.
        rules = None if message.opts_out() else container.sms_rules()
        decision = decide(message, rules, container.settings.sms_auto_reply)
        reply = container.sms_responder().respond(message, decision)
    except (StorageUnavailableError, SecretStoreError, SettingsError) as exc:
        return unavailable(exc, "sms_url")
    log_event(
        logger, "sms_answered", function="sms_url", MessageSid=message.sid,
        outcome=decision.outcome, rule=decision.rule, forwards=len(decision.forward) or None,
    )  # fmt: skip
    return xml_response(message_reply(reply))


def _status(container: Container, params: FormParams, req: func.HttpRequest) -> func.HttpResponse:
    sid = params.get("MessageSid") or params.get("CallSid")
    status = params.get("MessageStatus") or params.get("CallStatus") or ""
    error_code = params.get("ErrorCode")
    key = req.params.get("id")  # set by the queued-send path; signed with the URL
    log_event(
        logger,
        "status_received",
        function="status_callback",
        MessageSid=params.get("MessageSid"),
        CallSid=params.get("CallSid") if not params.get("MessageSid") else None,
        status=status,
        ErrorCode=error_code or None,
        To=params.get("To"),
        key=key,
    )
    if key:
        code = int(error_code) if error_code and error_code.isdigit() else None
        try:
            record = container.outbound_service().apply_status(key, status, sid, code)
        except (StorageUnavailableError, SecretStoreError, SettingsError) as exc:
            return unavailable(exc, "status_callback")  # Twilio retries the callback
        if record is None:
            log_event(logger, "status_for_unknown_record", logging.WARNING, key=key, sid=sid)
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
