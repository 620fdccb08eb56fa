"""Queued sends over HTTP: POST /api/messages enqueues a command, GET reads its record."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

import azure.functions as func

from telephony.container import get_container
from telephony.handlers.http import (
    answers_errors,
    base_url,
    json_error,
    json_response,
    read_json,
)

if TYPE_CHECKING:
    from telephony.outbound.records import DeliveryRecord

bp = func.Blueprint()  # type: ignore[no-untyped-call]


@bp.function_name("send_message")
@bp.route(route="messages", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@answers_errors("send_message")
def send_message(req: func.HttpRequest) -> func.HttpResponse:
    """Validate and enqueue a command: 202 {"id", "status_url"}; 200 for a used key."""
    container = get_container()
    base = base_url(req, container.settings)  # before the command is queued: a 503 queues none
    document = read_json(req)  # bad input is a 400 before any Storage client is built
    record, created = container.outbound.submit(document)
    status_url = f"{base}/api/messages/{quote(record.key, safe='')}"
    body = {**_view(record), "status_url": status_url}
    return json_response(body, 202 if created else 200)


@bp.function_name("get_message")
@bp.route(route="messages/{id}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@answers_errors("get_message")
def get_message(req: func.HttpRequest) -> func.HttpResponse:
    """The delivery record of one command, by its id (the idempotency key)."""
    record = get_container().outbound.record_of(req.route_params.get("id", ""))
    if record is None:
        return json_error(404, "no message with this id", "id")
    return json_response(_view(record))


def _view(record: DeliveryRecord) -> dict[str, object]:
    # Imported here: the records module loads with the service, not when the worker starts.
    from telephony.outbound.records import record_view

    return record_view(record)
