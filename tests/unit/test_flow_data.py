"""A flow's data: declared, checked, said through {data.name}, kept by id.

GIVEN a flow that declares data, WHEN its document loads, THEN every placeholder names a
declared property and every text fits with the longest values; WHEN a call brings data,
THEN it is bounded and checked, each error naming `data.<name>`; WHEN the call's webhooks
are answered, THEN the values are said and texted, and the URLs carry only the data's id.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from defusedxml import ElementTree

from telephony.errors import FlowDocumentError, InvalidInputError, StorageUnavailableError
from telephony.flows import CallEvent, CallUrls, FlowBook, FlowProblem, parse_flow_document
from telephony.flows.data import (
    MAX_DATA_CHARS,
    MAX_STRING_CHARS,
    CachedCallData,
    CallData,
    DataSchema,
    call_data_id,
    is_data_id,
)
from telephony.flows.render import APOLOGY, render
from telephony.flows.voice import FlowCalls
from tests.flow_fakes import MemoryCallData

URLS = CallUrls.for_base("https://calls.example.net")
DATA_ID = call_data_id("remind-42")
CALL: dict[str, Any] = {"call_sid": "CA" + "1" * 32, "from_": "+15017122661", "to": "+15558675310"}
TIME_AND_PLACE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "time": {"type": "string", "minLength": 1, "maxLength": 40},
        "place": {"type": "string", "maxLength": 60},
    },
    "required": ["time", "place"],
}
GIVEN = {"time": "tomorrow at 10 AM", "place": "12 Elm Street"}


def document(steps: dict[str, Any], data: dict[str, Any] | None = None, **flows: Any) -> Any:
    flow: dict[str, Any] = {"start": next(iter(steps)), "steps": steps}
    if data is not None:
        flow["data"] = data
    return {"version": 1, "flows": {"f": flow, **flows}}


def book_of(steps: dict[str, Any], data: dict[str, Any] | None = TIME_AND_PLACE) -> FlowBook:
    return parse_flow_document(document(steps, data))


def problems(doc: object) -> list[FlowProblem]:
    with pytest.raises(FlowDocumentError) as info:
        parse_flow_document(doc, "test.yaml")
    return [problem for problem in info.value.problems if isinstance(problem, FlowProblem)]


def schema(**properties: dict[str, Any]) -> DataSchema:
    return DataSchema(properties, tuple(properties))


def refusal(data_schema: DataSchema, data: object) -> tuple[str, str | None]:
    with pytest.raises(InvalidInputError) as info:
        data_schema.check(data)
    return info.value.message, info.value.field


# --- the document: placeholders, declarations, limits -------------------------------------


def test_a_flow_with_data_loads_and_keeps_its_schema() -> None:
    book = book_of({"a": {"say": "See you {data.time} at {data.place}."}})
    data = book.flows["f"].data
    assert data is not None
    assert (list(data.properties), data.required) == (["time", "place"], ("time", "place"))


@pytest.mark.parametrize(
    ("step", "reason"),
    [
        ({"say": "At {data.tme}."}, "say says {data.tme}, which the flow's data does not declare"),
        (
            {"say": {"text": "At {data.time} {data.room}"}},
            "say says {data.room}, which the flow's data does not declare",
        ),
        (
            {"sms": {"to": "caller", "body": "{data.Time} at {data.place}"}},
            "sms.body says {data.Time}, which the flow's data does not declare",
        ),
        (
            {"gather": {"prompt": [{"pause": 1}, {"say": "Press 1 {data.}"}], "fallback": "a"}},
            "gather.prompt[1].say says {data.}, which the flow's data does not declare",
        ),
        (
            {"gather": {"retry_prompt": [{"say": "Again, {data.a-b}"}], "fallback": "a"}},
            "gather.retry_prompt[0].say says {data.a-b}, which the flow's data does not declare",
        ),
    ],
)
def test_a_placeholder_must_name_a_declared_property(step: dict[str, Any], reason: str) -> None:
    assert problems(document({"a": step}, TIME_AND_PLACE)) == [FlowProblem("f", "a", reason)]


def test_a_placeholder_in_a_flow_without_data_is_refused() -> None:
    doc = document({"a": {"say": "Hi", "next": "b"}, "b": {"say": "At {data.time}."}})
    assert problems(doc) == [
        FlowProblem("f", "b", "say says {data.time}, but the flow declares no data")
    ]


def test_a_text_too_long_for_its_longest_data_is_refused() -> None:
    data = {"type": "object", "properties": {"note": {"type": "string"}}}  # 1,000 at most
    say = "x" * (4096 - MAX_STRING_CHARS) + "{data.note}"
    assert parse_flow_document(document({"a": {"say": say}}, data))
    [problem] = problems(document({"a": {"say": "y" + say}}, data))
    assert problem == FlowProblem(
        "f", "a", "say can be 4097 characters with its data, more than 4096: "
        "lower the maxLength of its data",
    )  # fmt: skip


def test_a_placeholder_said_twice_counts_twice() -> None:
    body = "x" * 1500 + "{data.time}{data.time}{data.time}"  # 1500 + 3 * 40 > 1600
    [problem] = problems(document({"a": {"sms": {"to": "caller", "body": body}}}, TIME_AND_PLACE))
    assert problem.reason.startswith("sms.body can be 1620 characters with its data")


def test_a_redirect_to_a_flow_with_data_is_refused() -> None:
    doc = document(
        {"a": {"redirect": {"flow": "g"}}},
        g={"start": "b", "steps": {"b": {"say": "{data.time}"}}, "data": TIME_AND_PLACE},
    )
    assert problems(doc) == [
        FlowProblem(
            "f", "a", "redirect goes to flow 'g', which needs data: a redirect carries none"
        )
    ]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (
            {**TIME_AND_PLACE, "required": ["time", "room"]},
            "data.required names 'room', which is not a property",
        ),
        (
            {"type": "object", "properties": {"n": {"type": "integer", "maxLength": 3}}},
            "data.properties.n is of type integer: maxLength does not apply",
        ),
        (
            {"type": "object", "properties": {"s": {"type": "string", "minimum": 3}}},
            "data.properties.s is of type string: minimum does not apply",
        ),
        (
            {
                "type": "object",
                "properties": {"s": {"type": "string", "minLength": 9, "maxLength": 3}},
            },
            "data.properties.s has minLength above maxLength: no value fits",
        ),
        (
            {"type": "object", "properties": {"n": {"type": "number", "enum": [1, "two"]}}},
            "data.properties.n has an enum value that is not a number",
        ),
        (
            {"type": "object", "properties": {"s": {"type": "string", "pattern": "(?=a)b"}}},
            "data.properties.s pattern does not compile with RE2: invalid perl operator: (?=",
        ),
        (
            {
                "type": "object",
                "properties": {"s": {"type": "string", "pattern": "a{1000}b{1000}"}},
            },
            "data.properties.s pattern compiles to more than 2000 RE2 instructions",
        ),
    ],
)
def test_what_the_data_declares_is_checked(data: dict[str, Any], reason: str) -> None:
    assert problems(document({"a": {"say": "Hi"}}, data)) == [FlowProblem("f", None, reason)]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"type": "array", "properties": {"t": {"type": "string"}}}, "data.type must be object"),
        ({"type": "object"}, "data.properties is required"),
        ({"type": "object", "properties": {}}, "data.properties needs at least 1 entry"),
        (
            {"type": "object", "properties": {"t": {"type": "object"}}},
            "data.properties.t.type must be one of string, number, integer, boolean",
        ),
        (
            {"type": "object", "properties": {"t": {"type": "string", "items": {}}}},
            "data.properties.t has an unknown field items",
        ),
        (
            {
                "type": "object",
                "properties": {"t": {"type": "string"}},
                "additionalProperties": True,
            },
            "data.additionalProperties must be False",
        ),
        (
            {"type": "object", "properties": {"t": {"type": "string", "maxLength": 5000}}},
            "data.properties.t.maxLength must be at most 1000",
        ),
        (
            {"type": "object", "properties": {"1t": {"type": "string"}}},
            "data.properties has a key '1t' that a name of letters, digits and '_' "
            "(at most 64, not starting with a digit)",
        ),
    ],
)
def test_the_schema_keeps_data_to_a_safe_subset(data: dict[str, Any], reason: str) -> None:
    assert problems(document({"a": {"say": "Hi"}}, data)) == [FlowProblem("f", None, reason)]


def test_additional_properties_false_may_be_said() -> None:
    data = {**TIME_AND_PLACE, "additionalProperties": False}
    assert parse_flow_document(document({"a": {"say": "{data.time}"}}, data))


# --- checking a call's data ---------------------------------------------------------------

REMINDER = DataSchema.from_document(TIME_AND_PLACE)
NOT_FLAT = "data.time must be a string, a number or a boolean"
OUT_OF_RANGE = "data.time must be a number from -1e15 to 1e15"
NOT_A_NAME = "data has a key that is not a name of letters, digits and _"


@pytest.mark.parametrize(
    ("data", "message", "field"),
    [
        ({}, "data.time is required", "data.time"),
        ({"place": "12 Elm Street"}, "data.time is required", "data.time"),
        ({"time": "soon"}, "data.place is required", "data.place"),
        ({**GIVEN, "time": ""}, "data.time must not be empty", "data.time"),
        ({**GIVEN, "time": "x" * 41}, "data.time is longer than 40 characters", "data.time"),
        ({**GIVEN, "time": 10}, "data.time must be of type string", "data.time"),
        ({**GIVEN, "tmie": "10"}, "data has an unknown field tmie", "data.tmie"),
        ({"time": "x" * 41}, "data.time is longer than 40 characters", "data.time"),
        ([], "data must be an object", "data"),
        ({**GIVEN, "time": {"at": 10}}, NOT_FLAT, "data.time"),
        ({**GIVEN, "time": ["10"]}, NOT_FLAT, "data.time"),
        ({**GIVEN, "time": "10\x00"}, "data.time holds a control character", "data.time"),
        ({**GIVEN, "time": float("nan")}, OUT_OF_RANGE, "data.time"),
        ({**GIVEN, "time": 10**16}, OUT_OF_RANGE, "data.time"),
        ({**GIVEN, "time": "x" * 1001}, "data.time is longer than 1000 characters", "data.time"),
        ({**GIVEN, "a b<x>": "x"}, NOT_A_NAME, "data"),
        ({str(n): n for n in range(51)}, "data has more than 50 entries", "data"),
    ],
)  # fmt: skip
def test_data_is_bounded_then_checked_and_the_error_names_the_field(
    data: object, message: str, field: str
) -> None:
    assert refusal(REMINDER, data) == (message, field)


def test_the_data_as_a_whole_is_bounded() -> None:
    many = {f"v{n}": "x" * 200 for n in range(45)}  # each within bounds, 9 KB together
    assert len(json.dumps(many)) > MAX_DATA_CHARS
    assert refusal(REMINDER, many) == (f"data is longer than {MAX_DATA_CHARS} characters", "data")


def test_numbers_integers_booleans_enums_and_patterns() -> None:
    data = DataSchema(
        {
            "count": {"type": "integer", "minimum": 1, "maximum": 9},
            "price": {"type": "number", "minimum": 0},
            "paid": {"type": "boolean"},
            "kind": {"type": "string", "enum": ["checkup", "surgery"]},
            "room": {"type": "string", "pattern": "^[A-Z][0-9]{1,3}$", "description": "like B12"},
            "code": {"type": "string", "pattern": "^[0-9]+$"},
        }
    )
    ok = {"count": 2, "price": 12.5, "paid": True, "kind": "checkup", "room": "B12", "code": "7"}
    assert data.check(ok) == ok
    assert refusal(data, {"count": 10}) == ("data.count must be at most 9", "data.count")
    assert refusal(data, {"count": 1.5}) == ("data.count must be of type integer", "data.count")
    assert refusal(data, {"price": -1}) == ("data.price must be at least 0", "data.price")
    assert refusal(data, {"paid": "yes"}) == ("data.paid must be of type boolean", "data.paid")
    assert refusal(data, {"kind": "x"}) == (
        "data.kind must be one of checkup, surgery",
        "data.kind",
    )
    assert refusal(data, {"room": "b12"}) == ("data.room must be like B12", "data.room")
    assert refusal(data, {"code": "x"}) == (
        "data.code does not match the flow's pattern",
        "data.code",
    )


def test_a_pattern_runs_in_linear_time() -> None:
    # Python's re takes minutes on this; RE2 does not backtrack.
    data = schema(s={"type": "string", "pattern": "^(a|aa)*$"})
    assert refusal(data, {"s": "a" * 999 + "b"})[1] == "data.s"


def test_the_first_property_in_the_flow_s_order_is_named() -> None:
    assert refusal(REMINDER, {"place": 1, "time": 2}) == (
        "data.time must be of type string",
        "data.time",
    )


def test_texts_say_each_value_and_nothing_for_one_not_given() -> None:
    data = DataSchema(
        {
            "a": {"type": "string"},
            "b": {"type": "integer"},
            "c": {"type": "number"},
            "d": {"type": "boolean"},
            "e": {"type": "string"},
        }
    )
    texts = data.texts({"a": "x", "b": 3, "c": 2.0, "d": False})
    assert texts == {"data.a": "x", "data.b": "3", "data.c": "2", "data.d": "false", "data.e": ""}
    assert data.texts({"c": 0.25})["data.c"] == "0.25"


# --- rendering ---------------------------------------------------------------------------


def said(twiml: str) -> list[str]:
    return [say.text or "" for say in ElementTree.fromstring(twiml).iter("Say")]


def test_say_gather_prompts_and_sms_say_the_data() -> None:
    book = book_of({
        "a": {"say": "At {data.time}, {from}.", "next": "b"},
        "b": {"sms": {"to": "caller", "body": "{data.time} at {data.place}; call {from}"},
              "next": "c"},
        "c": {"gather": {"prompt": [{"say": "Press 1 for {data.place}."}], "fallback": "a"}},
    })  # fmt: skip
    event = CallEvent("f", direction="outbound-api", data_id=DATA_ID, **CALL)
    urls = CallUrls.for_base("https://calls.example.net", DATA_ID)
    rendered = render(book, event, urls, REMINDER.texts(GIVEN))
    assert said(rendered.twiml) == [
        "At tomorrow at 10 AM, {from}.",  # a say text's {from} is said as written
        "Press 1 for 12 Elm Street.",
    ]
    [sms] = rendered.sms
    assert sms.body == "tomorrow at 10 AM at 12 Elm Street; call +15017122661"


def test_step_urls_carry_the_data_id_and_no_values() -> None:
    book = book_of({"a": {"gather": {"prompt": [{"say": "{data.place}"}], "fallback": "a"}}})
    urls = CallUrls.for_base("https://calls.example.net", DATA_ID)
    rendered = render(book, CallEvent("f", data_id=DATA_ID, **CALL), urls, REMINDER.texts(GIVEN))
    root = ElementTree.fromstring(rendered.twiml)
    gather = root.find("Gather")
    assert gather is not None
    for url in (gather.get("action") or "", root.findtext("Redirect") or ""):
        assert parse_qs(urlsplit(url).query)["data"] == [DATA_ID]
        assert "Elm" not in url and "10" not in url.replace(DATA_ID, "")


def test_a_redirect_to_another_flow_carries_no_data() -> None:
    url = CallUrls.for_base("https://calls.example.net", DATA_ID).flow("ivr-menu")
    assert parse_qs(urlsplit(url).query) == {"flow": ["ivr-menu"]}


def test_a_flow_with_data_rendered_without_data_apologises() -> None:
    book = book_of({"a": {"say": "{data.time}"}})
    rendered = render(book, CallEvent("f", **CALL), URLS)
    assert said(rendered.twiml) == [APOLOGY]
    assert rendered.problem == "flow 'f' needs data, and the call has none"


def test_a_value_is_never_filled_again() -> None:
    book = book_of({"a": {"sms": {"to": "caller", "body": "{data.time}|{data.place}|{to}"}}})
    values = REMINDER.texts({"time": "{data.place}{from}", "place": "{to}"})
    rendered = render(book, CallEvent("f", direction="outbound-api", **CALL), URLS, values)
    assert rendered.sms[0].body == "{data.place}{from}|{to}|+15558675310"


# --- keeping the data: ids and the cache ----------------------------------------------------


def test_the_data_id_is_128_bits_derived_from_the_key() -> None:
    assert is_data_id(DATA_ID) and len(DATA_ID) == 32
    assert call_data_id("remind-42") == DATA_ID
    assert call_data_id("remind-43") != DATA_ID
    assert "remind" not in DATA_ID
    assert not is_data_id("A" * 32) and not is_data_id(DATA_ID + "0") and not is_data_id(None)


def test_the_cache_reads_a_row_once_and_never_remembers_a_miss() -> None:
    store = MemoryCallData()
    cached = CachedCallData(store)
    assert cached.get(DATA_ID) is None
    store.put(DATA_ID, CallData("f", GIVEN))
    assert cached.get(DATA_ID) == CallData("f", GIVEN)
    assert cached.get(DATA_ID) == CallData("f", GIVEN)
    assert store.calls["get"] == 2


def test_the_cache_is_bounded_and_forgets_with_the_store() -> None:
    store = MemoryCallData()
    cached = CachedCallData(store)
    for n in range(CachedCallData.CACHE_SIZE + 1):
        cached.put(call_data_id(str(n)), CallData("f", {"n": n}))
    assert cached.get(call_data_id("0")) == CallData("f", {"n": 0})  # evicted: read again
    assert store.calls["get"] == 1
    cached.forget(call_data_id("0"))
    assert cached.get(call_data_id("0")) is None
    assert store.rows.get(call_data_id("0")) is None


def test_a_failed_write_is_not_remembered() -> None:
    store = MemoryCallData()
    store.fail.add("put")
    cached = CachedCallData(store)
    with pytest.raises(StorageUnavailableError):
        cached.put(DATA_ID, CallData("f", GIVEN))
    assert cached.get(DATA_ID) is None


# --- FlowCalls: reading the data for each webhook -------------------------------------------

GONE = "the call's data is gone (deleted or purged)"
PLACED = {"CallSid": CALL["call_sid"], "From": CALL["from_"], "To": CALL["to"],
          "Direction": "outbound-api"}  # fmt: skip


def flow_calls(book: FlowBook, store: MemoryCallData) -> FlowCalls:
    return FlowCalls(lambda: book, lambda command: (command, True), call_data=lambda: store)


def answer(calls: FlowCalls, query: dict[str, str]) -> list[str]:
    return said(calls.answer("f", query, PLACED, "https://calls.example.net"))


def test_each_webhook_reads_the_call_s_data_by_its_id() -> None:
    store = MemoryCallData()
    store.put(DATA_ID, CallData("f", GIVEN))
    calls = flow_calls(book_of({"a": {"say": "At {data.time}."}}), store)
    assert answer(calls, {"flow": "f", "data": DATA_ID}) == ["At tomorrow at 10 AM."]
    assert store.calls["get"] == 1


@pytest.mark.parametrize(
    ("query", "row", "fail", "problem"),
    [
        ({"flow": "f"}, None, False, "flow 'f' needs data, and the URL names none"),
        ({"flow": "f", "data": "../x"}, None, False, "flow 'f' needs data, and the URL names none"),
        ({"flow": "f", "data": DATA_ID}, None, False, GONE),
        (
            {"flow": "f", "data": DATA_ID}, CallData("g", GIVEN), False,
            "the call's data was checked for flow 'g', not 'f'",
        ),
        (
            {"flow": "f", "data": DATA_ID}, CallData("f", {"time": "x" * 41, "place": "p"}), False,
            "the call's data no longer fits flow 'f': data.time is longer than 40 characters",
        ),
        (
            {"flow": "f", "data": DATA_ID}, CallData("f", GIVEN), True,
            "the call's data could not be read: StorageUnavailableError",
        ),
    ],
)  # fmt: skip
def test_data_that_cannot_be_used_ends_the_call_with_an_apology(
    caplog: pytest.LogCaptureFixture,
    query: dict[str, str],
    row: CallData | None,
    fail: bool,
    problem: str,
) -> None:
    store = MemoryCallData()
    if row is not None:
        store.put(DATA_ID, row)
    if fail:
        store.fail.add("get")
    calls = flow_calls(book_of({"a": {"say": "At {data.time}."}}), store)
    with caplog.at_level("WARNING"):
        assert answer(calls, query) == [APOLOGY]
    assert json.dumps(problem)[1:-1] in caplog.text
    assert "Elm" not in caplog.text


@pytest.mark.parametrize("status", ["completed", "busy", "no-answer", "failed", "canceled"])
def test_the_data_is_deleted_when_the_call_is_over(status: str) -> None:
    store = MemoryCallData()
    store.put(DATA_ID, CallData("f", GIVEN))
    flow_calls(book_of({"a": {"say": "Hi"}}), store).forget_data(DATA_ID, status)
    assert store.rows == {}


@pytest.mark.parametrize(("data_id", "status"), [(DATA_ID, "in-progress"), ("x", "completed"),
                                                 (None, "completed")])  # fmt: skip
def test_the_data_is_kept_while_the_call_goes_on_or_for_an_id_not_ours(
    data_id: str | None, status: str
) -> None:
    store = MemoryCallData()
    store.put(DATA_ID, CallData("f", GIVEN))
    flow_calls(book_of({"a": {"say": "Hi"}}), store).forget_data(data_id, status)
    assert list(store.rows) == [DATA_ID]
    assert store.calls["forget"] == 0


def test_a_failed_delete_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryCallData()
    store.fail.add("forget")
    with caplog.at_level("WARNING"):
        flow_calls(book_of({"a": {"say": "Hi"}}), store).forget_data(DATA_ID, "completed")
    assert '"call_data_not_deleted"' in caplog.text
