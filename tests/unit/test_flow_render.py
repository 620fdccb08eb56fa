"""Rendering call flows: each verb's TwiML, read back as XML, and the state machine.

GIVEN a flow document, WHEN a webhook event is rendered, THEN the TwiML holds the verbs
of the steps up to the first one that waits, and the callback URLs lead back to the step.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit
from xml.etree.ElementTree import Element

import pytest
from defusedxml import ElementTree

from telephony.flows import CallEvent, CallUrls, FlowBook, Rendered, parse_flow_document, render
from telephony.flows.checks import MAX_CHAINED_STEPS
from telephony.flows.model import Flow, Say, Step
from telephony.flows.render import APOLOGY, fill, sms_key

URLS = CallUrls.for_base("https://calls.example.net")
CALL = {"call_sid": "CA" + "1" * 32, "from_": "+15558675310", "to": "+15017122661"}


def book_of(steps: dict[str, Any], start: str = "a", **flows: Any) -> FlowBook:
    return parse_flow_document(
        {"version": 1, "flows": {"f": {"start": start, "steps": steps}, **flows}}
    )


def run(
    book: FlowBook, step: str | None = None, event: str | None = None, **fields: Any
) -> Rendered:
    return render(book, CallEvent("f", step, event, **{**CALL, **fields}), URLS)


def xml(rendered: Rendered) -> Element:
    root = ElementTree.fromstring(rendered.twiml.encode("utf-8"))
    assert root.tag == "Response"
    return root  # type: ignore[no-any-return]


def tags(rendered: Rendered) -> list[str]:
    return [child.tag for child in xml(rendered)]


def query(url: str | None) -> dict[str, str]:
    assert url is not None
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == URLS.voice_url
    return {name: values[0] for name, values in parse_qs(parts.query).items()}


# --- one verb at a time ------------------------------------------------------------------


def test_say_with_voice_language_and_loop_then_hangs_up() -> None:
    book = book_of(
        {
            "a": {
                "say": {
                    "text": "Hi <there> & you",
                    "voice": "Polly.Joanna",
                    "language": "en-US",
                    "loop": 2,
                }
            }
        }
    )
    root = xml(run(book))
    assert [child.tag for child in root] == ["Say", "Hangup"]
    say = root[0]
    assert say.text == "Hi <there> & you"
    assert say.attrib == {"voice": "Polly.Joanna", "language": "en-US", "loop": "2"}


def test_say_shorthand() -> None:
    root = xml(run(book_of({"a": {"say": "Hello"}})))
    assert (root[0].tag, root[0].text, root[0].attrib) == ("Say", "Hello", {})


def test_play_and_pause() -> None:
    book = book_of(
        {
            "a": {"play": {"url": "https://api.twilio.com/cowbell.mp3", "loop": 3}, "next": "b"},
            "b": {"pause": {"length": 4}, "next": "c"},
            "c": {"play": "https://cdn.example/b.mp3", "next": "d"},
            "d": {"pause": 2},
        }
    )
    root = xml(run(book))
    assert [child.tag for child in root] == ["Play", "Pause", "Play", "Pause", "Hangup"]
    assert (root[0].text, root[0].attrib) == ("https://api.twilio.com/cowbell.mp3", {"loop": "3"})
    assert root[1].attrib == {"length": "4"}
    assert root[3].attrib == {"length": "2"}


def test_gather_posts_back_to_its_step_and_redirects_on_timeout() -> None:
    book = book_of(
        {
            "a": {
                "gather": {
                    "input": ["dtmf", "speech"],
                    "num_digits": 1,
                    "finish_on_key": "#",
                    "timeout": 7,
                    "speech_timeout": "auto",
                    "language": "en-GB",
                    "hints": ["sales", "support"],
                    "prompt": [
                        {"say": "Press 1"},
                        {"play": "https://cdn.example/m.mp3"},
                        {"pause": 1},
                    ],
                    "branches": {"1": "b"},
                }
            },
            "b": {"hangup": None},
        }
    )
    root = xml(run(book))
    assert [child.tag for child in root] == ["Gather", "Redirect"]
    gather, redirect = root
    assert query(gather.get("action")) == {
        "flow": "f",
        "step": "a",
        "event": "input",
        "attempt": "1",
    }
    assert gather.get("method") == "POST"
    assert gather.get("input") == "dtmf speech"
    assert (gather.get("numDigits"), gather.get("finishOnKey"), gather.get("timeout")) == (
        "1",
        "#",
        "7",
    )
    assert (gather.get("speechTimeout"), gather.get("language")) == ("auto", "en-GB")
    assert gather.get("hints") == "sales, support"
    assert [child.tag for child in gather] == ["Say", "Play", "Pause"]
    assert query(redirect.text)["event"] == "timeout"
    assert redirect.get("method") == "POST"


def test_dial_with_its_options() -> None:
    book = book_of(
        {
            "a": {
                "dial": {
                    "number": "+15558675310",
                    "timeout": 20,
                    "caller_id": "+15017122661",
                    "record": True,
                }
            },
        }
    )
    root = xml(run(book))
    assert [child.tag for child in root] == ["Dial"]
    dial = root[0]
    assert dial.text == "+15558675310"
    assert query(dial.get("action")) == {"flow": "f", "step": "a", "event": "dial"}
    assert (dial.get("timeout"), dial.get("callerId")) == ("20", "+15017122661")
    assert dial.get("record") == "record-from-answer"


def test_record_with_transcription_and_recording_callbacks() -> None:
    book = book_of(
        {
            "a": {
                "record": {
                    "max_length": 60,
                    "timeout": 5,
                    "finish_on_key": "#",
                    "play_beep": False,
                    "transcribe": True,
                }
            },
        }
    )
    root = xml(run(book))
    assert [child.tag for child in root] == ["Record", "Redirect"]
    record, redirect = root
    assert query(record.get("action"))["event"] == "recorded"
    assert record.get("maxLength") == "60"
    assert (record.get("timeout"), record.get("finishOnKey")) == ("5", "#")
    assert (record.get("playBeep"), record.get("transcribe")) == ("false", "true")
    assert record.get("recordingStatusCallback") == URLS.status_callback
    assert record.get("transcribeCallback") == URLS.status_callback
    # An empty recording skips the action; the redirect takes the flow on all the same.
    assert redirect.text == record.get("action")


def test_record_without_transcription_has_no_transcribe_attributes() -> None:
    record = xml(run(book_of({"a": {"record": {}}})))[0]
    assert "transcribe" not in record.attrib
    assert "transcribeCallback" not in record.attrib


def test_redirect_to_a_flow_and_to_a_url() -> None:
    other = {"start": "x", "steps": {"x": {"say": "Other"}}}
    book = book_of({"a": {"redirect": {"flow": "other-flow"}}}, **{"other-flow": other})
    redirect = xml(run(book))[0]
    assert (redirect.tag, query(redirect.text)) == ("Redirect", {"flow": "other-flow"})
    url = "https://twiml.example/next.xml?a=1&b=2"
    root = xml(run(book_of({"a": {"redirect": {"url": url}}})))
    assert [(child.tag, child.text) for child in root] == [("Redirect", url)]


@pytest.mark.parametrize(
    ("options", "reason"),
    [(None, None), ({"reason": "busy"}, "busy"), ({"reason": "rejected"}, "rejected")],
)
def test_reject(options: object, reason: str | None) -> None:
    root = xml(run(book_of({"a": {"reject": options}})))
    assert [child.tag for child in root] == ["Reject"]
    assert root[0].get("reason") == reason


def test_hangup() -> None:
    assert tags(run(book_of({"a": {"say": "Bye", "next": "b"}, "b": {"hangup": {}}}))) == [
        "Say",
        "Hangup",
    ]


def test_sms_to_the_caller_is_a_side_effect_not_twiml() -> None:
    book = book_of(
        {
            "a": {
                "sms": {"to": "caller", "body": "Call {to} back; {other} {from}{from}"},
                "next": "b",
            },
            "b": {"say": "Sent"},
        }
    )
    rendered = run(book)
    assert tags(rendered) == ["Say", "Hangup"]
    [sms] = rendered.sms
    assert sms.to == "+15558675310"
    assert sms.body == "Call +15017122661 back; {other} +15558675310+15558675310"
    assert sms.idempotency_key == sms_key(CALL["call_sid"], "f", "a", 1)


def test_sms_to_the_caller_of_a_call_we_placed_goes_to_the_callee() -> None:
    book = book_of({"a": {"sms": {"to": "caller", "body": "Hi"}}})
    [sms] = run(book, direction="outbound-api").sms
    assert sms.to == CALL["to"]


def test_sms_to_a_fixed_number() -> None:
    [sms] = run(book_of({"a": {"sms": {"to": "+447700900123", "body": "New call"}}})).sms
    assert sms.to == "+447700900123"


def test_sms_without_a_call_sid_is_skipped_and_reported() -> None:
    rendered = run(book_of({"a": {"sms": {"to": "caller", "body": "Hi"}}}), call_sid=None)
    assert rendered.sms == ()
    assert rendered.problem is not None and "CallSid" in rendered.problem
    assert tags(rendered) == ["Hangup"]


def test_template_placeholders_are_replaced_once_and_never_formatted() -> None:
    event = CallEvent("f", from_="{to}", to="{from}")
    assert fill("{from}|{to}|{0}|{from!r}|{", event) == "{to}|{from}|{0}|{from!r}|{"


def test_sms_key_differs_by_call_step_and_attempt_and_fits_the_contract() -> None:
    keys = {
        sms_key("CA1", "f", "a", 1),
        sms_key("CA2", "f", "a", 1),
        sms_key("CA1", "f", "b", 1),
        sms_key("CA1", "f", "a", 2),
        sms_key("CA1", "g", "a", 1),
    }
    assert len(keys) == 5
    long_key = sms_key("CA" + "f" * 32, "f" * 64, "s" * 64, 999)
    assert len(long_key) <= 128
    assert long_key == sms_key("CA" + "f" * 32, "f" * 64, "s" * 64, 999)


# --- the state machine -------------------------------------------------------------------

MENU = {
    "a": {
        "gather": {
            "input": ["dtmf", "speech"],
            "prompt": [{"say": "Menu"}],
            "retries": 2,
            "retry_prompt": [{"say": "Again"}],
            "branches": {"1": "one", "sales": "one", "2": "two"},
            "fallback": "bye",
        }
    },
    "one": {"say": "One"},
    "two": {"say": "Two"},
    "bye": {"say": "Bye"},
}


@pytest.mark.parametrize(
    ("digits", "speech", "said"),
    [
        ("1", None, "One"),
        ("2", None, "Two"),
        (None, "I want SALES please", "One"),
        (None, "Sales.", "One"),
        ("2", "sales", "Two"),  # keys first
    ],
)
def test_gather_branches(digits: str | None, speech: str | None, said: str) -> None:
    rendered = run(book_of(MENU), "a", "input", digits=digits, speech=speech)
    root = xml(rendered)
    assert [(child.tag, child.text) for child in root] == [("Say", said), ("Hangup", None)]


@pytest.mark.parametrize("event", ["input", "timeout"])
def test_no_match_or_no_input_asks_again_with_the_retry_prompt(event: str) -> None:
    rendered = run(book_of(MENU), "a", event, attempt=1, digits="9")
    gather = xml(rendered)[0]
    assert query(gather.get("action"))["attempt"] == "2"
    assert [child.text for child in gather] == ["Again", "Menu"]
    assert query(xml(rendered)[1].text) == {
        "flow": "f",
        "step": "a",
        "event": "timeout",
        "attempt": "2",
    }


def test_retries_exhausted_go_to_the_fallback() -> None:
    assert (
        query(xml(run(book_of(MENU), "a", "timeout", attempt=2))[0].get("action"))["attempt"] == "3"
    )
    root = xml(run(book_of(MENU), "a", "timeout", attempt=3))
    assert [(child.tag, child.text) for child in root] == [("Say", "Bye"), ("Hangup", None)]


def test_retries_exhausted_without_fallback_hang_up() -> None:
    book = book_of({"a": {"gather": {"branches": {"1": "b"}}}, "b": {"say": "B"}})
    assert tags(run(book, "a", "timeout")) == ["Hangup"]


def test_a_gather_reached_from_another_starts_at_attempt_one() -> None:
    book = book_of(
        {
            "a": {"gather": {"branches": {"1": "b"}}},
            "b": {"gather": {"branches": {"1": "a"}, "retries": 1}},
        }
    )
    gather = xml(run(book, "a", "input", attempt=1, digits="1"))[0]
    assert query(gather.get("action")) == {
        "flow": "f",
        "step": "b",
        "event": "input",
        "attempt": "1",
    }


DIAL = {
    "a": {
        "dial": {
            "number": "+15558675310",
            "on_no_answer": "na",
            "on_busy": "busy",
            "on_failed": "failed",
        },
        "next": "done",
    },
    "na": {"say": "No answer"},
    "busy": {"say": "Busy"},
    "failed": {"say": "Failed"},
    "done": {"say": "Done"},
}


@pytest.mark.parametrize(
    ("status", "said"),
    [
        ("completed", "Done"),
        ("answered", "Done"),
        ("no-answer", "No answer"),
        ("busy", "Busy"),
        ("failed", "Failed"),
        ("canceled", "Failed"),
        ("something-new", "Failed"),
        (None, "Failed"),
    ],
)
def test_dial_outcomes(status: str | None, said: str) -> None:
    root = xml(run(book_of(DIAL), "a", "dial", dial_status=status))
    assert [(child.tag, child.text) for child in root] == [("Say", said), ("Hangup", None)]


@pytest.mark.parametrize("status", ["busy", "no-answer", "failed", "completed"])
def test_dial_outcome_without_its_target_goes_to_next_then_hangs_up(status: str) -> None:
    with_next = book_of(
        {"a": {"dial": {"number": "+15558675310"}, "next": "b"}, "b": {"say": "Next"}}
    )
    assert [child.text for child in xml(run(with_next, "a", "dial", dial_status=status))] == [
        "Next",
        None,
    ]
    alone = book_of({"a": {"dial": {"number": "+15558675310"}}})
    assert tags(run(alone, "a", "dial", dial_status=status)) == ["Hangup"]


def test_recording_goes_on_to_next_with_or_without_a_recording() -> None:
    book = book_of({"a": {"record": {}, "next": "b"}, "b": {"say": "Thanks"}})
    url = "https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1"
    for recording in (url, None):
        root = xml(run(book, "a", "recorded", recording_url=recording))
        assert [(child.tag, child.text) for child in root] == [("Say", "Thanks"), ("Hangup", None)]


def test_a_step_without_an_event_is_run_from_that_step() -> None:
    assert [child.text for child in xml(run(book_of(MENU), "two"))] == ["Two", None]


@pytest.mark.parametrize(
    ("flow", "step", "event", "problem"),
    [
        ("nope", None, None, "unknown flow"),
        ("f", "nope", None, "no step"),
        ("f", "nope", "input", "no step"),
        ("f", "one", "input", "does not belong"),
        ("f", "a", "dial", "does not belong"),
        ("f", "a", "hacked", "does not belong"),
    ],
)
def test_unknown_flow_step_or_event_gets_an_apology(
    flow: str, step: str | None, event: str | None, problem: str
) -> None:
    rendered = render(book_of(MENU), CallEvent(flow, step, event), URLS)
    root = xml(rendered)
    assert [(child.tag, child.text) for child in root] == [("Say", APOLOGY), ("Hangup", None)]
    assert rendered.problem is not None and problem in rendered.problem


def test_query_values_are_url_encoded() -> None:
    urls = CallUrls.for_base("https://calls.example.net/prefix")
    assert urls.step("a&b=c", "d e", "input", 1) == (
        "https://calls.example.net/prefix/api/voice_url?flow=a%26b%3Dc&step=d+e&event=input"
        "&attempt=1"
    )


@pytest.mark.parametrize(
    ("given", "attempt"),
    [(None, 1), ("", 1), ("3", 3), ("0", 1), ("-2", 1), ("x", 1), ("99999", 1), ("007", 7)],
)
def test_attempt_from_the_query_is_bounded(given: str | None, attempt: int) -> None:
    query = {"attempt": given} if given is not None else {}
    assert CallEvent.from_webhook("f", query, {}).attempt == attempt


# "²" and "٣" are str.isdigit(), and int() refuses the first; 5,000 digits are past int()'s
# limit. The first and the last answered 500 behind a valid signature.
@pytest.mark.parametrize("given", ["²", "٣", "9" * 5000])
def test_attempt_that_is_not_ascii_digits_is_the_first(given: str) -> None:
    assert CallEvent.from_webhook("f", {"attempt": given}, {}).attempt == 1


def test_a_chain_as_long_as_the_bound_is_rendered_whole() -> None:
    steps = {
        f"s{i}": Step(f"s{i}", Say(str(i)), next=f"s{i + 1}") for i in range(MAX_CHAINED_STEPS)
    }
    steps[f"s{MAX_CHAINED_STEPS - 1}"] = Step(f"s{MAX_CHAINED_STEPS - 1}", Say("last"))
    book = FlowBook({"f": Flow("f", "s0", steps)})
    rendered = render(book, CallEvent("f"), URLS)
    assert tags(rendered) == ["Say"] * MAX_CHAINED_STEPS + ["Hangup"]
    assert rendered.problem is None


def test_a_chain_longer_than_the_bound_is_cut_off_in_a_book_built_in_code() -> None:
    # Loaded documents are refused such chains and cycles; a book built in code is not.
    steps = {"a": Step("a", Say("loop"), next="a")}
    book = FlowBook({"f": Flow("f", "a", steps)})
    rendered = render(book, CallEvent("f"), URLS)
    root = xml(rendered)
    assert len(root) == MAX_CHAINED_STEPS + 2
    assert [child.text for child in root[-2:]] == [APOLOGY, None]
    assert rendered.problem is not None and "chained" in rendered.problem
