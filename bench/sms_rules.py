"""Worst-case time to answer one SMS against the rules, RE2 running the regex rules.

Run: .venv/bin/python bench/sms_rules.py [--rounds N]

What is timed is `decide()`, the whole answer to one inbound message (keywords, then the
rules in order, then the default), for 1,600-character bodies (Twilio's longest) built to
be hard: long runs that keep a counted repetition alive, random text over the letters the
patterns count, 4-byte emoji, accented letters, lone surrogates. Every measurement is
cold: the rules are loaded afresh before each (re2's compile cache purged), so RE2 starts
with an empty DFA cache, as on the first message after a worker starts. A warm figure
(the same body again) is printed beside it.

Rules files:
  baseline   one exact rule: the floor every ratio is taken against;
  shipped    flows/sms-rules.yaml;
  hostile    files that `python -m telephony.sms check` accepts, built to be slow, one per
             shape of regex and size: exact and prefix rules, then regexes of that shape
             (RE2's worst found: a DFA state per character, each as large as a count) of
             up to that size (100 to 2,000 instructions) until the file's instruction
             budget is spent, then
             the four patterns that took Python's re minutes (^(\\s*\\w+\\s*,?){1,20}$,
             ^(a|aa)*$, ^(a{1,5}){1,64}$, \\d*\\d*\\d*\\d*\\d*x); 200 rules in all. No body
             matches a rule before those four, so every regex searches every body.

Printed: milliseconds per message (max and p99 over all bodies and rounds), and the ratio
of each against the baseline's. Target: the worst hostile file's max under 50 ms.
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import re2  # noqa: E402  # google-re2: purged between measurements

from telephony.sms import rules as sms_rules  # noqa: E402
from telephony.sms.routing import InboundSms, decide  # noqa: E402
from telephony.sms.rules import SmsRules, load_rules, parse_rules  # noqa: E402

BODY_CHARS = 1600
TARGET_MS = 50.0
MAX_RULES = 200  # the schema's maxItems

# The patterns behind the defect: Python's re took minutes on one 40-60 character SMS.
ATTACKS = (r"^(\s*\w+\s*,?){1,20}$", r"^(a|aa)*$", r"^(a{1,5}){1,64}$", r"\d*\d*\d*\d*\d*x")
# Regexes that keep many of their instructions alive at once, and a new set of them at each
# character: the worst shapes for RE2 found (its DFA builds a state per character, each as
# large as the count). `#` ends each so that no body matches: each body is searched in
# full, by every rule. `n` sets the size.
FAMILIES: dict[str, Callable[[int], str]] = {
    "[a-h]*[a-h]{n}#": lambda n: f"[a-h]*[a-h]{{{n}}}#",
    "[ab]*a[ab]{n}#": lambda n: f"[ab]*a[ab]{{{n}}}#",
    "(a?){n}a{n}#": lambda n: f"(a?){{{n}}}a{{{n}}}#",
    "((a|b){1,10}){1,n}#": lambda n: f"((a|b){{1,10}}){{1,{n}}}#",
    "^(a{1,5}){1,n}#": lambda n: f"^(a{{1,5}}){{1,{n}}}#",
    "(?s).*a.{n}#": lambda n: f"(?s).*a.{{{n}}}#",
}
PER_RULE = (100, 300, 1000, 2000)  # instructions per hostile regex, at most


def bodies() -> dict[str, str]:
    """Hard 1,600-character messages; none is a keyword, nor has the `#` the shapes need."""
    rnd = random.Random(1600)

    def drawn(alphabet: str) -> str:
        return "".join(rnd.choice(alphabet) for _ in range(BODY_CHARS))

    letters = "".join(chr(c) for c in range(0x100, 0x3000) if chr(c).isalpha())
    return {
        "a*1600": "a" * BODY_CHARS,
        "a*1599+!": "a" * (BODY_CHARS - 1) + "!",
        "'a '*800": "a " * (BODY_CHARS // 2) + "b",
        "'a,'*800": "a," * (BODY_CHARS // 2),
        "digits": "1" * BODY_CHARS,
        "ab*800": "ab" * (BODY_CHARS // 2),
        "random a-b": drawn("ab"),
        "random a-h": drawn("abcdefgh"),
        "random 'ab ,!1é'": drawn("ab ,!1é"),
        "random ASCII": drawn("".join(map(chr, range(32, 127))).replace("#", "")),
        "random letters": drawn(letters),
        "a\\n*800": "a\n" * (BODY_CHARS // 2) + "b",
        "é*1600": "é" * BODY_CHARS,
        "emoji*1600": "\U0001f600" * BODY_CHARS,
        "lone surrogates": "\ud800" * BODY_CHARS,
    }


def size_of(pattern: str) -> int:
    """RE2's instruction count for a pattern as the loader compiles it (0: refused)."""
    # The loader's own compile (private), so that sizes are those the budgets count.
    try:
        return sms_rules._compile(pattern).programsize
    except sms_rules._RegexRefusedError:
        return 0


def largest(family: Callable[[int], str], limit: int, below: int) -> int | None:
    """The largest n under `below` whose pattern compiles to at most `limit` instructions."""
    low, high = 0, below - 1
    while low < high:
        middle = (low + high + 1) // 2
        size = size_of(family(middle))
        low, high = (middle, high) if 0 < size <= limit else (low, middle - 1)
    return low or None


def hostile(family: Callable[[int], str], per_rule: int) -> dict[str, Any]:
    """A file the loader accepts, 200 rules: exact and prefix rules, then `family` regexes
    of up to `per_rule` instructions until the budget left by the attack patterns is spent,
    then those (last: they match some bodies, which would spare the rules after them)."""
    regexes: list[str] = []
    left = sms_rules.REGEX_TOTAL_INSTRUCTIONS - sum(map(size_of, ATTACKS))
    n: int | None = 1001
    while n and len(regexes) + len(ATTACKS) < MAX_RULES:
        # A smaller n each time: distinct patterns, each with its own DFA (re2 caches them).
        n = largest(family, min(per_rule, sms_rules.REGEX_MAX_INSTRUCTIONS, left), n)
        if n:
            regexes.append(family(n))
            left -= size_of(family(n))
    regexes += ATTACKS
    words = MAX_RULES - len(regexes)
    rules: list[dict[str, Any]] = [
        {"name": f"word-{i}", ("exact" if i % 2 else "prefix"): f"zq{i:03d} word", "reply": "w"}
        for i in range(words)
    ]
    rules += [
        {"name": f"regex-{i}", "regex": pattern, "reply": "r"} for i, pattern in enumerate(regexes)
    ]
    return {"version": 1, "rules": rules, "default": {"reply": "default"}}


def timings(load: Callable[[], SmsRules], texts: dict[str, str], rounds: int) -> Iterator[Any]:
    """(body name, cold seconds, warm seconds, outcome) per body per round."""
    for _ in range(rounds):
        for name, text in texts.items():
            re2.purge()
            rules = load()
            message = InboundSms("SM" + "0" * 32, "+15558675310", "+15017122661", text)
            start = time.perf_counter()
            decision = decide(message, rules, None)
            cold = time.perf_counter() - start
            start = time.perf_counter()
            decide(message, rules, None)
            warm = time.perf_counter() - start
            yield name, cold, warm, decision.rule or decision.outcome


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98]


def measure(load: Callable[[], SmsRules], texts: dict[str, str], rounds: int) -> dict[str, Any]:
    samples = list(timings(load, texts, rounds))
    cold = [s[1] * 1000 for s in samples]
    worst = max(samples, key=lambda s: s[1])
    rules = load()
    regexes = [r.compiled.programsize for r in rules.rules if r.compiled is not None]
    return {
        "max": max(cold),
        "p99": p99(cold),
        "warm": statistics.median(s[2] * 1000 for s in samples),
        "worst body": worst[0],
        "outcome": worst[3],
        "rules": len(rules.rules),
        "regexes": len(regexes),
        "instructions": sum(regexes),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds over the bodies (3)")
    args = parser.parse_args()
    texts = bodies()
    print(
        f"decide() on one {BODY_CHARS:,}-character SMS, cold RE2 caches: {len(texts)} bodies "
        f"x {args.rounds} rounds per rules file. Python {platform.python_version()}, "
        f"google-re2 {version('google-re2')}; a regex sees {sms_rules.REGEX_INPUT_CHARS:,} "
        f"characters, compiles to at most {sms_rules.REGEX_MAX_INSTRUCTIONS:,} instructions, "
        f"{sms_rules.REGEX_TOTAL_INSTRUCTIONS:,} for all of a file's regexes."
    )
    files: list[tuple[str, Callable[[], SmsRules]]] = [
        ("baseline: one exact rule", lambda: parse_rules(
            {"version": 1, "rules": [{"name": "hours", "exact": "hours", "reply": "h"}]}
        )),
        ("shipped: flows/sms-rules.yaml", lambda: load_rules(ROOT / "flows" / "sms-rules.yaml")),
    ]  # fmt: skip
    for label, family in FAMILIES.items():
        for per_rule in PER_RULE:
            document = hostile(family, per_rule)
            parse_rules(document)  # what `check` accepts, or this raises
            files.append((f"hostile: {label} ~{per_rule}", lambda d=document: parse_rules(d)))
    header = (
        f"{'rules file':40} {'rules':>5} {'regexes':>7} {'instr.':>6} {'max ms':>8} "
        f"{'p99 ms':>8} {'warm ms':>8} {'max x':>8} {'p99 x':>8}  worst body -> outcome"
    )
    print(header)
    results = []
    base: dict[str, Any] | None = None
    for label, load in files:
        result = measure(load, texts, args.rounds)
        base = base or result
        results.append((label, result))
        print(
            f"{label:40} {result['rules']:5} {result['regexes']:7} {result['instructions']:6} "
            f"{result['max']:8.3f} {result['p99']:8.3f} {result['warm']:8.3f} "
            f"{result['max'] / base['max']:8.0f} {result['p99'] / base['p99']:8.0f}  "
            f"{result['worst body']} -> {result['outcome']}",
            flush=True,
        )
    label, worst = max(
        ((label, r) for label, r in results if label.startswith("hostile")),
        key=lambda item: item[1]["max"],
    )
    verdict = "met" if worst["max"] < TARGET_MS else "MISSED"
    print(
        f"worst hostile file: {label}: max {worst['max']:.1f} ms, p99 {worst['p99']:.1f} ms; "
        f"target {TARGET_MS:.0f} ms {verdict}"
    )
    return 0 if verdict == "met" else 1


if __name__ == "__main__":
    raise SystemExit(main())
