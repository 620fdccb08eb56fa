"""Inbound SMS: opt-out keywords first, then the rules; what to reply and whom to forward to.

`decide` is pure: it reads the message and the rules. A message is a keyword when its
text is one (telephony/sms/keywords.py) or when Twilio's Advanced Opt-Out says so in the
webhook's `OptOutType` (STOP, START or HELP); when the two disagree, opting out wins.

`SmsResponder` carries a decision out: it records opt-outs and opt-ins as consent events
(each message once, in order: telephony/sms/optouts.py), and puts forwards
on the outbound queue with idempotency keys derived from the inbound MessageSid, so a
webhook that Twilio delivers twice forwards once. Replies go back in the webhook's TwiML.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal, Protocol

from telephony.errors import CommandRejectedError, RecipientOptedOutError
from telephony.events import SMS_RECEIVED
from telephony.logs import log_event
from telephony.outbound import NOT_QUIET
from telephony.sms.keywords import KeywordKind, keyword_of
from telephony.sms.optouts import (
    ConsentEvent,
    MessageClock,
    OptOutStore,
    TimeSource,
    consent_changed_event,
    consent_number,
)

if TYPE_CHECKING:
    from telephony.events.model import OutcomeEvent
    from telephony.events.publisher import Publisher

    # Only for types: the rules module (and its validation) loads with SMS_RULES_FILE.
    from telephony.sms.rules import Action, SmsRules

logger = logging.getLogger(__name__)

MAX_REPLY_CHARS = 1600  # Twilio's limit for one message body
# Replaced in one pass, so a value that itself holds "{from}" is never expanded again.
_PLACEHOLDER = re.compile(r"\{(from|body|to)\}")

DEFAULT_HELP_REPLY = "Reply STOP to stop receiving messages from this number, START to resume."
DEFAULT_START_REPLY = "You will receive messages from this number again. Reply STOP to stop."

# Twilio's OptOutType values (Advanced Opt-Out), as the app's keyword kinds.
OPT_OUT_TYPES: dict[str, KeywordKind] = {"STOP": "opt_out", "START": "opt_in", "HELP": "help"}
# When the text and OptOutType disagree, the first kind here wins: opting out is safe.
_KIND_PRECEDENCE: tuple[KeywordKind, ...] = ("opt_out", "opt_in", "help")

SmsOutcome = Literal["opt_out", "opt_in", "help", "rule", "default", "auto_reply", "no_match"]
# Who found the keyword: the app in the text, or Twilio's Advanced Opt-Out (OptOutType).
KeywordSource = Literal["keyword", "opt_out_type"]
MAX_MEDIA = 10  # Twilio delivers at most 10 media per message; NumMedia is not trusted
MAX_KEYWORD_CHARS = 64
# Twilio joins a long SMS into one body of up to 1,600 characters, and a WhatsApp body holds
# up to 4,096: kept whole, while an event of emoji stays far below a queue message's 64 KiB
# and a staged row's 32 K UTF-16 units.
MAX_EVENT_BODY_CHARS = 4_096
# Puts one outbound command (a dict of the queue contract) on the queue, at most once per key.
Forwarder = Callable[[dict[str, object]], object]


class WebhookFields(Protocol):
    """Form fields of a webhook (telephony.adapters.signature.FormParams, or a dict in tests)."""

    def get(self, name: str, default: str | None = None, /) -> str | None: ...


def fill_template(template: str, values: Mapping[str, str]) -> str:
    """`template` with {from}, {body} and {to} replaced; nothing else is interpreted."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), ""), template)[:MAX_REPLY_CHARS]


@dataclass(frozen=True)
class InboundSms:
    """The fields of Twilio's messaging webhook that routing uses."""

    sid: str | None
    from_: str
    to: str
    body: str
    opt_out_type: str | None = None  # Twilio's OptOutType: STOP, START or HELP
    media_urls: tuple[str, ...] = ()

    @classmethod
    def from_params(cls, params: WebhookFields) -> InboundSms:
        """The message in a webhook's form parameters; missing fields are empty."""
        media = (params.get(f"MediaUrl{n}") for n in range(MAX_MEDIA))
        return cls(
            sid=params.get("MessageSid") or params.get("SmsSid") or None,
            from_=params.get("From") or "",
            to=params.get("To") or "",
            body=params.get("Body") or "",
            opt_out_type=(params.get("OptOutType") or "").strip().upper() or None,
            media_urls=tuple(url for url in media if url),
        )

    def keyword(self) -> tuple[KeywordKind, str, KeywordSource] | None:
        """The keyword the message is, by its text or by Twilio's OptOutType.

        When Twilio's OptOutType gives a kind the text does not, Twilio matched a keyword
        of its own (a custom or translated one under Advanced Opt-Out, such as ARRET): the
        word recorded is the message's own text. When the two disagree, opting out wins.
        """
        found: list[tuple[KeywordKind, str, KeywordSource]] = []
        if (by_text := keyword_of(self.body)) is not None:
            found.append((by_text[0], by_text[1], "keyword"))
        kind = OPT_OUT_TYPES.get(self.opt_out_type or "")
        if kind is not None:
            word = self.body.strip().upper()[:MAX_KEYWORD_CHARS] or str(self.opt_out_type)
            found.append((kind, word, "opt_out_type"))
        # min keeps the first of equals: the text's own word when both give one kind.
        return min(found, key=lambda keyword: _KIND_PRECEDENCE.index(keyword[0]), default=None)

    def opts_out(self) -> bool:
        """Whether the message is an opt-out keyword, which no rule can change."""
        keyword = self.keyword()
        return keyword is not None and keyword[0] == "opt_out"

    def placeholders(self) -> dict[str, str]:
        """The values of {from}, {body} and {to} in reply templates."""
        return {"from": self.from_, "body": self.body.strip(), "to": self.to}


@dataclass(frozen=True)
class SmsDecision:
    """What to do with one inbound message."""

    outcome: SmsOutcome
    reply: str | None = None
    forward: tuple[str, ...] = ()
    keyword: str | None = None
    rule: str | None = None
    keyword_source: KeywordSource = "keyword"


def decide(message: InboundSms, rules: SmsRules | None, auto_reply: str | None) -> SmsDecision:
    """Keywords, then the first matching rule, then the default; no rules: `auto_reply`."""
    keyword = message.keyword()
    if keyword is not None:
        return replace(
            _keyword_decision(keyword[0], keyword[1], message, rules), keyword_source=keyword[2]
        )
    if rules is None:
        return SmsDecision("auto_reply", reply=auto_reply)
    rule = rules.match(message.body)
    if rule is not None:
        return _action_decision("rule", rule.action, message, rule.name)
    if rules.default is not None:
        return _action_decision("default", rules.default, message)
    return SmsDecision("no_match")


def _keyword_decision(
    kind: KeywordKind, word: str, message: InboundSms, rules: SmsRules | None
) -> SmsDecision:
    if kind == "opt_out":
        # No reply: Twilio confirms the opt-out itself and would block ours (21610).
        return SmsDecision("opt_out", keyword=word)
    configured = (rules.help if kind == "help" else rules.start) if rules else None
    template = configured or (DEFAULT_HELP_REPLY if kind == "help" else DEFAULT_START_REPLY)
    return SmsDecision(kind, reply=fill_template(template, message.placeholders()), keyword=word)


def _action_decision(
    outcome: SmsOutcome, action: Action, message: InboundSms, rule: str | None = None
) -> SmsDecision:
    reply = fill_template(action.reply, message.placeholders()) if action.reply else None
    return SmsDecision(outcome, reply=reply, forward=action.forward, rule=rule)


def received_event(
    message: InboundSms, decision: SmsDecision, replied: bool, at: datetime
) -> OutcomeEvent:
    """telephony.sms.received: `message` was answered as `decision` says."""
    from telephony.events.model import OutcomeEvent, fact_id, utc_text  # only with events on

    # Without a MessageSid (never from Twilio) the fact is named by what it says.
    name = message.sid or fact_id(message.from_, message.to, message.body, utc_text(at))
    return OutcomeEvent(
        id=fact_id(SMS_RECEIVED, name),
        type=SMS_RECEIVED,
        subject=f"sms/{message.sid or 'unknown'}",
        time=at,
        data={
            "message_sid": message.sid,
            "from": message.from_,
            "to": message.to,
            "body": message.body[:MAX_EVENT_BODY_CHARS],
            "media_urls": list(message.media_urls),
            "outcome": decision.outcome,
            "rule": decision.rule,
            "keyword": decision.keyword,
            "replied": replied,
            "forwards": len(decision.forward),
        },
    )


def forward_text(message: InboundSms) -> str:
    """The forwarded text: the sender's number in clear (the recipient has to answer them)."""
    head = f"From {message.from_}: "
    body = message.body.strip() or "(no text)"
    room = MAX_REPLY_CHARS - len(head)
    return head + (body if len(body) <= room else body[: room - 1] + "\u2026")


def forward_key(message_sid: str, position: int) -> str:
    """The idempotency key of the `position`th forward (from 1) of one inbound message."""
    return f"{message_sid}-forward-{position}"


class SmsResponder:
    """Carries out decisions; the opt-out store is built only when a keyword needs it.

    With a `message_clock` (Twilio's REST API), consent events are ordered by when Twilio
    created the message; without one, or when Twilio does not know the message, by when
    the app received it, and only the once-per-MessageSid rule stops a replay.
    """

    def __init__(
        self,
        optouts: Callable[[], OptOutStore],
        forward: Forwarder,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        message_clock: MessageClock | None = None,
        publisher: Publisher | None = None,
    ) -> None:
        self._optouts = optouts
        self._forward = forward
        self._clock = clock
        self._message_clock = message_clock
        self._publisher = publisher

    def respond(self, message: InboundSms, decision: SmsDecision) -> str | None:
        """Record the opt-out or opt-in, queue the forwards; the reply text (or None).

        An opt-in that a newer consent event (or an earlier delivery of the same message)
        outranks changes nothing and gets no reply. Raises StorageUnavailableError when
        consent cannot be recorded, and an UnavailableError when Twilio cannot date an
        opt-in: the caller answers 503 rather than pretend the STOP or START was kept.
        """
        reply = decision.reply
        if decision.outcome in ("opt_out", "opt_in") and message.from_:
            kept = self._record_consent(message, decision)
            if not kept and decision.outcome == "opt_in":
                reply = None
        for position, number in enumerate(decision.forward, start=1):
            self._forward_one(message, number, position)
        if self._publisher is not None:
            event = received_event(message, decision, reply is not None, self._clock())
            self._publisher.publish_or_stage([event])
        return reply

    def _record_consent(self, message: InboundSms, decision: SmsDecision) -> bool:
        opted_out = decision.outcome == "opt_out"
        at, source = self._event_time(message, opted_out)
        keyword = decision.keyword or ""
        event = ConsentEvent(message.from_, keyword, at, message.sid, opted_out, source)
        kept = self._apply(event, decision.keyword_source)
        name = ("sms_opted_out" if opted_out else "sms_opted_in") if kept else "sms_consent_ignored"
        log_event(
            logger, name, logging.INFO if kept else logging.WARNING, From=message.from_,
            keyword=decision.keyword, MessageSid=message.sid, time_source=source,
        )  # fmt: skip
        return kept

    def _apply(self, event: ConsentEvent, source: str) -> bool:
        """Keep the consent event; its outcome event is staged before and published after,
        so a crash in between leaves it for reconcile (which asks the store whether the
        consent was kept) instead of losing it."""
        if self._publisher is None:
            return self._optouts().apply(event)
        announced = [consent_changed_event(event, source)]
        due = self._publisher.stage(announced)
        kept = self._optouts().apply(event)
        self._publisher.release(announced, due, happened=kept)
        return kept

    def _event_time(self, message: InboundSms, opted_out: bool) -> tuple[datetime, TimeSource]:
        """When the message was created at Twilio, else when it was received here."""
        received = self._clock()
        if self._message_clock is None or message.sid is None:
            return received, "received"
        try:
            created = self._message_clock.message_created_at(message.sid)
        except Exception as exc:
            if not opted_out:
                # Dated by its arrival, an old START (held up, or replayed before it was
                # ever applied) would outrank a newer STOP: answer 503 and keep the STOP.
                raise
            # A STOP is never lost to a lookup: dated by its arrival, it can only be late,
            # and a late opt-out errs on the safe side.
            log_event(
                logger, "consent_time_unavailable", logging.WARNING,
                MessageSid=message.sid, reason=type(exc).__name__,
            )  # fmt: skip
            return received, "received"
        return (created, "twilio") if created is not None else (received, "received")

    def _forward_one(self, message: InboundSms, number: str, position: int) -> None:
        ends = (consent_number(message.to), consent_number(message.from_))
        if message.sid is None or number in ends:
            # Without a MessageSid there is no key that survives a retry; forwarding to
            # our own number would loop, and to the sender would echo (on any channel:
            # a WhatsApp message's addresses carry the numbers after whatsapp:).
            log_event(logger, "sms_forward_skipped", logging.WARNING, to=number, sid=message.sid)
            return
        key = forward_key(message.sid, position)
        command = {
            "kind": "sms", "to": number, "body": forward_text(message),
            "quiet_hours": NOT_QUIET,  # it answers a message that just came in
        }  # fmt: skip
        try:
            self._forward({**command, "idempotency_key": key})
        except (RecipientOptedOutError, CommandRejectedError) as exc:
            log_event(logger, "sms_forward_refused", logging.WARNING, key=key, reason=exc.message)
            return
        log_event(logger, "sms_forwarded", key=key, to=number)
