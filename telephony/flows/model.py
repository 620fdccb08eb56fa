"""Call flows as values: a book of flows, each a start step and named steps of one verb.

Built from a validated document (telephony.flows.document); nothing here reads files.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

from telephony.flows.data import DataSchema

CALLER = "caller"  # sms `to`: the other party on the call (see Sms)


@dataclass(frozen=True)
class Say:
    text: str
    voice: str | None = None
    language: str | None = None
    loop: int | None = None


@dataclass(frozen=True)
class Play:
    url: str
    loop: int | None = None


@dataclass(frozen=True)
class Pause:
    length: int | None = None


Prompt = Say | Play | Pause


@dataclass(frozen=True)
class Gather:
    """Listen for keys or speech; `branches` (in document order) map an answer to a step."""

    input: tuple[str, ...] = ("dtmf",)
    num_digits: int | None = None
    finish_on_key: str | None = None
    timeout: int | None = None
    speech_timeout: str | int | None = None
    language: str | None = None
    hints: tuple[str, ...] = ()
    prompt: tuple[Prompt, ...] = ()
    retry_prompt: tuple[Prompt, ...] = ()
    retries: int = 0
    branches: tuple[tuple[str, str], ...] = ()
    fallback: str | None = None


@dataclass(frozen=True)
class Dial:
    number: str
    timeout: int | None = None
    caller_id: str | None = None
    record: bool = False
    on_no_answer: str | None = None
    on_busy: str | None = None
    on_failed: str | None = None


@dataclass(frozen=True)
class Record:
    max_length: int | None = None
    timeout: int | None = None
    finish_on_key: str | None = None
    play_beep: bool | None = None
    transcribe: bool = False


@dataclass(frozen=True)
class Redirect:
    """To another flow of the book, or to an absolute https URL that returns TwiML."""

    flow: str | None = None
    url: str | None = None


@dataclass(frozen=True)
class Reject:
    reason: Literal["busy", "rejected"] | None = None


@dataclass(frozen=True)
class Hangup:
    pass


@dataclass(frozen=True)
class Sms:
    """An SMS sent while the call goes on. `to` is CALLER, an E.164 number or a WhatsApp
    address (whatsapp:+E164); `body` may hold {from} and {to}, the call's From and To
    numbers."""

    to: str
    body: str


Verb = Say | Play | Pause | Gather | Dial | Record | Redirect | Reject | Hangup | Sms

# Verbs that add to the response and go straight on to `next`: a chain of them is one
# response. Every other verb either waits for Twilio to call back or ends the flow.
CHAINED = (Say, Play, Pause, Sms)
# Verbs that never go on to `next`: a gather goes on by its branches and fallback, and the
# others end the flow in this document.
WITHOUT_NEXT = (Gather, Redirect, Reject, Hangup)


@dataclass(frozen=True)
class Step:
    id: str
    verb: Verb
    next: str | None = None

    def targets(self) -> Iterator[tuple[str, str]]:
        """(role, step id) for every step this one can lead to, `next` included."""
        if self.next is not None:
            yield "next", self.next
        verb = self.verb
        if isinstance(verb, Gather):
            for answer, target in verb.branches:
                yield f"branch {answer!r}", target
            if verb.fallback is not None:
                yield "fallback", verb.fallback
        if isinstance(verb, Dial):
            for role in ("on_no_answer", "on_busy", "on_failed"):
                target = getattr(verb, role)
                if target is not None:
                    yield role, target


@dataclass(frozen=True)
class Flow:
    id: str
    start: str
    steps: Mapping[str, Step]
    description: str | None = None
    # The values a call brings to the flow (telephony/flows/data.py); None: it takes none.
    data: DataSchema | None = None


@dataclass(frozen=True)
class FlowBook:
    """Every flow of one document, by id."""

    flows: Mapping[str, Flow] = field(default_factory=dict)
    source: str = "<memory>"

    def __contains__(self, flow_id: object) -> bool:
        return flow_id in self.flows

    def flow(self, flow_id: str) -> Flow | None:
        """The flow `flow_id`, or None when the document has no such flow."""
        return self.flows.get(flow_id)
