"""The examples in docs/outbound.md are valid against the published schema."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from telephony.outbound.commands import command_schema

DOC = Path(__file__).resolve().parents[2] / "docs" / "outbound.md"


def examples() -> list[dict[str, object]]:
    blocks = re.findall(r"<!-- examples.*?-->(.*?)<!-- /examples -->", DOC.read_text(), re.S)
    assert blocks
    codes = [code for block in blocks for code in re.findall(r"```json\n(.*?)```", block, re.S)]
    return [json.loads(code) for code in codes]


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    Draft202012Validator.check_schema(command_schema())


@pytest.mark.parametrize("example", examples())
def test_documented_example_is_valid(example: dict[str, object]) -> None:
    assert list(Draft202012Validator(command_schema()).iter_errors(example)) == []


def test_schema_rejects_what_the_docs_say_it_rejects() -> None:
    validator = Draft202012Validator(command_schema())
    sms = {"kind": "sms", "to": "+15558675310", "body": "hi"}
    assert not validator.is_valid({**sms, "colour": "blue"})
    assert not validator.is_valid({"kind": "sms", "to": "+15558675310"})
    assert not validator.is_valid(
        {"kind": "call", "to": "+15558675310", "say": "a", "url": "https://x.example"}
    )
    assert not validator.is_valid({**sms, "idempotency_key": "k" * 129})
