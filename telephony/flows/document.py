"""Reading a call flow document: YAML or JSON (by file extension), checked against the
published schema (schemas/call-flows.v1.json), then built into a FlowBook and checked for
what a schema cannot say (targets, reachability, loops).

PyYAML and jsonschema are imported inside the functions: they cost cold-start time that
the greeting and SMS paths never need.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

from telephony import schemas
from telephony.config.documents import read_document
from telephony.errors import DocumentReadError, FlowDocumentError
from telephony.flows.checks import check_flows
from telephony.flows.data import DataSchema
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
from telephony.flows.problems import FlowProblem

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
    built = {flow_id: raw for flow_id, raw in raw_flows.items() if flow_id not in broken_flows}
    refused = {flow_id: _refused(flow_id, raw["steps"], problems) for flow_id, raw in built.items()}
    flows = {flow_id: _flow(flow_id, raw, refused[flow_id]) for flow_id, raw in built.items()}
    problems += check_flows(flows, frozenset(raw_flows), refused)
    if problems:
        raise FlowDocumentError(source, _in_document_order(problems, raw_flows))
    return FlowBook(flows, source)


def flows_schema() -> dict[str, Any]:
    """The published JSON Schema of the document (the one definition of the format)."""
    return schemas.load(schemas.CALL_FLOWS)


def schema_problems(document: object) -> list[FlowProblem]:
    """Every schema violation of `document`, located by flow and step."""
    found = (_problem(e) for e in schemas.validator(schemas.CALL_FLOWS).iter_errors(document))
    return [problem for problem in found if problem is not None]


def _refused(
    flow_id: str, steps: Mapping[str, Any], problems: list[FlowProblem]
) -> dict[str, frozenset[str]]:
    """The steps of a flow that break the schema, each with the steps it may lead to.

    Where such a step leads cannot be read for sure (an unknown verb, a misspelt field), so
    every step id it holds, as a key or a value, counts as a target: the reachability
    check may then miss an unreachable step, but never reports one that the corrected
    step would reach.
    """
    named = {problem.step for problem in problems if problem.flow == flow_id}
    return {
        step_id: frozenset(_texts(raw)) & steps.keys()
        for step_id, raw in steps.items()
        if step_id in named
    }


def _texts(value: object) -> Iterator[str]:
    """Every string in a parsed value: itself, or the keys and values it holds."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _texts(item)
    elif isinstance(value, list):
        for item in value:
            yield from _texts(item)


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


def _locate(path: list[Any]) -> tuple[str | None, str | None, list[Any]]:
    """Split a path into (flow, step, the rest): flows.F.steps.S.rest (indexes stay ints)."""
    if path[:1] != ["flows"] or len(path) < 2:
        return None, None, path
    flow = str(path[1])
    if path[2:3] == ["steps"] and len(path) >= 4:
        return flow, str(path[3]), path[4:]
    return flow, None, path[2:]


def _bad_name(flow: str | None, step: str | None, rest: list[Any], error: Any) -> FlowProblem:
    name = str(error.instance)
    meaning = error.schema.get("description") or "is invalid"
    if flow is None and rest == ["flows"]:
        return FlowProblem(name, None, f"the flow id must be {meaning}")
    if step is None and rest == ["steps"]:
        return FlowProblem(flow, name, f"the step id must be {meaning}")
    return FlowProblem(flow, step, f"{_where(rest)} has a key {name!r} that {meaning}")


def _reason(error: Any, rest: list[Any], in_step: bool) -> str | None:
    """The flow document's own wording first (verbs, steps, flows), then the shared one."""
    match error.validator:
        case "additionalProperties" if in_step and not rest:
            return _unknown_verb(error)
        case "oneOf":
            return _one_of(error, rest, in_step)
        case "minProperties" if rest == ["steps"]:
            return "the flow has no steps"
        case "minProperties" if rest == ["flows"]:
            return "the document has no flows"
    return schemas.describe(error, schemas.label(rest), yaml=True, document="the value")


def _unknown_verb(error: Any) -> str:
    extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
    return f"unknown verb {extra[0]!r} (verbs: {', '.join(VERBS)})"


def _one_of(error: Any, rest: list[Any], in_step: bool) -> str | None:
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


def _where(rest: list[Any]) -> str:
    return schemas.label(rest) or "the value"


# --- building the model from a document that passed the schema -------------------------


def _flow(flow_id: str, raw: Mapping[str, Any], broken: Collection[str]) -> Flow:
    steps = {
        step_id: _step(step_id, body)
        for step_id, body in raw["steps"].items()
        if step_id not in broken
    }
    data = DataSchema.from_document(raw["data"]) if "data" in raw else None
    return Flow(flow_id, raw["start"], steps, raw.get("description"), data)


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
