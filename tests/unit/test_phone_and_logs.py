"""Masking, and the structured log events that use it."""

from __future__ import annotations

import json
import logging

import pytest

from telephony.logs import log_event
from telephony.phone import mask


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("+15558675310", "+1********10"),
        ("+447700900123", "+44********23"),
        ("+35312345678", "+353******78"),
        ("client:alice", "client:***"),
        ("12345", "***"),
        ("", ""),
        (None, ""),
    ],
)
def test_mask_keeps_country_code_and_last_digits(number: str | None, masked: str) -> None:
    assert mask(number) == masked


def test_log_event_masks_phone_fields_and_drops_none(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test")
    with caplog.at_level(logging.INFO):
        log_event(logger, "sent", to="+15558675310", From="+447700900123", CallSid=None, n=2)
    fields = json.loads(caplog.records[0].getMessage())
    assert fields == {"event": "sent", "to": "+1********10", "From": "+44********23", "n": 2}
    assert caplog.records[0].custom_dimensions == fields  # type: ignore[attr-defined]


def test_short_country_codes_match_phonenumbers_metadata() -> None:
    import phonenumbers

    from telephony.phone import SHORT_COUNTRY_CODES

    known = {str(code) for code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE}
    assert {code for code in known if len(code) < 3} == SHORT_COUNTRY_CODES
