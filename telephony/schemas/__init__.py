"""The published JSON Schemas (the contracts) and the one translation of their errors.

Every schema follows two conventions, so that one translator serves them all:
- a `description` beside a `pattern` (or on an alternative) completes the sentence
  "X must be ...", and is quoted in error messages;
- patterns end in `(?![\\s\\S])`, not `$`: in Python's `re`, `$` also matches before a
  final newline, and JSON Schema means the end of the text.

jsonschema is imported on first use: it costs cold-start time the webhooks never need.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache
from typing import Any

COMMAND = "outbound-command.v1.json"
CALL_FLOWS = "call-flows.v1.json"
SMS_RULES = "sms-rules.v1.json"

# YAML reads yes, no, on, off and bare +numbers as non-strings: a string that arrived as one.
YAML_HINT = " (quote it: YAML reads yes, no, on, off and bare +numbers as non-strings)"

# Messages describe the rule, never the value: values can be phone numbers or message text.
_RULES = {
    "maxLength": "is longer than {} characters",
    "minLength": "is shorter than {} characters",
    "maxItems": "has more than {} items",
    "minItems": "needs at least {} item",
    "minimum": "must be at least {}",
    "maximum": "must be at most {}",
    "const": "must be {}",
    "uniqueItems": "has repeated items",
    "minProperties": "needs at least {} entry",
}


# Deeper than any command, flow or rules document; far below the parser's recursion limit.
MAX_JSON_DEPTH = 32


class JsonInputError(ValueError):
    """Text that is not JSON this app can take; the message says why, never the text.

    `path` leads to the value at fault, when there is one.
    """

    def __init__(self, message: str, path: tuple[object, ...] = ()) -> None:
        super().__init__(message)
        self.path = path


def parse_json(text: str, *, check_text: bool = True) -> object:
    """JSON from a caller or a producer, or JsonInputError.

    `check_text=False` leaves lone surrogates to the caller (commands name their field).

    Python's parser has limits of its own that surface as other errors (RecursionError for
    deep nesting, ValueError for integers past the int-string limit), and it accepts lone
    surrogates that no UTF-8 encoder can send on. All of them are bad input here.
    """
    try:
        document = json.loads(text)
    except RecursionError:
        raise JsonInputError("the JSON is nested too deeply") from None
    except ValueError:  # JSONDecodeError, and integers too long to convert
        raise JsonInputError("the body is not valid JSON") from None
    check_parsed(document, check_text=check_text)
    return document


def check_parsed(value: object, path: tuple[object, ...] = (), *, check_text: bool = True) -> None:
    """Refuse what parse_json refuses in a value parsed elsewhere (depth, lone surrogates)."""
    if len(path) > MAX_JSON_DEPTH:
        raise JsonInputError("the JSON is nested too deeply", path)
    if isinstance(value, str) and check_text:
        _check_text(value, path)
    elif isinstance(value, dict):
        for key, item in value.items():
            if check_text:
                _check_text(str(key), (*path, key))
            check_parsed(item, (*path, key), check_text=check_text)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_parsed(item, (*path, index), check_text=check_text)


def _check_text(text: str, path: tuple[object, ...]) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        where = label(path) or "the JSON"
        raise JsonInputError(f"{where} holds a lone surrogate (U+D800 to U+DFFF)", path) from None


@cache
def load(name: str) -> dict[str, Any]:
    """The schema `name` (one of the file names above), parsed once."""
    from importlib import resources  # with pathlib, a cost the webhook paths never need

    text = resources.files(__name__).joinpath(name).read_text("utf-8")
    return json.loads(text)  # type: ignore[no-any-return]


@cache
def validator(name: str, definition: str | None = None) -> Any:
    """A Draft 2020-12 validator of schema `name`, or of one of its `$defs`."""
    from jsonschema import Draft202012Validator

    schema = load(name)
    if definition is not None:
        schema = {"$ref": f"#/$defs/{definition}", "$defs": schema["$defs"]}
    return Draft202012Validator(schema)


def label(path: Sequence[object]) -> str:
    """A path as a reader writes it: rules[0].forward[1], say.text."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def field_of(error: Any) -> str | None:
    """The top-level field an error is about: where it is, or the field it names."""
    if error.path:
        return str(error.path[0])
    named = _named_field(error)
    return named[0] if named else None


def describe(error: Any, where: str, yaml: bool = False, document: str = "the document") -> str:
    """What `error` says of the value at `where` (a label; "" for the `document` itself).

    `yaml`: the document was read from YAML, where unquoted words become other types.
    """
    subject = where or document
    kind, value = error.validator, error.validator_value
    if kind == "additionalProperties":
        extra = ", ".join(_named_field(error))
        return f"{where} has an unknown field {extra}" if where else f"unknown field {extra}"
    if kind == "required":
        missing = _named_field(error)[0]
        return f"{where}.{missing} is required" if where else f"{missing} is required"
    if kind == "dependentRequired" and _named_field(error):
        given = _named_field(error)[0]
        needed = _dependency(error, given)
        return f"{where}.{given} needs {needed}" if where else f"{given} needs {needed}"
    if kind == "not" and _exclusive(error):
        choice = "at most one of " + ", ".join(_exclusive(error))
        return f"{where} takes {choice}" if where else f"give {choice}"
    if kind == "type":
        hint = YAML_HINT if yaml and isinstance(error.instance, bool | int | float) else ""
        return f"{subject} must be of type {_either(value)}{hint}"
    if kind == "enum":
        return f"{subject} must be one of {', '.join(map(str, value))}"
    if kind == "minLength" and value == 1:
        return f"{subject} must not be empty"
    meaning = error.schema.get("description") if isinstance(error.schema, dict) else None
    if kind in ("pattern", "anyOf", "oneOf") and meaning:
        return f"{subject} must be {meaning}"
    rule = _RULES.get(kind)
    return f"{subject} {rule.format(value)}" if rule else f"{subject} is invalid"


def _named_field(error: Any) -> list[str]:
    """The fields an additionalProperties or required error names (sorted)."""
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        return sorted(set(error.instance) - set(error.schema.get("properties", {})))
    if error.validator == "required" and isinstance(error.instance, dict):
        return [name for name in error.validator_value if name not in error.instance][:1]
    if error.validator == "dependentRequired" and isinstance(error.instance, dict):
        return [name for name in error.validator_value if _dependency(error, name)][:1]
    if error.validator == "not":
        return _exclusive(error)[1:]  # the first may stand; the others are one too many
    return []


def _dependency(error: Any, name: str) -> str | None:
    """The first field that `name`, given, needs and a dependentRequired error finds missing."""
    if name not in error.instance:
        return None
    needs = error.validator_value.get(name, [])
    return next((str(need) for need in needs if need not in error.instance), None)


def _exclusive(error: Any) -> list[str]:
    """The fields a {"not": {"required": [...]}} forbids together, as the schema lists them."""
    refused = error.validator_value
    if isinstance(refused, dict) and refused.keys() == {"required"}:
        return [str(name) for name in refused["required"]]
    return []


def _either(types: object) -> str:
    return " or ".join(types) if isinstance(types, list) else str(types)
