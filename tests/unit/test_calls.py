"""One call path: make_call bodies and queued calls share the validation and the builder.

Every bad input names its field; good input is kept as given.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from telephony.errors import CommandRejectedError, InvalidInputError
from telephony.outbound.calls import build_call, call_command, status_callback_url
from telephony.outbound.commands import CommandRules, OutboundCommand, command_schema, parse_command
from telephony.outbound.sender import OutboundCall, SenderDefaults

HOME = frozenset({"US"})  # the destination guard: the sender's country

DEFAULT_FROM = "+15017122661"
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
BASE = "https://calls.example.net"
_CALL = command_schema()["$defs"]["call"]["properties"]
MAX_SAY_CHARS = _CALL["say"]["maxLength"]
MAX_TWIML_CHARS = _CALL["twiml"]["maxLength"]


def parse(
    body: object,
    allowed: frozenset[str] = HOME | {"GB"},
    flow_exists: Callable[[str], bool] | None = None,
) -> OutboundCommand:
    return call_command(body, CommandRules(allowed, None, flow_exists), NOW)


def build(body: object, default_from: str | None = DEFAULT_FROM) -> OutboundCall:
    return build_call(parse(body), SenderDefaults(default_from, None, None), BASE, None)


def field_of(body: object, allowed: frozenset[str] = HOME | {"GB"}) -> str | None:
    with pytest.raises(InvalidInputError) as info:
        build_call(parse(body, allowed), SenderDefaults(DEFAULT_FROM, None, None), BASE, None)
    return info.value.field


def test_minimal_call_uses_the_default_sender_and_our_voice_url() -> None:
    assert build({"to": "+15558675310"}) == OutboundCall(
        "+15558675310", DEFAULT_FROM, None, url=f"{BASE}/api/voice_url"
    )


def test_explicit_sender_and_say() -> None:
    call = build({"to": "+442071838750", "from": "+15005550006", "say": "Your code is 1 2 3"})
    assert call.from_ == "+15005550006"
    assert call.say == "Your code is 1 2 3"
    assert call.url is None and call.twiml is None


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
    assert build({"to": "+15558675310", "twiml": twiml}).twiml == twiml


def test_no_default_sender_requires_from() -> None:
    with pytest.raises(InvalidInputError) as info:
        build({"to": "+15558675310"}, default_from=None)
    assert info.value.field == "from"


@pytest.mark.parametrize("field", ["kind", "idempotency_key"])
def test_make_call_does_not_take_the_queue_only_fields(field: str) -> None:
    assert field_of({"to": "+15558675310", field: "call"}) == field


@pytest.mark.parametrize(
    "body",
    [
        {"to": "+15558675310"},
        {"to": "+15558675310", "say": "Your code is 1 2 3 4"},
        {"to": "+15558675310", "twiml": "<Response><Hangup/></Response>"},
        {"to": "+15558675310", "url": "https://twiml.example/a.xml"},
        {"to": "+15558675310", "flow": "ivr-menu"},
        {"to": "+15558675310", "from": "+15005550006", "say": "hi"},
    ],
)
def test_make_call_and_a_queued_call_build_the_same_call(body: dict[str, object]) -> None:
    rules = CommandRules(HOME)
    defaults = SenderDefaults(DEFAULT_FROM, None, BASE)
    now_call = build_call(call_command(body, rules, NOW), defaults, BASE, None)
    queued = parse_command({**body, "kind": "call"}, "key-1", rules, NOW)
    assert build_call(queued, defaults, BASE, None) == now_call


@pytest.mark.parametrize(
    "twiml",
    ["<Response>", "<Play>x</Play>", '<!DOCTYPE r [<!ENTITY a "a">]><Response>&a;</Response>'],
)
def test_a_queued_call_checks_its_twiml_as_make_call_does(twiml: str) -> None:
    body = {"to": "+15558675310", "twiml": twiml}
    with pytest.raises(CommandRejectedError) as queued:
        parse_command(
            {**body, "kind": "call", "idempotency_key": "k"}, "m", CommandRules(HOME), NOW
        )
    assert (queued.value.field, queued.value.key) == ("twiml", "k")
    assert field_of(body) == "twiml"


@pytest.mark.parametrize(("flow", "field"), [("ivr-menu", "flow"), (None, None)])
def test_a_call_that_needs_our_voice_url_needs_a_base(flow: str | None, field: str | None) -> None:
    body = {"to": "+15558675310", **({"flow": flow} if flow else {})}
    with pytest.raises(CommandRejectedError) as info:
        build_call(parse(body), SenderDefaults(DEFAULT_FROM, None, None), None, None)
    assert info.value.field == field
    assert "PUBLIC_BASE_URL" in info.value.message


def test_status_callback_names_the_record_when_there_is_one() -> None:
    assert status_callback_url(BASE) == f"{BASE}/api/status_callback"
    assert status_callback_url(BASE, "a/b c") == f"{BASE}/api/status_callback?id=a%2Fb%20c"
    assert status_callback_url(None, "k") is None


def test_destination_guard_allows_listed_regions_only() -> None:
    allowed = frozenset({"US", "CA"})
    assert parse({"to": "+14155552671"}, allowed).to == "+14155552671"
    assert field_of({"to": "+18765551234"}, allowed) == "to"  # Jamaica shares +1
    assert field_of({"to": "+447911123456"}, allowed) == "to"
    # a number phonenumbers cannot place counts as its calling code's main country
    assert parse({"to": "+15558675310"}, allowed).to == "+15558675310"


@pytest.mark.parametrize(
    "to",
    ["+19005551234", "+882123456789", "+8812345678", "+979123456789", "+18765551234"],
    ids=["US premium-rate", "satellite", "satellite 881", "international premium", "Jamaica"],
)
def test_premium_rate_and_international_networks_never_pass(to: str) -> None:
    assert field_of({"to": to}, frozenset({"US", "CA"})) == "to"


@pytest.mark.parametrize(
    "twiml",
    [
        "<Response><Dial>+882123456789</Dial></Response>",
        "<Response><Dial><Number>+19005551234</Number></Dial></Response>",
        "<Response><Dial><Sip>sip:anyone@example.com</Sip></Dial></Response>",
        "<Response><Dial>5558675310</Dial></Response>",
        "<Response><Sms to='+447911123456'>hi</Sms></Response>",
    ],
)
def test_every_number_the_twiml_dials_passes_the_guard(twiml: str) -> None:
    assert field_of({"to": "+15558675310", "twiml": twiml}, HOME) == "twiml"


def test_twiml_that_dials_an_allowed_number_is_kept() -> None:
    twiml = "<Response><Dial><Number>+14155552671</Number></Dial></Response>"
    assert parse({"to": "+15558675310", "twiml": twiml}, HOME).twiml == twiml


def test_a_url_must_name_an_allowed_host() -> None:
    rules = CommandRules(HOME, allowed_url_hosts=frozenset({"twiml.example.com"}))
    ok = call_command({"to": "+15558675310", "url": "https://twiml.example.com/a"}, rules, NOW)
    assert ok.url == "https://twiml.example.com/a"
    for url in ("https://evil.example/a", "https://twiml.example.com.evil.example/a"):
        with pytest.raises(InvalidInputError) as info:
            call_command({"to": "+15558675310", "url": url}, rules, NOW)
        assert info.value.field == "url"
    with pytest.raises(InvalidInputError):
        call_command({"to": "+15558675310", "url": "https://twiml.example.com/a"},
                     CommandRules(HOME, allowed_url_hosts=frozenset()), NOW)  # fmt: skip


def test_no_allowed_region_refuses_every_destination() -> None:
    assert field_of({"to": "+14155552671"}, frozenset()) == "to"


def test_a_say_is_measured_as_the_twiml_twilio_gets() -> None:
    from telephony.adapters.twiml import say_response

    rules = CommandRules(HOME, render_say=say_response)
    fits = "a" * 3900
    assert call_command({"to": "+15558675310", "say": fits}, rules, NOW).say == fits
    with pytest.raises(InvalidInputError) as info:  # 1,000 characters, 5,000 once escaped
        call_command({"to": "+15558675310", "say": "&" * 1000}, rules, NOW)
    assert info.value.field == "say"


def test_say_loses_the_characters_xml_cannot_carry() -> None:
    from xml.etree import ElementTree

    from telephony.adapters.twiml import say_response

    document = say_response("code\x00 1\x0b2\ufffe3")
    assert ElementTree.fromstring(document).find("Say").text == "code 123"  # type: ignore[union-attr]


def test_a_flow_is_checked_against_the_flow_document_only_when_named() -> None:
    asked: list[str] = []

    def exists(flow: str) -> bool:
        asked.append(flow)
        return flow == "ivr-menu"

    call = parse({"to": "+15558675310", "flow": "ivr-menu"}, flow_exists=exists)
    assert call.flow == "ivr-menu"
    assert parse({"to": "+15558675310"}, flow_exists=exists).flow is None
    assert asked == ["ivr-menu"]
    with pytest.raises(InvalidInputError) as info:
        parse({"to": "+15558675310", "flow": "other"}, flow_exists=exists)
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


@pytest.mark.parametrize(
    "to",
    ["+16495550000", "+18761234567", "+4412345678"],
    ids=["Turks and Caicos", "Jamaica", "+44"],
)
def test_an_unknown_number_in_a_shared_calling_code_is_refused(to: str) -> None:
    # +1 and +44 reach islands with their own (premium) rates: unknown is not the US or GB
    assert field_of({"to": to}, frozenset({"US", "GB"})) == "to"


@pytest.mark.parametrize(
    "twiml",
    [
        "<Response><Redirect>https://evil.example/x</Redirect></Response>",
        "<Response><Dial><Number url='https://evil.example/x'>+14155552671</Number></Dial>"
        "</Response>",
        "<Response><Enqueue waitUrl='https://evil.example/w'>q</Enqueue></Response>",
        "<Response><Gather action='https://evil.example/a'/></Response>",
        '<Response><Dial xmlns="urn:x">+447700900123</Dial></Response>',
        "<Response><Dial><Number>+14155552671</Number>+447700900123</Dial></Response>",
    ],
    ids=["redirect", "number url", "enqueue waitUrl", "gather action", "namespace", "tail text"],
)
def test_twiml_cannot_send_twilio_elsewhere(twiml: str) -> None:
    rules = CommandRules(HOME, allowed_url_hosts=frozenset({"good.example.com"}))
    with pytest.raises(InvalidInputError) as info:
        call_command({"to": "+15558675310", "twiml": twiml}, rules, NOW)
    assert info.value.field == "twiml"


def test_twiml_may_fetch_from_an_allowed_host() -> None:
    rules = CommandRules(HOME, allowed_url_hosts=frozenset({"good.example.com"}))
    twiml = "<Response><Redirect>https://good.example.com/next</Redirect></Response>"
    assert call_command({"to": "+15558675310", "twiml": twiml}, rules, NOW).twiml == twiml


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example\\@good.example.com/t",
        "https://user@good.example.com/t",
        "https://good.example.com:8443/t",
    ],
)
def test_a_url_that_parsers_could_read_differently_is_refused(url: str) -> None:
    rules = CommandRules(HOME, allowed_url_hosts=frozenset({"good.example.com"}))
    with pytest.raises(InvalidInputError) as info:
        call_command({"to": "+15558675310", "url": url}, rules, NOW)
    assert info.value.field == "url"
