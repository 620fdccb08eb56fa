"""Answering a voice webhook of a call in a flow: TwiML out, the flow's SMS queued.

The flow, step, event and gather attempt come from the query string, which the Twilio
signature covers, so they are trusted; what they name may still not exist (a flow changed
by a deployment while a call was in progress), and that gets a polite TwiML answer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from telephony.errors import ConflictError, InvalidInputError
from telephony.flows.model import FlowBook
from telephony.flows.render import CallEvent, CallUrls, Fields, FlowSms, Rendered, render
from telephony.logs import log_event

logger = logging.getLogger(__name__)

# Validates and enqueues one outbound command; returns (record, whether it was new).
Submit = Callable[[dict[str, object]], tuple[object, bool]]


class FlowCalls:
    """Runs call flows for voice_url; the book is loaded on first use."""

    def __init__(self, book: Callable[[], FlowBook], submit: Submit) -> None:
        self._book = book
        self._submit = submit

    def answer(self, flow: str, query: Fields, form: Fields, base: str) -> str:
        """The TwiML for one webhook of `flow`; SettingsError when the book is unusable."""
        book = self._book()
        event = CallEvent.from_webhook(flow, query, form)
        rendered = render(book, event, CallUrls.for_base(base))
        _log(event, rendered)
        for sms in rendered.sms:
            self._queue_sms(sms, event)
        return rendered.twiml

    def _queue_sms(self, sms: FlowSms, event: CallEvent) -> None:
        """Put a flow's SMS on the outbound queue; a failure is logged and the call goes on.

        The idempotency key comes from the call, step and attempt, so a webhook that Twilio
        delivers twice is queued once (and would be sent once even if it were queued twice).
        """
        command: dict[str, object] = {
            "kind": "sms", "to": sms.to, "body": sms.body, "idempotency_key": sms.idempotency_key,
        }  # fmt: skip
        fields: dict[str, Any] = {
            "function": "voice_url", "CallSid": event.call_sid, "key": sms.idempotency_key,
        }  # fmt: skip
        try:
            _, created = self._submit(command)
        except (InvalidInputError, ConflictError) as exc:  # a refused destination
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
