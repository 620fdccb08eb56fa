"""The forward-only status machine of delivery records."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from telephony.outbound.records import (
    _RANK,
    DeliveryRecord,
    StatusCallback,
    apply_callback,
    moves_forward,
)

NOW = datetime(2026, 11, 26, tzinfo=UTC)
TWILIO_STATUSES = ["queued", "sending", "sent", "delivered", "undelivered", "failed", "read"]


def rec(status: str, sid: str | None = "SM1") -> DeliveryRecord:
    return DeliveryRecord("k", "sms", "+15558675310", status, NOW, NOW, twilio_sid=sid)


def test_late_sent_never_overwrites_delivered() -> None:
    assert apply_callback(rec("delivered"), "sent", "SM1", None, NOW).status == "delivered"


def test_read_follows_delivered_and_failure_keeps_its_code() -> None:
    assert apply_callback(rec("delivered"), "read", "SM1", None, NOW).status == "read"
    failed = apply_callback(rec("sent"), "undelivered", "SM1", 30003, NOW)
    assert (failed.status, failed.error_code) == ("undelivered", 30003)


def test_callback_for_another_sid_changes_nothing() -> None:
    assert apply_callback(rec("sent"), "delivered", "SM2", None, NOW).status == "sent"


def test_unknown_status_changes_nothing() -> None:
    assert not moves_forward("queued", "teleported")
    assert apply_callback(rec("queued"), "teleported", "SM1", None, NOW).status == "queued"


@given(st.lists(st.sampled_from(TWILIO_STATUSES), min_size=1, max_size=12))
def test_any_callback_order_ends_at_the_highest_rank_seen(statuses: list[str]) -> None:
    record = rec("queued")
    for status in statuses:
        record = apply_callback(record, status, "SM1", None, NOW)
    highest = max(_RANK[s] for s in ["queued", *statuses])
    assert _RANK[record.status] == highest
    # and the first status reported at that rank is the one that stands
    assert record.status == next(s for s in ["queued", *statuses] if _RANK[s] == highest)


# Found by Schemathesis (tests/integration/test_openapi_fuzz.py): a signed callback with
# ErrorCode "³" answered 500, since "³".isdigit() is true and int() refuses it.
NOT_CODES = ["", "x1", "-1", "³", "٣٠٠٠٣", "9" * 5000, "1" * 10]


@pytest.mark.parametrize("given", NOT_CODES)
def test_error_code_that_is_not_ascii_digits_is_no_code(given: str) -> None:
    params = {"MessageSid": "SM1", "MessageStatus": "failed", "ErrorCode": given}
    assert StatusCallback.from_params(params, None).error_code is None


def test_error_code_of_a_callback_is_read() -> None:
    params = {"MessageSid": "SM1", "MessageStatus": "failed", "ErrorCode": "30003"}
    assert StatusCallback.from_params(params, None).error_code == 30003
    assert StatusCallback.from_params({"MessageSid": "SM1"}, None).error_code is None
