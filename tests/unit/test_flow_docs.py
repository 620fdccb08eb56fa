"""docs/flows.md shows what the app accepts: its examples pass the schema and the checks,
and its example of a document with problems prints what the docs say it prints."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from telephony.errors import InvalidInputError
from telephony.flows import parse_flow_document
from telephony.flows.__main__ import main as check_main
from telephony.flows.document import schema_problems

DOC = Path(__file__).resolve().parents[2] / "docs" / "flows.md"
# The valid examples come before "## Validation"; the one with problems is in it. "## Data"
# shows a whole document and a make_call body, checked on their own.
VALID, VALIDATION = DOC.read_text().split("\n## Validation\n", 1)
_BEFORE_DATA, _DATA_ON = VALID.split("\n## Data\n", 1)
DATA, _AFTER_DATA = _DATA_ON.split("\n## ", 1)
BLOCKS = re.findall(r"```yaml\n(.*?)```", _BEFORE_DATA + _AFTER_DATA, re.S)
[DATA_DOCUMENT] = re.findall(r"```yaml\n(.*?)```", DATA, re.S)
[DATA_CALL] = re.findall(r"```json\n(.*?)```", DATA, re.S)
[BROKEN] = re.findall(r"```yaml\n(.*?)```", VALIDATION.split("\n## ", 1)[0], re.S)
[SESSION] = re.findall(r"```console\n(.*?)```", VALIDATION, re.S)


def test_the_first_example_is_a_whole_valid_document() -> None:
    book = parse_flow_document(yaml.safe_load(BLOCKS[0]))
    assert "ivr-menu" in book


@pytest.mark.parametrize("block", BLOCKS[1:], ids=lambda block: block.split(":")[0])
def test_each_verb_example_is_a_valid_step(block: str) -> None:
    steps: dict[str, Any] = yaml.safe_load(block)
    document = {"version": 1, "flows": {"f": {"start": next(iter(steps)), "steps": steps}}}
    assert schema_problems(document) == []


def test_the_data_example_is_a_valid_document_and_its_call_fits_it() -> None:
    book = parse_flow_document(yaml.safe_load(DATA_DOCUMENT))
    body = json.loads(DATA_CALL)
    flow = book.flow(body["flow"])
    assert flow is not None and flow.data is not None
    assert flow.data.check(body["data"]) == body["data"]


def test_the_data_section_quotes_the_errors_the_app_gives() -> None:
    book = parse_flow_document(yaml.safe_load(DATA_DOCUMENT))
    data = book.flows["appointment-reminder"].data
    assert data is not None
    given = {"time": "tomorrow at 10 AM", "place": "12 Elm Street", "room": "B12"}
    for broken in ({}, {**given, "time": "x" * 61}, {**given, "tmie": "x"}, {**given, "room": "b"}):
        with pytest.raises(InvalidInputError) as refused:
            data.check(broken)
        assert f"`{refused.value.message}`" in " ".join(DATA.split())


def test_every_verb_has_an_example() -> None:
    verbs = {
        "say",
        "play",
        "pause",
        "gather",
        "dial",
        "record",
        "redirect",
        "reject",
        "hangup",
        "sms",
    }
    shown = {
        verb
        for block in BLOCKS[1:]
        for step in yaml.safe_load(block).values()
        for verb in step
        if verb != "next"
    }
    assert shown == verbs


def test_the_example_with_problems_prints_what_the_docs_show(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    command, *shown = SESSION.splitlines()
    *program, shown_path = command.split()
    assert program == ["$", "python", "-m", "telephony.flows", "check"]
    path = tmp_path / Path(shown_path).name
    path.write_text(BROKEN)
    assert check_main(["check", str(path)], env={}) == 1
    printed = capsys.readouterr().err.replace(str(path), shown_path)
    assert printed.splitlines() == shown
