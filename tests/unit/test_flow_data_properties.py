"""Property tests of a flow's data: placeholders are filled in one pass, and any data a
producer sends is either accepted as it is or refused with a field, never an error.

Templates are drawn as runs of literal text and placeholders, so the expected result is
the runs joined with each placeholder's value; values are drawn full of braces and
placeholder-like text, which must come out as written.
"""

from __future__ import annotations

from typing import Any

from hypothesis import assume, given
from hypothesis import strategies as st

from telephony.errors import InvalidInputError
from telephony.flows.data import MAX_STRING_CHARS, DataSchema, fill

NAME = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)
PLACEHOLDER_NAME = st.one_of(st.sampled_from(["from", "to"]), NAME.map(lambda n: f"data.{n}"))
TRICKY = st.sampled_from(["{", "}", "{}", "{data.", "{data.a}", "{from}", "{to}", "{{data.b}}"])
# Literal text has no "{": a "{" only ever starts a placeholder of the template.
LITERAL = st.text(st.characters(blacklist_characters="{", blacklist_categories=("Cs",)))
VALUE = st.lists(st.one_of(TRICKY, st.text(max_size=8)), max_size=4).map("".join)

Run = tuple[str, str]  # ("text", literal) or ("name", placeholder name)
RUNS = st.lists(
    st.one_of(
        LITERAL.map(lambda text: ("text", text)),
        PLACEHOLDER_NAME.map(lambda name: ("name", name)),
    ),
    max_size=12,
)


def template_of(runs: list[Run]) -> str:
    return "".join(text if kind == "text" else "{" + text + "}" for kind, text in runs)


@given(RUNS, st.data())
def test_every_placeholder_with_a_value_is_replaced_once_and_values_are_never_filled(
    runs: list[Run], data: st.DataObject
) -> None:
    names = sorted({text for kind, text in runs if kind == "name"})
    values = {name: data.draw(VALUE, label=name) for name in names}
    expected = "".join(text if kind == "text" else values[text] for kind, text in runs)
    assert fill(template_of(runs), values) == expected


@given(RUNS, st.data())
def test_a_placeholder_without_a_value_is_left_as_written(
    runs: list[Run], data: st.DataObject
) -> None:
    names = sorted({text for kind, text in runs if kind == "name"})
    known = set(data.draw(st.lists(st.sampled_from(names), unique=True)) if names else [])
    values = {name: data.draw(VALUE, label=name) for name in known}
    expected = "".join(
        values[text] if kind == "name" and text in known else template_of([(kind, text)])
        for kind, text in runs
    )
    assert fill(template_of(runs), values) == expected


@given(st.text(), st.dictionaries(PLACEHOLDER_NAME, VALUE, max_size=5))
def test_text_without_placeholders_is_unchanged(text: str, values: dict[str, str]) -> None:
    assume(all("{" + name + "}" not in text for name in values))
    assert fill(text, values) == text


@given(RUNS, st.dictionaries(PLACEHOLDER_NAME, VALUE, max_size=8))
def test_the_output_is_bounded_by_the_template_and_its_longest_value(
    runs: list[Run], values: dict[str, str]
) -> None:
    template = template_of(runs)
    placeholders = sum(1 for kind, _ in runs if kind == "name")
    longest = max(map(len, values.values()), default=0)
    assert len(fill(template, values)) <= len(template) + placeholders * longest


PROPERTIES = st.dictionaries(
    NAME,
    st.sampled_from(
        [
            {"type": "string", "maxLength": 5},
            {"type": "string", "pattern": "^[a-z]+$"},
            {"type": "integer", "minimum": 0},
            {"type": "number"},
            {"type": "boolean"},
            {"type": "string", "enum": ["a", "b"]},
        ]
    ),
    min_size=1,
    max_size=5,
)
JSON = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.text(max_size=MAX_STRING_CHARS + 2),
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(), inner)),
    max_leaves=10,
)


@given(PROPERTIES, st.data())
def test_any_data_is_accepted_as_it_is_or_refused_naming_a_field(
    properties: dict[str, Any], data: st.DataObject
) -> None:
    schema = DataSchema(properties, tuple(sorted(properties)[:1]))
    given_data = data.draw(
        st.one_of(JSON, st.dictionaries(st.one_of(NAME, st.sampled_from(list(properties))), JSON))
    )
    try:
        accepted = schema.check(given_data)
    except InvalidInputError as exc:
        assert exc.field == "data" or (exc.field or "").startswith("data.")
        return
    assert accepted == given_data
    texts = schema.texts(accepted)
    assert set(texts) == {f"data.{name}" for name in properties}
    assert all(len(texts[f"data.{name}"]) <= schema.max_chars(name) for name in properties)
