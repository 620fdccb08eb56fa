"""Calls, placed now (make_call) or queued: one request model, one opt-out check, one builder.

A make_call body is the command schema's call shape without `kind` and `idempotency_key`,
so both paths validate with telephony/outbound/commands.py (schema, numbers, destination
guard, TwiML, flow). `build_call` turns a validated command into the call Twilio is asked
to place: make_call's handler passes the checked base URL (PUBLIC_BASE_URL; the request's
host only in local development); a queued command uses PUBLIC_BASE_URL or none.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from urllib.parse import quote

from telephony.errors import CommandRejectedError, InvalidInputError
from telephony.outbound.commands import CommandRules, OutboundCommand, parse_command
from telephony.outbound.sender import CreatedResource, OutboundCall, Sender, SenderDefaults
from telephony.sms.optouts import OptOutStore, ensure_can_contact

# Fields of a queued call that a make_call body does not take: the route says both.
# make_call places the call now: quiet hours, which defer a send, belong to queued ones.
QUEUE_ONLY_FIELDS = ("kind", "idempotency_key", "quiet_hours")


def call_command(body: object, rules: CommandRules, now: datetime) -> OutboundCommand:
    """Validate a make_call body as a call command; InvalidInputError names the field."""
    if not isinstance(body, Mapping):
        raise InvalidInputError("the body must be a JSON object")
    for name in QUEUE_ONLY_FIELDS:
        if name in body:
            raise InvalidInputError(f"unknown field {name}", name)
    return parse_command({**body, "kind": "call"}, uuid.uuid4().hex, rules, now)


def build_call(
    command: OutboundCommand, defaults: SenderDefaults, base: str | None, callback: str | None
) -> OutboundCall:
    """The call for `command`; CommandRejectedError when a setting it needs is missing.

    A flow, or no content at all, makes Twilio fetch our voice_url, which needs `base`.
    """
    sender = command.from_ or defaults.phone_number
    key = command.idempotency_key
    if sender is None:
        raise CommandRejectedError("a call needs from, or TWILIO_PHONE_NUMBER", "from", key)
    if command.say or command.url or command.twiml:
        return OutboundCall(
            command.to, sender, callback, url=command.url, twiml=command.twiml, say=command.say
        )
    if base is None and command.flow:
        raise CommandRejectedError("a call with a flow needs PUBLIC_BASE_URL", "flow", key)
    if base is None:
        message = "a call without say, url or twiml needs PUBLIC_BASE_URL"
        raise CommandRejectedError(message, None, key)
    return OutboundCall(command.to, sender, callback, url=_answer_url(base, command.flow))


def status_callback_url(base: str | None, key: str | None = None) -> str | None:
    """Where Twilio reports a send's status; `key` names its delivery record."""
    if base is None:
        return None
    query = f"?id={quote(key, safe='')}" if key is not None else ""
    return f"{base}/api/status_callback{query}"


def _answer_url(base: str, flow: str | None) -> str:
    if flow is None:
        return f"{base}/api/voice_url"
    from telephony.flows.render import CallUrls  # only calls with a flow load the flow code

    return CallUrls.for_base(base).flow(flow)


class CallPlacer:
    """Places a call now, for make_call: validate, check the opt-out, build, send."""

    def __init__(
        self,
        sender: Sender,
        rules: CommandRules,
        defaults: SenderDefaults,
        optouts: OptOutStore,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._sender = sender
        self._rules = rules
        self._defaults = defaults
        self._optouts = optouts
        self._clock = clock

    def place(self, body: object, base: str) -> tuple[OutboundCommand, CreatedResource]:
        """The validated call and what Twilio created; raises the error family.

        `base` is where Twilio calls back: the handler's checked base URL (PUBLIC_BASE_URL,
        or the request's host in local development; telephony/handlers/http.py base_url).
        """
        command = call_command(body, self._rules, self._clock())
        ensure_can_contact(self._optouts, command.to)
        call = build_call(command, self._defaults, base, status_callback_url(base))
        return command, self._sender.place_call(call)
