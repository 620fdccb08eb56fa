"""Inbound SMS: opt-out keywords first, then the rules; what to reply and whom to forward to.

`decide` is pure: it reads the message and the rules. `SmsResponder` carries a decision
out: it records opt-outs and opt-ins, and puts forwards on the outbound queue with
idempotency keys derived from the inbound MessageSid, so a webhook that Twilio delivers
twice forwards once. Replies go back in the webhook's TwiML.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal, Protocol

from telephony.errors import CommandRejectedError, RecipientOptedOutError
from telephony.logs import log_event
from telephony.sms.keywords import KeywordKind, keyword_of
from telephony.sms.optouts import OptOut, OptOutStore

if TYPE_CHECKING:
    # Only for types: the rules module (and its validation) loads with SMS_RULES_FILE.
    from telephony.sms.rules import Action, SmsRules

logger = logging.getLogger(__name__)

MAX_REPLY_CHARS = 1600  # Twilio's limit for one message body
# Replaced in one pass, so a value that itself holds "{from}" is never expanded again.
_PLACEHOLDER = re.compile(r"\{(from|body|to)\}")

DEFAULT_HELP_REPLY = "Reply STOP to stop receiving messages from this number, START to resume."
DEFAULT_START_REPLY = "You will receive messages from this number again. Reply STOP to stop."

SmsOutcome = Literal["opt_out", "opt_in", "help", "rule", "default", "auto_reply", "no_match"]
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

    @classmethod
    def from_params(cls, params: WebhookFields) -> InboundSms:
        """The message in a webhook's form parameters; missing fields are empty."""
        return cls(
            sid=params.get("MessageSid") or params.get("SmsSid") or None,
            from_=params.get("From") or "",
            to=params.get("To") or "",
            body=params.get("Body") or "",
        )

    def opts_out(self) -> bool:
        """Whether the message is an opt-out keyword, which no rule can change."""
        keyword = keyword_of(self.body)
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


def decide(message: InboundSms, rules: SmsRules | None, auto_reply: str | None) -> SmsDecision:
    """Keywords, then the first matching rule, then the default; no rules: `auto_reply`."""
    keyword = keyword_of(message.body)
    if keyword is not None:
        return _keyword_decision(keyword[0], keyword[1], message, rules)
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
    """Carries out decisions; the opt-out store is built only when a keyword needs it."""

    def __init__(
        self,
        optouts: Callable[[], OptOutStore],
        forward: Forwarder,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._optouts = optouts
        self._forward = forward
        self._clock = clock

    def respond(self, message: InboundSms, decision: SmsDecision) -> str | None:
        """Record the opt-out or opt-in, queue the forwards; the reply text (or None).

        Raises StorageUnavailableError when an opt-out cannot be recorded: the caller answers
        503 rather than pretend the STOP was kept.
        """
        if decision.outcome in ("opt_out", "opt_in") and message.from_:
            self._record_consent(message, decision)
        for position, number in enumerate(decision.forward, start=1):
            self._forward_one(message, number, position)
        return decision.reply

    def _record_consent(self, message: InboundSms, decision: SmsDecision) -> None:
        if decision.outcome == "opt_out":
            optout = OptOut(message.from_, decision.keyword or "", self._clock(), message.sid)
            self._optouts().add(optout)
            event = "sms_opted_out"
        else:
            self._optouts().remove(message.from_)
            event = "sms_opted_in"
        log_event(
            logger, event, From=message.from_, keyword=decision.keyword, MessageSid=message.sid
        )

    def _forward_one(self, message: InboundSms, number: str, position: int) -> None:
        if message.sid is None or number in (message.to, message.from_):
            # Without a MessageSid there is no key that survives a retry; forwarding to
            # our own number would loop, and to the sender would echo.
            log_event(logger, "sms_forward_skipped", logging.WARNING, to=number, sid=message.sid)
            return
        key = forward_key(message.sid, position)
        command = {"kind": "sms", "to": number, "body": forward_text(message)}
        try:
            self._forward({**command, "idempotency_key": key})
        except (RecipientOptedOutError, CommandRejectedError) as exc:
            log_event(logger, "sms_forward_refused", logging.WARNING, key=key, reason=exc.message)
            return
        log_event(logger, "sms_forwarded", key=key, to=number)
