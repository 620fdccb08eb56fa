"""make_call refuses bad input with 400/415 JSON naming the field, before any Twilio request."""

from __future__ import annotations

import pytest

from tests.app_client import body_json, post_json
from tests.conftest import AppFactory


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"to": "555-867-5310"}, "to"),
        ({"from": "+15017122661"}, "to"),
        ({"to": "+15558675310", "from": "+1"}, "from"),
        ({"to": "+15558675310", "say": "hi", "twiml": "<Response/>"}, "twiml"),
        ({"to": "+15558675310", "url": "ftp://a.example/x.xml"}, "url"),
        ({"to": "+15558675310", "twiml": "<Response>"}, "twiml"),
        ({"to": "+15558675310", "sya": "typo"}, "sya"),
    ],
)
def test_bad_field(app_env: AppFactory, body: dict[str, object], field: str) -> None:
    app_env()
    resp = post_json("make_call", body)
    assert resp.status_code == 400
    assert resp.mimetype == "application/json"
    assert body_json(resp)["field"] == field
    assert body_json(resp)["error"]


@pytest.mark.parametrize("raw", [b"{not json", b"\xff\xfe", b""])
def test_body_that_is_not_json(app_env: AppFactory, raw: bytes) -> None:
    app_env()
    resp = post_json("make_call", None, raw=raw)
    assert resp.status_code == 400
    assert body_json(resp) == {"error": "the body is not valid JSON", "field": None}


def test_json_that_is_not_an_object(app_env: AppFactory) -> None:
    app_env()
    resp = post_json("make_call", ["+15558675310"])
    assert resp.status_code == 400
    assert body_json(resp)["field"] is None


def test_form_body_is_an_unsupported_media_type(app_env: AppFactory) -> None:
    app_env()
    resp = post_json(
        "make_call",
        None,
        raw=b"to=%2B15558675310",
        content_type="application/x-www-form-urlencoded",
    )
    assert resp.status_code == 415


def test_destination_outside_allowed_countries(app_env: AppFactory) -> None:
    app_env(ALLOWED_DESTINATION_COUNTRIES="US")
    resp = post_json("make_call", {"to": "+447911123456"})
    assert resp.status_code == 400
    assert body_json(resp)["field"] == "to"


def test_missing_default_sender(app_env: AppFactory) -> None:
    app_env(TWILIO_PHONE_NUMBER="", ALLOWED_DESTINATION_COUNTRIES="US")
    resp = post_json("make_call", {"to": "+15558675310"})
    assert (resp.status_code, body_json(resp)["field"]) == (400, "from")


def test_no_country_for_the_destination_guard_is_a_configuration_error(
    app_env: AppFactory,
) -> None:
    # Neither ALLOWED_DESTINATION_COUNTRIES nor a sender number to take the country from
    app_env(TWILIO_PHONE_NUMBER="")
    resp = post_json("make_call", {"to": "+15558675310", "from": "+15017122661"})
    assert resp.status_code == 503


def test_missing_account_sid_is_503(app_env: AppFactory) -> None:
    app_env(TWILIO_ACCOUNT_SID="")
    resp = post_json("make_call", {"to": "+15558675310"})
    assert resp.status_code == 503
    assert "TWILIO" not in body_json(resp)["error"]  # type: ignore[operator]


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b"[" * 100_000 + b"]" * 100_000, None),
        (b'{"to": "+15558675310", "n": ' + b"9" * 5000 + b"}", None),
        (b'{"to": "+15558675310", "say": "hi \\ud800"}', "say"),
    ],
    ids=["nested past the recursion limit", "integer past the int-string limit", "surrogate"],
)
def test_json_past_the_parsers_limits_is_a_400(
    app_env: AppFactory, raw: bytes, field: str | None
) -> None:
    app_env()
    for function in ("make_call", "send_message"):
        resp = post_json(function, None, raw=raw)
        assert resp.status_code == 400, function
        assert body_json(resp)["field"] == field
