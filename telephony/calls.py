"""The make_call request: what a caller may ask for, validated without any SDK."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from telephony.errors import InvalidInputError
from telephony.phone import check_destination, parse_e164

MAX_SAY_CHARS = 4096  # Twilio's limit for <Say> text
MAX_TWIML_CHARS = 4000  # Twilio's limit for the Twiml parameter of a call
CALL_FIELDS = frozenset({"to", "from", "say", "url", "twiml", "flow"})
CONTENT_FIELDS = ("say", "url", "twiml", "flow")
# The flow id pattern of schemas/call-flows.v1.json.
_FLOW_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class CallRequest:
    """A validated request to place a call. At most one of say/url/twiml/flow is set."""

    to: str
    from_: str
    say: str | None = None
    url: str | None = None
    twiml: str | None = None
    flow: str | None = None


def parse_call_request(
    body: object,
    default_from: str | None,
    allowed_regions: Collection[str],
    flow_exists: Callable[[str], bool] | None = None,
) -> CallRequest:
    """Validate a make_call body; raise InvalidInputError naming the bad field.

    `flow_exists` tells whether the call flow document defines a flow; it is only called
    for a request that names a flow (so the document is not loaded for the others).
    """
    if not isinstance(body, Mapping):
        raise InvalidInputError("the body must be a JSON object")
    unknown = sorted(set(body) - CALL_FIELDS)
    if unknown:
        raise InvalidInputError(f"unknown field {unknown[0]}", unknown[0])
    to = parse_e164(body.get("to"), "to")
    check_destination(to, allowed_regions, "to")
    content = _call_content(body)
    flow = content.get("flow")
    if flow is not None and flow_exists is not None and not flow_exists(flow):
        raise InvalidInputError(f"flow {flow} is not defined in CALL_FLOWS_FILE", "flow")
    return CallRequest(to=to, from_=_sender(body.get("from"), default_from), **content)


def _sender(value: object, default_from: str | None) -> str:
    if value is None:
        if default_from is None:
            raise InvalidInputError("from is required: TWILIO_PHONE_NUMBER is not set", "from")
        return default_from
    return parse_e164(value, "from")


def _call_content(body: Mapping[str, object]) -> dict[str, str]:
    given = [name for name in CONTENT_FIELDS if body.get(name) is not None]
    if len(given) > 1:
        raise InvalidInputError(
            f"give at most one of say, url, twiml, flow (got {', '.join(given)})", given[1]
        )
    if not given:
        return {}
    name = given[0]
    value = body[name]
    if not isinstance(value, str) or not value.strip():
        raise InvalidInputError(f"{name} must be a non-empty string", name)
    return {name: _CHECKS[name](value)}


def _check_say(text: str) -> str:
    if len(text) > MAX_SAY_CHARS:
        raise InvalidInputError(f"say is longer than {MAX_SAY_CHARS} characters", "say")
    return text


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise InvalidInputError("url must be an absolute https URL", "url")
    return url


def _check_twiml(twiml: str) -> str:
    # Imported here: only this rarely used option parses caller-supplied XML.
    from defusedxml import ElementTree
    from defusedxml.common import DefusedXmlException

    if len(twiml) > MAX_TWIML_CHARS:
        raise InvalidInputError(f"twiml is longer than {MAX_TWIML_CHARS} characters", "twiml")
    try:
        root = ElementTree.fromstring(twiml)
    except (ElementTree.ParseError, DefusedXmlException):
        raise InvalidInputError("twiml is not well-formed XML", "twiml") from None
    if root.tag != "Response":
        raise InvalidInputError("twiml must have a <Response> root element", "twiml")
    return twiml


def _check_flow(flow: str) -> str:
    if not _FLOW_ID.fullmatch(flow):
        raise InvalidInputError("flow must be a flow id (letters, digits, _ . -)", "flow")
    return flow


_CHECKS = {"say": _check_say, "url": _check_url, "twiml": _check_twiml, "flow": _check_flow}
