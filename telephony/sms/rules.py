"""SMS rules: how sms_url answers an inbound message, from a document shipped with the app.

The document (YAML or JSON, by extension) is validated when it is loaded, against
schemas/sms-rules.v1.json and then for what a schema cannot say (unique names, regexes
that RE2 compiles within a size budget, known placeholders, unreachable rules, rules
shadowed by the opt-out keywords). Every problem names its rule and reason.

Regex rules run on RE2 (the google-re2 package), not Python's re. re backtracks: against
patterns as plain as ^(a|aa)*$ one crafted SMS of 50 characters takes it minutes, holding
the GIL, so the whole worker stalls. RE2 never backtracks: a search takes time linear in
the text (times the compiled pattern's size), whatever the pattern and the message. RE2's
syntax (the Syntax page of its wiki) has no backreferences, lookarounds or possessive
quantifiers; the loader refuses them, naming the rule and why.

Check a file from the command line:  python -m telephony.sms check [FILE]

PyYAML and jsonschema are imported when a document is loaded, and re2 when a document has
a regex rule, never on import: the webhook's cold start does not pay for them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from telephony import schemas
from telephony.config.documents import read_document
from telephony.errors import DocumentReadError, SmsRulesError
from telephony.sms.keywords import keyword_of

EXAMPLE_FILE = "flows/sms-rules.yaml"
# RE2 never backtracks: a search takes time linear in the text, times the number of the
# pattern's instructions alive at once (at most its size). Three bounds cap the time one
# SMS costs against all the rules: the text a regex sees, each regex's size, and the size
# of all the regexes of a document. The worst files the loader accepts take about 30 ms per
# message (bench/sms_rules.py), where one regex took minutes under Python's re.
#
# A regex sees at most this much of a message: two SMS segments, more than any
# keyword-style command needs. Not Twilio's 1,600: the length bounds both the characters
# searched and, for a large pattern, how many of its instructions are alive at once, so
# the worst search grows with its square. At 1,600 characters a file of only 3,000
# instructions took 60 ms per message; at 320, the budgets below stay under 50 ms.
REGEX_INPUT_CHARS = 320
# The most RE2 instructions one regex may compile to. Everyday patterns take 5 to 150; a
# {n,m} count multiplies the size of what it repeats; a Unicode class such as \pL takes
# 1,200 alone.
REGEX_MAX_INSTRUCTIONS = 2000
# The most all the regexes of a document may compile to together: a message that no rule
# matches is searched by each of them.
REGEX_TOTAL_INSTRUCTIONS = 10_000

MatchKind = Literal["exact", "prefix", "regex"]
MATCH_KINDS: tuple[MatchKind, ...] = ("exact", "prefix", "regex")

_ANY_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Action:
    """What a rule (or the default) does: reply, forward to numbers, or both."""

    reply: str | None = None
    forward: tuple[str, ...] = ()


class CompiledRegex(Protocol):
    """What a rule uses of a pattern compiled by RE2 (google-re2 has no type information)."""

    @property
    def programsize(self) -> int:
        """The number of instructions RE2 compiled the pattern to."""
        ...

    def search(self, text: bytes, /) -> object | None:
        """A match anywhere in `text` (UTF-8), or None."""
        ...


@dataclass(frozen=True)
class Rule:
    """One rule: `pattern` is casefolded for exact and prefix, the source for regex."""

    name: str
    kind: MatchKind
    pattern: str
    action: Action
    compiled: CompiledRegex | None = field(default=None, compare=False, repr=False)

    def matches(self, text: str, folded: str) -> bool:
        """Whether the trimmed message (`folded` is its casefold) matches this rule."""
        if self.kind == "exact":
            return folded == self.pattern
        if self.kind == "prefix":
            return folded.startswith(self.pattern)
        assert self.compiled is not None
        return self.compiled.search(_searched(text)) is not None


def _searched(text: str) -> bytes:
    """What a regex searches: the start of the message, in UTF-8 (RE2's text).

    A lone surrogate, which UTF-8 cannot carry, is passed as its code point's three bytes,
    which RE2 reads as one character: no message makes a search fail.
    """
    return text[:REGEX_INPUT_CHARS].encode("utf-8", "surrogatepass")


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
        compiled: CompiledRegex | None = _compile(source)
    except _RegexRefusedError:
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
    return problems + _regex_budget_problems(rules)


def _match_problems(rule: Rule) -> list[str]:
    if rule.kind == "regex":
        return _regex_problems(rule.pattern)
    keyword = keyword_of(rule.pattern)
    if rule.kind == "exact" and keyword is not None:
        return [f"{rule.pattern!r} is the {keyword[1]} keyword, handled before any rule"]
    return []


def _regex_problems(pattern: str) -> list[str]:
    try:
        size = _compile(pattern).programsize
    except _RegexRefusedError as exc:
        return [str(exc)]
    if size > REGEX_MAX_INSTRUCTIONS:
        return [
            f"regex is too large: RE2 compiles it to {size:,} instructions, more than "
            f"{REGEX_MAX_INSTRUCTIONS:,} (a {{n,m}} count multiplies the size of what it "
            "repeats)"
        ]
    return []


def _regex_budget_problems(rules: Sequence[Rule]) -> list[RuleProblem]:
    """The regexes' total size, but for those already refused as too large on their own."""
    sizes = [rule.compiled.programsize for rule in rules if rule.compiled is not None]
    total = sum(size for size in sizes if size <= REGEX_MAX_INSTRUCTIONS)
    if total <= REGEX_TOTAL_INSTRUCTIONS:
        return []
    reason = (
        f"the regexes compile to {total:,} RE2 instructions together, more than "
        f"{REGEX_TOTAL_INSTRUCTIONS:,} (a message is searched by each of them); use exact "
        "or prefix rules where they would do"
    )
    return [RuleProblem("rules", reason)]


class _RegexRefusedError(Exception):
    """RE2 cannot compile a pattern; the message is the problem's reason."""


def _compile(pattern: str) -> CompiledRegex:
    """`pattern` compiled by RE2, case-insensitive; raises _RegexRefusedError with why not."""
    import re2  # type: ignore[import-untyped]  # google-re2 ships no type information

    options = re2.Options()
    options.case_sensitive = False
    options.never_capture = True  # a rule only asks whether it matches: no submatches
    options.log_errors = False  # the loader reports the problem: RE2 need not log it too
    try:
        compiled: CompiledRegex = re2.compile(pattern, options)
    except re2.error as exc:
        said = exc.args[0] if exc.args else b"unknown error"
        message = said.decode("utf-8", "replace") if isinstance(said, bytes) else str(said)
        raise _RegexRefusedError(_refusal(message)) from None
    return compiled


def _refusal(message: str) -> str:
    """The reason RE2 refused a pattern: its message, and what to do when that helps."""
    hint = next((hint for shape, hint in _HINTS if re.match(shape, message)), None)
    reason = f"regex does not compile with RE2: {message}"
    return f"{reason} ({hint})" if hint else reason


_NOT_NEEDED = "it never backtracks, so it needs none"
# What to do about the refusals a Python regex meets most, by the shape of RE2's message;
# the first that fits is said.
_HINTS = (
    (r"invalid perl operator: \(\?<?[=!]", "RE2 has no lookahead or lookbehind"),
    (r"invalid perl operator: \(\?P$", "RE2 has no backreferences"),  # (?P=name)
    (r"invalid escape sequence: \\[1-9gk]", "RE2 has no backreferences"),
    (r"invalid perl operator: \(\?>", f"RE2 has no atomic groups; {_NOT_NEEDED}"),
    (r"bad repetition operator: .+\+$", f"RE2 has no possessive quantifiers; {_NOT_NEEDED}"),
    (r"invalid perl operator: \(\?\(", "RE2 has no conditionals"),
    (r"invalid perl operator: \(\?#", "RE2 has no (?#...) comments"),
    (r"invalid perl operator: \(\?[A-Za-z]", "RE2's flags are i, m, s and U"),
    (r"invalid escape sequence: \\Z", r"write \z, or $, for the end of the message"),
    (r"invalid escape sequence: \\[uUN]", r"write a character as \x{hex}"),
    (r"invalid repetition size", "RE2 counts up to 1000, nested counts multiplied"),
    (r"pattern too large", "count less in {n,m}"),
)


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
