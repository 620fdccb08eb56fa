"""Properties: any inbound SMS text yields a well-formed TwiML reply, and any rules
document the loader accepts answers any text.

Text is drawn from all of Unicode, surrogates and control characters included, mixed
with XML's metacharacters; the rules echo the sender and the body into replies, so
whatever arrives ends up inside the document. Rules documents mix exact and prefix rules
with regexes put together from the syntax rules use, the shapes that backtrack without
end under Python's re, and arbitrary text; texts run to 1,600 characters (Twilio's
longest body), with long runs of the characters those shapes count.
"""

from __future__ import annotations

import re
from typing import Any
from xml.etree import ElementTree

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from telephony.adapters.twiml import message_reply, xml_text
from telephony.config.documents import app_file
from telephony.errors import SmsRulesError
from telephony.sms.routing import InboundSms, SmsResponder, decide
from telephony.sms.rules import SmsRules, load_rules, parse_rules
from tests.fakes import MemoryOptOutStore

ECHO = parse_rules(
    {
        "version": 1,
        "help": "Help for {from}: {body}",
        "rules": [{"name": "quoted", "regex": "[<&>\"']", "reply": "<{body}> & '{from}'"}],
        "default": {"reply": "You said {body} to {to}"},
    }
)
EXAMPLE = load_rules(app_file("flows/sms-rules.yaml"))

HOSTILE = st.sampled_from(
    ["<", ">", "&", '"', "'", "]]>", "<![CDATA[", "&amp;", "\x00", "\x1b", "\ufffe", "\ud800"]
)
ANY_TEXT = st.lists(st.characters(exclude_categories=()) | HOSTILE, max_size=200).map("".join)


def reply_to(body: str, sender: str, rules: SmsRules) -> tuple[str | None, str]:
    store = MemoryOptOutStore()
    responder = SmsResponder(lambda: store, lambda command: None)
    message = InboundSms("SM" + "0" * 32, sender, "+15017122661", body)
    reply = responder.respond(message, decide(message, rules, "auto"))
    return reply, message_reply(reply)


@settings(max_examples=300, deadline=None)
@given(body=ANY_TEXT, sender=ANY_TEXT)
def test_any_text_gives_a_well_formed_reply_with_the_text_intact(body: str, sender: str) -> None:
    reply, document = reply_to(body, sender, ECHO)
    root = ElementTree.fromstring(document.encode("utf-8"))
    assert root.tag == "Response"
    messages = list(root)
    assert [m.tag for m in messages] == (["Message"] if reply and xml_text(reply) else [])
    if messages:
        # Everything XML can carry survives; only what it cannot carry is dropped.
        parsed = messages[0].text or ""
        assert parsed == xml_text(reply or "").replace("\r\n", "\n").replace("\r", "\n")


@settings(max_examples=200, deadline=None)
@given(body=ANY_TEXT | st.sampled_from(["STOP", "help", " start ", "hours", "order 7", "90210"]))
def test_the_example_rules_always_render_well_formed_twiml(body: str) -> None:
    _, document = reply_to(body, "+15558675310", EXAMPLE)
    assert ElementTree.fromstring(document.encode("utf-8")).tag == "Response"


# Any accepted rules document answers any text

OUTCOMES = {"opt_out", "opt_in", "help", "rule", "default", "no_match"}
# Pieces of the syntax rules use; put together below with groups, alternatives and counts.
ATOMS = ["a", "b", "x", "1", " ", ",", "-", "é", ".", r"\d", r"\w", r"\s", r"\W", "[a-c]",
         "[^ab]", r"[\d,]", r"\pL", r"\p{Greek}", "[[:alpha:]]"]  # fmt: skip
COUNTS = ["", "", "?", "*", "+", "{2}", "{1,3}", "{0,5}", "*?", "+?", "{1,20}", "{1,64}", "{2,}"]
# Shapes that backtrack without end under Python's re, and some RE2 refuses.
HOSTILE_PATTERNS = [
    r"^(\s*\w+\s*,?){1,20}$", r"^(a|aa)*$", r"^(a{1,5}){1,64}$", r"\d*\d*\d*\d*\d*x",
    "(a+)+$", r"(\w+\s?)*!", "(.*a){20}", r"(?s)(.{0,100}){1,10}x", r"(a)\1", "(?=a)",
    r"(\w+\s?){1,1000}$", "((a{1,20}){1,20}){1,3}", "",
]  # fmt: skip


def _regex(pieces: st.SearchStrategy[str], leaves: int) -> st.SearchStrategy[str]:
    def grouped(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        counted = st.tuples(inner, st.sampled_from(COUNTS)).map("".join)
        sequence = st.lists(counted, min_size=1, max_size=4).map("".join)
        alternatives = st.lists(sequence, min_size=1, max_size=3).map("|".join)
        return st.tuples(st.sampled_from(["(", "(?:"]), alternatives).map(
            lambda t: f"{t[0]}{t[1]})"
        )

    body = st.recursive(pieces, grouped, max_leaves=leaves)
    counted = st.tuples(body, st.sampled_from(COUNTS)).map("".join)
    return st.tuples(
        st.sampled_from(["", "^"]),
        st.lists(counted, min_size=1, max_size=4).map("".join),
        st.sampled_from(["", "$"]),
    ).map("".join)


PATTERNS = (
    _regex(st.sampled_from(ATOMS), 12)
    | st.sampled_from(HOSTILE_PATTERNS)
    | st.text(st.characters(codec="utf-8"), max_size=20)
)
WORDS = st.text(st.characters(codec="utf-8"), min_size=1, max_size=12).filter(str.strip)
MATCHES = (
    PATTERNS.map(lambda p: {"regex": p})
    | WORDS.map(lambda w: {"exact": w})
    | WORDS.map(lambda w: {"prefix": w})
)
DOCUMENTS = st.lists(MATCHES, max_size=8).map(
    lambda matches: {
        "version": 1,
        "rules": [{"name": f"r{i}", **m, "reply": "{body}"} for i, m in enumerate(matches)],
        "default": {"reply": "default"},
    }
)
RUNS = st.tuples(
    st.sampled_from(["a", "1", "a ", "a,", "ab", "é", "\U0001f600", "\ud800", " ", "x\n"]),
    st.integers(0, 1600),
).map(lambda run: (run[0] * run[1])[:1600])
TEXTS = st.text(st.characters(exclude_categories=()), max_size=1600) | RUNS | ANY_TEXT


def loaded(document: dict[str, Any]) -> SmsRules | None:
    """The rules, or None when the loader refuses them, naming a rule (or `rules`) each time."""
    try:
        return parse_rules(document)
    except SmsRulesError as exc:
        assert exc.problems
        assert all(str(p).startswith(("rule ", "rules: ")) for p in exc.problems), exc.problems
        return None


@settings(max_examples=300, deadline=None)
@given(document=DOCUMENTS, texts=st.lists(TEXTS, min_size=1, max_size=3))
def test_any_accepted_rules_document_answers_any_text(
    document: dict[str, Any], texts: list[str]
) -> None:
    rules = loaded(document)
    if rules is None:
        return
    for text in texts:
        rule = rules.match(text)
        assert rule is None or rule in rules.rules
        message = InboundSms("SM" + "0" * 32, "+15558675310", "+15017122661", text)
        assert decide(message, rules, None).outcome in OUTCOMES


# Where Python's re and RE2 share the syntax, a rule matches what it matched before: the
# engine changed, not the rules' meaning. Short texts, so that re's backtracking stays
# cheap; printable ASCII, where both read \d, \w, \s and \b alike (RE2's are ASCII-only).
SHARED_ATOMS = [a for a in ATOMS if a not in (r"\pL", r"\p{Greek}", "[[:alpha:]]", "é")]
PRINTABLE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=10)


@settings(max_examples=300, deadline=None)
@given(
    pattern=_regex(st.sampled_from(SHARED_ATOMS), 5),
    texts=st.lists(PRINTABLE | st.sampled_from(["aaa", "a, b", "123", "ABC", "a-1 b"]), max_size=4),
)
def test_a_regex_matches_what_pythons_re_matched(pattern: str, texts: list[str]) -> None:
    try:
        before = re.compile(pattern, re.IGNORECASE)
    except re.error:
        before = None
    rules = loaded({"version": 1, "rules": [{"name": "r", "regex": pattern, "reply": "x"}]})
    assume(before is not None and rules is not None)
    assert before is not None and rules is not None
    for text in texts:
        subject = text.strip()
        assert (rules.match(text) is not None) == (before.search(subject) is not None), text
