"""A call flow as a state machine driven by signed webhooks: one webhook in, TwiML out.

Each response chains say/play/pause/sms steps until a step that needs Twilio to call back
(gather, dial, record), a verb that ends the flow here (hangup, reject, redirect), or the
end of the flow (hang up). Callbacks come back to voice_url with the flow, the step, the
event and the gather attempt in the (signed) query string. `Rendered.ended_by` says when
an answer is the call's last in the app, so that its outcome event can be published.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlencode

from twilio.twiml.voice_response import Gather as GatherElement
from twilio.twiml.voice_response import VoiceResponse

from telephony.flows.checks import MAX_CHAINED_STEPS
from telephony.flows.data import fill as fill_placeholders
from telephony.flows.model import (
    CALLER,
    Dial,
    Flow,
    FlowBook,
    Gather,
    Hangup,
    Pause,
    Play,
    Prompt,
    Record,
    Redirect,
    Reject,
    Say,
    Sms,
    Step,
)

APOLOGY = "Sorry, this call cannot go on. Goodbye."

# The events voice_url is called back with, and the verb each belongs to.
INPUT, TIMEOUT, DIAL, RECORDED = "input", "timeout", "dial", "recorded"
_EVENT_VERBS: dict[str, type] = {INPUT: Gather, TIMEOUT: Gather, DIAL: Dial, RECORDED: Record}

# DialCallStatus -> the Dial field naming the next step; an answered call goes to `next`,
# and so does any status whose field is not set.
_ANSWERED = frozenset({"completed", "answered"})
_DIAL_TARGETS = {
    "no-answer": "on_no_answer",
    "busy": "on_busy",
    "failed": "on_failed",
    "canceled": "on_failed",
}

# What ended a call's flow in an answer (Rendered.ended_by). A redirect to another flow of
# the book is not an end: Twilio comes back to voice_url, and the call goes on there.
HANGUP, REJECT, REDIRECT, END_OF_FLOW = "hangup", "reject", "redirect", "end_of_flow"


class Fields(Protocol):
    """Named string fields: a query string (req.params) or Twilio's form (FormParams)."""

    def get(self, name: str, /) -> str | None: ...


@dataclass(frozen=True)
class CallEvent:
    """One voice webhook: where the call is in its flow, and what Twilio reports."""

    flow: str
    step: str | None = None
    event: str | None = None
    attempt: int = 1
    digits: str | None = None
    speech: str | None = None
    dial_status: str | None = None
    recording_url: str | None = None
    call_sid: str | None = None
    from_: str | None = None
    to: str | None = None
    direction: str | None = None
    data_id: str | None = None  # where the call's data is kept (flows that declare data)

    @classmethod
    def from_webhook(cls, flow: str, query: Fields, form: Fields) -> CallEvent:
        """The event of a voice_url request: `query` is the signed URL's, `form` Twilio's."""
        return cls(
            flow=flow,
            step=query.get("step") or None,
            event=query.get("event") or None,
            attempt=_attempt(query.get("attempt")),
            digits=form.get("Digits") or None,
            speech=form.get("SpeechResult") or None,
            dial_status=form.get("DialCallStatus") or None,
            recording_url=form.get("RecordingUrl") or None,
            call_sid=form.get("CallSid") or None,
            from_=form.get("From") or None,
            to=form.get("To") or None,
            direction=form.get("Direction") or None,
            data_id=query.get("data") or None,
        )

    @property
    def party(self) -> str | None:
        """The other party: the caller of an inbound call, the callee of a call we placed."""
        outbound = (self.direction or "").startswith("outbound")
        return self.to if outbound else self.from_


@dataclass(frozen=True)
class CallUrls:
    """The app's absolute URLs that TwiML points Twilio back at.

    `data` is the id of the call's data (flows that declare data): every step's URL
    carries it, never the values themselves, since Twilio logs the URLs it requests.
    """

    voice_url: str
    status_callback: str
    data: str | None = None

    @classmethod
    def for_base(cls, base: str, data: str | None = None) -> CallUrls:
        """The URLs under the app's public base URL (scheme://host[/prefix])."""
        return cls(f"{base}/api/voice_url", f"{base}/api/status_callback", data)

    def step(self, flow: str, step: str, event: str, attempt: int | None = None) -> str:
        """Where Twilio calls back with `event` for `step` (and the gather attempt)."""
        query = {"flow": flow, "step": step, "event": event}
        if attempt is not None:
            query["attempt"] = str(attempt)
        if self.data is not None:
            query["data"] = self.data
        return f"{self.voice_url}?{urlencode(query)}"

    def flow(self, flow: str, data: str | None = None) -> str:
        """Where a call starts `flow` (with its data's id): make_call, queued calls and
        redirects use it; a redirect carries no data."""
        query = {"flow": flow} if data is None else {"flow": flow, "data": data}
        return f"{self.voice_url}?{urlencode(query)}"


@dataclass(frozen=True)
class FlowSms:
    """An SMS a flow sends during the call; one send per idempotency key."""

    to: str
    body: str
    idempotency_key: str


@dataclass(frozen=True)
class Rendered:
    """The TwiML answer, the SMS to send, the steps run, and what went wrong, if anything.

    `ended_by` is set when Twilio will not call voice_url back for this call (HANGUP,
    REJECT, REDIRECT to a URL, END_OF_FLOW); None when a gather, dial or record waits for
    Twilio's callback, or a redirect goes on in another flow.
    """

    twiml: str
    sms: tuple[FlowSms, ...] = ()
    steps: tuple[str, ...] = ()
    problem: str | None = None
    ended_by: str | None = None


def render(
    book: FlowBook, event: CallEvent, urls: CallUrls, data: Mapping[str, str] | None = None
) -> Rendered:
    """The answer to one voice webhook of a flow. Pure: sends nothing, reads nothing.

    `data` is what the call's `{data.<name>}` placeholders say (DataSchema.texts), for a
    flow that declares data; without it, such a flow cannot go on.
    """
    flow = book.flow(event.flow)
    if flow is None:
        return apology(f"unknown flow {event.flow!r}")
    if flow.data is not None and data is None:
        return apology(f"flow {flow.id!r} needs data, and the call has none")
    run = _Run(flow, event, urls, data or {})
    if event.step is None:
        run.chain(flow.start)
        return run.result()
    step = flow.steps.get(event.step)
    if step is None:
        return apology(f"flow {flow.id!r} has no step {event.step!r}")
    return run.resume(step)


def apology(problem: str) -> Rendered:
    """A polite end to a call that cannot go on (never an HTTP error: Twilio would say
    "an application error has occurred")."""
    response = VoiceResponse()
    response.say(APOLOGY)
    response.hangup()
    return Rendered(str(response), problem=problem, ended_by=HANGUP)


def sms_key(call_sid: str, flow: str, step: str, attempt: int) -> str:
    """The idempotency key of a flow's SMS: the same webhook delivered twice sends once."""
    digest = hashlib.sha256(f"{flow}\0{step}\0{attempt}".encode()).hexdigest()[:24]
    return f"call-{call_sid}-{digest}"


def fill(template: str, event: CallEvent, data: Mapping[str, str] | None = None) -> str:
    """Replace {from} and {to} with the call's numbers and {data.<name>} with its data, in
    one pass; any other brace is left as is."""
    values = {"from": event.from_ or "", "to": event.to or "", **(data or {})}
    return fill_placeholders(template, values)


def _attempt(value: str | None) -> int:
    # ASCII digits only: "²".isdigit() is true, and int() refuses it (and 5,000 digits).
    if not value or not value.isascii() or not value.isdigit() or len(value) > 3:
        return 1
    return int(value) if 0 < int(value) < 1000 else 1


@dataclass
class _Run:
    """One response under construction."""

    flow: Flow
    event: CallEvent
    urls: CallUrls
    data: Mapping[str, str] = field(default_factory=dict)  # "data.<name>" -> what it says
    response: VoiceResponse = field(default_factory=VoiceResponse)
    sms: list[FlowSms] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)
    problem: str | None = None
    ended_by: str | None = None

    def result(self) -> Rendered:
        """The response as it stands."""
        return Rendered(
            str(self.response), tuple(self.sms), tuple(self.steps), self.problem, self.ended_by
        )

    def resume(self, step: Step) -> Rendered:
        """Go on from `step` after Twilio's callback (or from it, with no event)."""
        event = self.event.event
        if event is None:
            self.chain(step.id)
            return self.result()
        verb = _EVENT_VERBS.get(event)
        if verb is None or not isinstance(step.verb, verb):
            return apology(f"event {event!r} does not belong to step {step.id!r}")
        self.steps.append(step.id)
        _CALLBACKS[event](self, step)
        return self.result()

    def chain(self, step_id: str | None) -> None:
        """Render from `step_id` until a step waits or ends the flow; none: hang up."""
        chained = 0
        while step_id is not None:
            step = self.flow.steps.get(step_id)
            if step is None:  # only in a book built in code: loaded books are checked
                return self._stop(f"step {step_id!r} does not exist")
            if chained == MAX_CHAINED_STEPS:
                return self._stop(f"more than {MAX_CHAINED_STEPS} steps chained")
            chained += 1
            self.steps.append(step.id)
            if not self._emit(step):
                return None
            step_id = step.next
        self.response.hangup()
        self.ended_by = END_OF_FLOW
        return None

    def _stop(self, problem: str) -> None:
        self.problem = problem
        self.response.say(APOLOGY)
        self.response.hangup()
        self.ended_by = HANGUP

    def _emit(self, step: Step) -> bool:
        """Add `step` to the response; True when the flow goes on to `step.next`."""
        verb = step.verb
        if isinstance(verb, Say | Play | Pause):
            _prompt(self.response, verb, self.data)
        elif isinstance(verb, Sms):
            self._sms(step, verb)
        elif isinstance(verb, Gather):
            self._gather(step, verb, attempt=1)
        elif isinstance(verb, Dial):
            self._dial(step, verb)
        elif isinstance(verb, Record):
            self._record(step, verb)
        else:
            self._final(verb)
        return isinstance(verb, Say | Play | Pause | Sms)

    def _final(self, verb: Redirect | Reject | Hangup) -> None:
        if isinstance(verb, Redirect):
            url = self.urls.flow(verb.flow) if verb.flow else verb.url
            self.response.redirect(url, method="POST")
            # Another flow of the book answers the redirect: the call goes on there.
            self.ended_by = None if verb.flow else REDIRECT
        elif isinstance(verb, Reject):
            self.response.reject(reason=verb.reason)
            self.ended_by = REJECT
        else:
            self.response.hangup()
            self.ended_by = HANGUP

    def _sms(self, step: Step, verb: Sms) -> None:
        to = self.event.party if verb.to == CALLER else verb.to
        sid = self.event.call_sid
        if not to or not sid:
            self.problem = f"step {step.id!r}: no {'number' if sid else 'CallSid'} to send with"
            return
        key = sms_key(sid, self.flow.id, step.id, self.event.attempt)
        self.sms.append(FlowSms(to, fill(verb.body, self.event, self.data), key))

    def _gather(self, step: Step, verb: Gather, attempt: int) -> None:
        element = self.response.gather(
            action=self.urls.step(self.flow.id, step.id, INPUT, attempt),
            method="POST",
            input=" ".join(verb.input),
            num_digits=verb.num_digits,
            finish_on_key=verb.finish_on_key,
            timeout=verb.timeout,
            speech_timeout=verb.speech_timeout,
            language=verb.language,
            hints=", ".join(verb.hints) or None,
        )
        for prompt in (verb.retry_prompt if attempt > 1 else ()) + verb.prompt:
            _prompt(element, prompt, self.data)
        # With no input, Twilio goes on to the next verb rather than calling the action.
        timeout_url = self.urls.step(self.flow.id, step.id, TIMEOUT, attempt)
        self.response.redirect(timeout_url, method="POST")

    def _dial(self, step: Step, verb: Dial) -> None:
        self.response.dial(
            verb.number,
            action=self.urls.step(self.flow.id, step.id, DIAL),
            method="POST",
            timeout=verb.timeout,
            caller_id=verb.caller_id,
            record="record-from-answer" if verb.record else None,
        )

    def _record(self, step: Step, verb: Record) -> None:
        action = self.urls.step(self.flow.id, step.id, RECORDED)
        callback = self.urls.status_callback
        self.response.record(
            action=action,
            method="POST",
            max_length=verb.max_length,
            timeout=verb.timeout,
            finish_on_key=verb.finish_on_key,
            play_beep=verb.play_beep,
            transcribe=verb.transcribe or None,
            transcribe_callback=callback if verb.transcribe else None,
            recording_status_callback=callback,
        )
        # An empty recording skips the action: Twilio goes on to the next verb instead.
        self.response.redirect(action, method="POST")

    # --- callbacks -------------------------------------------------------------------

    def _on_input(self, step: Step) -> None:
        assert isinstance(step.verb, Gather)
        target = match(step.verb, self.event.digits, self.event.speech)
        if target is not None:
            self.chain(target)
        else:
            self._retry_or_fallback(step, step.verb)

    def _on_timeout(self, step: Step) -> None:
        assert isinstance(step.verb, Gather)
        self._retry_or_fallback(step, step.verb)

    def _retry_or_fallback(self, step: Step, verb: Gather) -> None:
        attempt = self.event.attempt
        if attempt <= verb.retries:
            self._gather(step, verb, attempt + 1)
        else:
            self.chain(verb.fallback)

    def _on_dial(self, step: Step) -> None:
        assert isinstance(step.verb, Dial)
        status = self.event.dial_status or "failed"
        target = None
        if status not in _ANSWERED:
            target = getattr(step.verb, _DIAL_TARGETS.get(status, "on_failed"))
        self.chain(target or step.next)

    def _on_recorded(self, step: Step) -> None:
        self.chain(step.next)


_CALLBACKS: dict[str, Callable[[_Run, Step], None]] = {
    INPUT: _Run._on_input,
    TIMEOUT: _Run._on_timeout,
    DIAL: _Run._on_dial,
    RECORDED: _Run._on_recorded,
}


def match(verb: Gather, digits: str | None, speech: str | None) -> str | None:
    """The branch target for an answer: keys exactly, speech containing the branch's word
    (case-insensitive); the first branch in document order wins."""
    if digits:
        for answer, target in verb.branches:
            if answer == digits:
                return target
    if speech:
        heard = speech.casefold()
        for answer, target in verb.branches:
            if answer.casefold() in heard:
                return target
    return None


def _prompt(parent: VoiceResponse | GatherElement, verb: Prompt, data: Mapping[str, str]) -> None:
    if isinstance(verb, Say):
        # Only data placeholders: a say text's {from} is spoken as written, as it always was.
        text = fill_placeholders(verb.text, data)
        parent.say(text, voice=verb.voice, loop=verb.loop, language=verb.language)
    elif isinstance(verb, Play):
        parent.play(verb.url, loop=verb.loop)
    else:
        parent.pause(length=verb.length)
