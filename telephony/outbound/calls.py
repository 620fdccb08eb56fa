"""Calls, placed now (make_call) or queued: one request model, one opt-out check, one builder.

A make_call body is the command schema's call shape without `kind` and `idempotency_key`,
so both paths validate with telephony/outbound/commands.py (schema, numbers, destination
guard, TwiML, flow). `build_call` turns a validated command into the call Twilio is asked
to place: make_call's handler passes the checked base URL (PUBLIC_BASE_URL; the request's
host only in local development); a queued command uses PUBLIC_BASE_URL or none.

A call to a flow that declares data keeps that data (keep_call_data) before Twilio is
asked, and its URLs carry only the data's id (telephony/flows/data.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import quote

from telephony.errors import CommandRejectedError, InvalidInputError, SettingsError
from telephony.outbound.commands import CommandRules, OutboundCommand, parse_command
from telephony.outbound.sender import CreatedResource, OutboundCall, Sender, SenderDefaults
from telephony.sms.optouts import OptOutStore, ensure_can_contact

if TYPE_CHECKING:
    from telephony.flows.data import CallDataStore

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
    url = _answer_url(base, command.flow, data_id(command))
    return OutboundCall(command.to, sender, callback, url=url)


def status_callback_url(
    base: str | None, key: str | None = None, data: str | None = None
) -> str | None:
    """Where Twilio reports a send's status; `key` names its delivery record, `data` the
    call's data (deleted when the call is over)."""
    if base is None:
        return None
    query = [f"id={quote(key, safe='')}"] if key is not None else []
    query += [f"data={data}"] if data is not None else []  # 32 hex digits: nothing to quote
    return f"{base}/api/status_callback" + (f"?{'&'.join(query)}" if query else "")


def data_id(command: OutboundCommand) -> str | None:
    """The id the call's data is kept under; None for a call without data."""
    if command.data is None:
        return None
    from telephony.flows.data import call_data_id  # only calls with data load the flow code

    return call_data_id(command.idempotency_key)


def keep_call_data(store: Callable[[], CallDataStore] | None, command: OutboundCommand) -> None:
    """Keep the call's data where its webhooks read it, before Twilio is asked to call:
    StorageUnavailableError (503, or a retry) means nothing was sent."""
    identifier = data_id(command)
    if identifier is None:
        return
    if store is None:
        raise SettingsError("a call with data needs a store for the data of calls")
    from telephony.flows.data import CallData

    assert command.flow is not None and command.data is not None  # the command's checks
    store().put(identifier, CallData(command.flow, command.data))


def _answer_url(base: str, flow: str | None, data: str | None) -> str:
    if flow is None:
        return f"{base}/api/voice_url"
    from telephony.flows.render import CallUrls  # only calls with a flow load the flow code

    return CallUrls.for_base(base).flow(flow, data)


class CallPlacer:
    """Places a call now, for make_call: validate, check the opt-out, build, keep its data,
    send."""

    def __init__(
        self,
        sender: Sender,
        rules: CommandRules,
        defaults: SenderDefaults,
        optouts: OptOutStore,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        call_data: Callable[[], CallDataStore] | None = None,
    ) -> None:
        self._sender = sender
        self._rules = rules
        self._defaults = defaults
        self._optouts = optouts
        self._clock = clock
        self._call_data = call_data  # built on the first call with data

    def place(self, body: object, base: str) -> tuple[OutboundCommand, CreatedResource]:
        """The validated call and what Twilio created; raises the error family.

        `base` is where Twilio calls back: the handler's checked base URL (PUBLIC_BASE_URL,
        or the request's host in local development; telephony/handlers/http.py base_url).
        """
        command = call_command(body, self._rules, self._clock())
        ensure_can_contact(self._optouts, command.to)
        callback = status_callback_url(base, data=data_id(command))
        call = build_call(command, self._defaults, base, callback)
        keep_call_data(self._call_data, command)
        return command, self._sender.place_call(call)
