"""Schemathesis against the app under the development host: no 5xx, every answer described.

GIVEN function_app served by `python -m devhost` against Azurite and the Twilio mock, and
the HTTP API's description docs/openapi.yaml, WHEN Schemathesis sends each operation its
coverage cases (examples, boundaries, missing and wrong-typed values, other content types)
and then generated valid and invalid requests, THEN no answer is a 5xx (nothing is down
here, so not even a 503), and every answer's status code, content type and body conform to
the description.

Webhook requests are signed as Twilio signs them (TwilioSigner: twilio's RequestValidator
over the URL the app checks, PUBLIC_BASE_URL + path + query, and the form as sent), so the
handlers behind the signature are fuzzed, not only the 403 in front of them: each coverage
case is sent unsigned and signed, and each generated one is signed or not by a boolean drawn
with it. Unsigned, they carry the generated header (or none) and must get 403.

The run is bounded (MAX_EXAMPLES generated requests per operation, a request timeout) and
deterministic (coverage cases are a fixed list; Hypothesis is derandomized, without an
example database), and stays on loopback. Each operation prints one line: its requests by
phase, failures and statuses.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
import schemathesis
from azure.storage.queue import QueueClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.errors import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from twilio.request_validator import RequestValidator

from localpeers.azurite import Azurite
from localpeers.twilio_mock import TwilioMock
from tests.app_client import TEST_ACCOUNT_SID, TEST_AUTH_TOKEN

ROOT = Path(__file__).resolve().parents[2]
DESCRIPTION = ROOT / "docs" / "openapi.yaml"
# The public address the app checks signatures against; it is never connected to.
PUBLIC_BASE_URL = "https://fuzz.example.net"
# Generated requests per operation, after the coverage phase; raise it for a deeper run
# (OPENAPI_FUZZ_EXAMPLES=1000), make test keeps the default.
MAX_EXAMPLES = int(os.environ.get("OPENAPI_FUZZ_EXAMPLES", "60"))
REQUEST_TIMEOUT = 15
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
OPERATIONS = [
    "POST /make_call",
    "POST /messages",
    "GET /messages/{id}",
    "POST /voice_url",
    "POST /sms_url",
    "POST /status_callback",
    "GET /health",
]
MODES = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
FORM = "application/x-www-form-urlencoded"
WEBHOOKS = {"/voice_url", "/sms_url", "/status_callback"}
_LISTENING = re.compile(r"listening on (http://\S+)")


class FuzzedApp:
    """function_app under the development host, with queue and tables of its own."""

    def __init__(self, workdir: Path, azurite: Azurite, twilio: TwilioMock) -> None:
        suffix = uuid.uuid4().hex[:10]
        values = {
            "AzureWebJobsStorage": azurite.connection_string,
            "TWILIO_ACCOUNT_SID": TEST_ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": TEST_AUTH_TOKEN,
            "TWILIO_PHONE_NUMBER": "+15017122661",
            "TWILIO_API_BASE_URL": twilio.base_url,
            "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
            # The shipped rules: replies, forwards through the queue, opt-outs in Storage.
            "SMS_RULES_FILE": "flows/sms-rules.yaml",
            "OUTBOUND_QUEUE_NAME": f"fuzz-{suffix}",
            "RECONCILE_SCHEDULE": "0 */5 * * * *",
            "DELIVERIES_TABLE_NAME": f"fuzzdeliveries{suffix}",
            "OPTOUTS_TABLE_NAME": f"fuzzoptouts{suffix}",
        }
        # The queue is provisioned with the app (infra/), not created by it.
        QueueClient.from_connection_string(
            azurite.connection_string, values["OUTBOUND_QUEUE_NAME"]
        ).create_queue()
        self.settings = workdir / "local.settings.json"
        self.settings.write_text(json.dumps({"Values": values}))
        self.output: list[str] = []
        self.url = ""
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> FuzzedApp:
        env = {k: v for k, v in os.environ.items() if k != "AzureWebJobsStorage"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "devhost", "--settings", str(self.settings),
             "--host-json", str(ROOT / "host.json"), "--port", "0"],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )  # fmt: skip
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            found = _LISTENING.search(line)
            if found:
                self.url = found[1]
                threading.Thread(target=self._drain, daemon=True).start()
                return self
        raise AssertionError("the development host did not start:\n" + "".join(self.output))

    def _drain(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@pytest.fixture(scope="module")
def fuzzed_app(
    tmp_path_factory: pytest.TempPathFactory, azurite: Azurite, twilio_mock_session: TwilioMock
) -> Iterator[FuzzedApp]:
    app = FuzzedApp(tmp_path_factory.mktemp("openapi-fuzz"), azurite, twilio_mock_session)
    app.start()
    yield app
    app.stop()


@pytest.fixture(scope="module")
def api_schema() -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_path(str(DESCRIPTION))


class TwilioSigner(requests.auth.AuthBase):
    """Signs a prepared request as Twilio would, for the public URL the app checks.

    A form is signed with its fields; any other body (Schemathesis's coverage phase sends
    the form as text/plain or multipart too) through its SHA-256 in the `bodySHA256` query
    parameter, as Twilio signs JSON bodies, so that the app's 415 is reached.
    """

    def __init__(self, token: str = TEST_AUTH_TOKEN) -> None:
        self.validator = RequestValidator(token)

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body or b""
        raw = body if isinstance(body, bytes) else body.encode("utf-8")
        params = _Fields()
        media_type = str(request.headers.get("Content-Type", "")).split(";")[0].strip().lower()
        if media_type == FORM:
            for name, value in parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True):
                params.setdefault(name, []).append(value)
        else:
            request.prepare_url(request.url, {"bodySHA256": hashlib.sha256(raw).hexdigest()})
        parts = urlsplit(request.url or "")
        url = f"{PUBLIC_BASE_URL}{parts.path}" + (f"?{parts.query}" if parts.query else "")
        request.headers["X-Twilio-Signature"] = self.validator.compute_signature(url, params)
        return request


class _Fields(dict[str, list[str]]):
    """Repeated form fields, as RequestValidator reads them (getlist)."""

    def getlist(self, name: str) -> list[str]:
        return self[name]


@dataclass
class Probe:
    """Sends cases to the app, checks each answer, and counts what was sent and got back."""

    base_url: str
    session: requests.Session = field(default_factory=requests.Session)
    signer: TwilioSigner = field(default_factory=TwilioSigner)
    requests: Counter[str] = field(default_factory=Counter)  # by phase
    signed: int = 0
    signed_refused: int = 0  # signed, and still 403: the signing would be wrong
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    def send(self, case: Case, phase: str, sign: bool = False) -> None:
        response = case.call(
            base_url=self.base_url, session=self.session, timeout=REQUEST_TIMEOUT,
            auth=self.signer if sign else None,
        )  # fmt: skip
        self.requests[phase] += 1
        self.signed += sign
        self.signed_refused += sign and response.status_code == 403
        self.statuses[response.status_code] += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as exc:
            self.failures.append(f"{phase}{', signed' if sign else ''}: {exc.message}")

    def summary(self, label: str, seconds: float) -> str:
        statuses = ", ".join(f"{code}: {n}" for code, n in sorted(self.statuses.items()))
        phases = " + ".join(f"{n} {phase}" for phase, n in self.requests.items())
        signed = f" ({self.signed} signed)" if self.signed else ""
        return (
            f"schemathesis {label}: {phases} requests{signed}, "
            f"{len(self.failures)} failures; statuses {statuses}; {seconds:.1f} s"
        )


def coverage_cases(schema: schemathesis.BaseSchema, operation: APIOperation) -> list[Case]:
    """Schemathesis's coverage phase: examples, boundaries, missing and wrong-typed values.

    Its cases with other HTTP methods are left out: they test the host's 405, not the app.
    """
    config = schema.config.generation_for(operation=operation, phase="coverage")
    cases = schema.iter_coverage_cases(operation, generation_modes=MODES, generation_config=config)
    return [case for case in cases if case.method.upper() == operation.method.upper()]


def test_every_described_operation_is_fuzzed(api_schema: schemathesis.BaseSchema) -> None:
    described = [result.ok().label for result in api_schema.get_all_operations()]
    assert sorted(described) == sorted(OPERATIONS)


@pytest.mark.parametrize("label", OPERATIONS)
def test_operation_answers_as_described(
    label: str,
    api_schema: schemathesis.BaseSchema,
    fuzzed_app: FuzzedApp,
    capsys: pytest.CaptureFixture[str],
) -> None:
    method, path = label.split(" ", 1)
    operation = api_schema[path][method]
    webhook = path in WEBHOOKS
    probe = Probe(f"{fuzzed_app.url}/api")
    started = time.monotonic()

    # Deterministic: each coverage case once, and each webhook case unsigned and signed.
    for case in coverage_cases(api_schema, operation):
        for sign in (False, True) if webhook else (False,):
            probe.send(case, "coverage", sign)

    # Generated: valid and invalid data; whether to sign is drawn with the case.
    strategy = st.one_of(*(operation.as_strategy(generation_mode=mode) for mode in MODES))

    @given(case=strategy, sign=st.booleans() if webhook else st.just(False))
    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    def fuzz(case: Case, sign: bool) -> None:
        probe.send(case, "fuzzing", sign)

    fuzz()
    with capsys.disabled():
        print("\n" + probe.summary(label, time.monotonic() - started))
    errors = [line for line in fuzzed_app.output if "ERROR" in line or "Traceback" in line]
    assert not probe.failures, "\n\n".join([*probe.failures[:5], "host errors:", *errors[-10:]])
    if webhook:  # both sides of the signature were fuzzed
        assert probe.signed > 0 and probe.statuses[403] > 0
        assert probe.signed_refused == 0, "a request signed as Twilio signs was refused"
