"""Loading call flow documents: every problem is found, named by flow, step and reason.

GIVEN a document with a problem, WHEN it is loaded, THEN FlowDocumentError lists that
problem with its flow and step; the shipped documents load, and the check command agrees.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from telephony.config.documents import APP_ROOT
from telephony.config.settings import SettingsError
from telephony.container import build_container
from telephony.errors import FlowDocumentError
from telephony.flows import FlowProblem, load_flow_book, parse_flow_document
from telephony.flows.__main__ import main as check_main
from telephony.flows.checks import MAX_CHAINED_STEPS
from telephony.flows.document import flows_schema
from telephony.flows.model import Gather

ROOT = Path(__file__).resolve().parents[2]
# Call flow documents are the files of flows/ named *flows*; other documents live there too.
SHIPPED = sorted(
    path for path in (ROOT / "flows").glob("*flows*") if path.suffix in {".yaml", ".yml", ".json"}
)


def doc(steps: dict[str, Any], start: str = "a", **flows: Any) -> dict[str, Any]:
    return {"version": 1, "flows": {"f": {"start": start, "steps": steps}, **flows}}


def problems(document: object) -> list[FlowProblem]:
    with pytest.raises(FlowDocumentError) as info:
        parse_flow_document(document, "test.yaml")
    assert str(info.value).startswith("test.yaml: ")
    return info.value.problems


def only_problem(document: object) -> FlowProblem:
    [problem] = problems(document)
    return problem


# --- what the schema cannot say ----------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "step", "reason"),
    [
        ({"a": {"say": "x", "next": "b"}}, "a", "next goes to step 'b', which does not exist"),
        (
            {"a": {"gather": {"branches": {"1": "zz"}, "fallback": "a"}}},
            "a",
            "branch '1' goes to step 'zz', which does not exist",
        ),
        (
            {"a": {"gather": {"branches": {"1": "a"}, "fallback": "zz"}}},
            "a",
            "fallback goes to step 'zz', which does not exist",
        ),
        (
            {"a": {"dial": {"number": "+15558675310", "on_busy": "zz"}}},
            "a",
            "on_busy goes to step 'zz', which does not exist",
        ),
        ({"a": {"gather": {}}}, "a", "a gather needs branches or a fallback"),
        ({"a": {"gather": {"branches": {}}}}, "a", "a gather needs branches or a fallback"),
        ({"a": {"hangup": None, "next": "a"}}, "a", "hangup does not go on to next"),
        (
            {"a": {"gather": {"fallback": "b"}, "next": "b"}, "b": {"hangup": None}},
            "a",
            "gather does not go on to next",
        ),
        (
            {"a": {"redirect": {"flow": "zz"}}},
            "a",
            "redirect goes to flow 'zz', which does not exist",
        ),
        ({"a": {"say": "x"}, "b": {"say": "y"}}, "b", "unreachable from the start step 'a'"),
    ],
)
def test_broken_targets_and_shapes(steps: dict[str, Any], step: str, reason: str) -> None:
    assert only_problem(doc(steps)) == FlowProblem("f", step, reason)


def test_missing_start_step() -> None:
    assert only_problem(doc({"a": {"say": "x"}}, start="b")) == FlowProblem(
        "f", None, "the start step 'b' does not exist"
    )


def test_flow_without_steps_and_without_start() -> None:
    document = {"version": 1, "flows": {"f": {"start": "a", "steps": {}}, "g": {"steps": {}}}}
    assert problems(document) == [
        FlowProblem("f", None, "the flow has no steps"),
        FlowProblem("g", None, "start is required"),
        FlowProblem("g", None, "the flow has no steps"),
    ]


def test_a_cycle_of_steps_that_never_wait_is_refused() -> None:
    steps = {"a": {"say": "x", "next": "b"}, "b": {"pause": 1, "next": "c"},
             "c": {"sms": {"to": "caller", "body": "hi"}, "next": "a"}}  # fmt: skip
    assert only_problem(doc(steps)) == FlowProblem(
        "f", "a", "steps a -> b -> c -> a loop without waiting for the caller"
    )


def test_a_cycle_through_redirects_between_flows_is_refused() -> None:
    document = doc(
        {"a": {"say": "x", "next": "b"}, "b": {"redirect": {"flow": "g"}}},
        g={"start": "c", "steps": {"c": {"redirect": {"flow": "f"}}}},
    )
    [problem] = problems(document)
    assert "f/a -> f/b -> g/c -> f/a loop without waiting" in problem.reason


def test_cycles_through_a_gather_dial_or_record_wait_and_are_allowed() -> None:
    steps = {
        "a": {"say": "Menu", "next": "b"},
        "b": {"gather": {"branches": {"1": "c"}, "fallback": "a"}},
        "c": {"dial": {"number": "+15558675310", "on_busy": "d"}, "next": "a"},
        "d": {"record": {}, "next": "a"},
    }
    assert "f" in parse_flow_document(doc(steps))


def test_a_chain_longer_than_one_response_may_hold_is_refused() -> None:
    count = MAX_CHAINED_STEPS + 1
    steps = {f"s{i}": {"say": str(i), "next": f"s{i + 1}"} for i in range(count - 1)}
    steps[f"s{count - 1}"] = {"say": "last"}
    [problem] = problems(doc(steps, start="s0"))
    assert (problem.step, problem.reason) == (
        "s0",
        f"chains more than {MAX_CHAINED_STEPS} steps into one response",
    )
    del steps[f"s{count - 1}"]
    steps[f"s{count - 2}"] = {"say": "last"}
    assert "f" in parse_flow_document(doc(steps, start="s0"))


# --- steps that break the schema are still steps of the reachability graph --------------

UNKNOWN_SYA = (
    "unknown verb 'sya' (verbs: say, play, pause, gather, dial, record, redirect, reject, "
    "hangup, sms)"
)


def test_a_schema_error_and_an_unreachable_step_are_both_reported() -> None:
    steps = {"a": {"say": "x", "next": "b"}, "b": {"sya": "y"}, "c": {"say": "z"}}
    assert problems(doc(steps)) == [
        FlowProblem("f", "b", UNKNOWN_SYA),
        FlowProblem("f", "c", "unreachable from the start step 'a'"),
    ]


def test_a_step_that_breaks_the_schema_can_itself_be_unreachable() -> None:
    steps = {"a": {"say": "x"}, "b": {"sya": "y", "next": "a"}}
    assert problems(doc(steps)) == [
        FlowProblem("f", "b", UNKNOWN_SYA),
        FlowProblem("f", "b", "unreachable from the start step 'a'"),
    ]


@pytest.mark.parametrize(
    "broken",
    [
        {"sya": "x", "next": "b"},  # an unknown verb; next can still be read
        {"gahter": {"branches": {"1": "b"}}},  # where it leads is inside the unknown verb
        {"dial": {"number": "555", "on_busy": "b"}},  # a bad value beside a good target
        {"dial": {"number": "+15558675310", "on_bussy": "b"}},  # a misspelt field
        {"gather": {"branches": ["b"]}},  # a target in the wrong shape
        {"say": "x", "next": {"b": 1}},
    ],
)
def test_no_step_is_unreachable_only_because_the_step_before_it_breaks_the_schema(
    broken: dict[str, Any],
) -> None:
    steps = {"a": broken, "b": {"say": "y", "next": "c"}, "c": {"say": "z"}}
    found = problems(doc(steps))
    assert found
    assert all(problem.step == "a" for problem in found)
    assert not any("unreachable" in problem.reason for problem in found)


def test_the_docs_example_reports_its_three_problems() -> None:
    document = {"version": 1, "flows": {"ivr-menu": {"start": "greeting", "steps": {
        "greeting": {"sya": "Thanks for calling Owl Shop.", "next": "menu"},
        "menu": {"gather": {"branches": {"1": "sales", "2": "voicemial"}, "fallback": "goodbye"}},
        "sales": {"dial": {"number": "+15558675310"}, "next": "goodbye"},
        "voicemail": {"record": {}, "next": "goodbye"},
        "goodbye": {"say": "Goodbye."},
    }}}}  # fmt: skip
    assert problems(document) == [
        FlowProblem("ivr-menu", "greeting", UNKNOWN_SYA),
        FlowProblem(
            "ivr-menu", "menu", "branch '2' goes to step 'voicemial', which does not exist"
        ),
        FlowProblem("ivr-menu", "voicemail", "unreachable from the start step 'greeting'"),
    ]


# --- schema violations, located ----------------------------------------------------------


@pytest.mark.parametrize(
    ("step_body", "reason"),
    [
        ({"sya": "hi"}, "unknown verb 'sya'"),
        ({"next": "a"}, "a step needs one of say, play"),
        ({"say": "x", "play": "https://a.example/x.mp3"}, "takes exactly one of"),
        ({"say": 5}, "say must be a text, or an object with text"),
        ({"say": {"text": 5}}, "say.text must be of type string"),
        ({"say": {"text": "x", "colour": "red"}}, "say has an unknown field colour"),
        ({"say": ""}, "say must not be empty"),
        ({"say": "bell \x07"}, "say must be text without control characters"),
        ({"say": {"text": "x", "loop": -1}}, "say.loop must be at least 0"),
        ({"play": "http://insecure.example/a.mp3"}, "play must be an absolute https URL"),
        ({"pause": 0}, "pause must be at least 1"),
        ({"pause": "long"}, "pause must be a number of seconds"),
        ({"gather": {"timeout": "5", "fallback": "a"}}, "gather.timeout must be of type integer"),
        ({"gather": {"input": ["dtmf", "fax"], "fallback": "a"}}, "gather.input[1] must be one of"),
        (
            {"gather": {"finish_on_key": "x", "fallback": "a"}},
            "gather.finish_on_key must be keypad",
        ),
        ({"gather": {"retries": 11, "fallback": "a"}}, "gather.retries must be at most 10"),
        (
            {"gather": {"prompt": [{"say": "x", "play": "https://a.example/x"}], "fallback": "a"}},
            "gather.prompt[0] takes exactly one of say, play, pause",
        ),
        (
            {"gather": {"prompt": [{"dial": {}}], "fallback": "a"}},
            "gather.prompt[0] has an unknown",
        ),
        ({"gather": {"speech_timeout": "soon", "fallback": "a"}}, "speech_timeout must be auto"),
        ({"dial": {}}, "dial.number is required"),
        ({"dial": {"number": "555-0100"}}, "dial.number must be an E.164 number"),
        ({"dial": {"number": "+15558675310\n"}}, "dial.number must be an E.164 number"),
        ({"dial": {"number": "+15558675310", "record": "yes"}}, "dial.record must be of type"),
        ({"record": {"max_length": 0}}, "record.max_length must be at least 1"),
        ({"redirect": {}}, "redirect needs one of flow, url"),
        ({"redirect": {"flow": "f", "url": "https://a.example"}}, "redirect takes exactly one"),
        ({"reject": {"reason": "maybe"}}, "reject.reason must be one of busy, rejected"),
        ({"reject": "busy"}, "reject must be empty, or an object with reason"),
        ({"hangup": True}, "hangup must be empty"),
        ({"sms": {"to": "caller"}}, "sms.body is required"),
        ({"sms": {"to": "boss", "body": "x"}}, "sms.to must be caller"),
        ({"say": "x", "next": "not an id"}, "next must be an id of letters"),
        ("say hi", "the value must be of type object"),
    ],
)
def test_schema_violations_name_the_step_and_reason(step_body: object, reason: str) -> None:
    problem = problems(doc({"a": step_body}))[0]
    assert (problem.flow, problem.step) == ("f", "a")
    assert reason in problem.reason


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (None, FlowProblem(None, None, "the value must be of type object")),
        ({"flows": {}}, FlowProblem(None, None, "version is required")),
        ({"version": 2, "flows": {"f": {"start": "a", "steps": {"a": {"hangup": None}}}}},
         FlowProblem(None, None, "version must be 1")),
        ({"version": 1, "flows": {}}, FlowProblem(None, None, "the document has no flows")),
        ({"version": 1, "flows": {}, "extra": 1},
         FlowProblem(None, None, "unknown field extra")),
    ],
)  # fmt: skip
def test_document_level_problems(document: object, expected: FlowProblem) -> None:
    assert expected in problems(document)


def test_bad_flow_and_step_ids_are_named() -> None:
    document = {"version": 1, "flows": {
        "bad flow": {"start": "a", "steps": {"a": {"hangup": None}}},
        "f": {"start": "a", "steps": {"a": {"hangup": None}, "bad step": {"hangup": None}}},
    }}  # fmt: skip
    found = problems(document)
    bad_flow = FlowProblem(
        "bad flow",
        None,
        "the flow id must be an id of letters, digits, '_', '.' and '-' (at most 64, "
        "starting with a letter or digit)",
    )
    assert bad_flow in found
    assert any(p.flow == "f" and p.step == "bad step" and "step id" in p.reason for p in found)


def test_every_problem_is_collected_in_document_order() -> None:
    document = {"version": 1, "flows": {
        "f": {"start": "a", "steps": {
            "a": {"say": "x", "next": "gone"},
            "b": {"gather": {}},
            "c": {"sya": "typo"},
        }},
        "g": {"start": "nowhere", "steps": {"a": {"redirect": {"flow": "zz"}}}},
    }}  # fmt: skip
    assert [str(problem) for problem in problems(document)] == [
        "flow f, step a: next goes to step 'gone', which does not exist",
        "flow f, step b: a gather needs branches or a fallback",
        "flow f, step b: unreachable from the start step 'a'",
        "flow f, step c: unknown verb 'sya' (verbs: say, play, pause, gather, dial, record, "
        "redirect, reject, hangup, sms)",
        "flow f, step c: unreachable from the start step 'a'",
        "flow g: the start step 'nowhere' does not exist",
        "flow g, step a: redirect goes to flow 'zz', which does not exist",
    ]
    message = str(FlowDocumentError("x.yaml", problems(document)))
    assert message.startswith("x.yaml: 7 problems: flow f, step a: next goes to step 'gone'")
    assert "\n" not in message


# --- files: YAML or JSON by extension ----------------------------------------------------

YAML_DOC = """
version: 1
flows:
  menu:
    start: ask
    steps:
      ask:
        gather:
          input: [speech, dtmf]
          branches:
            1: one
            01: one
            yes: one
            no: one
            on: one
          fallback: one
      one:
        say: "On {from}"
"""


def test_yaml_keys_stay_as_written(tmp_path: Path) -> None:
    path = tmp_path / "flows.yml"
    path.write_text(YAML_DOC)
    book = load_flow_book(path)
    gather = book.flows["menu"].steps["ask"].verb
    assert isinstance(gather, Gather)
    assert [answer for answer, _ in gather.branches] == ["1", "01", "yes", "no", "on"]
    assert book.source == str(path)


def test_json_documents_are_read_by_extension(tmp_path: Path) -> None:
    path = tmp_path / "flows.json"
    path.write_text(json.dumps(doc({"a": {"say": "Hi"}})))
    assert "f" in load_flow_book(path)


@pytest.mark.parametrize(
    ("name", "text", "reason"),
    [
        ("f.yaml", "version: 1\nflows: [unclosed", "not valid YAML (line"),
        ("f.json", '{"version": 1,', "not valid JSON (line 1"),
        ("f.json", "version: 1", "not valid JSON"),
        ("f.txt", "{}", "must end in .yaml, .yml or .json"),
        ("f.yaml", "", "the value must be of type object"),
    ],
)
def test_unreadable_files(tmp_path: Path, name: str, text: str, reason: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(FlowDocumentError) as info:
        load_flow_book(path)
    assert info.value.source == str(path)
    assert reason in info.value.problems[0].reason


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FlowDocumentError) as info:
        load_flow_book(tmp_path / "absent.yaml")
    assert info.value.problems == [FlowProblem(None, None, "the file does not exist")]


def test_yaml_cannot_build_python_objects(tmp_path: Path) -> None:
    path = tmp_path / "evil.yaml"
    path.write_text("!!python/object/apply:os.system ['echo pwned']")
    with pytest.raises(FlowDocumentError):
        load_flow_book(path)


# --- the shipped documents and the schema ------------------------------------------------


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    Draft202012Validator.check_schema(flows_schema())


@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: path.name)
def test_every_shipped_flow_document_loads(path: Path) -> None:
    book = load_flow_book(path)
    assert book.flows


def test_the_examples_are_shipped() -> None:
    book = load_flow_book(ROOT / "flows" / "call-flows.yaml")
    assert {"ivr-menu", "appointment-reminder", "verbs", "closed"} <= set(book.flows)


def test_relative_paths_start_at_the_app_folder() -> None:
    assert (APP_ROOT / "function_app.py").is_file()


# --- python -m telephony.flows check -----------------------------------------------------


def test_check_passes_the_shipped_document(capsys: pytest.CaptureFixture[str]) -> None:
    assert check_main(["check"], env={}) == 0
    assert "call-flows.yaml: ok (4 flows: ivr-menu, appointment-reminder" in capsys.readouterr().out


def test_check_lists_every_problem_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps(doc({"a": {"say": "Hi"}})))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc({"a": {"say": "x", "next": "b"}, "c": {"gather": {}}})))
    assert check_main(["check", str(good), str(bad)], env={}) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"{bad}: 3 problems",
        "  flow f, step a: next goes to step 'b', which does not exist",
        "  flow f, step c: a gather needs branches or a fallback",
        "  flow f, step c: unreachable from the start step 'a'",
    ]


def test_check_reads_the_settings_and_checks_voice_flow(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "flows.json"
    path.write_text(json.dumps(doc({"a": {"say": "Hi"}})))
    assert check_main(["check"], env={"CALL_FLOWS_FILE": str(path), "VOICE_FLOW": "f"}) == 0
    assert check_main(["check"], env={"CALL_FLOWS_FILE": str(path), "VOICE_FLOW": "g"}) == 1
    assert "VOICE_FLOW names flow 'g'" in capsys.readouterr().err


# --- the container: loaded on first use, kept for the process ---------------------------


def test_the_container_loads_the_document_once(tmp_path: Path) -> None:
    path = tmp_path / "flows.json"
    path.write_text(json.dumps(doc({"a": {"say": "Hi"}})))
    container = build_container({"CALL_FLOWS_FILE": str(path)})
    book = container.flow_book()
    path.write_text("no longer JSON")
    assert container.flow_book() is book
    assert container.has_flow("f")
    assert not container.has_flow("g")


def test_the_container_reports_a_broken_document_as_a_settings_error(tmp_path: Path) -> None:
    container = build_container({"CALL_FLOWS_FILE": str(tmp_path / "absent.yaml")})
    errors = []
    for _ in range(2):
        with pytest.raises(SettingsError) as info:
            container.flow_book()
        errors.append(info.value)
    absent = tmp_path / "absent.yaml"
    assert str(errors[0]) == f"CALL_FLOWS_FILE {absent}: 1 problem: the file does not exist"
    assert str(errors[1]) == str(errors[0])
    assert errors[1] is not errors[0]
