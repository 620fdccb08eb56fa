"""A call to a flow with data: checked with the command, kept before Twilio is asked.

GIVEN a flow that declares data, WHEN a make_call body or a queued command names it, THEN
its data is checked (errors name `data.<name>`), kept under an id derived from the key
before the call is placed (a failed write sends nothing), and the call's URLs carry the id
and none of the values.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from telephony.errors import CommandRejectedError, RetryLaterError, StorageUnavailableError
from telephony.flows.data import CallData, DataSchema, call_data_id
from telephony.outbound.calls import CallPlacer
from telephony.outbound.commands import CommandRules, OutboundCommand, parse_command
from telephony.outbound.records import REJECTED, RETRYING
from telephony.outbound.sender import OutboundCall, SenderDefaults
from telephony.outbound.service import OutboundService, SendOutcome
from tests.fakes import Clock, MemoryOptOutStore, MemoryStore, ScriptedSender
from tests.flow_fakes import MemoryCallData

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
BASE = "https://calls.example.net"
REMINDER = DataSchema(
    {"time": {"type": "string", "maxLength": 40}, "place": {"type": "string", "maxLength": 60}},
    ("time", "place"),
)
SCHEMAS: dict[str, DataSchema | None] = {"appointment-reminder": REMINDER, "ivr-menu": None}
RULES = CommandRules(
    frozenset({"US"}), flow_exists=SCHEMAS.__contains__, flow_data_schema=SCHEMAS.get
)
GIVEN = {"time": "tomorrow at 10 AM", "place": "12 Elm Street"}
CALL = {"kind": "call", "to": "+15558675310", "flow": "appointment-reminder"}
DEFAULTS = SenderDefaults("+15017122661", None, BASE)


def parse(document: dict[str, Any], rules: CommandRules = RULES) -> OutboundCommand:
    return parse_command(document, "key-1", rules, NOW)


def refused(document: dict[str, Any]) -> tuple[str, str | None]:
    with pytest.raises(CommandRejectedError) as info:
        parse(document)
    return info.value.message, info.value.field


# --- the command --------------------------------------------------------------------------


def test_data_that_fits_the_flow_is_kept_on_the_command() -> None:
    assert parse({**CALL, "data": GIVEN}).data == GIVEN


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (None, ("data.time is required", "data.time")),
        ({"place": "12 Elm Street"}, ("data.time is required", "data.time")),
        ({**GIVEN, "time": "x" * 41}, ("data.time is longer than 40 characters", "data.time")),
        ({**GIVEN, "time": 10}, ("data.time must be of type string", "data.time")),
        ({**GIVEN, "room": "B12"}, ("data has an unknown field room", "data.room")),
        ({**GIVEN, "time": {"nested": {"deeper": 1}}},
         ("data.time must be a string, a number or a boolean", "data.time")),
    ],
)  # fmt: skip
def test_data_is_refused_naming_its_field(
    data: dict[str, Any] | None, error: tuple[str, str]
) -> None:
    document = CALL if data is None else {**CALL, "data": data}
    assert refused(document) == error


def test_data_for_a_flow_that_declares_none_is_refused() -> None:
    document = {**CALL, "flow": "ivr-menu", "data": GIVEN}
    assert refused(document) == ("flow ivr-menu takes no data", "data")


def test_a_flow_without_data_needs_none() -> None:
    assert parse({**CALL, "flow": "ivr-menu"}).data is None


def test_a_flow_whose_data_is_all_optional_gets_an_empty_row() -> None:
    optional = {"f": DataSchema({"note": {"type": "string"}})}
    rules = CommandRules(frozenset({"US"}), flow_data_schema=optional.get)
    assert parse({**CALL, "flow": "f"}, rules).data == {}


def test_data_without_a_flow_is_refused_by_the_schema() -> None:
    document = {"kind": "call", "to": "+15558675310", "data": GIVEN}
    assert refused(document) == ("data needs flow", "data")


def test_a_producer_without_the_flows_checks_the_shape_only() -> None:
    # The enqueue helper has no flow document: the worker checks the data again.
    command = parse({**CALL, "data": {"anything": 1}}, CommandRules(None))
    assert command.data == {"anything": 1}


# --- make_call ----------------------------------------------------------------------------


def placer(sender: ScriptedSender, store: MemoryCallData) -> CallPlacer:
    return CallPlacer(
        sender, RULES, DEFAULTS, MemoryOptOutStore(), lambda: NOW, call_data=lambda: store
    )


def test_make_call_keeps_the_data_and_gives_twilio_only_its_id() -> None:
    sender, store = ScriptedSender(), MemoryCallData()
    command, _ = placer(sender, store).place(
        {"to": "+15558675310", "flow": "appointment-reminder", "data": GIVEN}, BASE
    )
    [call] = sender.sent
    assert isinstance(call, OutboundCall)
    data_id = call_data_id(command.idempotency_key)
    assert store.rows == {data_id: CallData("appointment-reminder", GIVEN)}
    assert call.url == f"{BASE}/api/voice_url?flow=appointment-reminder&data={data_id}"
    assert call.status_callback == f"{BASE}/api/status_callback?data={data_id}"
    for value in GIVEN.values():
        assert value not in json.dumps(call.__dict__)


def test_make_call_sends_nothing_when_the_data_cannot_be_kept() -> None:
    sender, store = ScriptedSender(), MemoryCallData()
    store.fail.add("put")
    with pytest.raises(StorageUnavailableError):
        placer(sender, store).place(
            {"to": "+15558675310", "flow": "appointment-reminder", "data": GIVEN}, BASE
        )
    assert sender.sent == []


def test_make_call_without_data_writes_no_row() -> None:
    sender, store = ScriptedSender(), MemoryCallData()
    placer(sender, store).place({"to": "+15558675310", "flow": "ivr-menu"}, BASE)
    assert store.calls["put"] == 0
    [call] = sender.sent
    assert isinstance(call, OutboundCall)
    assert call.url == f"{BASE}/api/voice_url?flow=ivr-menu"
    assert call.status_callback == f"{BASE}/api/status_callback"


# --- queued calls -------------------------------------------------------------------------


def service(sender: ScriptedSender, data: MemoryCallData) -> tuple[OutboundService, MemoryStore]:
    store = MemoryStore()
    svc = OutboundService(
        store, sender, RULES, DEFAULTS, MemoryOptOutStore(), lambda text: None, Clock(),
        call_data=lambda: data,
    )  # fmt: skip
    return svc, store


def test_a_queued_call_keeps_its_data_under_its_key_before_it_is_placed() -> None:
    sender, data = ScriptedSender(), MemoryCallData()
    svc, _ = service(sender, data)
    text = json.dumps({**CALL, "data": GIVEN, "idempotency_key": "remind-42"})
    assert svc.handle(text, "m", 1) is SendOutcome.SENT
    data_id = call_data_id("remind-42")
    assert data.rows == {data_id: CallData("appointment-reminder", GIVEN)}
    [call] = sender.sent
    assert isinstance(call, OutboundCall)
    assert parse_qs(urlsplit(call.url or "").query) == {
        "flow": ["appointment-reminder"],
        "data": [data_id],
    }
    assert call.status_callback == f"{BASE}/api/status_callback?id=remind-42&data={data_id}"


def test_a_queued_call_with_bad_data_is_rejected_naming_the_field() -> None:
    sender, data = ScriptedSender(), MemoryCallData()
    svc, store = service(sender, data)
    text = json.dumps({**CALL, "data": {"time": "soon"}, "idempotency_key": "remind-42"})
    assert svc.handle(text, "m", 1) is SendOutcome.REJECTED
    record = store.records["remind-42"]
    assert (record.status, record.reason) == (REJECTED, "data.place is required")
    assert sender.sent == [] and data.rows == {}


def test_a_queued_call_whose_data_cannot_be_kept_is_retried_and_nothing_is_sent() -> None:
    sender, data = ScriptedSender(), MemoryCallData()
    data.fail.add("put")
    svc, store = service(sender, data)
    text = json.dumps({**CALL, "data": GIVEN, "idempotency_key": "remind-42"})
    with pytest.raises(RetryLaterError):
        svc.handle(text, "m", 1)
    assert sender.sent == []
    assert store.records["remind-42"].status == RETRYING
    data.fail.clear()
    assert svc.handle(text, "m", 2) is SendOutcome.SENT  # the retry writes the same row
    assert list(data.rows) == [call_data_id("remind-42")]
    assert len(sender.sent) == 1
