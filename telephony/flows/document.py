"""Reading a call flow document: YAML or JSON (by file extension), checked against the
published schema (schemas/call-flows.v1.json), then built into a FlowBook and checked for
what a schema cannot say (targets, reachability, loops).

PyYAML and jsonschema are imported inside the functions: they cost cold-start time that
the greeting and SMS paths never need.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from telephony.documents import DocumentReadError, read_document
from telephony.flows.checks import check_flows
from telephony.flows.errors import FlowDocumentError, FlowProblem
from telephony.flows.model import (
    Dial,
    Flow,
    FlowBook,
    Gather,
    Hangup,
    Pause,
    Play,
    Prompt,
    Record,
    Redirect,
    Reject,
    Say,
    Sms,
    Step,
    Verb,
)

SCHEMA_FILE = "call-flows.v1.json"
VERBS = ("say", "play", "pause", "gather", "dial", "record", "redirect", "reject", "hangup", "sms")


def load_flow_book(path: Path) -> FlowBook:
    """Read and check the document at `path`; raises FlowDocumentError with every problem."""
    source = str(path)
    try:
        document = read_document(path)
    except DocumentReadError as exc:
        raise _single(source, str(exc)) from None
    return parse_flow_document(document, source)


def parse_flow_document(document: object, source: str = "<document>") -> FlowBook:
    """Check a parsed document and build its FlowBook; raises FlowDocumentError."""
    problems = schema_problems(document)
    if not isinstance(document, dict) or not isinstance(document.get("flows"), dict):
        raise FlowDocumentError(source, problems)
    raw_flows: dict[str, Any] = document["flows"]
    # What breaks the schema is not built, and the later checks work around it, so that
    # one pass reports as much as it can.
    broken_flows = {problem.flow for problem in problems if problem.step is None}
    broken_steps: dict[str, set[str]] = {flow_id: set() for flow_id in raw_flows}
    for problem in problems:
        if problem.flow in broken_steps and problem.step is not None:
            broken_steps[problem.flow].add(problem.step)
    flows = {
        flow_id: _flow(flow_id, raw, broken_steps[flow_id])
        for flow_id, raw in raw_flows.items()
        if flow_id not in broken_flows
    }
    problems += check_flows(flows, frozenset(raw_flows), broken_steps)
    if problems:
        raise FlowDocumentError(source, _in_document_order(problems, raw_flows))
    return FlowBook(flows, source)


def flows_schema() -> dict[str, Any]:
    """The published JSON Schema of the document (the one definition of the format)."""
    return _schema()


def schema_problems(document: object) -> list[FlowProblem]:
    """Every schema violation of `document`, located by flow and step."""
    found = (_problem(error) for error in _validator().iter_errors(document))
    return [problem for problem in found if problem is not None]


def _single(source: str, reason: str) -> FlowDocumentError:
    return FlowDocumentError(source, [FlowProblem(None, None, reason)])


def _in_document_order(problems: list[FlowProblem], flows: dict[str, Any]) -> list[FlowProblem]:
    """Problems without duplicates, by flow and step as they appear in the document."""
    flow_order = list(flows)

    def position(problem: FlowProblem) -> tuple[int, int]:
        if problem.flow not in flows:  # the document itself, or a flow with a bad id
            return -1, -1
        raw = flows[problem.flow]
        steps = raw.get("steps") if isinstance(raw, dict) else None
        step_order = list(steps) if isinstance(steps, dict) else []
        step = step_order.index(problem.step) if problem.step in step_order else -1
        return flow_order.index(problem.flow), step

    return sorted(dict.fromkeys(problems), key=position)


# --- schema violations, translated into flow / step / reason ---------------------------

_RULES = {
    "maxLength": "is longer than {} characters",
    "minLength": "is too short (at least {} characters)",
    "minItems": "needs at least {} item",
    "minimum": "must be at least {}",
    "maximum": "must be at most {}",
    "const": "must be {}",
    "uniqueItems": "has repeated items",
}


def _problem(error: Any) -> FlowProblem | None:
    if error.validator == "anyOf":
        # Errors of the alternative the value has the type of say most; when it has the type
        # of none, the anyOf's own description does.
        depth = len(error.absolute_path)
        telling = [
            e
            for e in error.context
            if len(e.absolute_path) > depth or e.validator not in ("type", "const")
        ]
        if telling:
            from jsonschema.exceptions import best_match

            return _problem(best_match(telling))
    flow, step, rest = _locate(list(error.absolute_path))
    if "propertyNames" in error.absolute_schema_path:
        return _bad_name(flow, step, rest, error)
    reason = _reason(error, rest, step is not None)
    return FlowProblem(flow, step, reason) if reason is not None else None


def _locate(path: list[Any]) -> tuple[str | None, str | None, list[str]]:
    """Split a path into (flow, step, the rest): flows.F.steps.S.rest."""
    if path[:1] != ["flows"] or len(path) < 2:
        return None, None, [str(part) for part in path]
    flow = str(path[1])
    if path[2:3] == ["steps"] and len(path) >= 4:
        return flow, str(path[3]), [str(part) for part in path[4:]]
    return flow, None, [str(part) for part in path[2:]]


def _bad_name(flow: str | None, step: str | None, rest: list[str], error: Any) -> FlowProblem:
    name = str(error.instance)
    meaning = error.schema.get("description") or _rule(error) or "is invalid"
    if flow is None and rest == ["flows"]:
        return FlowProblem(name, None, f"the flow id must be {meaning}")
    if step is None and rest == ["steps"]:
        return FlowProblem(flow, name, f"the step id must be {meaning}")
    return FlowProblem(flow, step, f"{_where(rest)} has a key {name!r} that {meaning}")


def _reason(error: Any, rest: list[str], in_step: bool) -> str | None:
    where = _where(rest)
    described = error.schema.get("description") if isinstance(error.schema, dict) else None
    match error.validator:
        case "additionalProperties":
            return _unknown_fields(error, rest, in_step)
        case "required":
            missing = [name for name in error.validator_value if name not in error.instance]
            return f"{_join(rest, missing[0])} is required"
        case "oneOf":
            return _one_of(error, rest, in_step)
        case "minProperties" if rest == ["steps"]:
            return "the flow has no steps"
        case "minProperties" if rest == ["flows"]:
            return "the document has no flows"
        case "pattern" | "anyOf" if described:
            return f"{where} must be {described}"
        case "type":
            return f"{where} must be of type {_either(error.validator_value)}"
        case "enum":
            return f"{where} must be one of {', '.join(map(str, error.validator_value))}"
    rule = _rule(error)
    return f"{where} {rule}" if rule else f"{where} is invalid"


def _rule(error: Any) -> str | None:
    if error.validator == "minLength" and error.validator_value == 1:
        return "must not be empty"
    rule = _RULES.get(error.validator)
    return rule.format(error.validator_value) if rule else None


def _unknown_fields(error: Any, rest: list[str], in_step: bool) -> str:
    extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
    if in_step and not rest:
        return f"unknown verb {extra[0]!r} (verbs: {', '.join(VERBS)})"
    return f"{_where(rest)} has an unknown field {extra[0]!r}"


def _one_of(error: Any, rest: list[str], in_step: bool) -> str | None:
    options = [branch["required"][0] for branch in error.validator_value]
    given = list(error.instance) if isinstance(error.instance, dict) else []
    found = [name for name in options if name in given]
    what = "a step" if in_step and not rest else _where(rest)
    listed = ", ".join(options)
    if found:
        return f"{what} takes exactly one of {listed} (found {', '.join(found)})"
    if set(given) - {*options, "next"}:
        return None  # an unknown verb, already reported as such
    return f"{what} needs one of {listed}"


def _where(rest: list[str]) -> str:
    return ".".join(rest) if rest else "the value"


def _join(rest: list[str], name: str) -> str:
    return ".".join([*rest, name])


def _either(types: object) -> str:
    return " or ".join(types) if isinstance(types, list) else str(types)


@cache
def _schema() -> dict[str, Any]:
    from importlib import resources

    text = resources.files("telephony.schemas").joinpath(SCHEMA_FILE).read_text("utf-8")
    return json.loads(text)  # type: ignore[no-any-return]


@cache
def _validator() -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(_schema())


# --- building the model from a document that passed the schema -------------------------


def _flow(flow_id: str, raw: Mapping[str, Any], broken: Collection[str]) -> Flow:
    steps = {
        step_id: _step(step_id, body)
        for step_id, body in raw["steps"].items()
        if step_id not in broken
    }
    return Flow(flow_id, raw["start"], steps, raw.get("description"))


def _step(step_id: str, raw: Mapping[str, Any]) -> Step:
    (verb,) = (name for name in raw if name != "next")
    return Step(step_id, _BUILDERS[verb](raw[verb]), raw.get("next"))


def _say(value: Any) -> Say:
    if isinstance(value, str):
        return Say(value)
    return Say(value["text"], value.get("voice"), value.get("language"), value.get("loop"))


def _play(value: Any) -> Play:
    return Play(value) if isinstance(value, str) else Play(value["url"], value.get("loop"))


def _pause(value: Any) -> Pause:
    return Pause(value) if isinstance(value, int) else Pause(value.get("length"))


def _prompt(item: Mapping[str, Any]) -> Prompt:
    (name,) = item
    built = _BUILDERS[name](item[name])
    assert isinstance(built, Say | Play | Pause)
    return built


def _gather(value: Mapping[str, Any]) -> Gather:
    options = {k: v for k, v in value.items() if k not in _GATHER_LISTS}
    return Gather(
        **options,
        input=tuple(value.get("input", ("dtmf",))),
        hints=tuple(value.get("hints", ())),
        prompt=tuple(_prompt(item) for item in value.get("prompt", ())),
        retry_prompt=tuple(_prompt(item) for item in value.get("retry_prompt", ())),
        branches=tuple(value.get("branches", {}).items()),
    )


_GATHER_LISTS = frozenset({"input", "hints", "prompt", "retry_prompt", "branches"})

_BUILDERS: dict[str, Callable[[Any], Verb]] = {
    "say": _say,
    "play": _play,
    "pause": _pause,
    "gather": _gather,
    "dial": lambda value: Dial(**value),
    "record": lambda value: Record(**value),
    "redirect": lambda value: Redirect(**value),
    "reject": lambda value: Reject(**(value or {})),
    "hangup": lambda value: Hangup(),
    "sms": lambda value: Sms(**value),
}
