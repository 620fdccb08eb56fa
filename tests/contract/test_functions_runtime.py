"""The app as Azure loads it: the deployment package, indexed and invoked by the pinned
azure-functions-runtime in a fresh Python 3.13 interpreter.

What is real and what stands in is said in tests/contract/worker.py: the runtime library,
its indexing, binding validation, converters and thread pool, azure.functions and the
app are real; the host's gRPC channel and the proxy worker are a few lines that hand the
runtime the host's messages, built from tests/contract/host_protocol.proto. The queued
command runs against the local peers (Azurite, the Twilio mock).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from azure.data.tables import TableServiceClient
from twilio.request_validator import RequestValidator

from localpeers.azurite import Azurite
from localpeers.twilio_mock import TwilioMock
from tests.app_client import TEST_ACCOUNT_SID, TEST_AUTH_TOKEN
from tests.contract.package import ROOT, build_package
from tests.contract.protocol import compile_protocol

WORKER = ROOT / "tests" / "contract" / "worker.py"
PUBLIC = "https://calls.contoso.com"
FUNCTIONS = {
    "make_call", "voice_url", "sms_url", "status_callback", "send_message", "get_message",
    "outbound", "reconcile", "health",
}  # fmt: skip
INBOUND = {"MessageSid": "SM" + "7" * 32, "From": "+15558675310", "To": "+15017122661"}

Run = Callable[..., dict[str, Any]]


@pytest.fixture(scope="module")
def protocol(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_protocol(tmp_path_factory.mktemp("protocol"))


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_package(tmp_path_factory.mktemp("package"))


def run_worker(package: Path, protocol: Path, env: Mapping[str, str], **script: Any) -> Any:
    """The worker stand-in in a fresh interpreter: only `env`, the package as its folder."""
    result = subprocess.run(
        [sys.executable, str(WORKER), str(package), str(protocol)],
        input=json.dumps(script), capture_output=True, text=True, cwd=package, timeout=120,
        env={"PATH": os.environ.get("PATH", ""), **env}, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def indexed(package: Path, protocol: Path) -> dict[str, Any]:
    """Worker init and indexing with no settings at all, as a new Function App starts."""
    return run_worker(package, protocol, {})


def test_the_runtime_indexes_every_function_with_no_settings(indexed: dict[str, Any]) -> None:
    assert indexed["init"]["result"]["status"] == "Success", indexed["init"]
    functions = indexed["metadata"]["function_metadata_results"]
    assert {f["name"] for f in functions} == FUNCTIONS
    assert all(load["result"]["status"] == "Success" for load in indexed["loads"])
    assert indexed["init"]["worker_metadata"]["runtime_version"] == "3.13"


def test_every_function_binds_its_parameter_by_name(indexed: dict[str, Any]) -> None:
    for function in indexed["metadata"]["function_metadata_results"]:
        bindings = [json.loads(raw) for raw in function["raw_bindings"]]
        [trigger] = [b for b in bindings if b["type"].endswith("Trigger")]
        assert trigger["name"] in function["bindings"], function["name"]


def test_a_parameter_that_no_binding_names_fails_indexing(tmp_path: Path, protocol: Path) -> None:
    # GIVEN the package with one more function whose parameter has no binding
    broken = build_package(tmp_path / "package")
    app = broken / "function_app.py"
    app.write_text(
        app.read_text()
        + '\n\n@app.route(route="extra")\ndef extra(request: func.HttpRequest, other: str)'
        + " -> func.HttpResponse:\n    return func.HttpResponse()\n"
    )
    # THEN the runtime's validation refuses the app, naming the function
    init = run_worker(broken, protocol, {})["init"]
    assert init["result"]["status"] == "Failure"
    assert "extra" in init["result"]["exception"]["message"]


@pytest.fixture(scope="module")
def settings(azurite: Azurite, twilio_mock_session: TwilioMock) -> dict[str, str]:
    suffix = uuid.uuid4().hex[:10]
    return {
        "TWILIO_ACCOUNT_SID": TEST_ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": TEST_AUTH_TOKEN,
        "TWILIO_PHONE_NUMBER": "+15017122661",
        "PUBLIC_BASE_URL": PUBLIC,
        "TWILIO_API_BASE_URL": twilio_mock_session.base_url,
        "AzureWebJobsStorage": azurite.connection_string,
        "OUTBOUND_QUEUE_NAME": f"outbound-{suffix}",
        "DELIVERIES_TABLE_NAME": f"deliveries{suffix}",
    }


def webhook(function: str, params: Mapping[str, str], signed: bool = True) -> dict[str, Any]:
    url = f"{PUBLIC}/api/{function}"
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if signed:
        headers["X-Twilio-Signature"] = RequestValidator(TEST_AUTH_TOKEN).compute_signature(
            url, dict(params)
        )
    body = base64.b64encode(urlencode(params).encode()).decode()
    return {"function": function, "http": {"method": "POST", "url": url, "headers": headers,
                                           "body": body}}  # fmt: skip


def answer(invocation: dict[str, Any]) -> tuple[int, str]:
    """The HTTP status and body an invocation returned."""
    assert invocation["result"]["status"] == "Success", invocation["result"]
    http = invocation["return_value"]["http"]
    return int(http["status_code"]), base64.b64decode(http["body"]["bytes"]).decode()


@pytest.fixture(scope="module")
def invoked(
    package: Path, protocol: Path, settings: dict[str, str], twilio_mock_session: TwilioMock
) -> list[dict[str, Any]]:
    """One worker: the webhooks, make_call, two queued commands, a reconcile run and a
    health check, in that order."""
    typo = base64.b64encode(b'{"to": "+15558675310", "sya": "hi"}').decode()
    bad_call = {"method": "POST", "url": f"{PUBLIC}/api/make_call",
                "headers": {"Content-Type": "application/json"}, "body": typo}  # fmt: skip
    command = {"kind": "sms", "to": "+15558675310", "body": "Your order shipped",
               "idempotency_key": "contract-1"}  # fmt: skip
    script = [
        webhook("sms_url", {**INBOUND, "Body": "hello"}),
        webhook("voice_url", {"CallSid": "CA" + "7" * 32, "From": "+15558675310"}),
        webhook("sms_url", {**INBOUND, "Body": "hello"}, signed=False),
        {"function": "make_call", "http": bad_call},
        {"function": "outbound", "queue": {"id": "m-1", "body": json.dumps(command)}},
        {"function": "outbound", "queue": {"id": "m-2", "body": "not json"}},
        {"function": "reconcile", "timer": {"past_due": False}},
        {"function": "health", "http": {"method": "GET", "url": f"{PUBLIC}/api/health"}},
    ]
    before = len(twilio_mock_session.find_requests("/Messages.json", method="POST"))
    invocations = list(run_worker(package, protocol, settings, invocations=script)["invocations"])
    sent = twilio_mock_session.find_requests("/Messages.json", method="POST")[before:]
    return [*invocations, {"sent": [request.param("Body") for request in sent]}]


def test_a_signed_sms_webhook_gets_its_twiml_reply(invoked: list[dict[str, Any]]) -> None:
    status, body = answer(invoked[0])
    assert status == 200
    assert "<Message>Hey, thanks for the ping! Twilio and Azure rock!</Message>" in body
    headers = {k.lower(): v for k, v in invoked[0]["return_value"]["http"]["headers"].items()}
    assert headers["content-type"].startswith("application/xml")


def test_a_signed_voice_webhook_gets_the_greeting(invoked: list[dict[str, Any]]) -> None:
    status, body = answer(invoked[1])
    assert (status, "<Say>Hello Monkey!</Say>" in body) == (200, True)


def test_an_unsigned_webhook_is_forbidden(invoked: list[dict[str, Any]]) -> None:
    assert answer(invoked[2]) == (403, "Forbidden")


def test_a_bad_make_call_body_is_a_400_naming_the_field(invoked: list[dict[str, Any]]) -> None:
    status, body = answer(invoked[3])
    assert (status, json.loads(body)["field"]) == (400, "sya")


def test_a_queued_command_is_sent_and_recorded(
    invoked: list[dict[str, Any]], settings: dict[str, str]
) -> None:
    assert invoked[4]["result"]["status"] == "Success", invoked[4]["result"]
    assert invoked[-1]["sent"] == ["Your order shipped"]
    tables = TableServiceClient.from_connection_string(settings["AzureWebJobsStorage"])
    table = tables.get_table_client(settings["DELIVERIES_TABLE_NAME"])
    statuses = {e["Key"]: e["Status"] for e in table.list_entities() if "Status" in e}
    assert statuses["contract-1"] == "queued"
    assert statuses["m-2"] == "rejected"  # settled, not retried: the invocation succeeded
    assert invoked[5]["result"]["status"] == "Success"


def test_the_reconcile_timer_runs_through_the_runtime(invoked: list[dict[str, Any]]) -> None:
    # the timer binding's TimerInfo is converted by the runtime into func.TimerRequest
    assert invoked[6]["result"]["status"] == "Success", invoked[6]["result"]


def test_health_answers_ok_through_the_runtime(invoked: list[dict[str, Any]]) -> None:
    # the settings, the auth token and Azurite's deliveries table are all there
    assert answer(invoked[7]) == (200, '{"status": "ok"}')


def test_a_file_the_package_leaves_out_fails_the_invocation_that_needs_it(
    tmp_path: Path, protocol: Path, settings: dict[str, str]
) -> None:
    # GIVEN a package whose .funcignore also leaves out the published schemas
    short = build_package(tmp_path / "package", extra_ignores=["telephony/schemas/*.json"])
    bad_call = {"method": "POST", "url": f"{PUBLIC}/api/make_call",
                "headers": {"Content-Type": "application/json"},
                "body": base64.b64encode(b'{"to": "+15558675310"}').decode()}  # fmt: skip
    invocation = run_worker(
        short, protocol, settings, invocations=[{"function": "make_call", "http": bad_call}]
    )["invocations"][0]
    # THEN make_call, which validates against a schema, cannot answer
    assert invocation["result"]["status"] == "Failure"
