"""Twilio's webhooks: voice_url, sms_url and status_callback, all signature-checked."""

from __future__ import annotations

import logging

import azure.functions as func

from telephony.blueprints.http import signed_webhook, xml_response
from telephony.container import Container
from telephony.logs import log_event
from telephony.signature import FormParams
from telephony.twiml import message_reply, say_response

logger = logging.getLogger(__name__)
bp = func.Blueprint()  # type: ignore[no-untyped-call]

ANONYMOUS = func.AuthLevel.ANONYMOUS  # the Twilio signature is the authentication


def _voice(container: Container, params: FormParams) -> func.HttpResponse:
    log_event(
        logger,
        "voice_answered",
        function="voice_url",
        CallSid=params.get("CallSid"),
        From=params.get("From"),
    )
    return xml_response(say_response(container.settings.voice_greeting))


def _sms(container: Container, params: FormParams) -> func.HttpResponse:
    log_event(
        logger,
        "sms_received",
        function="sms_url",
        MessageSid=params.get("MessageSid"),
        From=params.get("From"),
    )
    return xml_response(message_reply(container.settings.sms_auto_reply))


def _status(container: Container, params: FormParams) -> func.HttpResponse:
    log_event(
        logger,
        "status_received",
        function="status_callback",
        MessageSid=params.get("MessageSid"),
        CallSid=params.get("CallSid") if not params.get("MessageSid") else None,
        status=params.get("MessageStatus") or params.get("CallStatus"),
        ErrorCode=params.get("ErrorCode"),
        To=params.get("To"),
    )
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
