"""SMS rules documents: matching, templating, keywords, and load-time validation.

GIVEN a rules document, WHEN it is loaded or a message is matched against it, THEN the
first matching rule wins, and every broken document is refused with its rule and reason.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from telephony.config.documents import APP_ROOT
from telephony.errors import SmsRulesError
from telephony.sms import rules as rules_module
from telephony.sms.__main__ import main
from telephony.sms.keywords import HELP_KEYWORDS, OPT_IN_KEYWORDS, OPT_OUT_KEYWORDS, keyword_of
from telephony.sms.routing import InboundSms, decide, fill_template
from telephony.sms.rules import (
    REGEX_INPUT_CHARS,
    REGEX_MAX_INSTRUCTIONS,
    REGEX_TOTAL_INSTRUCTIONS,
    SmsRules,
    load_rules,
    parse_rules,
)

RULES: dict[str, Any] = {
    "version": 1,
    "rules": [
        {"name": "hours", "exact": "Hours", "reply": "9 to 5"},
        {"name": "order", "prefix": "ORDER", "reply": "order {body}"},
        {"name": "zip", "regex": r"^\d{5}$", "reply": "zip {body}"},
        {"name": "refund", "regex": r"\brefund\b", "forward": ["+15551230001"]},
    ],
    "default": {"reply": "default"},
}


@pytest.fixture(scope="module")
def rules() -> SmsRules:
    return parse_rules(RULES)


def matched(rules: SmsRules, text: str) -> str | None:
    rule = rules.match(text)
    return rule.name if rule else None


# Matching


@pytest.mark.parametrize("text", ["hours", "HOURS", "  Hours \n", "hOuRs"])
def test_exact_is_whole_message_trimmed_and_case_insensitive(rules: SmsRules, text: str) -> None:
    assert matched(rules, text) == "hours"


@pytest.mark.parametrize("text", ["hours?", "opening hours", "hour"])
def test_exact_does_not_match_more_or_less(rules: SmsRules, text: str) -> None:
    assert matched(rules, text) is None


@pytest.mark.parametrize("text", ["order 42", "Order", "  ORDERS please", "order\n7"])
def test_prefix_matches_the_start(rules: SmsRules, text: str) -> None:
    assert matched(rules, text) == "order"


def test_prefix_does_not_match_elsewhere(rules: SmsRules) -> None:
    assert matched(rules, "my order") is None


@pytest.mark.parametrize(
    ("text", "rule"),
    [("90210", "zip"), (" 90210 ", "zip"), ("I want a REFUND now", "refund"), ("refunds", None)],
)
def test_regex_is_searched_case_insensitively(rules: SmsRules, text: str, rule: str) -> None:
    assert matched(rules, text) == rule


def test_first_matching_rule_wins() -> None:
    rules = parse_rules(
        {"version": 1, "rules": [
            {"name": "first", "regex": "^order", "reply": "a"},
            {"name": "second", "prefix": "order 4", "reply": "b"},
        ]}
    )  # fmt: skip
    assert matched(rules, "order 42") == "first"


def test_a_regex_sees_a_bounded_part_of_the_message() -> None:
    rules = parse_rules({"version": 1, "rules": [{"name": "tail", "regex": "x$", "reply": "r"}]})
    assert matched(rules, "a" * (REGEX_INPUT_CHARS - 1) + "x") == "tail"
    assert matched(rules, "a" * REGEX_INPUT_CHARS + "x") is None


@pytest.mark.parametrize(
    ("regex", "text"),
    [("^été$", "ÉTÉ"), ("straße", "STRASSE straße"), ("^[a-z]+$", "KELVIN"), (r"\bok\b", "OK!")],
)
def test_regex_case_folding_covers_unicode(regex: str, text: str) -> None:
    rules = parse_rules(with_rule(regex=regex, reply="x"))
    assert matched(rules, text) == "r1"


@pytest.mark.parametrize(
    "text", ["\ud800", "a\udfffb", "\U0001f600" * 400, "\x00\x1b", "é" * 2000, ""]
)
def test_a_regex_searches_any_text_even_what_utf8_cannot_carry(text: str) -> None:
    rules = parse_rules(with_rule(regex="^.*$", reply="x"))
    assert matched(rules, text) == "r1"


# The attack: patterns that Python's re (which backtracks) searches for minutes, holding the
# GIL, on one SMS of 40 to 60 characters (the digits: seconds at 60, hours at 320). The old
# load-time check, which refused only a repeated group with an unbounded repeat inside,
# accepted all four. Each: the pattern, a hostile message, and a message it matches.
BACKTRACKING_ATTACKS = [
    pytest.param(r"^(\s*\w+\s*,?){1,20}$", "a" * 40 + "!", "a, b ,c", id="repeated-words"),
    pytest.param(r"^(a|aa)*$", "a" * 50 + "!", "a" * 50, id="overlapping-alternatives"),
    pytest.param(r"^(a{1,5}){1,64}$", "a" * 40 + "!", "a" * 40, id="counted-groups"),
    pytest.param(r"\d*\d*\d*\d*\d*x", "1" * 60, "1" * 59 + "x", id="adjacent-stars"),
]


@pytest.mark.parametrize(("pattern", "hostile", "matching"), BACKTRACKING_ATTACKS)
def test_a_backtracking_attack_runs_on_a_linear_time_engine(
    pattern: str, hostile: str, matching: str
) -> None:
    rules = parse_rules(with_rule(regex=pattern, reply="x"))
    compiled = rules.rules[0].compiled
    # Asserted before any search, which under Python's re would not return for minutes:
    # RE2 runs the rule, within the size that bounds its time per character.
    assert not isinstance(compiled, re.Pattern)
    assert type(compiled).__module__.split(".")[0] == "re2", type(compiled)
    assert compiled.programsize <= REGEX_MAX_INSTRUCTIONS
    assert matched(rules, hostile) is None
    assert matched(rules, matching) == "r1"


@pytest.mark.parametrize(("pattern", "hostile", "matching"), BACKTRACKING_ATTACKS)
def test_a_backtracking_attack_gets_the_default_through_the_whole_path(
    pattern: str, hostile: str, matching: str
) -> None:
    rules = parse_rules({**with_rule(regex=pattern, reply="x"), "default": {"reply": "d"}})
    assert rules.rules[0].compiled is not None
    assert type(rules.rules[0].compiled).__module__.split(".")[0] == "re2"
    # A 1,600-character body (Twilio's longest) made of the hostile text.
    body = (hostile * (1600 // len(hostile) + 1))[:1600]
    message = InboundSms("SM" + "0" * 32, "+15558675310", "+15017122661", body)
    assert decide(message, rules, None).outcome == "default"


# Keywords


@pytest.mark.parametrize(
    ("words", "kind"),
    [(OPT_OUT_KEYWORDS, "opt_out"), (OPT_IN_KEYWORDS, "opt_in"), (HELP_KEYWORDS, "help")],
)
def test_keywords_are_whole_message_trimmed_any_case(words: frozenset[str], kind: str) -> None:
    for word in words:
        for text in (word, word.lower(), f"  {word.title()}\n"):
            assert keyword_of(text) == (kind, word)


def test_twilio_opt_out_words_are_all_known() -> None:
    assert {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"} <= OPT_OUT_KEYWORDS
    assert {"REVOKE", "OPTOUT"} <= OPT_OUT_KEYWORDS
    assert {"START", "YES", "UNSTOP"} == OPT_IN_KEYWORDS
    assert {"HELP", "INFO"} == HELP_KEYWORDS


@pytest.mark.parametrize(
    "text", ["stop please", "stop by tomorrow", "don't stop", "Start!", "", "HELPME"]
)
def test_keywords_are_not_found_inside_other_text(text: str) -> None:
    assert keyword_of(text) is None


# Templating

VALUES = {"from": "+15558675310", "body": "hello", "to": "+15017122661"}


def test_fill_template_replaces_the_known_placeholders() -> None:
    assert (
        fill_template("{from} said {body} to {to}", VALUES)
        == "+15558675310 said hello to +15017122661"
    )


@pytest.mark.parametrize(
    "body",
    ["{from}", "{body}", "{0}", "{0.__class__.__mro__}", "{to!r:>10}", "%s %(x)s", "{{}}", "\\1"],
)
def test_hostile_values_are_inserted_literally_never_expanded(body: str) -> None:
    assert fill_template("<{body}>", {**VALUES, "body": body}) == f"<{body}>"


def test_other_braces_in_a_template_are_left_alone() -> None:
    assert fill_template("{x} {0} {{from}} {FROM}", VALUES) == "{x} {0} {+15558675310} {FROM}"


def test_render_is_cut_at_one_message_body() -> None:
    assert len(fill_template("{body}{body}", {**VALUES, "body": "x" * 1500})) == 1600


# Load-time validation


def problems_of(document: object) -> list[str]:
    with pytest.raises(SmsRulesError) as caught:
        parse_rules(document, "rules.yaml")
    assert str(caught.value).startswith("rules.yaml: ")
    return [str(problem) for problem in caught.value.problems]


def with_rule(**rule: object) -> dict[str, Any]:
    return {"version": 1, "rules": [{"name": "r1", **rule}]}


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ([], "the document must be a mapping with version: 1"),
        ({"rules": []}, "version is required"),
        ({"version": 2}, "version must be 1"),
        ({"version": 1, "colour": "x"}, "unknown field colour"),
        (with_rule(reply="x"), "rule r1: give exactly one of exact, prefix, regex"),
        (with_rule(exact="a", prefix="b", reply="x"), "rule r1: give exactly one of"),
        (with_rule(exact="a"), "rule r1: give reply, forward, or both"),
        (with_rule(exact="a", reply="x", when="now"), "rule r1: unknown field when"),
        (with_rule(exact=True, reply="x"), "rule r1: exact must be of type string (quote it"),
        (with_rule(exact="  ", reply="x"), "rule r1: exact must be text that is not blank"),
        (with_rule(exact="a", reply="x" * 1601), "rule r1: reply is longer than 1600 characters"),
        (with_rule(exact="a", forward=[15551230001]), "rule r1: forward[0] must be of type string"),
        (with_rule(exact="a", forward=["555-1234"]), "rule r1: forward[0] must be an E.164 number"),
        (with_rule(exact="a", forward=[]), "rule r1: forward needs at least 1 item"),
        (with_rule(exact="a", forward=["+15551230001"] * 2), "rule r1: forward has repeated items"),
        ({"version": 1, "rules": [{"exact": "a", "reply": "x"}]}, "rule #1: name is required"),
        ({"version": 1, "default": {}}, "default: give reply, forward, or both"),
        ({"version": 1, "help": ""}, "help must not be empty"),
    ],
)
def test_schema_problems_name_the_rule_and_reason(document: object, expected: str) -> None:
    problems = problems_of(document)
    assert any(problem.startswith(expected) for problem in problems), problems


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"regex": "(unclosed", "reply": "x"}, "rule r1: regex does not compile with RE2"),
        ({"exact": "Stop", "reply": "x"}, "rule r1: 'stop' is the STOP keyword"),
        ({"exact": "info", "reply": "x"}, "rule r1: 'info' is the INFO keyword"),
        ({"exact": "a", "reply": "hi {name}"}, "rule r1: unknown placeholder {name}"),
        ({"exact": "a", "reply": "hi {From}"}, "rule r1: unknown placeholder {From}"),
        ({"exact": "a", "forward": ["+15"]}, "rule r1: forward[0] is not a phone number"),
    ],
)
def test_rule_problems_name_the_rule_and_reason(rule: dict[str, object], expected: str) -> None:
    assert any(p.startswith(expected) for p in problems_of(with_rule(**rule)))


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"exact": "hours"}, {"exact": "HOURS"}),
        ({"prefix": "order"}, {"exact": "order 42"}),
        ({"prefix": "order"}, {"prefix": "Orders"}),
    ],
)
def test_a_rule_an_earlier_rule_always_beats_is_unreachable(
    first: dict[str, str], second: dict[str, str]
) -> None:
    document = {"version": 1, "rules": [
        {"name": "first", **first, "reply": "a"}, {"name": "second", **second, "reply": "b"},
    ]}  # fmt: skip
    assert problems_of(document) == ["rule second: unreachable: rule first matches first"]


def test_duplicate_names_and_every_problem_are_reported_together() -> None:
    document = {"version": 1, "help": "{who}", "rules": [
        {"name": "same", "exact": "a", "reply": "x"},
        {"name": "same", "regex": "(?=b)", "reply": "y"},
    ]}  # fmt: skip
    problems = problems_of(document)
    assert "rule same: the name is also used by rule #1" in problems
    assert any(p.startswith("rule same: regex does not compile with RE2") for p in problems)
    assert "help: unknown placeholder {who}; use {from}, {body} or {to}" in problems


@pytest.mark.parametrize(
    "pattern",
    [
        "(a+)+",
        "(a*)*b",
        r"^(\w+\s?)*$",
        "((ab)+c)+",
        "(x{2,})*",
        "(a+){2}",
        "(a|b)+",
        "[(]a+[)]+",
        r"\(a+\)+",
        r"^\d{5}$",
        "^(book|booking)\\b.*\\b(repair|service)\\b",
        "[)(+]+",
        r"\pL+",
        "(?P<word>a)b",
        "(?i:a)(?s:.)",
    ],
)
def test_nested_repeats_are_accepted_since_re2_never_backtracks(pattern: str) -> None:
    # The old heuristic refused the first five; with RE2 they cost what any pattern does.
    compiled = parse_rules(with_rule(regex=pattern, reply="x")).rules[0].compiled
    assert compiled is not None
    assert type(compiled).__module__.split(".")[0] == "re2"


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (r"(a)\1", r"invalid escape sequence: \1 (RE2 has no backreferences)"),
        ("(?P<w>a)(?P=w)", "invalid perl operator: (?P (RE2 has no backreferences)"),
        ("a(?=b)", "invalid perl operator: (?= (RE2 has no lookahead or lookbehind)"),
        ("a(?!b)", "invalid perl operator: (?! (RE2 has no lookahead or lookbehind)"),
        ("(?<=a)b", "invalid perl operator: (?<= (RE2 has no lookahead or lookbehind)"),
        ("(?<!a)b", "invalid perl operator: (?<! (RE2 has no lookahead or lookbehind)"),
        (
            "a++",
            "bad repetition operator: ++ "
            "(RE2 has no possessive quantifiers; it never backtracks, so it needs none)",
        ),
        (
            "(?>a+)b",
            "invalid perl operator: (?> "
            "(RE2 has no atomic groups; it never backtracks, so it needs none)",
        ),
        ("(?(1)a|b)", "invalid perl operator: (?( (RE2 has no conditionals)"),
        (r"end\Z", r"invalid escape sequence: \Z (write \z, or $, for the end of the message)"),
        (r"\u00e9", r"invalid escape sequence: \u (write a character as \x{hex})"),
        ("(?x) a b", "invalid perl operator: (?x (RE2's flags are i, m, s and U)"),
        (
            "a{1001}",
            "invalid repetition size: {1001} (RE2 counts up to 1000, nested counts multiplied)",
        ),
        ("[z-a]", "invalid character class range: z-a"),
        ("(unclosed", "missing ): (unclosed"),
    ],
)
def test_a_regex_re2_cannot_run_is_refused_with_the_rule_and_reason(
    pattern: str, reason: str
) -> None:
    problems = problems_of(with_rule(regex=pattern, reply="x"))
    assert problems == [f"rule r1: regex does not compile with RE2: {reason}"]


def test_a_regex_larger_than_its_budget_is_refused() -> None:
    problems = problems_of(with_rule(regex=r"(\w+\s?){1,1000}$", reply="x"))
    assert len(problems) == 1
    assert re.fullmatch(
        r"rule r1: regex is too large: RE2 compiles it to [\d,]+ instructions, more than "
        + re.escape(f"{REGEX_MAX_INSTRUCTIONS:,} (a {{n,m}} count multiplies"),
        problems[0].split(" the size")[0],
    ), problems


def test_regexes_larger_together_than_the_budget_are_refused() -> None:
    each = parse_rules(with_rule(regex=r"\pL0", reply="x")).rules[0].compiled
    assert each is not None
    count = REGEX_TOTAL_INSTRUCTIONS // each.programsize + 1
    document = {"version": 1, "rules": [
        {"name": f"r{i}", "regex": rf"\pL{i}", "reply": "x"} for i in range(count)
    ]}  # fmt: skip
    problems = problems_of(document)
    assert len(problems) == 1
    assert problems[0].startswith("rules: the regexes compile to ")
    assert f"RE2 instructions together, more than {REGEX_TOTAL_INSTRUCTIONS:,}" in problems[0]
    assert parse_rules({"version": 1, "rules": document["rules"][:-1]}).rules


# re2 at load, never at import


def test_re2_is_imported_only_inside_the_function_that_compiles() -> None:
    tree = ast.parse(Path(rules_module.__file__).read_text(encoding="utf-8"))
    top_level = {
        name
        for node in tree.body
        if isinstance(node, ast.Import | ast.ImportFrom)
        for name in (
            [alias.name for alias in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
        )
    }
    assert not {name for name in top_level if name.split(".")[0] == "re2"}
    inside = [
        function.name
        for function in ast.walk(tree)
        if isinstance(function, ast.FunctionDef)
        for node in ast.walk(function)
        if isinstance(node, ast.Import) and any(a.name == "re2" for a in node.names)
    ]
    assert inside == ["_compile"]


def test_a_document_without_regex_rules_loads_without_re2(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "re2", None)  # any `import re2` now fails
    rules = parse_rules({"version": 1, "rules": RULES["rules"][:2], "default": {"reply": "d"}})
    assert matched(rules, "order 7") == "order"
    with pytest.raises(ImportError):
        parse_rules(with_rule(regex="a", reply="x"))


# Files


def test_yaml_and_json_files_load_alike(tmp_path: Path) -> None:
    yaml_file = tmp_path / "rules.yml"
    yaml_file.write_text(
        "version: 1\nrules:\n  - name: hours\n    exact: hours\n    reply: '9 to 5'\n"
    )
    json_file = tmp_path / "rules.json"
    json_file.write_text(json.dumps(RULES))
    assert matched(load_rules(yaml_file), "HOURS") == "hours"
    assert load_rules(json_file).default is not None
    assert load_rules(json_file).source == str(json_file)


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("rules.txt", "version: 1", "the file name must end in .yaml, .yml or .json"),
        (
            "rules.yaml",
            "version: 1\nrules: [\n",
            "not valid YAML (line 3: expected the node content",
        ),
        ("rules.json", '{"version": 1,', "not valid JSON (line 1: Expecting property name"),
        ("rules.yaml", "rules:\n  - name: a\n    exact: yes\n    reply: x\n", "version is req"),
    ],
)
def test_unusable_files_name_the_file_and_problem(
    tmp_path: Path, name: str, text: str, expected: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(SmsRulesError) as caught:
        load_rules(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert any(str(p).startswith(expected) for p in caught.value.problems)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(
        SmsRulesError,
        match=re.escape(f"{tmp_path / 'no.yaml'}: 1 problem: the file does not exist"),
    ):
        load_rules(tmp_path / "no.yaml")


SHIPPED = sorted(
    p for pattern in ("sms-rules*.yaml", "sms-rules*.yml", "sms-rules*.json")
    for p in (APP_ROOT / "flows").glob(pattern)
)  # fmt: skip


def test_the_example_rules_file_is_shipped() -> None:
    assert APP_ROOT / "flows" / "sms-rules.yaml" in SHIPPED


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_rules_file_is_valid(path: Path) -> None:
    assert load_rules(path).rules


# The command line


def test_check_command_accepts_a_valid_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(APP_ROOT / "flows" / "sms-rules.yaml")]) == 0
    assert "ok (4 rules)" in capsys.readouterr().out


def test_check_command_lists_problems_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("version: 1\nrules:\n  - name: x\n    regex: '(a)\\1'\n    reply: '{nope}'\n")
    assert main(["check", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}: 2 problem(s)" in err
    assert "  rule x: regex does not compile with RE2: invalid escape sequence: \\1 (RE2 has" in err
    assert "  rule x: unknown placeholder {nope}" in err


def test_check_command_defaults_to_the_configured_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "configured.json"
    path.write_text(json.dumps({"version": 1}))
    monkeypatch.setenv("SMS_RULES_FILE", str(path))
    assert main(["check"]) == 0
    assert str(path) in capsys.readouterr().out


# The documentation's examples

DOCS = APP_ROOT / "docs" / "sms.md"


def doc_examples() -> list[tuple[str, str]]:
    text = DOCS.read_text()
    section = re.search(r"<!-- examples:.*?-->\n(.*?)<!-- /examples -->", text, re.S)
    assert section, "docs/sms.md has no examples section"
    return re.findall(r"```(yaml|json)\n(.*?)```", section.group(1), re.S)


def test_the_documented_examples_load(tmp_path: Path) -> None:
    examples = doc_examples()
    assert [kind for kind, _ in examples] == ["yaml", "json"]
    for index, (kind, text) in enumerate(examples):
        path = tmp_path / f"example{index}.{kind}"
        path.write_text(text)
        assert load_rules(path).rules
