"""Outbound commands: the queue message contract (schemas/outbound-command.v1.json).

A command arrives as raw JSON, as base64-wrapped JSON (producers that encode by default),
or as the `data` of an Event Grid or CloudEvents 1.0 event. Validation uses the published
JSON Schema, then the checks a schema cannot express (possible numbers, the destination
guard, the send_at window).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, Literal

from telephony import schemas
from telephony.config.settings import url_host_allowed
from telephony.errors import CommandRejectedError, InvalidInputError
from telephony.phone import check_destination, parse_e164, split_address

if TYPE_CHECKING:
    from telephony.flows.data import DataSchema

SCHEDULE_MIN = timedelta(minutes=15)  # Twilio's window for scheduled messages
SCHEDULE_MAX = timedelta(days=35)
CALL_CONTENT = ("say", "url", "twiml", "flow")  # what a call does once answered: one at most
MAX_TWIML_CHARS = 4000  # Twilio's limit on a call's Twiml parameter (error 32018)


@dataclass(frozen=True)
class OutboundCommand:
    """A validated request to send an SMS/MMS or place a call."""

    kind: Literal["sms", "call"]
    to: str
    idempotency_key: str
    from_: str | None = None
    body: str | None = None
    media_urls: tuple[str, ...] = ()
    send_at: datetime | None = None
    say: str | None = None
    url: str | None = None
    twiml: str | None = None
    flow: str | None = None
    # WhatsApp and Content templates (sms); the flow's values (call); both: quiet hours.
    content_sid: str | None = None
    content_variables: Mapping[str, str] | None = None
    validity_period: int | None = None
    data: Mapping[str, Any] | None = None
    quiet_hours: QuietHours | None = None


@dataclass(frozen=True)
class QuietHours:
    """Hours of the recipient's local day when nothing is sent: [start, end), wrapping
    midnight when end < start (21:00 to 08:00)."""

    start: time
    end: time


@dataclass(frozen=True)
class CommandRules:
    """What the deployment allows, from settings.

    `allowed_regions` and `allowed_url_hosts` are the toll-fraud guard: every number the
    command would make Twilio call or text must be in an allowed region, and a call's
    `url` must name an allowed host (empty: none is). None means "not checked here": a
    producer's own validation, repeated by the worker with the app's settings.
    """

    allowed_regions: Collection[str] | None
    messaging_service_sid: str | None = None
    # Whether the call flow document defines a flow id; None: flows are not checked.
    flow_exists: Callable[[str], bool] | None = None
    # The TwiML a call's `say` becomes (the TwiML adapter); None: its size is not checked.
    render_say: Callable[[str], str] | None = None
    allowed_url_hosts: Collection[str] | None = None
    # The `data` a flow declares (None: it takes none); None here: data is not checked.
    flow_data_schema: Callable[[str], DataSchema | None] | None = None


def decode_message(text: str) -> tuple[object, str | None]:
    """The command object inside a queue message, and the event id when it came as an event.

    Raises CommandRejectedError for text that is neither JSON nor base64-wrapped JSON.
    """
    document = _json_or_base64_json(text.strip())
    if isinstance(document, dict):
        event_id = _event_id(document)
        if event_id is not None:
            return document.get("data"), event_id
    return document, None


def parse_command(
    document: object,
    default_key: str,
    rules: CommandRules,
    now: datetime,
) -> OutboundCommand:
    """Validate a command document; raises CommandRejectedError naming the field."""
    key = _key_of(document) or default_key
    try:
        _check_text(document)
        _validate_schema(document)
        assert isinstance(document, dict)
        command = _build(document, key)
        # A WhatsApp message reaches the number after the prefix: the same guard applies.
        check_destination(split_address(command.to)[1], rules.allowed_regions, "to")
        _check_twiml(command.twiml, rules)
        _check_url(command.url, rules)
        _check_say(command.say, rules)
        _check_schedule(command, rules, now)
        command = _check_flow(command, rules)
    except CommandRejectedError:
        raise
    except InvalidInputError as exc:
        raise CommandRejectedError(exc.message, exc.field, key) from None
    return command


def command_schema() -> dict[str, Any]:
    """The published JSON Schema of the command (the one definition of the contract)."""
    return schemas.load(schemas.COMMAND)


def _json_or_base64_json(text: str) -> object:
    try:
        # Lone surrogates are left to parse_command, which names their field and key.
        return schemas.parse_json(text, check_text=False)
    except schemas.JsonInputError as exc:
        if not text.lstrip().startswith(("{", "[", '"')):
            return _base64_json(text)
        raise CommandRejectedError(str(exc)) from None


def _base64_json(text: str) -> object:
    try:
        decoded = base64.b64decode(text, validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):  # binascii.Error is a ValueError, as is non-ASCII
        raise CommandRejectedError("the message is not JSON (nor base64-encoded JSON)") from None
    try:
        return schemas.parse_json(decoded, check_text=False)
    except schemas.JsonInputError as exc:
        raise CommandRejectedError(str(exc)) from None


def _event_id(document: Mapping[str, object]) -> str | None:
    """The id of an Event Grid event or a CloudEvent that carries a command as its data."""
    is_event_grid = {"eventType", "dataVersion", "subject"} <= document.keys()
    is_cloud_event = "specversion" in document and "type" in document and "source" in document
    event_id = document.get("id")
    is_event = (is_event_grid or is_cloud_event) and "data" in document
    if is_event and isinstance(event_id, str) and _storable(event_id):
        return event_id
    return None


def _key_of(document: object) -> str | None:
    if isinstance(document, dict):
        key = document.get("idempotency_key")
        # A key that cannot be stored (a lone surrogate) records the rejection under the
        # message id instead.
        if isinstance(key, str) and _storable(key):
            return key
    return None


def _check_text(document: object) -> None:
    """Only text a UTF-8 request can carry: a lone surrogate would fail inside the HTTP
    client, after the record was claimed, and leave the send in doubt."""
    try:
        schemas.check_parsed(document)
    except schemas.JsonInputError as exc:
        field = str(exc.path[0]) if exc.path else None
        raise InvalidInputError(str(exc), field) from None


def _storable(key: str) -> bool:
    if not 0 < len(key) <= 128:
        return False
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _validate_schema(document: object) -> None:
    if not isinstance(document, dict):
        raise InvalidInputError("the command must be a JSON object")
    kind = document.get("kind")
    if kind not in ("sms", "call"):
        raise InvalidInputError("kind must be sms or call", "kind")
    given = [name for name in CALL_CONTENT if kind == "call" and name in document]
    if len(given) > 1:
        raise InvalidInputError(f"give at most one of {', '.join(CALL_CONTENT)}", given[1])
    if kind == "call":
        _check_voice_only(document)
    # Validate against the branch the kind names, so errors speak of that kind only.
    from jsonschema.exceptions import best_match

    error = best_match(schemas.validator(schemas.COMMAND, kind).iter_errors(document))
    if error is not None:
        where = schemas.label(error.path)
        raise InvalidInputError(
            schemas.describe(error, where, document="the command"), schemas.field_of(error)
        )


def _check_voice_only(document: Mapping[str, object]) -> None:
    """A call is placed on the phone network: a WhatsApp address is refused in the words
    of the problem, not as a mismatched pattern."""
    for field, direction in (("to", "go to"), ("from", "come from")):
        value = document.get(field)
        if isinstance(value, str) and split_address(value)[0]:
            message = f"{field} must be an E.164 number such as +15558675310"
            raise InvalidInputError(f"{message} (calls cannot {direction} WhatsApp)", field)


def _address(value: str, field: str) -> str:
    """An E.164 number, or a WhatsApp address whose number is one; the prefix is kept."""
    channel, number = split_address(value)
    return channel + parse_e164(number, field)


def _sender(document: Mapping[str, Any], to: str) -> str | None:
    """`from`, on the channel of `to`: Twilio sends a message on one channel only."""
    sender = document.get("from")
    if sender is None:
        return None
    sender = _address(sender, "from")
    channel = split_address(to)[0]
    if split_address(sender)[0] != channel:
        like = "a WhatsApp address such as whatsapp:" if channel else "an E.164 number such as "
        raise InvalidInputError(f"from must be {like}+15017122661, on the channel of to", "from")
    return sender


def _build(document: dict[str, Any], key: str) -> OutboundCommand:
    to = _address(document["to"], "to")
    return OutboundCommand(
        kind=document["kind"],
        to=to,
        idempotency_key=key,
        from_=_sender(document, to),
        body=document.get("body"),
        media_urls=tuple(document.get("media_urls", ())),
        send_at=_timestamp(document["send_at"]) if "send_at" in document else None,
        say=document.get("say"),
        url=document.get("url"),
        twiml=document.get("twiml"),
        flow=document.get("flow"),
        content_sid=document.get("content_sid"),
        content_variables=document.get("content_variables"),
        validity_period=document.get("validity_period"),
        data=document.get("data"),
        quiet_hours=_quiet_hours(document.get("quiet_hours")),
    )


def _quiet_hours(value: Mapping[str, str] | None) -> QuietHours | None:
    """The schema has checked the HH:MM form."""
    if value is None:
        return None
    return QuietHours(time.fromisoformat(value["start"]), time.fromisoformat(value["end"]))


def _timestamp(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInputError("send_at must be an ISO 8601 date-time", "send_at") from None
    if moment.tzinfo is None:
        raise InvalidInputError("send_at needs a time zone (e.g. Z)", "send_at")
    return moment.astimezone(UTC)


def _check_schedule(command: OutboundCommand, rules: CommandRules, now: datetime) -> None:
    if command.send_at is None:
        return
    if not rules.messaging_service_sid:
        raise InvalidInputError("send_at needs TWILIO_MESSAGING_SERVICE_SID", "send_at")
    ahead = command.send_at - now
    if not SCHEDULE_MIN <= ahead <= SCHEDULE_MAX:
        raise InvalidInputError("send_at must be between 15 minutes and 35 days ahead", "send_at")


def _check_twiml(twiml: str | None, rules: CommandRules) -> None:
    """A call's TwiML must be a well-formed <Response> document whose every dial target
    passes the destination guard, refused before Twilio sees it."""
    if twiml is None:
        return
    # Imported here: only this rarely used option parses caller-supplied XML.
    from defusedxml import ElementTree
    from defusedxml.common import DefusedXmlException

    try:
        root = ElementTree.fromstring(twiml)
    except (ElementTree.ParseError, DefusedXmlException):
        raise InvalidInputError("twiml is not well-formed XML", "twiml") from None
    if root.tag != "Response":
        raise InvalidInputError("twiml must have a <Response> root element", "twiml")
    for target in _dial_targets(root):
        if not target.startswith("+"):
            raise InvalidInputError("twiml dials something that is not an E.164 number", "twiml")
        check_destination(target, rules.allowed_regions, "twiml")
    if rules.allowed_url_hosts is not None:
        for url in _fetched_urls(root):
            if not url_host_allowed(url, rules.allowed_url_hosts):
                message = "twiml makes Twilio fetch a URL whose host is not in ALLOWED_URL_HOSTS"
                raise InvalidInputError(message, "twiml")


# TwiML that makes Twilio place a call or send a text, and where it names the number.
_DIALLING = {"Number": "text", "Sms": "to"}


def _dial_targets(root: Any) -> list[str]:
    """Every number the TwiML would make Twilio call or text, wherever it stands: a <Dial>'s
    own text and the text between its nouns, <Number>, <Sms to>. A SIP address can route to
    any number, and a namespaced element is none Twilio would read as ours: both refused."""
    targets = []
    for element in root.iter():
        if not isinstance(element.tag, str) or element.tag.startswith("{"):
            raise InvalidInputError("twiml holds an element in another namespace", "twiml")
        if element.tag == "Sip":
            raise InvalidInputError("twiml dials a SIP address, which is not allowed", "twiml")
        if element.tag == "Dial":
            targets += [element.text or ""] + [child.tail or "" for child in element]
        where = _DIALLING.get(element.tag)
        if where is not None:
            targets.append((element.text or "") if where == "text" else element.get(where, ""))
    return [target.strip() for target in targets if target.strip()]


def _fetched_urls(root: Any) -> list[str]:
    """Every URL the TwiML makes Twilio fetch TwiML from: <Redirect>'s text, and the url,
    action, waitUrl and other *Url attributes of any verb or noun."""
    urls = [(element.text or "").strip() for element in root.iter() if element.tag == "Redirect"]
    for element in root.iter():
        urls += [
            value.strip()
            for name, value in element.attrib.items()
            if name.lower() in ("url", "action") or name.lower().endswith("url")
        ]
    return [url for url in urls if url]


def _check_url(url: str | None, rules: CommandRules) -> None:
    """Twilio fetches a call's TwiML from `url`, so its host must be one the operator
    trusts: that TwiML could dial anywhere, out of the destination guard's sight."""
    if url is None or rules.allowed_url_hosts is None:
        return
    if not url_host_allowed(url, rules.allowed_url_hosts):
        raise InvalidInputError("url names a host that is not in ALLOWED_URL_HOSTS", "url")


def _check_say(say: str | None, rules: CommandRules) -> None:
    """Measure the document Twilio gets, not the input: escaping makes `&` five characters."""
    if say is None or rules.render_say is None:
        return
    if len(rules.render_say(say)) > MAX_TWIML_CHARS:
        raise InvalidInputError(
            f"say is too long: its TwiML would exceed Twilio's {MAX_TWIML_CHARS} characters",
            "say",
        )


def _check_flow(command: OutboundCommand, rules: CommandRules) -> OutboundCommand:
    """The command, its flow checked; with the flow's data, checked (`{}` when none was
    given, so that a call to a flow with data always has a row to read)."""
    if command.flow is None:
        return command
    if rules.flow_exists is not None and not rules.flow_exists(command.flow):
        raise InvalidInputError(f"flow {command.flow} is not defined in CALL_FLOWS_FILE", "flow")
    if rules.flow_data_schema is None:
        return command
    schema = rules.flow_data_schema(command.flow)
    if schema is None:
        if command.data is not None:
            raise InvalidInputError(f"flow {command.flow} takes no data", "data")
        return command
    # Bounded (size, values) before the flow's schema runs; errors name data.<name>.
    return replace(command, data=schema.check(command.data or {}))
