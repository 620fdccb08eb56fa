"""The published schemas and the one translation of their errors.

GIVEN each shipped schema, THEN it keeps the conventions the translator relies on, and
WHEN a value breaks a rule, THEN every document speaks of it in the same words.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from telephony import schemas

SHIPPED = (schemas.COMMAND, schemas.CALL_FLOWS, schemas.SMS_RULES)


def patterns(node: Any) -> Iterator[dict[str, Any]]:
    """Every schema object below `node` that has a pattern."""
    if isinstance(node, dict):
        if isinstance(node.get("pattern"), str):
            yield node
        for value in node.values():
            yield from patterns(value)
    elif isinstance(node, list):
        for value in node:
            yield from patterns(value)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_schema_is_valid_draft_2020_12(name: str) -> None:
    Draft202012Validator.check_schema(schemas.load(name))


@pytest.mark.parametrize("name", SHIPPED)
def test_every_pattern_says_what_it_means(name: str) -> None:
    found = list(patterns(schemas.load(name)))
    assert found
    assert all(node.get("description") for node in found), [n["pattern"] for n in found]


@pytest.mark.parametrize("name", SHIPPED)
def test_a_pattern_ends_in_dollar_only_where_the_text_may_hold_newlines(name: str) -> None:
    for node in patterns(schemas.load(name)):
        pattern = node["pattern"]
        if pattern.endswith("$"):
            assert re.search(pattern[:-1] + r"\Z", "text\n"), pattern


@pytest.mark.parametrize(
    ("name", "definition", "document"),
    [
        (schemas.COMMAND, "sms", {"kind": "sms", "to": "+15558675310\n", "body": "x"}),
        (schemas.COMMAND, "call", {"kind": "call", "to": "+15558675310", "flow": "ivr-menu\n"}),
        (schemas.SMS_RULES, None,
         {"version": 1, "rules": [{"name": "a", "exact": "a", "forward": ["+15558675310\n"]}]}),
    ],
)  # fmt: skip
def test_a_value_with_a_final_newline_is_refused(
    name: str, definition: str | None, document: dict[str, Any]
) -> None:
    assert list(schemas.validator(name, definition).iter_errors(document))


def reason(instance: object, schema: dict[str, Any], where: str = "x", yaml: bool = False) -> str:
    error = best_match(Draft202012Validator(schema).iter_errors(instance))
    assert error is not None
    return schemas.describe(error, where, yaml=yaml)


@pytest.mark.parametrize(
    ("instance", "schema", "expected"),
    [
        ({"a": 1, "b": 2}, {"properties": {"a": {}}, "additionalProperties": False},
         "x has an unknown field b"),
        ({}, {"required": ["a"]}, "x.a is required"),
        (5, {"type": "string"}, "x must be of type string"),
        (5, {"type": ["string", "object"]}, "x must be of type string or object"),
        ("c", {"enum": ["a", "b"]}, "x must be one of a, b"),
        ("", {"minLength": 1}, "x must not be empty"),
        ("ab", {"minLength": 3}, "x is shorter than 3 characters"),
        ("abcd", {"maxLength": 3}, "x is longer than 3 characters"),
        ([1, 2], {"maxItems": 1}, "x has more than 1 items"),
        ([], {"minItems": 1}, "x needs at least 1 item"),
        ([1, 1], {"uniqueItems": True}, "x has repeated items"),
        (0, {"minimum": 1}, "x must be at least 1"),
        (2, {"const": 1}, "x must be 1"),
        ("+1 555", {"pattern": "^\\+[0-9]+$", "description": "an E.164 number"},
         "x must be an E.164 number"),
    ],
)  # fmt: skip
def test_each_rule_is_described_by_its_rule_never_its_value(
    instance: object, schema: dict[str, Any], expected: str
) -> None:
    assert reason(instance, schema) == expected


def test_the_document_itself_is_named_plainly() -> None:
    closed = {"properties": {"a": {}}, "additionalProperties": False}
    assert reason({"zz": 1}, closed, where="") == "unknown field zz"
    assert reason({}, {"required": ["a"]}, where="") == "a is required"


def test_yaml_documents_get_a_hint_for_unquoted_words() -> None:
    assert reason(True, {"type": "string"}, yaml=True).endswith(schemas.YAML_HINT)
    assert reason(True, {"type": "string"}) == "x must be of type string"


def test_label_reads_like_the_document() -> None:
    assert schemas.label(["rules", 0, "forward", 1]) == "rules[0].forward[1]"
    assert schemas.label(["say", "text"]) == "say.text"
    assert schemas.label([]) == ""
