"""The trail of a call through its flows, kept between webhooks, and its outcome event.

Each voice webhook is answered on its own, so what a call did so far (the steps it ran,
what the caller pressed or said, how a dial ended, the recording) is kept in a
`CallTrailStore`, one entry per webhook. When the call's flow ends (a hangup or reject
step, a redirect out of the app, a step with no next step, or Twilio's final status
callback), the trail becomes one `telephony.call.completed` event (docs/events.md). A
redirect to another flow goes on in the same trail.

What one call can cost is bounded: at most MAX_ENTRIES webhooks are kept (beyond, the
event says `truncated`), every field has a maximum length, and the event's lists stay
under a size that a queue message and an outbox row can carry. A signed webhook replayed
after its call's event was published adds nothing. No Azure SDK here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from telephony.events import CALL_COMPLETED
from telephony.events.model import OutcomeEvent, fact_id
from telephony.flows.render import DIAL, INPUT

# Webhooks kept per call. A caller pressing keys in a menu that loops for an hour makes a
# few hundred; a replayed webhook as many as it likes. The first hundred tell the story.
MAX_ENTRIES = 100
MAX_DIGITS = 64  # a gather's num_digits is small; finish_on_key "" still ends at a timeout
MAX_SPEECH = 1_000  # Twilio's SpeechResult of one utterance; a long monologue is cut
MAX_URL = 1_024  # RecordingUrl: Twilio's are about 120 characters
MAX_PARTY = 256  # From/To: E.164, client:<name> or a SIP URI
MAX_WORD = 32  # event, DialCallStatus, Direction: one of a few short words
MAX_ID = 64  # flow and step ids (the document's own limit)
# The event's steps and answers together, as JSON with non-ASCII escaped (its largest
# form): a queue message holds 48 KiB of JSON (64 KiB in base64), an outbox row 32 K
# characters (64 KiB of UTF-16). Entries past it are left out and the event is truncated.
LIST_BUDGET = 16_000

STATUS_CALLBACK = "status_callback"  # ended_by: Twilio's final status callback
# CallStatus values of a call that is over.
FINAL_CALL_STATUSES = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})

# The event schema's id (flow and step ids) and a CallSid as Twilio writes it (CA + 32 hex;
# any letters and digits here): both end up in keys, subjects and the event.
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_CALL_SID = re.compile(r"[A-Za-z0-9]{2,64}")


def is_call_sid(value: str | None) -> bool:
    """True for a CallSid the app keeps a trail under (letters and digits, 2 to 64)."""
    return value is not None and _CALL_SID.fullmatch(value) is not None


def is_flow_id(value: str) -> bool:
    """True for an id the event schema takes as a flow (or step) id."""
    return _ID.fullmatch(value) is not None


@dataclass(frozen=True)
class TrailEntry:
    """One voice webhook of a call: the flow, the step a callback resumed (None when a
    flow starts), the steps it ran, and what Twilio reported with it."""

    at: datetime
    flow: str
    steps: tuple[str, ...] = ()
    step: str | None = None
    event: str | None = None
    digits: str | None = None
    speech: str | None = None
    dial_status: str | None = None
    recording_url: str | None = None
    from_: str | None = None
    to: str | None = None
    direction: str | None = None

    def bounded(self) -> TrailEntry:
        """This entry with every field cut to its maximum length."""
        return replace(
            self,
            flow=self.flow[:MAX_ID],
            # Their number is the renderer's to bound (MAX_CHAINED_STEPS in one answer).
            steps=tuple(step[:MAX_ID] for step in self.steps),
            step=_cut(self.step, MAX_ID),
            event=_cut(self.event, MAX_WORD),
            digits=_cut(self.digits, MAX_DIGITS),
            speech=_cut(self.speech, MAX_SPEECH),
            dial_status=_cut(self.dial_status, MAX_WORD),
            recording_url=_cut(self.recording_url, MAX_URL),
            from_=_cut(self.from_, MAX_PARTY),
            to=_cut(self.to, MAX_PARTY),
            direction=_cut(self.direction, MAX_WORD),
        )

    @property
    def resumed(self) -> bool:
        """True when this webhook was Twilio's callback into a step that ran again here
        (not an apology for a step or event the flow no longer has)."""
        return self.event is not None and self.step is not None and self.steps[:1] == (self.step,)

    def new_steps(self) -> tuple[str, ...]:
        """The steps this webhook added to the call: a callback's own step was listed
        when it first ran (a gather asked again is still one step)."""
        return self.steps[1:] if self.resumed else self.steps


@dataclass(frozen=True)
class CallTrail:
    """The entries of one call, in the order they were kept.

    `truncated`: webhooks beyond MAX_ENTRIES came and were not kept. `finished`: the call's
    event was published (CallTrailStore.finish), so nothing publishes it again.
    """

    entries: tuple[TrailEntry, ...] = ()
    truncated: bool = False
    finished: bool = False


class CallTrailStore(Protocol):
    """Where the trails of calls in a flow are kept between webhooks, by CallSid."""

    def append(self, call_sid: str, entry: TrailEntry) -> None:
        """Keep `entry` after the call's others. Keeps nothing once the call is finished;
        past MAX_ENTRIES keeps nothing either, and notes that the trail is truncated.
        Raises StorageUnavailableError."""
        ...

    def read(self, call_sid: str) -> CallTrail:
        """The call's trail; an empty one for a CallSid the store never saw."""
        ...

    def finish(self, call_sid: str) -> bool:
        """Mark the call's event as published: True only for the first caller (a
        conditional insert), so the flow's end and a later status callback do not both
        publish. Called after a successful publish: delivery stays at least once."""
        ...


def call_completed_event(
    call_sid: str, trail: CallTrail, ended_by: str, call_status: str | None, at: datetime
) -> OutcomeEvent:
    """telephony.call.completed for `trail` (at least one entry), ended by `ended_by` at
    `at`; `call_status` is Twilio's final CallStatus when a status callback ended it."""
    entries = trail.entries
    steps, answers, cut = _listed(entries)
    return OutcomeEvent(
        id=fact_id(CALL_COMPLETED, call_sid),
        type=CALL_COMPLETED,
        subject=f"calls/{call_sid}",
        time=at,
        data={
            "call_sid": call_sid,
            "flow": entries[0].flow,  # the flow the call started in; redirects go on in it
            "from": _first(entry.from_ for entry in entries),
            "to": _first(entry.to for entry in entries),
            "direction": _first(entry.direction for entry in entries),
            "ended_by": ended_by,
            "call_status": call_status,
            "steps": steps,
            "answers": answers,
            "dial": _last_dial(entries),
            "recording_url": _first(entry.recording_url for entry in reversed(entries)),
            "truncated": trail.truncated or cut,
        },
    )


def _listed(entries: Sequence[TrailEntry]) -> tuple[list[str], list[dict[str, Any]], bool]:
    """The steps and answers of `entries`, in order, within LIST_BUDGET; True when cut."""
    steps: list[str] = []
    answers: list[dict[str, Any]] = []
    used = 0
    for entry in entries:
        added = list(entry.new_steps())
        answer = _answer(entry)
        used += _size(added) + (_size(answer) if answer else 0)
        if used > LIST_BUDGET:
            return steps, answers, True
        steps += added
        if answer:
            answers.append(answer)
    return steps, answers, False


def _answer(entry: TrailEntry) -> dict[str, Any] | None:
    """What the caller pressed or said at a gather; None for any other webhook."""
    if entry.event != INPUT or not entry.resumed or not (entry.digits or entry.speech):
        return None
    return {"step": entry.step, "digits": entry.digits, "speech": entry.speech}


def _last_dial(entries: Sequence[TrailEntry]) -> dict[str, str] | None:
    for entry in reversed(entries):
        if entry.event == DIAL and entry.resumed and entry.step is not None:
            # As the renderer reads it: no DialCallStatus is a failed dial.
            return {"step": entry.step, "status": entry.dial_status or "failed"}
    return None


def _first(values: Iterable[str | None]) -> str | None:
    return next((value for value in values if value), None)


def _cut(value: str | None, limit: int) -> str | None:
    return value[:limit] if value else None


def _size(value: object) -> int:
    return len(json.dumps(value))
