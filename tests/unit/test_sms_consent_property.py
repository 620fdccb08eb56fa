"""Properties of consent: opt-out keywords however dressed, one key per person, order.

GIVEN any message whose only word is an opt-out keyword, any channel prefix, or any set
of consent events in any arrival order, THEN the sender is opted out, the key is the
number's, and the consent kept is the newest event's (at the same time, the opt-out).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from telephony.sms.keywords import OPT_OUT_KEYWORDS
from telephony.sms.optouts import ConsentEvent, optout_key
from telephony.sms.routing import InboundSms, SmsResponder, decide
from tests.fakes import MemoryOptOutStore

NUMBER = "+15558675310"
# Twilio's words, and the spellings with a space or a dash that people type for them.
OPT_OUT_WORDS = [*sorted(OPT_OUT_KEYWORDS), "STOP ALL", "OPT-OUT", "OPT OUT", "UN-SUBSCRIBE"]
# Around the word: anything but letters and digits (punctuation, symbols, spaces, controls,
# invisible format characters).
AROUND = st.text(st.characters(categories=["P", "S", "Z", "Cc", "Cf"]), max_size=8)


def any_case(word: str, lower: list[bool]) -> str:
    return "".join(c.lower() if flip else c for c, flip in zip(word, lower, strict=False))


@settings(max_examples=400, deadline=None)
@given(
    word=st.sampled_from(OPT_OUT_WORDS),
    lower=st.lists(st.booleans(), min_size=12, max_size=12),
    before=AROUND,
    after=AROUND,
    channel=st.sampled_from(["", "whatsapp:", "sms:"]),
)
def test_a_message_whose_only_word_is_an_opt_out_keyword_opts_its_sender_out(
    word: str, lower: list[bool], before: str, after: str, channel: str
) -> None:
    store = MemoryOptOutStore()
    responder = SmsResponder(lambda: store, lambda command: None)
    body = before + any_case(word, lower) + after
    message = InboundSms("SM" + "0" * 32, channel + NUMBER, "+15017122661", body)
    decision = decide(message, None, "auto")
    assert decision.outcome == "opt_out"
    assert responder.respond(message, decision) is None
    assert store.is_opted_out(NUMBER)


@given(
    number=st.from_regex(r"\+[1-9][0-9]{6,14}", fullmatch=True),
    channel=st.sampled_from(["whatsapp", "sms", "mms", "rcs"]),
)
def test_every_channel_of_a_number_has_the_numbers_key(number: str, channel: str) -> None:
    assert optout_key(f"{channel}:{number}") == optout_key(number)


AT = datetime(2026, 5, 1, tzinfo=UTC)
# (opts out, seconds after AT): few distinct seconds, so that ties are common.
EVENTS = st.lists(st.tuples(st.booleans(), st.integers(0, 5)), min_size=1, max_size=8)


@settings(max_examples=300, deadline=None)
@given(facts=EVENTS, data=st.data())
def test_consent_events_in_any_order_end_in_the_newest(
    facts: list[tuple[bool, int]], data: st.DataObject
) -> None:
    events = [
        ConsentEvent(NUMBER, "STOP" if out else "START", AT + timedelta(seconds=s), f"SM{n}", out)
        for n, (out, s) in enumerate(facts)
    ]
    arrival = data.draw(st.permutations(events))
    store = MemoryOptOutStore()
    for event in arrival:
        store.apply(event)
    newest = max(seconds for _, seconds in facts)
    expected = any(out for out, seconds in facts if seconds == newest)
    assert store.is_opted_out(NUMBER) is expected
    # Delivering any of them again, later, changes nothing.
    for event in data.draw(st.lists(st.sampled_from(events), max_size=4)):
        assert not store.apply(event)
    assert store.is_opted_out(NUMBER) is expected
