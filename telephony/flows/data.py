"""A flow's data: the values a call brings to its flow (an appointment's time and place).

A flow declares them as a small JSON Schema (`data` in the document: string, number,
integer and boolean properties, `required`, nothing else), so that a command naming the
flow is checked before anything is sent, and its say, gather prompt and sms texts speak
them through `{data.name}` placeholders, filled in one pass.

The values never travel in a URL Twilio is given (Twilio logs request URLs): they are kept
in a CallDataStore under an opaque id before the call is placed, and only the id rides in
the signed voice_url query (`data=<id>`). The id is derived from the command's idempotency
key, so a redelivered command writes the same row rather than a new one; make_call's key
is random. docs/flows.md ("Data") says why and how rows are purged.

No SDK here: jsonschema and re2 are imported when a data schema is first used.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any, Protocol

from telephony import schemas
from telephony.errors import InvalidInputError

# Bounds on what a producer may send, applied before the schema is: a flow's schema may
# say less, never more. Fifty values (the command schema's maxProperties) of at most
# 1,000 characters, 8,192 characters of JSON in all: an appointment needs a few dozen.
MAX_VALUES = 50
MAX_STRING_CHARS = 1000
MAX_DATA_CHARS = 8192
# Numbers up to a quadrillion: spoken as at most NUMBER_CHARS characters (1e15 would be
# said as "1e+15", and an int of 4,000 digits would take a minute to say).
MAX_NUMBER = 1e15
NUMBER_CHARS = 24
BOOLEAN_CHARS = len("false")
# A flow's pattern: RE2 (linear time, as the SMS rules), at most this long and this large.
MAX_PATTERN_CHARS = 200
PATTERN_MAX_INSTRUCTIONS = 2000

# A placeholder: {from} and {to} (sms bodies) or {data.<name>}, all filled in one pass.
_PLACEHOLDER = re.compile(r"\{(from|to|data\.[A-Za-z_][A-Za-z0-9_]{0,63})\}")
# Anything a reader would take for a data placeholder, checked when the document loads.
_DATA_MENTION = re.compile(r"\{data\.([^{}]*)\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
# What XML cannot carry (the call-flows schema's `text`): refused in values as in texts.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_DATA_ID = re.compile(r"[0-9a-f]{32}")

_TYPE_KEYWORDS = {
    "string": frozenset({"minLength", "maxLength", "pattern", "enum"}),
    "number": frozenset({"minimum", "maximum", "enum"}),
    "integer": frozenset({"minimum", "maximum", "enum"}),
    "boolean": frozenset(),
}


def fill(template: str, values: Mapping[str, str]) -> str:
    """Replace each placeholder named in `values` (`from`, `to`, `data.<name>`) in one
    pass: a value is never searched for placeholders, and any other brace is left as is."""
    return _PLACEHOLDER.sub(lambda match: values.get(match.group(1), match.group(0)), template)


def data_placeholders(text: str) -> list[str]:
    """The names of the `{data.<name>}` placeholders in `text`, valid names or not."""
    return _DATA_MENTION.findall(text)


def without_placeholders(text: str) -> str:
    """`text` with its data placeholders taken out (what it says besides its data)."""
    return _DATA_MENTION.sub("", text)


def call_data_id(idempotency_key: str) -> str:
    """The id a call's data is kept under: 128 bits of a hash of the command's key.

    Derived, not random, so a command delivered again writes the same row; hashed, so the
    key (a producer's words, such as order-42) is not what Twilio's logs show.
    """
    digest = hashlib.sha256(f"call-data\0{idempotency_key}".encode()).hexdigest()
    return digest[:32]


def is_data_id(value: str | None) -> bool:
    """True for an id call_data_id makes (32 lowercase hex digits)."""
    return value is not None and _DATA_ID.fullmatch(value) is not None


@dataclass(frozen=True)
class DataSchema:
    """What a flow's `data` declares: properties by name, and the required ones.

    Built from a document that passed the call-flows schema (which keeps it to the safe
    subset); `problems` says what that schema cannot (see telephony/flows/checks.py).
    """

    properties: Mapping[str, Mapping[str, Any]]
    required: tuple[str, ...] = ()

    @classmethod
    def from_document(cls, raw: Mapping[str, Any]) -> DataSchema:
        return cls(dict(raw["properties"]), tuple(raw.get("required", ())))

    def json_schema(self) -> dict[str, Any]:
        """The JSON Schema values are checked against (unknown names refused)."""
        return {
            "type": "object",
            "properties": dict(self.properties),
            "required": list(self.required),
            "additionalProperties": False,
        }

    def check(self, data: object) -> dict[str, Any]:
        """`data`, bounded and valid; InvalidInputError naming `data.<name>` otherwise."""
        values = bounded(data)
        errors = list(self._validator.iter_errors(values))
        if errors:
            # The first property in the flow's order: the same data always gets one answer.
            error = min(errors, key=self._position)
            raise InvalidInputError(_describe(error), _field(error))
        return values

    def texts(self, values: Mapping[str, Any]) -> dict[str, str]:
        """Every declared name's placeholder and what it says; "" for a value not given."""
        return {f"data.{name}": _text(values.get(name, "")) for name in self.properties}

    def max_chars(self, name: str) -> int:
        """The most characters `{data.<name>}` can become (0 for an undeclared name)."""
        spec = self.properties.get(name)
        if spec is None:
            return 0
        kind = spec["type"]
        if kind == "boolean":
            return BOOLEAN_CHARS
        if kind != "string":
            return NUMBER_CHARS
        if "enum" in spec:
            return max(len(str(item)) for item in spec["enum"])
        return min(int(spec.get("maxLength", MAX_STRING_CHARS)), MAX_STRING_CHARS)

    def problems(self) -> list[str]:
        """What the document's schema cannot check: required names that are not declared,
        keywords of another type, empty ranges, patterns RE2 refuses."""
        found = [
            f"data.required names {name!r}, which is not a property"
            for name in self.required
            if name not in self.properties
        ]
        for name, spec in self.properties.items():
            found += [f"data.properties.{name} {reason}" for reason in _property_problems(spec)]
        return found

    def _position(self, error: Any) -> int:
        names = list(self.properties)
        name = schemas.field_of(error)
        return names.index(name) if name in names else len(names)

    @cached_property
    def _validator(self) -> Any:
        return _validator_class()(self.json_schema())


def bounded(data: object) -> dict[str, Any]:
    """`data` if it is within the bounds every flow shares; InvalidInputError otherwise.

    Checked before the flow's schema, cheaply: at most MAX_VALUES flat values (a string,
    a number or a boolean each) under names a flow could declare, no string past
    MAX_STRING_CHARS or holding what XML cannot carry, no number past MAX_NUMBER,
    MAX_DATA_CHARS of JSON in all.
    """
    if not isinstance(data, dict):
        raise InvalidInputError("data must be an object", "data")
    if len(data) > MAX_VALUES:
        raise InvalidInputError(f"data has more than {MAX_VALUES} entries", "data")
    for name, value in data.items():
        if not _NAME.fullmatch(name):  # no flow declares it; and it is not echoed back
            raise InvalidInputError(
                "data has a key that is not a name of letters, digits and _", "data"
            )
        _check_value(value, f"data.{name}")
    size = len(json.dumps(data, ensure_ascii=False, separators=(",", ":")))
    if size > MAX_DATA_CHARS:
        raise InvalidInputError(f"data is longer than {MAX_DATA_CHARS} characters", "data")
    return dict(data)


def _check_value(value: object, where: str) -> None:
    if isinstance(value, str):
        if len(value) > MAX_STRING_CHARS:
            raise InvalidInputError(f"{where} is longer than {MAX_STRING_CHARS} characters", where)
        if _CONTROL.search(value):
            raise InvalidInputError(f"{where} holds a control character", where)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value) or abs(value) > MAX_NUMBER:
            raise InvalidInputError(f"{where} must be a number from -1e15 to 1e15", where)
    elif not isinstance(value, bool):
        raise InvalidInputError(f"{where} must be a string, a number or a boolean", where)


def _text(value: object) -> str:
    """How a value is said: as JSON writes it, but a whole number without its ".0"."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _describe(error: Any) -> str:
    where = "data." + schemas.label(error.path) if error.path else "data"
    if error.validator == "pattern" and not error.schema.get("description"):
        return f"{where} does not match the flow's pattern"
    return schemas.describe(error, where, document="data")


def _field(error: Any) -> str:
    name = schemas.field_of(error)
    return f"data.{name}" if name else "data"


def _property_problems(spec: Mapping[str, Any]) -> Iterator[str]:
    kind = spec["type"]
    allowed = _TYPE_KEYWORDS[kind]
    for keyword in sorted(set(spec) & set().union(*_TYPE_KEYWORDS.values()) - allowed):
        yield f"is of type {kind}: {keyword} does not apply"
    low, high = ("minLength", "maxLength") if kind == "string" else ("minimum", "maximum")
    if low in spec and high in spec and spec[low] > spec[high]:
        yield f"has {low} above {high}: no value fits"
    if "enum" in spec and "enum" in allowed:
        yield from _enum_problems(kind, spec["enum"])
    if "pattern" in spec and kind == "string":
        reason = pattern_problem(spec["pattern"])
        if reason is not None:
            yield f"pattern {reason}"


def _enum_problems(kind: str, items: list[Any]) -> Iterator[str]:
    fits: Callable[[Any], bool] = {
        "string": lambda item: isinstance(item, str),
        "integer": lambda item: isinstance(item, int) and not isinstance(item, bool),
        "number": lambda item: isinstance(item, int | float) and not isinstance(item, bool),
    }[kind]
    if not all(fits(item) for item in items):
        yield f"has an enum value that is not a {kind}"


def pattern_problem(pattern: str) -> str | None:
    """Why RE2 refuses `pattern` as a flow's data pattern, or None."""
    import re2  # type: ignore[import-untyped]  # google-re2 ships no type information

    try:
        compiled = _compiled(pattern)
    except re2.error as exc:
        said = exc.args[0] if exc.args else b"unknown error"
        reason = said.decode("utf-8", "replace") if isinstance(said, bytes) else str(said)
        return f"does not compile with RE2: {reason}"
    if compiled.programsize > PATTERN_MAX_INSTRUCTIONS:
        return f"compiles to more than {PATTERN_MAX_INSTRUCTIONS} RE2 instructions"
    return None


@lru_cache(maxsize=512)
def _compiled(pattern: str) -> Any:
    import re2

    options = re2.Options()
    options.never_capture = True  # a pattern only says whether a value matches
    options.log_errors = False  # the loader reports it
    return re2.compile(pattern, options)


def _pattern(validator: Any, pattern: str, instance: object, schema: Any) -> Iterator[Any]:
    """JSON Schema's `pattern` (a search, unanchored) on RE2: Python's re backtracks, and a
    producer's value could make a careless pattern take minutes."""
    from jsonschema.exceptions import ValidationError

    if isinstance(instance, str) and _compiled(pattern).search(instance) is None:
        yield ValidationError("does not match the pattern")


@lru_cache(maxsize=1)
def _validator_class() -> Any:
    from jsonschema import Draft202012Validator, validators

    return validators.extend(Draft202012Validator, {"pattern": _pattern})


# --- keeping a call's data between webhooks ---------------------------------------------


@dataclass(frozen=True)
class CallData:
    """The data of one call, and the flow it was checked against."""

    flow: str
    values: Mapping[str, Any] = field(default_factory=dict)


class CallDataStore(Protocol):
    """Where a call's data waits for its webhooks (Table Storage in the app).

    Raises StorageUnavailableError when the store cannot be reached.
    """

    def put(self, data_id: str, data: CallData) -> None:
        """Keep `data` under `data_id`, replacing what was there."""
        ...

    def get(self, data_id: str) -> CallData | None:
        """The data under `data_id`, or None when there is none (never kept, or purged)."""
        ...

    def forget(self, data_id: str) -> None:
        """Delete the data under `data_id`, if there is any."""
        ...


class CachedCallData:
    """A CallDataStore that remembers the last CACHE_SIZE rows it read or wrote.

    A call's webhooks read its data on each answer; a row only changes before its call is
    placed (a retried command), so what a process has read stays true for the call. A miss
    is not remembered: the row may yet be written.
    """

    CACHE_SIZE = 256  # at most 256 rows of at most 8 KB: 2 MB per worker process

    def __init__(self, store: CallDataStore) -> None:
        self._store = store
        self._rows: OrderedDict[str, CallData] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, data_id: str, data: CallData) -> None:
        self._store.put(data_id, data)
        self._remember(data_id, data)

    def get(self, data_id: str) -> CallData | None:
        with self._lock:
            found = self._rows.get(data_id)
            if found is not None:
                self._rows.move_to_end(data_id)
                return found
        found = self._store.get(data_id)
        if found is not None:
            self._remember(data_id, found)
        return found

    def forget(self, data_id: str) -> None:
        with self._lock:
            self._rows.pop(data_id, None)
        self._store.forget(data_id)

    def _remember(self, data_id: str, data: CallData) -> None:
        with self._lock:
            self._rows[data_id] = data
            self._rows.move_to_end(data_id)
            while len(self._rows) > self.CACHE_SIZE:
                self._rows.popitem(last=False)
