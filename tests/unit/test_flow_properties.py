"""Property tests: any valid flow document renders well-formed TwiML at every step.

Documents are drawn small and valid by construction (every step reachable, every target
present), with text full of markup characters and any Unicode XML can carry. Each step is
rendered as the start of a response and for every callback its verb gets, with arbitrary
Digits, SpeechResult, DialCallStatus and attempt numbers.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from defusedxml import ElementTree
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from telephony.errors import FlowDocumentError
from telephony.flows import CallEvent, CallUrls, FlowBook, Rendered, parse_flow_document, render
from telephony.flows.model import Dial, Gather, Record, Step

URLS = CallUrls.for_base("https://calls.example.net")
CALL = {"call_sid": "CA" + "1" * 32, "from_": "+15558675310", "to": "+15017122661"}

MARKUP = st.sampled_from(["<Say>", "a & b", "]]>", "{from} {to}", "\"'", "<!--", "&amp;"])
# Any character XML can carry: no surrogates, controls or non-characters.
XML_CHARS = st.characters(blacklist_categories=("Cs", "Cc", "Cn"))
TEXT = st.one_of(MARKUP, st.text(XML_CHARS, min_size=1, max_size=20))
E164 = st.from_regex(r"\+[1-9][0-9]{7,12}", fullmatch=True)
URL = st.from_regex(r"https://[a-z]{1,8}\.example/[a-z0-9/._-]{0,12}(\?[a-z]=[a-z0-9&=]{1,6})?",
                    fullmatch=True)  # fmt: skip
FLOW_ID = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,6}", fullmatch=True)
KEYS = st.from_regex(r"[0-9*#]{1,3}", fullmatch=True)


def _options(**optional: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=optional)


SAY = st.one_of(
    TEXT,
    st.fixed_dictionaries(
        {"text": TEXT},
        optional={
            "voice": st.sampled_from(["alice", "Polly.Joanna"]),
            "language": st.sampled_from(["en-US", "fr-FR"]),
            "loop": st.integers(0, 3),
        },
    ),
)
PLAY = st.one_of(URL, st.fixed_dictionaries({"url": URL}, optional={"loop": st.integers(0, 3)}))
PAUSE = st.one_of(st.integers(1, 5), _options(length=st.integers(1, 5)))
INLINE = st.one_of(
    st.builds(lambda v: {"say": v}, SAY),
    st.builds(lambda v: {"play": v}, PLAY),
    st.builds(lambda v: {"pause": v}, PAUSE),
)
GATHER = _options(
    input=st.sampled_from([["dtmf"], ["speech"], ["dtmf", "speech"]]),
    num_digits=st.integers(1, 5),
    finish_on_key=st.sampled_from(["", "#", "*"]),
    timeout=st.integers(1, 10),
    speech_timeout=st.one_of(st.just("auto"), st.integers(1, 5)),
    language=st.sampled_from(["en-US", "es-ES"]),
    hints=st.lists(TEXT, max_size=3),
    prompt=st.lists(INLINE, max_size=3),
    retry_prompt=st.lists(INLINE, max_size=2),
    retries=st.integers(0, 3),
)
DIAL = st.fixed_dictionaries(
    {"number": E164},
    optional={"timeout": st.integers(5, 60), "caller_id": E164, "record": st.booleans()},
)
RECORD = _options(
    max_length=st.integers(1, 600),
    timeout=st.integers(0, 10),
    finish_on_key=st.sampled_from(["", "#", "1234567890*#"]),
    play_beep=st.booleans(),
    transcribe=st.booleans(),
)
SMS = st.fixed_dictionaries({"to": st.one_of(st.just("caller"), E164), "body": TEXT})
CHAINED = {"say": SAY, "play": PLAY, "pause": PAUSE, "sms": SMS}
WAITING = {"gather": GATHER, "dial": DIAL, "record": RECORD}


@st.composite
def flow(draw: st.DrawFn, flow_ids: list[str]) -> dict[str, Any]:
    """Steps s0..sN: each leads on to the next one, so all are reachable from s0."""
    count = draw(st.integers(1, 6))
    ids = [f"s{index}" for index in range(count)]
    steps = {}
    for index, step_id in enumerate(ids):
        later = ids[index + 1] if index + 1 < count else None
        steps[step_id] = draw(step(ids, later, flow_ids))
    return {"start": "s0", "steps": steps}


@st.composite
def step(draw: st.DrawFn, ids: list[str], later: str | None, flow_ids: list[str]) -> Any:
    kinds = [*CHAINED, *WAITING] + ([] if later else ["hangup", "reject", "redirect"])
    kind = draw(st.sampled_from(kinds))
    anywhere = st.sampled_from(ids)  # steps that wait may lead back: the caller acts first
    if kind in CHAINED:
        return {kind: draw(CHAINED[kind]), **({"next": later} if later else {})}
    if kind == "gather":
        return {"gather": {**draw(GATHER), **draw(gather_targets(anywhere, later))}}
    if kind in WAITING:
        body = draw(WAITING[kind])
        if kind == "dial":
            body |= draw(_options(on_no_answer=anywhere, on_busy=anywhere, on_failed=anywhere))
        nxt = later or draw(st.none() | anywhere)
        return {kind: body, **({"next": nxt} if nxt else {})}
    return {kind: draw(final(kind, flow_ids))}


@st.composite
def gather_targets(draw: st.DrawFn, anywhere: st.SearchStrategy[str], later: str | None) -> Any:
    branches = draw(st.dictionaries(st.one_of(KEYS, TEXT), anywhere, max_size=3))
    fallback = draw(st.none() | anywhere)
    if later is not None and later not in branches.values() and fallback != later:
        fallback = later
    if not branches and fallback is None:
        fallback = draw(anywhere)
    return {"branches": branches, **({"fallback": fallback} if fallback else {})}


def final(kind: str, flow_ids: list[str]) -> st.SearchStrategy[Any]:
    if kind == "hangup":
        return st.sampled_from([None, {}])
    if kind == "reject":
        return st.one_of(st.none(), _options(reason=st.sampled_from(["busy", "rejected"])))
    return st.one_of(
        st.builds(lambda url: {"url": url}, URL),
        st.builds(lambda flow: {"flow": flow}, st.sampled_from(flow_ids)),
    )


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    flow_ids = draw(st.lists(FLOW_ID, min_size=1, max_size=3, unique=True))
    return {"version": 1, "flows": {flow_id: draw(flow(flow_ids)) for flow_id in flow_ids}}


def load(document: dict[str, Any]) -> FlowBook:
    """The book; drawings that redirect between flows in a loop are discarded."""
    try:
        return parse_flow_document(document)
    except FlowDocumentError as exc:
        # The one problem a drawing can have: flows redirecting to each other unattended.
        assert all("loop without waiting" in p.reason for p in exc.problems), exc.problems
        assume(False)
        raise


def callbacks(step: Step) -> list[str | None]:
    if isinstance(step.verb, Gather):
        return [None, "input", "timeout"]
    if isinstance(step.verb, Dial):
        return [None, "dial"]
    if isinstance(step.verb, Record):
        return [None, "recorded"]
    return [None]


def check_well_formed(book: FlowBook, rendered: Rendered) -> None:
    root = ElementTree.fromstring(rendered.twiml.encode("utf-8"))
    assert root.tag == "Response"
    assert len(root) > 0
    for element in root.iter():
        url = element.get("action") or (element.text if element.tag == "Redirect" else None)
        if url and url.startswith(URLS.voice_url):
            query = parse_qs(urlsplit(url).query)
            flow = book.flows[query["flow"][0]]
            assert "step" not in query or query["step"][0] in flow.steps


ANSWERS = st.one_of(st.none(), KEYS, st.text(max_size=12))
STATUSES = st.one_of(
    st.none(),
    st.sampled_from(["completed", "answered", "busy", "no-answer", "failed", "canceled"]),
    st.text(max_size=8),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    document=documents(),
    digits=ANSWERS,
    speech=ANSWERS,
    status=STATUSES,
    attempt=st.integers(1, 6),
    direction=st.sampled_from(["inbound", "outbound-api", None]),
)
def test_every_step_of_a_valid_document_renders_well_formed_twiml(
    document: dict[str, Any],
    digits: str | None,
    speech: str | None,
    status: str | None,
    attempt: int,
    direction: str | None,
) -> None:
    book = load(document)
    for flow_id, flow in book.flows.items():
        for step in [None, *flow.steps.values()]:
            for callback in callbacks(step) if step else [None]:
                event = CallEvent(
                    flow_id, step.id if step else None, callback, attempt, digits, speech,
                    status, None, direction=direction, **CALL,
                )  # fmt: skip
                rendered = render(book, event, URLS)
                check_well_formed(book, rendered)
                assert rendered.problem is None, rendered.problem
                assert all(sms.to and sms.idempotency_key for sms in rendered.sms)


@settings(max_examples=200, deadline=None)
@given(text=st.text(), voice=st.text(max_size=5), url_tail=st.text(max_size=8))
def test_any_text_is_refused_at_load_or_renders_well_formed(
    text: str, voice: str, url_tail: str
) -> None:
    document = {"version": 1, "flows": {"f": {"start": "a", "steps": {
        "a": {"say": {"text": text, "voice": voice or "alice"}, "next": "b"},
        "b": {"play": f"https://cdn.example/{url_tail}"},
    }}}}  # fmt: skip
    try:
        book = parse_flow_document(document)
    except FlowDocumentError as exc:
        assert all(p.flow == "f" and p.step in {"a", "b"} for p in exc.problems)
        return
    check_well_formed(book, render(book, CallEvent("f", **CALL), URLS))
