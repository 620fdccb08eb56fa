"""SMS rules: how sms_url answers an inbound message, from a document shipped with the app.

The document (YAML or JSON, by extension) is validated when it is loaded, against
schemas/sms-rules.v1.json and then for what a schema cannot say (unique names, regexes
that compile and cannot backtrack exponentially, known placeholders, unreachable rules,
rules shadowed by the opt-out keywords). Every problem names its rule and reason.

Check a file from the command line:  python -m telephony.sms check [FILE]

PyYAML and jsonschema are imported when a document is loaded, never on import: the
webhook's cold start does not pay for them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from telephony import schemas
from telephony.config.documents import read_document
from telephony.errors import DocumentReadError, SmsRulesError
from telephony.sms.keywords import keyword_of

EXAMPLE_FILE = "flows/sms-rules.yaml"
# A regex sees at most this much of a message: two SMS segments hold any keyword-style
# command, and the bound caps the cost of a pattern that backtracks badly.
REGEX_INPUT_CHARS = 320

MatchKind = Literal["exact", "prefix", "regex"]
MATCH_KINDS: tuple[MatchKind, ...] = ("exact", "prefix", "regex")

_ANY_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Action:
    """What a rule (or the default) does: reply, forward to numbers, or both."""

    reply: str | None = None
    forward: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rule:
    """One rule: `pattern` is casefolded for exact and prefix, the source for regex."""

    name: str
    kind: MatchKind
    pattern: str
    action: Action
    compiled: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    def matches(self, text: str, folded: str) -> bool:
        """Whether the trimmed message (`folded` is its casefold) matches this rule."""
        if self.kind == "exact":
            return folded == self.pattern
        if self.kind == "prefix":
            return folded.startswith(self.pattern)
        assert self.compiled is not None
        return self.compiled.search(text[:REGEX_INPUT_CHARS]) is not None


@dataclass(frozen=True)
class SmsRules:
    """A validated rules document."""

    rules: tuple[Rule, ...] = ()
    default: Action | None = None
    help: str | None = None
    start: str | None = None
    source: str = "<rules>"

    def match(self, text: str) -> Rule | None:
        """The first rule that matches `text`, or None."""
        subject = text.strip()
        folded = subject.casefold()
        return next((rule for rule in self.rules if rule.matches(subject, folded)), None)


@dataclass(frozen=True, order=True)
class RuleProblem:
    """One problem: where it is (a rule, `default`, `help`; None: the document) and why."""

    where: str | None
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}" if self.where else self.reason


def load_rules(path: str | Path) -> SmsRules:
    """Read and validate a rules file; raises SmsRulesError naming the file and problems."""
    source = str(path)
    return parse_rules(_read(Path(path), source), source)


def parse_rules(document: object, source: str = "<rules>") -> SmsRules:
    """Validate a rules document already parsed from YAML or JSON."""
    problems = _schema_problems(document)
    if problems:
        raise SmsRulesError(source, problems)
    assert isinstance(document, dict)
    rules = tuple(_rule(entry) for entry in document.get("rules", ()))
    problems = _rule_problems(rules, document.get("rules", ()))
    problems += _template_problems(document)
    problems += _number_problems(document)
    if problems:
        raise SmsRulesError(source, list(dict.fromkeys(problems)))
    default = document.get("default")
    return SmsRules(
        rules=rules,
        default=_action(default) if default is not None else None,
        help=document.get("help"),
        start=document.get("start"),
        source=source,
    )


# Reading


def _read(path: Path, source: str) -> object:
    try:
        return read_document(path)
    except DocumentReadError as exc:
        raise SmsRulesError(source, [RuleProblem(None, str(exc))]) from None


# Schema


def rules_schema() -> dict[str, Any]:
    """The published JSON Schema of a rules document."""
    return schemas.load(schemas.SMS_RULES)


def _schema_problems(document: object) -> list[RuleProblem]:
    if not isinstance(document, dict):
        return [RuleProblem(None, "the document must be a mapping with version: 1")]
    errors = schemas.validator(schemas.SMS_RULES).iter_errors(document)
    ordered = sorted(errors, key=lambda e: list(map(str, e.path)))
    return [RuleProblem(_where(document, list(e.path)), _reason(e)) for e in ordered]


def _where(document: dict[str, Any], path: Sequence[object]) -> str | None:
    if len(path) >= 2 and path[0] == "rules" and isinstance(path[1], int):
        return _rule_label(document["rules"], path[1])
    return "default" if path[:1] == ["default"] else None


def _rule_label(entries: Sequence[object], index: int) -> str:
    entry = entries[index]
    name = entry.get("name") if isinstance(entry, dict) else None
    return f"rule {name}" if isinstance(name, str) and name else f"rule #{index + 1}"


def _reason(error: Any) -> str:
    """The problem inside its rule (or default): the label is said by _where."""
    if error.validator == "oneOf":
        return "give exactly one of exact, prefix, regex"
    if error.validator == "anyOf":
        return "give reply, forward, or both"
    path = list(error.path)
    inside = path[2:] if path[:1] == ["rules"] else path[1:] if path[:1] == ["default"] else path
    return schemas.describe(error, schemas.label(inside), yaml=True)


# Rules


def _action(entry: Mapping[str, Any]) -> Action:
    return Action(reply=entry.get("reply"), forward=tuple(entry.get("forward", ())))


def _rule(entry: Mapping[str, Any]) -> Rule:
    kind = next(k for k in MATCH_KINDS if k in entry)
    source = entry[kind]
    if kind != "regex":
        return Rule(entry["name"], kind, source.strip().casefold(), _action(entry))
    try:
        compiled = re.compile(source, re.IGNORECASE)
    except re.error:
        compiled = None  # reported by _rule_problems
    return Rule(entry["name"], kind, source, _action(entry), compiled)


def _rule_problems(rules: Sequence[Rule], entries: Sequence[Any]) -> list[RuleProblem]:
    problems: list[RuleProblem] = []
    seen: dict[str, int] = {}
    for index, rule in enumerate(rules):
        label = _rule_label(entries, index)
        if rule.name in seen:
            problems.append(RuleProblem(label, f"the name is also used by rule #{seen[rule.name]}"))
        seen.setdefault(rule.name, index + 1)
        problems += [RuleProblem(label, reason) for reason in _match_problems(rule)]
        shadow = _shadowing_rule(rule, rules[:index])
        if shadow is not None:
            problems.append(RuleProblem(label, f"unreachable: rule {shadow} matches first"))
    return problems


def _match_problems(rule: Rule) -> list[str]:
    if rule.kind == "regex":
        return _regex_problems(rule.pattern)
    keyword = keyword_of(rule.pattern)
    if rule.kind == "exact" and keyword is not None:
        return [f"{rule.pattern!r} is the {keyword[1]} keyword, handled before any rule"]
    return []


def _regex_problems(pattern: str) -> list[str]:
    try:
        re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        return [f"regex does not compile: {exc.msg} at position {exc.pos}"]
    if _has_nested_quantifier(pattern):
        return [
            "regex repeats a group that itself repeats (like (a+)+), which can take "
            "exponential time; repeat the inner part only"
        ]
    return []


def _shadowing_rule(rule: Rule, earlier: Sequence[Rule]) -> str | None:
    """An earlier exact or prefix rule that matches every message this rule matches."""
    if rule.kind == "regex":
        return None
    for other in earlier:
        if other.kind == "prefix" and rule.pattern.startswith(other.pattern):
            return other.name
        if other.kind == "exact" and rule.kind == "exact" and other.pattern == rule.pattern:
            return other.name
    return None


_UNBOUNDED = re.compile(r"[+*]|\{\d*,\}")


def _has_nested_quantifier(pattern: str) -> bool:
    """Whether a group with an unbounded quantifier inside is itself repeated without bound.

    A heuristic, not a proof: it catches the classic (a+)+ and (\\w+\\s?)* shapes, not
    overlapping alternations such as (a|aa)*, which the input bound keeps cheap.
    """
    inside: list[bool] = []  # per open group: does it contain an unbounded quantifier?
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            index += 2
            continue
        if char == "[":
            index = _class_end(pattern, index)
        elif char == "(":
            inside.append(False)
        elif char == ")" and inside:
            repeated = inside.pop()
            if repeated and _UNBOUNDED.match(pattern, index + 1):
                return True
            if inside:
                inside[-1] = inside[-1] or repeated
        elif inside and _UNBOUNDED.match(pattern, index):
            inside[-1] = True
        index += 1
    return False


def _class_end(pattern: str, start: int) -> int:
    """The index of the ] that closes the character class opened at `start`."""
    index = start + 1
    if pattern[index : index + 1] == "^":
        index += 1
    if pattern[index : index + 1] == "]":
        index += 1  # a ] first in a class is literal
    while index < len(pattern) and pattern[index] != "]":
        index += 2 if pattern[index] == "\\" else 1
    return index


def _template_problems(document: Mapping[str, Any]) -> list[RuleProblem]:
    places: list[tuple[str, str]] = [
        (key, document[key]) for key in ("help", "start") if key in document
    ]
    if "reply" in document.get("default", {}):
        places.append(("default", document["default"]["reply"]))
    entries = document.get("rules", ())
    places += [(_rule_label(entries, i), e["reply"]) for i, e in enumerate(entries) if "reply" in e]
    return [
        RuleProblem(where, f"unknown placeholder {{{name}}}; use {{from}}, {{body}} or {{to}}")
        for where, template in places
        for name in _ANY_PLACEHOLDER.findall(template)
        if name not in ("from", "body", "to")
    ]


def _number_problems(document: Mapping[str, Any]) -> list[RuleProblem]:
    from telephony.errors import InvalidInputError
    from telephony.phone import parse_e164

    entries = document.get("rules", ())
    places = [(_rule_label(entries, i), e.get("forward", ())) for i, e in enumerate(entries)]
    places.append(("default", document.get("default", {}).get("forward", ())))
    problems = []
    for where, numbers in places:
        for index, number in enumerate(numbers):
            try:
                parse_e164(number, f"forward[{index}]")
            except InvalidInputError as exc:
                problems.append(RuleProblem(where, exc.message))
    return problems
