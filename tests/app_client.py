"""Calls the app's functions in-process, the way the Functions worker does.

Requests are real azure.functions.HttpRequest objects; webhook requests are signed with
twilio's own RequestValidator.compute_signature, as Twilio would sign them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from urllib.parse import parse_qsl, urlencode, urlsplit

import azure.functions as func
from twilio.request_validator import RequestValidator

import function_app
from telephony.adapters.twilio_rest import Credentials, TwilioGateway

TEST_ACCOUNT_SID = "AC" + "a" * 32
TEST_AUTH_TOKEN = "test-auth-token-0123456789abcdef"
TEST_SECONDARY_TOKEN = "previous-auth-token-fedcba9876543210"
APP_URL = "https://calls.example.net"


# The app indexes its functions once, as the worker does; a second index would fail.
_FUNCTIONS = {fn.get_function_name(): fn for fn in function_app.app.get_functions()}


def function(name: str):  # type: ignore[no-untyped-def]
    """The user function registered under `name`."""
    return _FUNCTIONS[name].get_user_function()


def binding_dicts() -> dict[str, list[dict[str, object]]]:
    """Each registered function's bindings, as the worker indexes them: name -> bindings."""
    return {name: fn.get_bindings_dict()["bindings"] for name, fn in _FUNCTIONS.items()}


def post_json(
    name: str,
    body: object,
    *,
    url: str | None = None,
    raw: bytes | None = None,
    content_type: str = "application/json",
) -> func.HttpResponse:
    data = raw if raw is not None else json.dumps(body).encode()
    req = func.HttpRequest(
        method="POST",
        url=url or f"{APP_URL}/api/{name}",
        headers={"Content-Type": content_type},
        body=data,
    )
    return function(name)(req)  # type: ignore[no-any-return]


def signed_post(
    name: str,
    params: Mapping[str, str] | Sequence[tuple[str, str]],
    *,
    token: str = TEST_AUTH_TOKEN,
    url: str | None = None,
    signed_url: str | None = None,
    signature: str | None = None,
    tamper: Mapping[str, str] | None = None,
) -> func.HttpResponse:
    """POST form `params` to function `name`, signed for `signed_url` (default: `url`)."""
    url = url or f"{APP_URL}/api/{name}"
    pairs = list(params.items()) if isinstance(params, Mapping) else list(params)
    if signature is None:
        signature = RequestValidator(token).compute_signature(signed_url or url, _multi(pairs))
    if tamper:
        pairs = [(k, tamper.get(k, v)) for k, v in pairs]
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if signature:
        headers["X-Twilio-Signature"] = signature
    # The worker fills params from the query string; HttpRequest does not parse the URL.
    query = dict(parse_qsl(urlsplit(url).query))
    req = func.HttpRequest(
        method="POST", url=url, headers=headers, params=query, body=urlencode(pairs).encode()
    )
    return function(name)(req)  # type: ignore[no-any-return]


class _Multi(dict[str, list[str]]):
    def getlist(self, name: str) -> list[str]:
        return self[name]


def _multi(pairs: Sequence[tuple[str, str]]) -> _Multi:
    values = _Multi()
    for key, value in pairs:
        values.setdefault(key, []).append(value)
    return values


def body_json(resp: func.HttpResponse) -> dict[str, object]:
    return json.loads(resp.get_body())  # type: ignore[no-any-return]


def impatient_gateway(api_base_url: str, read_timeout: float = 0.3) -> TwilioGateway:
    """The real Twilio adapter with a short read timeout, for answers that never come."""
    credentials = Credentials(TEST_ACCOUNT_SID, TEST_ACCOUNT_SID, TEST_AUTH_TOKEN)
    return TwilioGateway(lambda: credentials, api_base_url, read_timeout=read_timeout)
