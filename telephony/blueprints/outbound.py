"""Queued outbound sends: the `outbound` queue trigger, POST and GET /api/messages."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING
from urllib.parse import quote

import azure.functions as func

from telephony.blueprints.http import (
    HANDLED_ERRORS,
    base_url,
    error_response,
    json_error,
    json_response,
    read_json,
)
from telephony.container import get_container
from telephony.logs import log_event
from telephony.phone import mask

if TYPE_CHECKING:
    from telephony.deliveries import DeliveryRecord

logger = logging.getLogger(__name__)
bp = func.Blueprint()  # type: ignore[no-untyped-call]


@bp.function_name("outbound")
@bp.queue_trigger(
    arg_name="msg", queue_name="%OUTBOUND_QUEUE_NAME%", connection="AzureWebJobsStorage"
)
def outbound(msg: func.QueueMessage) -> None:
    """Send one queued command; raising makes the host retry (poison after maxDequeueCount)."""
    text = msg.get_body().decode("utf-8", errors="replace")
    service = get_container().outbound_service()
    outcome = service.handle(text, msg.id or "", msg.dequeue_count or 1)
    log_event(logger, "outbound_done", function="outbound", outcome=outcome.value)


@bp.function_name("send_message")
@bp.route(route="messages", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def send_message(req: func.HttpRequest) -> func.HttpResponse:
    """Validate and enqueue a command: 202 {"id", "status_url"}; 200 for a used key."""
    try:
        container = get_container()
        record, created = container.submit_command(read_json(req))
    except HANDLED_ERRORS as exc:
        return error_response(exc, "send_message")
    base = base_url(req, container.settings.public_base_url)
    body = {**_view(record), "status_url": f"{base}/api/messages/{quote(record.key, safe='')}"}
    return json_response(body, 202 if created else 200)


@bp.function_name("get_message")
@bp.route(route="messages/{id}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def get_message(req: func.HttpRequest) -> func.HttpResponse:
    """The delivery record of one command, by its id (the idempotency key)."""
    key = req.route_params.get("id", "")
    try:
        record = get_container().outbound_service().record_of(key)
    except HANDLED_ERRORS as exc:
        return error_response(exc, "get_message")
    if record is None:
        return json_error(404, "no message with this id", "id")
    return json_response(_view(record))


def _view(record: DeliveryRecord) -> dict[str, object]:
    return {
        "id": record.key,
        "kind": record.kind,
        "to": mask(record.to),
        "status": record.status,
        "twilio_sid": record.twilio_sid,
        "error_code": record.error_code,
        "reason": record.reason,
        "attempts": record.attempts,
        "created_at": record.created_at.isoformat(),
        "updated_at": record.updated_at.isoformat(),
    }
