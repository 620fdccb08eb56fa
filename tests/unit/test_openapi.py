"""docs/openapi.yaml describes the HTTP API the code registers and answers with.

Paths and methods come from the functions' bindings (app.get_functions(), as the worker
indexes them); the statuses each route can answer from its handler's code and the error
family (telephony/errors.py); the make_call body from the command schema's call shape. The
description is valid OpenAPI 3.1, and the queue contract is referenced, never copied.
tests/integration/test_openapi_fuzz.py checks the answers themselves with Schemathesis.
"""

from __future__ import annotations

import ast
import inspect
import json
import textwrap
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from openapi_spec_validator import validate

from telephony.errors import (
    InvalidInputError,
    MediaTypeError,
    RecipientOptedOutError,
    TwilioRejectedError,
    UnavailableError,
)
from telephony.handlers.http import MAX_WEBHOOK_FIELDS, SIGNATURE_HEADER
from telephony.outbound.calls import QUEUE_ONLY_FIELDS
from tests.app_client import binding_dicts, function

ROOT = Path(__file__).resolve().parents[2]
DESCRIPTION = ROOT / "docs" / "openapi.yaml"
COMMAND_SCHEMA = ROOT / "telephony" / "schemas" / "outbound-command.v1.json"
COMMAND_REF = "../telephony/schemas/outbound-command.v1.json"
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
FUNCTION_KEY_SCHEMES = [{"functionKeyQuery": []}, {"functionKeyHeader": []}]
# Answered by the Functions host in front of the app: no or a wrong function key.
HOST_ONLY = {401}

# What a route's service can raise beyond what its handler's code shows: the opt-out check
# before a send (409), and Twilio refusing a call (400 for the caller's input, else 502).
REACHES = {
    "make_call": {
        RecipientOptedOutError().status,
        *(TwilioRejectedError(status, None, "").http_status() for status in (400, 401)),
    },
    "send_message": {RecipientOptedOutError().status},
}


@cache
def description() -> dict[str, Any]:
    loaded = yaml.safe_load(DESCRIPTION.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def command_schema() -> dict[str, Any]:
    loaded = json.loads(COMMAND_SCHEMA.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def http_triggers() -> dict[str, dict[str, Any]]:
    """Each HTTP function's trigger binding (route, methods, authLevel), by function name."""
    triggers = {}
    for name, bindings in binding_dicts().items():
        for binding in bindings:
            if binding["type"] == "httpTrigger":
                triggers[name] = binding
    return triggers


def operation_of(name: str) -> dict[str, Any]:
    trigger = http_triggers()[name]
    method = _value(trigger["methods"][0])
    return description()["paths"][f"/{trigger['route']}"][method]  # type: ignore[no-any-return]


def local(ref: str) -> dict[str, Any]:
    node: Any = description()
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node  # type: ignore[no-any-return]


def followed(node: dict[str, Any]) -> dict[str, Any]:
    while isinstance(node.get("$ref"), str) and node["$ref"].startswith("#/"):
        node = local(node["$ref"])
    return node


def _value(member: object) -> str:
    """An enum member's value (AuthLevel.FUNCTION -> "function"), or the string itself."""
    return str(getattr(member, "value", member)).lower()


def _method(value: object) -> str:
    return _value(value).upper()


# ---------------------------------------------------------------------------- valid, 3.1


def test_the_description_is_valid_openapi_3_1() -> None:
    assert str(description()["openapi"]).startswith("3.1.")
    # base_uri: the relative $refs to the command schema are resolved, and must resolve.
    validate(description(), base_uri=DESCRIPTION.as_uri())


def test_every_reference_to_another_file_resolves() -> None:
    # The validator resolves only some of them (not a request body's), so each is followed.
    external = [
        node["$ref"]
        for node in _nodes(description())
        if isinstance(node, dict) and isinstance(node.get("$ref"), str)
        and not node["$ref"].startswith("#")
    ]  # fmt: skip
    assert COMMAND_REF in external
    for ref in external:
        path, _, pointer = ref.partition("#")
        target: Any = json.loads((DESCRIPTION.parent / path).read_text(encoding="utf-8"))
        for part in filter(None, pointer.split("/")):
            target = target[part]
        assert isinstance(target, dict), ref


# ---------------------------------------------------------------------------- paths, methods


def test_every_http_function_is_described_with_its_route_and_methods_and_nothing_else() -> None:
    registered = {
        f"/{trigger['route']}": {_method(m) for m in trigger["methods"]}
        for trigger in http_triggers().values()
    }
    described = {
        path: {method.upper() for method in item if method in METHODS}
        for path, item in description()["paths"].items()
    }
    assert described == registered
    assert len(registered) == 7  # make_call, send_message, get_message, three webhooks, health


def test_operation_ids_are_the_function_names() -> None:
    for name in http_triggers():
        assert operation_of(name)["operationId"] == name


def test_servers_end_in_the_route_prefix_of_host_json() -> None:
    host = json.loads((ROOT / "host.json").read_text(encoding="utf-8"))
    prefix = host.get("extensions", {}).get("http", {}).get("routePrefix", "api")
    assert description()["servers"]
    for server in description()["servers"]:
        assert server["url"].endswith(f"/{prefix}")


def test_path_parameters_are_the_route_parameters() -> None:
    for name, trigger in http_triggers().items():
        in_route = {part[1:-1] for part in trigger["route"].split("/") if part.startswith("{")}
        parameters = [followed(p) for p in operation_of(name).get("parameters", [])]
        in_path = {p["name"] for p in parameters if p["in"] == "path"}
        assert in_path == in_route, name


# ---------------------------------------------------------------------------- auth


def test_function_key_routes_take_a_code_or_an_x_functions_key() -> None:
    schemes = description()["components"]["securitySchemes"]
    assert schemes["functionKeyQuery"] == {**schemes["functionKeyQuery"], "type": "apiKey",
                                           "in": "query", "name": "code"}  # fmt: skip
    assert schemes["functionKeyHeader"] == {**schemes["functionKeyHeader"], "type": "apiKey",
                                            "in": "header", "name": "x-functions-key"}  # fmt: skip
    assert description()["security"] == FUNCTION_KEY_SCHEMES
    for name, trigger in http_triggers().items():
        security = operation_of(name).get("security", description()["security"])
        if _value(trigger["authLevel"]) == "function":
            assert security == FUNCTION_KEY_SCHEMES, name
        else:
            assert security == [], name


def test_anonymous_routes_are_webhooks_that_require_the_twilio_signature_header() -> None:
    triggers = http_triggers().items()
    anonymous = [name for name, t in triggers if _value(t["authLevel"]) == "anonymous"]
    assert sorted(anonymous) == ["health", "sms_url", "status_callback", "voice_url"]
    for name in sorted(set(anonymous) - {"health"}):  # health takes no input at all
        operation = operation_of(name)
        headers = [followed(p) for p in operation["parameters"] if followed(p)["in"] == "header"]
        assert [(h["name"], h["required"]) for h in headers] == [(SIGNATURE_HEADER, True)]
        content = operation["requestBody"]["content"]
        assert list(content) == ["application/x-www-form-urlencoded"]
        form = followed(content["application/x-www-form-urlencoded"]["schema"])
        assert form["maxProperties"] == MAX_WEBHOOK_FIELDS
        assert form["additionalProperties"] == {"type": "string"}


# ---------------------------------------------------------------------------- statuses


def _statuses_in(code: Callable[..., object]) -> set[int]:
    """HTTP status literals in a function's code (json_error(404, ...), status_code=204)."""
    constants = code.__code__.co_consts  # type: ignore[attr-defined]
    return {c for c in constants if isinstance(c, int) and 200 <= c < 600}


def _default_200(handler: Callable[..., object]) -> bool:
    """Whether the handler answers xml_response(...) or json_response(...) without a status."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(handler)))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id == "xml_response":
                return True
            given = len(node.args) > 1 or any(k.arg == "status" for k in node.keywords)
            if node.func.id == "json_response" and not given:
                return True
    return False


def answers(name: str) -> set[int]:
    """What function `name` can answer, read from its code and the error family."""
    wrapper = function(name)
    handler = inspect.getclosurevars(wrapper).nonlocals["handler"]
    statuses = _statuses_in(wrapper) | _statuses_in(handler) | REACHES.get(name, set())
    # Both wrappers (answers_errors, signed_webhook) answer the error family; any route
    # may find a setting, a secret or Storage unavailable.
    assert wrapper.__code__.co_qualname.split(".")[0] in ("answers_errors", "signed_webhook")
    statuses.add(UnavailableError.status)
    if "read_json" in handler.__code__.co_names:  # a JSON body: invalid, or not JSON at all
        statuses |= {InvalidInputError.status, MediaTypeError.status}
    if _default_200(handler):
        statuses.add(200)
    return statuses


def documented(name: str) -> set[int]:
    return {int(code) for code in operation_of(name)["responses"]}


@pytest.mark.parametrize("name", ["make_call", "send_message", "get_message"])
def test_json_routes_document_what_they_can_answer(name: str) -> None:
    assert answers(name) <= documented(name)
    assert documented(name) - answers(name) <= HOST_ONLY


@pytest.mark.parametrize("name", ["voice_url", "sms_url", "status_callback"])
def test_webhooks_document_what_they_can_answer(name: str) -> None:
    assert {400, 403, 413, 415, 503} <= answers(name)  # the wrapper's early refusals
    assert answers(name) == documented(name)


def test_the_derivation_reads_the_handlers() -> None:
    # Guards the checks above against passing on an empty derivation.
    assert answers("make_call") == {201, 400, 409, 415, 502, 503}
    assert answers("send_message") == {200, 202, 400, 409, 415, 503}
    assert answers("get_message") == {200, 404, 503}
    assert answers("status_callback") == {204, 400, 403, 413, 415, 503}
    assert answers("voice_url") == answers("sms_url") == {200, 400, 403, 413, 415, 503}


def test_json_routes_answer_errors_with_the_error_schema() -> None:
    for name in ("make_call", "send_message", "get_message"):
        for code, response in operation_of(name)["responses"].items():
            response = followed(response)
            if int(code) >= 400 and int(code) not in HOST_ONLY:
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, (name, code)


def test_webhook_refusals_are_plain_text_and_503_is_the_error_schema() -> None:
    for name in ("voice_url", "sms_url", "status_callback"):
        responses = {int(c): followed(r) for c, r in operation_of(name)["responses"].items()}
        for code in (400, 403, 413, 415):
            assert list(responses[code]["content"]) == ["text/plain"], (name, code)
        assert responses[503]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Error"
        }
    assert "content" not in followed(operation_of("status_callback")["responses"]["204"])
    for name in ("voice_url", "sms_url"):
        assert list(followed(operation_of(name)["responses"]["200"])["content"]) == [
            "application/xml"
        ]


def test_health_documents_its_two_answers_and_takes_nothing() -> None:
    operation = operation_of("health")
    assert _statuses_in(function("health")) == documented("health") == {200, 503}
    assert "parameters" not in operation and "requestBody" not in operation
    statuses = set()
    for code, response in operation["responses"].items():
        content = followed(response)["content"]["application/json"]
        schema = followed(content["schema"])
        assert schema["required"] == ["status"] and schema["additionalProperties"] is False
        statuses.add((int(code), content["example"]["status"]))
    assert statuses == {(200, "ok"), (503, "unavailable")}
    assert set(schema["properties"]["status"]["enum"]) == {"ok", "unavailable"}


def test_the_error_schema_is_what_json_error_writes() -> None:
    error = description()["components"]["schemas"]["Error"]
    assert error["required"] == ["error", "field"]
    assert error["additionalProperties"] is False
    extras = set(TwilioRejectedError(401, 20003, "").details())
    assert set(error["properties"]) == {"error", "field", *extras}


# ---------------------------------------------------------------------------- bodies


def _nodes(node: object) -> Iterator[object]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from _nodes(value)
    elif isinstance(node, list):
        for value in node:
            yield from _nodes(value)


def test_send_message_references_the_command_schema_and_copies_none_of_it() -> None:
    content = operation_of("send_message")["requestBody"]["content"]["application/json"]
    assert content["schema"] == {"$ref": COMMAND_REF}
    assert (DESCRIPTION.parent / COMMAND_REF).resolve() == COMMAND_SCHEMA
    schema = command_schema()
    copies = [schema, schema["oneOf"], *schema["$defs"].values()]
    assert not [node for node in _nodes(description()) if node in copies]
    assert "media_urls" not in DESCRIPTION.read_text(encoding="utf-8")


def test_make_call_body_is_the_call_shape_without_the_queue_fields() -> None:
    body = operation_of("make_call")["requestBody"]["content"]["application/json"]["schema"]
    make_call = followed(body)
    call = command_schema()["$defs"]["call"]
    assert set(make_call["properties"]) == set(call["properties"]) - set(QUEUE_ONLY_FIELDS)
    assert make_call["required"] == [f for f in call["required"] if f not in QUEUE_ONLY_FIELDS]
    assert make_call["additionalProperties"] is False
    assert make_call["not"] == call["not"]
    for field, rule in make_call["properties"].items():
        expected = call["properties"][field]
        if "$ref" in expected:  # the same definition of the command schema, referenced
            assert rule["$ref"] == COMMAND_REF + expected["$ref"], field
        else:
            assert {k: rule.get(k) for k in expected} == expected, field
