"""The signed-webhook wrapper against hostile requests: never a 5xx, and cheap refusals.

GIVEN the real functions in-process, WHEN a request arrives that Twilio never sent (no
signature, a forged one, a malformed URL, body or query, a flood of bytes or fields), THEN
it gets 403, 400, 413 or 415, never a 500, and the refusal costs as little as the request
allows: a missing signature is refused before the body is looked at, an oversized body
before it is decoded or parsed, too many fields before the signature is computed.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping
from urllib.parse import parse_qsl, urlencode

import azure.functions as func
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from telephony.container import Container
from telephony.handlers.http import MAX_WEBHOOK_BODY_BYTES, MAX_WEBHOOK_FIELDS
from tests.app_client import APP_URL, TEST_AUTH_TOKEN, function, signed_post
from tests.conftest import AppFactory
from tests.fakes import MemoryStore, ScriptedSender

FORM = "application/x-www-form-urlencoded"
WEBHOOKS = ("voice_url", "sms_url", "status_callback")
INBOUND_SMS = {
    "MessageSid": "SM" + "1" * 32,
    "AccountSid": "AC" + "a" * 32,
    "From": "+15558675310",
    "To": "+15017122661",
    "Body": "Hi",
}


def post(
    name: str,
    body: bytes,
    *,
    query: str = "",
    headers: Mapping[str, str] | None = None,
    url: str | None = None,
) -> func.HttpResponse:
    """POST `body` as it is, with exactly the given headers, as the worker would pass it."""
    url = url or f"{APP_URL}/api/{name}" + (f"?{query}" if query else "")
    # The worker's params; split by hand, as urlsplit refuses some of the hosts tested here.
    query = url.partition("?")[2].partition("#")[0]
    params = dict(parse_qsl(query, keep_blank_values=True))
    req = func.HttpRequest(
        method="POST", url=url, headers=dict(headers or {}), params=params, body=body
    )
    return function(name)(req)  # type: ignore[no-any-return]


def signature_for(url: str, pairs: list[tuple[str, str]]) -> str:
    values: dict[str, list[str]] = {}
    for key, value in pairs:
        values.setdefault(key, []).append(value)
    return RequestValidator(TEST_AUTH_TOKEN).compute_signature(url, _Multi(values))  # type: ignore[no-any-return]


class _Multi(dict[str, list[str]]):
    def getlist(self, name: str) -> list[str]:
        return self[name]


def signed_form(
    name: str, pairs: list[tuple[str, str]], *, url: str | None = None
) -> func.HttpResponse:
    url = url or f"{APP_URL}/api/{name}"
    headers = {"Content-Type": FORM, "X-Twilio-Signature": signature_for(url, pairs)}
    return post(name, urlencode(pairs).encode(), url=url, headers=headers)


@pytest.fixture
def app(app_env: AppFactory) -> Container:
    # Memory stores and a scripted sender: no webhook may reach a peer, or fail for want of one.
    # No PUBLIC_BASE_URL: the signature is checked against the request's URL, as it arrived.
    parts = {"deliveries": MemoryStore(), "sender": ScriptedSender(), "enqueue": lambda text: None}
    return app_env(parts, PUBLIC_BASE_URL="")


# ------------------------------------------------------------------- (4) bodySHA256, exactly


@pytest.mark.parametrize(
    "query",
    [
        "xbodySHA256=1",  # the attack: the name contains bodySHA256, the parameter is not it
        "bodySHA2567=1",
        "a=bodySHA256",
        "x=1&bodySHA256x=2",
        "bodySHA256=",  # present but blank: twilio's parse_qs drops it
        "bodysha256=1",
    ],
)
@pytest.mark.parametrize("name", WEBHOOKS)
def test_json_body_without_an_exact_bodySHA256_parameter_is_forbidden(
    app: object, name: str, query: str
) -> None:
    # Before the fix: TypeError inside twilio's compute_signature, a 500 with a traceback.
    headers = {"Content-Type": "application/json", "X-Twilio-Signature": "anything"}
    resp = post(name, b'{"CallSid": "CA1"}', query=query, headers=headers)
    assert resp.status_code == 403
    assert resp.get_body() == b"Forbidden"


def test_json_body_signed_through_its_hash_passes_the_signature(app: object) -> None:
    # The exact parameter still works: the signature holds, and JSON is not a webhook we take.
    body = b'{"CallSid": "CA1"}'
    url = f"{APP_URL}/api/sms_url?bodySHA256={hashlib.sha256(body).hexdigest()}"
    signature = RequestValidator(TEST_AUTH_TOKEN).compute_signature(url, {})
    headers = {"Content-Type": "application/json", "X-Twilio-Signature": signature}
    assert post("sms_url", body, url=url, headers=headers).status_code == 415
    assert post("sms_url", body + b" ", url=url, headers=headers).status_code == 403


@pytest.mark.parametrize(
    "netloc", ["calls.example.net:abc", "calls.example.net:99999", "[::1", "[zz]:443"]
)
def test_a_url_the_validator_cannot_parse_is_an_invalid_signature(
    app: object, netloc: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The host builds the URL from the Host header, which anyone can write.
    url = f"https://{netloc}/api/sms_url"
    headers = {"Content-Type": FORM, "X-Twilio-Signature": "anything"}
    with caplog.at_level(logging.WARNING):
        resp = post("sms_url", urlencode(INBOUND_SMS).encode(), url=url, headers=headers)
    assert resp.status_code == 403
    assert '"event": "signature_check_failed"' in caplog.text
    assert '"error": "ValueError"' in caplog.text


def test_an_error_of_the_handler_itself_is_not_taken_for_a_bad_signature(
    app: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only the signature check fails closed; a bug past it must surface, not become a 403.
    def broken(*args: object) -> None:
        raise RuntimeError("a bug in the handler")

    monkeypatch.setattr("telephony.handlers.webhooks.decide", broken)
    with pytest.raises(RuntimeError, match="a bug in the handler"):
        signed_post("sms_url", INBOUND_SMS)


# ------------------------------------------------------------------- (4) property: never 5xx

QUERY_NAMES = st.sampled_from(
    ["bodySHA256", "xbodySHA256", "bodySHA2567", "BODYSHA256", "flow", "step", "id", "code"]
) | st.text(max_size=12)
QUERY_VALUES = st.sampled_from(["", "1", "ivr-menu", "%zz", "\x00", "a" * 300]) | st.text(
    max_size=20
)
ENCODED_QUERIES = st.lists(st.tuples(QUERY_NAMES, QUERY_VALUES), max_size=6).map(urlencode)
RAW_QUERIES = st.text(alphabet="&=;%?#+ abSHA256xyz\x00é", max_size=40)
QUERIES = ENCODED_QUERIES | RAW_QUERIES
# Repeats weight the draw: most requests should get as far as the signature, or past it.
NETLOCS = st.sampled_from(
    ["calls.example.net"] * 4
    + ["calls.example.net:443", "calls.example.net:abc", "[::1", "[::1]:7071"]
)
CONTENT_TYPES = st.sampled_from(
    [FORM] * 4
    + [
        None,
        f"{FORM}; charset=utf-8",
        "APPLICATION/X-WWW-FORM-URLENCODED",
        "application/json",
        "text/plain",
        "multipart/form-data; boundary=x",
        "",
        ";;;",
    ]
) | st.text(max_size=30)
FORM_PAIRS = st.lists(
    st.tuples(
        st.sampled_from(["Body", "From", "To", "CallSid", "MessageSid", "MessageStatus", "Digits"])
        | st.text(max_size=10),
        st.text(max_size=40),
    ),
    max_size=8,
)
BODIES = (
    st.binary(max_size=200)
    | FORM_PAIRS.map(lambda pairs: urlencode(pairs).encode())
    | st.sampled_from(
        [
            b'{"a": 1}',
            b"\xff\xfe\x00",
            b"&" * 150,  # more fields than the cap
            b"a=" + b"x" * MAX_WEBHOOK_BODY_BYTES,  # one byte over the cap
        ]
    )
)
EXTRA_HEADERS = st.dictionaries(
    st.sampled_from(["X-Forwarded-Host", "Host", "Content-Length", "X-Big", "Transfer-Encoding"])
    | st.text(alphabet="abcXYZ-", min_size=1, max_size=10),
    st.sampled_from(["", "0", "-1", "99999999999", "a" * 16_384]) | st.text(max_size=30),
    max_size=3,
)


@st.composite
def webhook_requests(draw: st.DrawFn) -> tuple[str, str, bytes, dict[str, str]]:
    """A function, a URL, a body and headers; sometimes validly signed, so handlers run too."""
    name = draw(st.sampled_from(WEBHOOKS))
    query = draw(QUERIES)
    url = f"https://{draw(NETLOCS)}/api/{name}" + (f"?{query}" if query else "")
    body = draw(BODIES)
    headers = {k: v for k, v in draw(EXTRA_HEADERS).items() if k.lower() != "content-type"}
    content_type = draw(CONTENT_TYPES)
    if content_type is not None:
        headers["Content-Type"] = content_type
    how = draw(st.sampled_from(["none", "forged", "valid", "valid", "body hash"]))
    if how == "forged":
        headers["X-Twilio-Signature"] = draw(st.text(max_size=40) | st.just("a" * 16_384))
    elif how == "body hash":  # a raw body, signed as Twilio signs JSON: its hash in the query
        digest = hashlib.sha256(body.decode("utf-8", errors="replace").encode()).hexdigest()
        url += f"{'&' if '?' in url else '?'}bodySHA256={digest}"
        try:
            headers["X-Twilio-Signature"] = signature_for(url, [])
        except ValueError:
            headers["X-Twilio-Signature"] = "unsignable"
    elif how == "valid":
        try:
            pairs = parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True)
            headers["X-Twilio-Signature"] = signature_for(url, pairs)
        except ValueError:  # a URL twilio cannot take: then no signature is valid anyway
            headers["X-Twilio-Signature"] = "unsignable"
    return name, url, body, headers


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(request=webhook_requests())
@example(
    request=(
        "sms_url",
        f"{APP_URL}/api/sms_url?xbodySHA256=1",
        b'{"a": 1}',
        {"Content-Type": "application/json", "X-Twilio-Signature": "x"},
    )
)
def test_no_request_gets_a_server_error(
    app: object, request: tuple[str, str, bytes, dict[str, str]]
) -> None:
    name, url, body, headers = request
    resp = post(name, body, url=url, headers=headers)
    event(f"status {resp.status_code}")  # --hypothesis-show-statistics: every path is reached
    assert resp.status_code in {200, 204, 400, 403, 413, 415}, resp.get_body()


# ------------------------------------------------------------------- (5) refusal order, caps


def test_a_huge_unsigned_body_is_refused_before_it_is_looked_at(app: object) -> None:
    # 10 MB and a million fields: over every cap, so only the missing signature can answer.
    body = b"a=1&" * (10 * 1024 * 1024 // 4)
    started = time.perf_counter()
    resp = post("sms_url", body, headers={"Content-Type": FORM})
    elapsed = time.perf_counter() - started
    assert resp.status_code == 403
    assert elapsed < 1.0  # parsing it took seconds before; refusing takes microseconds


@pytest.mark.parametrize("signature", ["", "   "])
def test_an_empty_signature_header_is_no_signature(app: object, signature: str) -> None:
    body = b"a=1&" * (MAX_WEBHOOK_FIELDS + 1)
    headers = {"Content-Type": FORM, "X-Twilio-Signature": signature}
    assert post("sms_url", body, headers=headers).status_code == 403


def test_an_oversized_body_is_refused_before_it_is_parsed(app: object) -> None:
    # Over the size cap and the field cap: 413 shows the size is checked before parsing.
    body = b"a=1&" * (MAX_WEBHOOK_BODY_BYTES // 4 + 1)
    headers = {"Content-Type": FORM, "X-Twilio-Signature": "forged"}
    started = time.perf_counter()
    resp = post("sms_url", body, headers=headers)
    assert resp.status_code == 413
    assert time.perf_counter() - started < 1.0


def test_a_ten_megabyte_form_with_a_forged_signature_is_cheap(app: object) -> None:
    # The attack of the report: 10 s of CPU and 300 MB before the fix.
    body = urlencode({**INBOUND_SMS, "Body": "x" * (10 * 1024 * 1024)}).encode()
    headers = {"Content-Type": FORM, "X-Twilio-Signature": "forged"}
    started = time.perf_counter()
    resp = post("sms_url", body, headers=headers)
    assert resp.status_code == 413
    assert time.perf_counter() - started < 1.0


def test_the_body_cap_is_inclusive(app: object) -> None:
    base = urlencode(INBOUND_SMS)
    pad = MAX_WEBHOOK_BODY_BYTES - len(base) - len("&Pad=")
    at_cap = [*INBOUND_SMS.items(), ("Pad", "x" * pad)]
    assert len(urlencode(at_cap)) == MAX_WEBHOOK_BODY_BYTES
    assert signed_form("sms_url", at_cap).status_code == 200
    over = [*INBOUND_SMS.items(), ("Pad", "x" * (pad + 1))]
    resp = signed_form("sms_url", over)  # validly signed, and still too large
    assert resp.status_code == 413


def test_too_many_fields_are_refused_before_the_signature_is_computed(
    app: object, caplog: pytest.LogCaptureFixture
) -> None:
    fields = [(f"F{i}", "x") for i in range(MAX_WEBHOOK_FIELDS + 1)]
    with caplog.at_level(logging.WARNING):
        assert signed_form("sms_url", fields).status_code == 400  # even validly signed
    assert '"event": "webhook_too_many_fields"' in caplog.text
    headers = {"Content-Type": FORM, "X-Twilio-Signature": "forged"}
    assert post("sms_url", b"&" * MAX_WEBHOOK_FIELDS, headers=headers).status_code == 400


def test_the_field_cap_is_inclusive(app: object) -> None:
    fields = [*INBOUND_SMS.items()]
    fields += [(f"F{i}", "x") for i in range(MAX_WEBHOOK_FIELDS - len(fields))]
    assert len(fields) == MAX_WEBHOOK_FIELDS
    assert signed_form("sms_url", fields).status_code == 200


def test_a_full_twilio_mms_webhook_fits_the_caps(app: object) -> None:
    # An inbound MMS with ten media carries about 45 fields, the most Twilio sends.
    fields = [
        *{**INBOUND_SMS, "Body": "y" * 1600}.items(),  # a long SMS: ten segments
        ("SmsSid", INBOUND_SMS["MessageSid"]),
        ("SmsMessageSid", INBOUND_SMS["MessageSid"]),
        ("SmsStatus", "received"),
        ("MessagingServiceSid", "MG" + "2" * 32),
        ("NumSegments", "10"),
        ("NumMedia", "10"),
        ("ApiVersion", "2010-04-01"),
        *[(f"{side}{part}", "X") for side in ("From", "To") for part in
          ("City", "State", "Zip", "Country")],
        *[(f"MediaUrl{i}", f"https://api.twilio.com/Media/ME{i:032}") for i in range(10)],
        *[(f"MediaContentType{i}", "image/jpeg") for i in range(10)],
    ]  # fmt: skip
    assert len(fields) < 50
    assert signed_form("sms_url", fields).status_code == 200
