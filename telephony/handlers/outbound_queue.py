"""The `outbound` queue trigger: performs one queued command per message."""

from __future__ import annotations

import logging

import azure.functions as func

from telephony.container import get_container
from telephony.logs import log_event

logger = logging.getLogger(__name__)
bp = func.Blueprint()  # type: ignore[no-untyped-call]


@bp.function_name("outbound")
@bp.queue_trigger(
    arg_name="msg", queue_name="%OUTBOUND_QUEUE_NAME%", connection="AzureWebJobsStorage"
)
def outbound(msg: func.QueueMessage) -> None:
    """Send one queued command; raising makes the host retry (poison after maxDequeueCount)."""
    text = msg.get_body().decode("utf-8", errors="replace")
    service = get_container().outbound
    outcome = service.handle(text, msg.id or "", msg.dequeue_count or 1)
    log_event(logger, "outbound_done", function="outbound", outcome=outcome.value)
