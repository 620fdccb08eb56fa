"""parse_call_request: every bad input names its field; good input is kept as given."""

from __future__ import annotations

import pytest

from telephony.calls import MAX_SAY_CHARS, MAX_TWIML_CHARS, CallRequest, parse_call_request
from telephony.errors import InvalidInputError

DEFAULT_FROM = "+15017122661"


def parse(body: object, allowed: frozenset[str] = frozenset()) -> CallRequest:
    return parse_call_request(body, DEFAULT_FROM, allowed)


def field_of(body: object, allowed: frozenset[str] = frozenset()) -> str | None:
    with pytest.raises(InvalidInputError) as info:
        parse(body, allowed)
    return info.value.field


def test_minimal_call_uses_the_default_sender() -> None:
    assert parse({"to": "+15558675310"}) == CallRequest(to="+15558675310", from_=DEFAULT_FROM)


def test_explicit_sender_and_say() -> None:
    call = parse({"to": "+447700900123", "from": "+15005550006", "say": "Your code is 1 2 3"})
    assert call.from_ == "+15005550006"
    assert call.say == "Your code is 1 2 3"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"to": "5558675310"}, "to"),
        ({"to": "+1 555 867 5310"}, "to"),
        ({"to": "+0123456"}, "to"),
        ({"to": "+1555"}, "to"),
        ({"to": 15558675310}, "to"),
        ({}, "to"),
        ({"to": "+15558675310", "from": "twilio"}, "from"),
        ({"to": "+15558675310", "say": "hi", "url": "https://a.example/x"}, "url"),
        ({"to": "+15558675310", "say": ""}, "say"),
        ({"to": "+15558675310", "say": 5}, "say"),
        ({"to": "+15558675310", "say": "x" * (MAX_SAY_CHARS + 1)}, "say"),
        ({"to": "+15558675310", "url": "http://a.example/x"}, "url"),
        ({"to": "+15558675310", "url": "https:///path"}, "url"),
        ({"to": "+15558675310", "twiml": "<Response><Say>hi</Response>"}, "twiml"),
        ({"to": "+15558675310", "twiml": "<Play>x</Play>"}, "twiml"),
        (
            {"to": "+15558675310", "twiml": "<Response>" + "x" * MAX_TWIML_CHARS + "</Response>"},
            "twiml",
        ),
        ({"to": "+15558675310", "callback": "https://a.example"}, "callback"),
    ],
)
def test_bad_input_names_the_field(body: dict[str, object], field: str) -> None:
    assert field_of(body) == field


@pytest.mark.parametrize("body", [[], "call me", None, 42])
def test_body_must_be_an_object(body: object) -> None:
    assert field_of(body) is None


def test_entity_expansion_in_twiml_is_refused() -> None:
    bomb = '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa">]><Response>&a;</Response>'
    assert field_of({"to": "+15558675310", "twiml": bomb}) == "twiml"


def test_well_formed_twiml_is_kept() -> None:
    twiml = "<Response><Say>Hi</Say><Hangup/></Response>"
    assert parse({"to": "+15558675310", "twiml": twiml}).twiml == twiml


def test_no_default_sender_requires_from() -> None:
    with pytest.raises(InvalidInputError) as info:
        parse_call_request({"to": "+15558675310"}, None, frozenset())
    assert info.value.field == "from"


def test_destination_guard_allows_listed_regions_only() -> None:
    allowed = frozenset({"US", "CA"})
    assert parse({"to": "+14155552671"}, allowed).to == "+14155552671"
    assert field_of({"to": "+18765551234"}, allowed) == "to"  # Jamaica shares +1
    assert field_of({"to": "+447911123456"}, allowed) == "to"
    assert field_of({"to": "+15558675310"}, allowed) == "to"  # unassigned: no known region


def test_a_flow_is_checked_against_the_flow_document_only_when_named() -> None:
    asked: list[str] = []

    def exists(flow: str) -> bool:
        asked.append(flow)
        return flow == "ivr-menu"

    call = parse_call_request({"to": "+15558675310", "flow": "ivr-menu"}, DEFAULT_FROM, (), exists)
    assert call.flow == "ivr-menu"
    assert parse_call_request({"to": "+15558675310"}, DEFAULT_FROM, (), exists).flow is None
    assert asked == ["ivr-menu"]
    with pytest.raises(InvalidInputError) as info:
        parse_call_request({"to": "+15558675310", "flow": "other"}, DEFAULT_FROM, (), exists)
    assert info.value.field == "flow"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"to": "+15558675310", "flow": "bad id"}, "flow"),
        ({"to": "+15558675310", "flow": "x" * 65}, "flow"),
        ({"to": "+15558675310", "flow": 7}, "flow"),
        ({"to": "+15558675310", "flow": "ivr-menu\n"}, "flow"),
        ({"to": "+15558675310", "twiml": "<Response/>", "flow": "ivr-menu"}, "flow"),
    ],
)
def test_bad_flow_names_the_field(body: dict[str, object], field: str) -> None:
    assert field_of(body) == field
