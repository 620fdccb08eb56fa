"""The outcome-event contract: one JSON Schema per event type, and docs/events.md.

GIVEN each event schema, THEN it is valid draft 2020-12, keeps the conventions of the other
published schemas, validates a whole CloudEvents 1.0 event and refuses anything else;
GIVEN every example event in docs/events.md, THEN it is valid against its type's schema.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from telephony import schemas
from telephony.events import EVENT_TYPES
from telephony.outbound import records

DOC = Path(__file__).resolve().parents[2] / "docs" / "events.md"
FOLDER = Path(schemas.__file__).resolve().parent / "events"
ID_BASE = "https://github.com/twilio-azure-functions/schemas/"
ENVELOPE = ("specversion", "id", "source", "type", "subject", "time", "datacontenttype", "data")
END = "(?![\\s\\S])"


def schema_name(event_type: str) -> str:
    """The loader's name of a type's schema: a path below telephony/schemas/."""
    return f"events/{event_type}.v1.json"


def schema_of(event_type: str) -> dict[str, Any]:
    return schemas.load(schema_name(event_type))


def validator_of(event_type: str) -> Draft202012Validator:
    return Draft202012Validator(
        schema_of(event_type), format_checker=Draft202012Validator.FORMAT_CHECKER
    )


def walk(node: Any) -> Iterator[dict[str, Any]]:
    """Every schema object below `node` (and `node` itself)."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def patterns(schema: dict[str, Any]) -> list[dict[str, Any]]:
    return [node for node in walk(schema) if isinstance(node.get("pattern"), str)]


def documented_events() -> list[dict[str, Any]]:
    """Every ```json block of docs/events.md that is an event (has a "type")."""
    blocks = re.findall(r"```json\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    events = [json.loads(block) for block in blocks]
    return [event for event in events if isinstance(event, dict) and "type" in event]


def example(event_type: str) -> dict[str, Any]:
    """A fresh copy of the first documented event of `event_type`."""
    found = [event for event in documented_events() if event["type"] == event_type]
    assert found, f"docs/events.md has no example of {event_type}"
    return copy.deepcopy(found[0])


def errors(event: object, event_type: str) -> list[str]:
    return [error.message for error in validator_of(event_type).iter_errors(event)]


def test_there_is_one_schema_per_event_type_and_no_other() -> None:
    shipped = sorted(path.name for path in FOLDER.iterdir() if path.suffix == ".json")
    assert shipped == sorted(f"{event_type}.v1.json" for event_type in EVENT_TYPES)
    assert not (FOLDER / "__init__.py").exists()  # a data folder, not a package


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_every_event_schema_is_valid_draft_2020_12(event_type: str) -> None:
    schema = schema_of(event_type)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"{ID_BASE}{schema_name(event_type)}"
    assert schema["title"] and schema["description"]


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_every_pattern_says_what_it_means_and_ends_at_the_end_of_the_text(
    event_type: str,
) -> None:
    found = patterns(schema_of(event_type))
    assert found
    assert all(node.get("description") for node in found), [n["pattern"] for n in found]
    assert all(node["pattern"].endswith(END) for node in found), [n["pattern"] for n in found]


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_the_envelope_is_cloudevents_1_0_structured_json(event_type: str) -> None:
    schema = schema_of(event_type)
    properties = schema["properties"]
    assert sorted(schema["required"]) == sorted(ENVELOPE)
    assert sorted(properties) == sorted([*ENVELOPE, "dataschema"])
    assert schema["additionalProperties"] is False
    assert properties["specversion"] == {"const": "1.0"}
    assert properties["type"] == {"const": event_type}
    assert properties["datacontenttype"] == {"const": "application/json"}


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_every_object_is_closed_and_every_data_field_is_present(event_type: str) -> None:
    # The envelope is closed too, with its one optional attribute (tested above).
    for node in walk(schema_of(event_type)["$defs"]):
        if "properties" in node:
            assert node.get("additionalProperties") is False, sorted(node["properties"])
            assert sorted(node.get("required", [])) == sorted(node["properties"])


def test_the_delivery_statuses_are_the_records_statuses() -> None:
    statuses = schema_of("telephony.delivery.updated")["$defs"]["status"]["enum"]
    assert len(statuses) == len(set(statuses))
    assert all(records.is_known_status(status) for status in statuses)
    before_the_send = {records.PENDING, records.CLAIMED, records.RETRYING, records.DEFERRED}
    assert set(statuses) == set(records.SETTLED) | before_the_send


def test_the_doc_has_an_example_of_every_type_and_only_of_known_types() -> None:
    documented = {event["type"] for event in documented_events()}
    assert documented == set(EVENT_TYPES)


@pytest.mark.parametrize(
    "event", documented_events(), ids=lambda event: f"{event['type']}:{event['subject']}"
)
def test_every_documented_event_is_valid(event: dict[str, Any]) -> None:
    assert event["type"] in EVENT_TYPES
    assert errors(event, event["type"]) == []


def test_the_doc_keeps_the_figures_heading_for_the_reconcile_costs() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert "## Cost of reconciliation" in text
    assert "### Figures" in text


# What each schema must refuse. Every case starts from the type's documented example.
def with_unknown_data_field(event: dict[str, Any]) -> None:
    event["data"]["colour"] = "blue"


def with_unknown_attribute(event: dict[str, Any]) -> None:
    event["traceparent"] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def with_wrong_type(event: dict[str, Any]) -> None:
    event["type"] = "telephony.something.else"


def with_wrong_specversion(event: dict[str, Any]) -> None:
    event["specversion"] = "0.3"


def without_subject(event: dict[str, Any]) -> None:
    del event["subject"]


def without_a_data_field(event: dict[str, Any]) -> None:
    del event["data"][sorted(event["data"])[0]]


def with_offset_time(event: dict[str, Any]) -> None:
    event["time"] = event["time"].replace("Z", "+00:00")


def with_naive_time(event: dict[str, Any]) -> None:
    event["time"] = event["time"].removesuffix("Z")


def with_newline_after_time(event: dict[str, Any]) -> None:
    event["time"] += "\n"


def with_newline_after_subject(event: dict[str, Any]) -> None:
    event["subject"] += "\n"


def with_subject_of_another_type(event: dict[str, Any]) -> None:
    event["subject"] = "other/" + event["subject"].split("/", 1)[1]


def with_empty_id(event: dict[str, Any]) -> None:
    event["id"] = ""


def with_long_id(event: dict[str, Any]) -> None:
    event["id"] = "x" * 129


def with_text_data(event: dict[str, Any]) -> None:
    event["data"] = json.dumps(event["data"])


REFUSED = (
    with_unknown_data_field, with_unknown_attribute, with_wrong_type, with_wrong_specversion,
    without_subject, without_a_data_field, with_offset_time, with_naive_time,
    with_newline_after_time, with_newline_after_subject, with_subject_of_another_type,
    with_empty_id, with_long_id, with_text_data,
)  # fmt: skip


@pytest.mark.parametrize("event_type", EVENT_TYPES)
@pytest.mark.parametrize("change", REFUSED, ids=lambda change: change.__name__)
def test_each_schema_refuses(event_type: str, change: Any) -> None:
    event = example(event_type)
    assert errors(event, event_type) == []
    change(event)
    assert errors(event, event_type)


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_a_dataschema_is_the_one_optional_attribute(event_type: str) -> None:
    event = {**example(event_type), "dataschema": f"{ID_BASE}{schema_name(event_type)}"}
    assert errors(event, event_type) == []


@pytest.mark.parametrize(
    ("event_type", "field", "value"),
    [
        ("telephony.delivery.updated", "status", "lost"),
        ("telephony.delivery.updated", "previous_status", "lost"),
        ("telephony.delivery.updated", "kind", "fax"),
        ("telephony.delivery.updated", "to", "+1 555 867 5310"),
        ("telephony.delivery.updated", "attempts", -1),
        ("telephony.delivery.updated", "error_code", "21211"),
        ("telephony.delivery.updated", "updated_at", "2026-11-29T13:20:07+01:00"),
        ("telephony.sms.received", "outcome", "ignored"),
        ("telephony.sms.received", "media_urls", ["https://example.com/m.png"] * 11),
        ("telephony.sms.received", "body", "x" * 10001),
        ("telephony.sms.received", "forwards", -1),
        ("telephony.optout.changed", "number", "whatsapp:+15558675310"),
        ("telephony.optout.changed", "state", "unknown"),
        ("telephony.optout.changed", "source", "operator"),
        ("telephony.optout.changed", "time_source", "guess"),
        ("telephony.call.completed", "ended_by", "timeout"),
        ("telephony.call.completed", "dial", {"step": "ring-sales"}),
        ("telephony.call.completed", "answers", [{"step": "menu", "digits": "2"}]),
        ("telephony.call.completed", "truncated", None),
    ],
)
def test_each_data_field_keeps_its_rule(event_type: str, field: str, value: object) -> None:
    event = example(event_type)
    event["data"][field] = value
    assert errors(event, event_type)


@pytest.mark.parametrize(
    ("event_type", "field", "value"),
    [
        ("telephony.delivery.updated", "previous_status", None),
        ("telephony.delivery.updated", "previous_status", "claimed"),
        ("telephony.delivery.updated", "to", ""),
        ("telephony.delivery.updated", "to", "whatsapp:+15558675310"),
        ("telephony.delivery.updated", "kind", "unknown"),
        ("telephony.sms.received", "message_sid", None),
        ("telephony.optout.changed", "source", "opt_out_type"),
        ("telephony.call.completed", "dial", {"step": "ring-sales", "status": "no-answer"}),
    ],
)
def test_what_the_contract_allows_is_accepted(event_type: str, field: str, value: object) -> None:
    event = example(event_type)
    event["data"][field] = value
    assert errors(event, event_type) == []


def test_the_apps_error_translation_reads_the_event_schemas() -> None:
    event = example("telephony.delivery.updated")
    event["time"] = event["time"].replace("Z", "+00:00")
    error = best_match(validator_of("telephony.delivery.updated").iter_errors(event))
    assert error is not None
    assert schemas.describe(error, "time") == (
        "time must be an RFC 3339 time in UTC ending in Z, such as 2026-11-29T13:20:05Z"
    )
