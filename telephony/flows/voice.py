"""Answering a voice webhook of a call in a flow: TwiML out, the flow's SMS queued, the
call's trail kept and, when its flow ends, its outcome event published.

The flow, step, event and gather attempt come from the query string, which the Twilio
signature covers, so they are trusted; what they name may still not exist (a flow changed
by a deployment while a call was in progress), and that gets a polite TwiML answer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from telephony.errors import ConflictError, InvalidInputError, SettingsError
from telephony.flows.data import CallDataStore, is_data_id
from telephony.flows.model import Flow, FlowBook
from telephony.flows.render import CallEvent, CallUrls, Fields, FlowSms, Rendered, apology, render
from telephony.flows.trail import (
    FINAL_CALL_STATUSES,
    STATUS_CALLBACK,
    CallTrailStore,
    TrailEntry,
    call_completed_event,
    is_call_sid,
    is_flow_id,
)
from telephony.logs import log_event
from telephony.outbound import NOT_QUIET

if TYPE_CHECKING:
    from telephony.events.publisher import Publisher

logger = logging.getLogger(__name__)

# Validates and enqueues one outbound command; returns (record, whether it was new).
Submit = Callable[[dict[str, object]], tuple[object, bool]]


class FlowCalls:
    """Runs call flows for voice_url; the book is loaded on first use.

    With `trails` and a `publisher` that has sinks, every webhook of a call is kept in its
    trail, and the end of its flow is published as telephony.call.completed. Neither may
    fail a call: the caller is on the line, so a failure is logged and the call goes on.

    A flow that declares data reads the call's from `call_data`, by the id in the signed
    query, on each answer; data that cannot be read ends the call with an apology.
    """

    def __init__(
        self,
        book: Callable[[], FlowBook],
        submit: Submit,
        trails: Callable[[], CallTrailStore] | None = None,
        publisher: Publisher | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        call_data: Callable[[], CallDataStore] | None = None,
    ) -> None:
        self._book = book
        self._submit = submit
        self._trails = trails  # built on first use: Table Storage, only when events are on
        self._publisher = publisher
        self._clock = clock
        self._call_data = call_data  # built on first use: only flows with data read it

    def answer(self, flow: str, query: Fields, form: Fields, base: str) -> str:
        """The TwiML for one webhook of `flow`; SettingsError when the book is unusable."""
        book = self._book()
        event = CallEvent.from_webhook(flow, query, form)
        rendered = self._render(book, event, base)
        _log(event, rendered)
        for sms in rendered.sms:
            self._queue_sms(sms, event)
        self._follow(event, rendered)
        return rendered.twiml

    def call_ended(self, call_sid: str | None, call_status: str) -> None:
        """A call status callback: a final CallStatus ends a flow that no answer ended
        (the caller hung up during a gather, say); its event is published unless it was.

        One read of the trail for a call in no flow; failures are logged, never raised.
        """
        sid = self._followed(call_sid)
        if sid is None or call_status not in FINAL_CALL_STATUSES:
            return
        try:
            self._complete(self._store(), sid, STATUS_CALLBACK, call_status)
        except Exception as exc:  # a status callback has nothing to retry: log it
            _trail_failed(sid, STATUS_CALLBACK, exc)

    def forget_data(self, data_id: str | None, call_status: str) -> None:
        """A call status callback: once the call is over, its data is deleted (it was kept
        for the call's webhooks only). Failures are logged, never raised; what is left is
        purged by age (docs/flows.md)."""
        if call_status not in FINAL_CALL_STATUSES or not is_data_id(data_id):
            return
        assert data_id is not None  # is_data_id says so
        try:
            self._data_store().forget(data_id)
        except Exception as exc:  # a status callback has nothing to retry: log it
            log_event(
                logger, "call_data_not_deleted", logging.WARNING, function="status_callback",
                data=data_id, error=type(exc).__name__,
            )  # fmt: skip

    def _render(self, book: FlowBook, event: CallEvent, base: str) -> Rendered:
        """The answer, with the call's data when its flow declares data."""
        flow = book.flow(event.flow)
        if flow is None or flow.data is None:
            return render(book, event, CallUrls.for_base(base))
        data = self._data_of(flow, event.data_id)
        if isinstance(data, str):
            return apology(data)
        return render(book, event, CallUrls.for_base(base, event.data_id), data)

    def _data_of(self, flow: Flow, data_id: str | None) -> dict[str, str] | str:
        """What the call's placeholders say, or the problem that stops the call.

        The values were checked when the call was requested; they are checked again against
        the flow as it is now, in case a deployment changed its data since.
        """
        assert flow.data is not None
        if not is_data_id(data_id):
            return f"flow {flow.id!r} needs data, and the URL names none"
        assert data_id is not None  # is_data_id says so
        try:
            found = self._data_store().get(data_id)
        except Exception as exc:  # the caller is on the line: an apology, not a 5xx
            return f"the call's data could not be read: {type(exc).__name__}"
        if found is None:
            return "the call's data is gone (deleted or purged)"
        if found.flow != flow.id:
            return f"the call's data was checked for flow {found.flow!r}, not {flow.id!r}"
        try:
            return flow.data.texts(flow.data.check(found.values))
        except InvalidInputError as exc:
            return f"the call's data no longer fits flow {flow.id!r}: {exc.message}"

    def _data_store(self) -> CallDataStore:
        if self._call_data is None:
            raise SettingsError("no store for the data of calls is configured")
        return self._call_data()

    def _follow(self, event: CallEvent, rendered: Rendered) -> None:
        """Keep this webhook in the call's trail; publish the event when the flow ended."""
        sid = self._followed(event.call_sid)
        if sid is None or not is_flow_id(event.flow):
            return
        entry = _entry(event, rendered, self._clock())
        try:
            store = self._store()
            store.append(sid, entry)
            if rendered.ended_by is not None:
                self._complete(store, sid, rendered.ended_by, None)
        except Exception as exc:  # the caller is still on the line: never fail the call
            _trail_failed(sid, rendered.ended_by, exc)

    def _complete(
        self, store: CallTrailStore, call_sid: str, ended_by: str, call_status: str | None
    ) -> None:
        """Publish the call's event (staged when a sink refuses it), then mark it finished.

        Marked after the publish: a crash in between publishes it again on the status
        callback (the same id), where marking first could lose it.
        """
        trail = store.read(call_sid)
        if not trail.entries or trail.finished:
            return
        event = call_completed_event(call_sid, trail, ended_by, call_status, self._clock())
        assert self._publisher is not None  # _followed says so
        self._publisher.publish_or_stage([event])
        first = store.finish(call_sid)
        log_event(
            logger, "call_completed", CallSid=call_sid, flow=event.data["flow"],
            ended_by=ended_by, call_status=call_status, steps=len(event.data["steps"]),
            truncated=event.data["truncated"] or None, duplicate=not first or None,
        )  # fmt: skip

    def _followed(self, call_sid: str | None) -> str | None:
        """`call_sid` when calls are followed (a trail store and a publisher with sinks:
        with events off, no trail costs a round trip) and it can name a trail; else None."""
        publisher = self._publisher
        enabled = self._trails is not None and publisher is not None and publisher.enabled
        return call_sid if enabled and is_call_sid(call_sid) else None

    def _store(self) -> CallTrailStore:
        assert self._trails is not None  # _followed says so
        return self._trails()

    def _queue_sms(self, sms: FlowSms, event: CallEvent) -> None:
        """Put a flow's SMS on the outbound queue; a failure is logged and the call goes on.

        The idempotency key comes from the call, step and attempt, so a webhook that Twilio
        delivers twice is queued once (and would be sent once even if it were queued twice).
        """
        command: dict[str, object] = {
            "kind": "sms", "to": sms.to, "body": sms.body, "idempotency_key": sms.idempotency_key,
            "quiet_hours": NOT_QUIET,  # the caller is on the line: not deferred to the morning
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


def _entry(event: CallEvent, rendered: Rendered, at: datetime) -> TrailEntry:
    """The trail entry of one webhook, every field cut to its bound."""
    return TrailEntry(
        at=at, flow=event.flow, steps=rendered.steps, step=event.step, event=event.event,
        digits=event.digits, speech=event.speech, dial_status=event.dial_status,
        recording_url=event.recording_url, from_=event.from_, to=event.to,
        direction=event.direction,
    ).bounded()  # fmt: skip


def _trail_failed(call_sid: str, ended_by: str | None, exc: Exception) -> None:
    log_event(
        logger, "call_trail_failed", logging.WARNING, CallSid=call_sid, ended_by=ended_by,
        error=type(exc).__name__,
    )  # fmt: skip


def _log(event: CallEvent, rendered: Rendered) -> None:
    level = logging.WARNING if rendered.problem else logging.INFO
    log_event(
        logger, "flow_answered", level, function="voice_url", CallSid=event.call_sid,
        flow=event.flow, step=event.step, callback=event.event, attempt=event.attempt,
        steps=list(rendered.steps), sms=len(rendered.sms) or None, problem=rendered.problem,
        ended_by=rendered.ended_by,
    )  # fmt: skip
