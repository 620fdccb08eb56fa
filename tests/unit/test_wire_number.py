"""Wiring the Twilio number on deploy: the plan (pure), the command with Twilio replaced by
a number kept in memory (so a second run sees what the first one set), and azd's hook.

tests/integration/test_wire_number.py runs the same command against Prism with Twilio's
own descriptions of the 2010 and Messaging v1 APIs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from telephony.errors import SettingsError
from telephony.wire_number.__main__ import SKIPPED, Wiring, endpoints, main, opted_in, read_wiring
from telephony.wire_number.plan import (
    Endpoints,
    NumberState,
    ServiceState,
    describe,
    plan_wiring,
)

BASE = "https://func-twilio.azurewebsites.net"
ENDPOINTS = Endpoints(f"{BASE}/api/voice_url", f"{BASE}/api/sms_url", f"{BASE}/api/status_callback")
NUMBER = "+15017122661"
NUMBER_SID = "PN" + "1" * 32
SERVICE_SID = "MG" + "2" * 32
TOKEN = "deploying-users-token-0123456789"
ENV = {
    "TWILIO_WIRE_NUMBER": "true",
    "TWILIO_ACCOUNT_SID": "AC" + "a" * 32,
    "TWILIO_AUTH_TOKEN": TOKEN,
    "TWILIO_PHONE_NUMBER": NUMBER,
    "PUBLIC_BASE_URL": BASE,
}
WIRED_NUMBER = {
    "voice_url": ENDPOINTS.voice_url,
    "voice_method": "POST",
    "sms_url": ENDPOINTS.sms_url,
    "sms_method": "POST",
    "status_callback": ENDPOINTS.status_callback,
    "status_callback_method": "POST",
}
WIRED_SERVICE = {
    "inbound_request_url": ENDPOINTS.sms_url,
    "inbound_method": "POST",
    "status_callback": ENDPOINTS.status_callback,
}


def number(**webhooks: str) -> NumberState:
    return NumberState(NUMBER_SID, NUMBER, webhooks)


def service(use_number_webhook: bool = False, **webhooks: str) -> ServiceState:
    return ServiceState(SERVICE_SID, webhooks, use_inbound_webhook_on_number=use_number_webhook)


class MemoryNumbers:
    """Twilio's numbers and services as a dict: an update is what the next read sees."""

    def __init__(self, number: NumberState, service: ServiceState | None = None) -> None:
        self.number = number
        self.service = service
        self.updates: list[tuple[str, str, dict[str, str]]] = []

    def find_number(self, phone_number: str) -> NumberState | None:
        return self.number if phone_number == self.number.phone_number else None

    def fetch_service(self, sid: str) -> ServiceState | None:
        return self.service if self.service is not None and self.service.sid == sid else None

    def update_number(self, sid: str, fields: Mapping[str, str]) -> None:
        self.updates.append(("number", sid, dict(fields)))
        self.number = replace(self.number, webhooks={**self.number.webhooks, **fields})

    def update_service(self, sid: str, fields: Mapping[str, str]) -> None:
        assert self.service is not None
        self.updates.append(("service", sid, dict(fields)))
        self.service = replace(self.service, webhooks={**self.service.webhooks, **fields})


def run(twilio: MemoryNumbers, *argv: str, **env: str) -> tuple[int, list[Wiring]]:
    connected: list[Wiring] = []

    def connect(wiring: Wiring) -> MemoryNumbers:
        connected.append(wiring)
        return twilio

    return main(list(argv), {**ENV, **env}, connect), connected


# the plan --------------------------------------------------------------------------------


def test_a_bare_number_gets_every_webhook_with_post() -> None:
    plan = plan_wiring(number(), None, ENDPOINTS)

    assert dict(plan.number_update) == WIRED_NUMBER
    assert plan.service_update == {}
    assert [(c.field, c.before) for c in plan.changes] == [
        ("voice_url", ""),
        ("voice_method", ""),
        ("sms_url", ""),
        ("sms_method", ""),
        ("status_callback", ""),
        ("status_callback_method", ""),
    ]
    assert not plan.wired and plan.problems == ()


def test_a_wired_number_needs_nothing_and_methods_match_in_any_case() -> None:
    plan = plan_wiring(number(**{**WIRED_NUMBER, "voice_method": "post"}), None, ENDPOINTS)

    assert plan.wired
    assert plan.number_update == {} and plan.changes == ()


def test_one_changed_url_sends_the_whole_set_so_one_request_converges() -> None:
    plan = plan_wiring(
        number(**{**WIRED_NUMBER, "voice_url": "https://old.example/voice"}), None, ENDPOINTS
    )

    assert [(c.field, c.before, c.after) for c in plan.changes] == [
        ("voice_url", "https://old.example/voice", ENDPOINTS.voice_url)
    ]
    assert dict(plan.number_update) == WIRED_NUMBER


def test_urls_compare_exactly_because_twilio_signs_the_exact_url() -> None:
    plan = plan_wiring(
        number(**{**WIRED_NUMBER, "sms_url": ENDPOINTS.sms_url + "/"}), None, ENDPOINTS
    )

    assert [c.field for c in plan.changes] == ["sms_url"]


def test_with_a_messaging_service_its_inbound_url_takes_the_sms_webhook() -> None:
    plan = plan_wiring(number(), service(), ENDPOINTS)

    assert dict(plan.service_update) == WIRED_SERVICE
    # Voice and the call status callback stay on the number; its SMS URL would be ignored.
    assert set(plan.number_update) == {
        "voice_url",
        "voice_method",
        "status_callback",
        "status_callback_method",
    }


def test_a_service_that_uses_each_numbers_webhook_gets_the_sms_url_on_the_number_too() -> None:
    plan = plan_wiring(number(), service(use_number_webhook=True), ENDPOINTS)

    assert dict(plan.number_update) == WIRED_NUMBER
    assert dict(plan.service_update) == WIRED_SERVICE


def test_a_wired_service_is_left_alone_while_the_number_is_updated() -> None:
    plan = plan_wiring(number(), service(**WIRED_SERVICE), ENDPOINTS)

    assert plan.service_update == {}
    assert {c.target for c in plan.changes} == {"number"}


@pytest.mark.parametrize(
    ("routing", "problem"),
    [
        ({"trunk_sid": "TK" + "3" * 32}, "calls to the number go to SIP trunk TK"),
        ({"voice_application_sid": "AP" + "4" * 32}, "calls to the number go to TwiML App"),
        ({"sms_application_sid": "AP" + "5" * 32}, "messages to the number go to TwiML App"),
    ],
)
def test_a_trunk_or_twiml_app_that_twilio_uses_instead_of_urls_is_a_problem(
    routing: dict[str, str], problem: str
) -> None:
    # Even when the URLs are already right: Twilio would not call them.
    plan = plan_wiring(replace(number(**WIRED_NUMBER), **routing), None, ENDPOINTS)

    assert plan.wired
    assert len(plan.problems) == 1 and problem in plan.problems[0]


def test_an_sms_app_on_a_number_whose_messages_go_through_a_service_is_no_problem() -> None:
    routed = replace(number(), sms_application_sid="AP" + "5" * 32)

    assert plan_wiring(routed, service(), ENDPOINTS).problems == ()


def test_describe_prints_before_and_after_under_each_resource() -> None:
    plan = plan_wiring(
        number(**{**WIRED_NUMBER, "voice_url": ""}), service(inbound_method="GET"), ENDPOINTS
    )

    assert describe(plan, "+1********61") == [
        f"number +1********61 ({NUMBER_SID}):",
        f"  voice_url: (none) -> {ENDPOINTS.voice_url}",
        f"Messaging Service {SERVICE_SID}:",
        f"  inbound_request_url: (none) -> {ENDPOINTS.sms_url}",
        "  inbound_method: GET -> POST",
        f"  status_callback: (none) -> {ENDPOINTS.status_callback}",
    ]


# settings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"), [("", False), ("false", False), ("true", True), (" TRUE ", True)]
)
def test_only_true_opts_in(value: str, expected: bool) -> None:
    assert opted_in({"TWILIO_WIRE_NUMBER": value}) is expected


def test_a_typo_in_the_opt_in_is_an_error_not_a_silent_skip() -> None:
    with pytest.raises(SettingsError, match="TWILIO_WIRE_NUMBER must be true or false"):
        opted_in({"TWILIO_WIRE_NUMBER": "yes"})


def test_the_deployment_outputs_win_over_the_public_base_url() -> None:
    outputs = {
        "VOICE_WEBHOOK_URL": "https://a.example/api/voice_url",
        "SMS_WEBHOOK_URL": "https://a.example/api/sms_url",
        "STATUS_CALLBACK_URL": "https://a.example/api/status_callback",
    }

    assert endpoints(outputs, BASE) == Endpoints(*outputs.values())
    assert endpoints({}, BASE) == ENDPOINTS


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PUBLIC_BASE_URL": ""}, "neither VOICE_WEBHOOK_URL nor PUBLIC_BASE_URL is set"),
        ({"PUBLIC_BASE_URL": "http://plain.example"}, "VOICE_WEBHOOK_URL must be an https://"),
        ({"TWILIO_AUTH_TOKEN": ""}, "TWILIO_AUTH_TOKEN (or TWILIO_API_KEY_SID"),
        ({"TWILIO_API_KEY_SID": "SK" + "6" * 32}, "TWILIO_API_KEY_SECRET is not"),
        ({"TWILIO_ACCOUNT_SID": ""}, "TWILIO_ACCOUNT_SID is not set"),
        ({"TWILIO_PHONE_NUMBER": ""}, "TWILIO_PHONE_NUMBER is not set"),
        ({"TWILIO_PHONE_NUMBER": "+1501*"}, "TWILIO_PHONE_NUMBER must be an E.164 number"),
        ({"TWILIO_MESSAGING_SERVICE_SID": "MG123"}, "TWILIO_MESSAGING_SERVICE_SID must be MG"),
    ],
)
def test_a_missing_or_invalid_setting_is_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as raised:
        read_wiring({**ENV, **env})

    assert message in str(raised.value)


def test_an_api_key_wins_over_the_auth_token_and_no_secret_is_in_the_repr() -> None:
    key = {"TWILIO_API_KEY_SID": "SK" + "6" * 32, "TWILIO_API_KEY_SECRET": "key-secret-value"}
    wiring = read_wiring({**ENV, **key})

    assert (wiring.username, wiring.password) == (key["TWILIO_API_KEY_SID"], "key-secret-value")
    assert "key-secret-value" not in repr(wiring)
    assert TOKEN not in repr(read_wiring(ENV))


# the command --------------------------------------------------------------------------------


def test_not_opted_in_it_skips_without_reading_twilio(capsys: pytest.CaptureFixture[str]) -> None:
    twilio = MemoryNumbers(number())

    status, connected = run(twilio, TWILIO_WIRE_NUMBER="")

    assert (status, connected, twilio.updates) == (0, [], [])
    assert capsys.readouterr().out == SKIPPED + "\n"


def test_it_wires_once_and_a_second_run_changes_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    twilio = MemoryNumbers(number())

    assert run(twilio)[0] == 0
    first = capsys.readouterr().out
    assert run(twilio)[0] == 0
    second = capsys.readouterr().out

    assert twilio.updates == [("number", NUMBER_SID, WIRED_NUMBER)]
    assert f"voice_url: (none) -> {ENDPOINTS.voice_url}" in first
    assert "now points at the app" in first
    assert second == (
        f"wire_number: number +1********61 ({NUMBER_SID}) is already wired to the app; "
        "nothing changed\n"
    )


def test_with_a_messaging_service_both_are_wired_once(capsys: pytest.CaptureFixture[str]) -> None:
    twilio = MemoryNumbers(number(), service())

    run(twilio, TWILIO_MESSAGING_SERVICE_SID=SERVICE_SID)
    run(twilio, TWILIO_MESSAGING_SERVICE_SID=SERVICE_SID)

    assert [(target, fields.keys()) for target, _, fields in twilio.updates] == [
        ("number", {"voice_url", "voice_method", "status_callback", "status_callback_method"}),
        ("service", WIRED_SERVICE.keys()),
    ]
    assert "already wired" in capsys.readouterr().out


def test_dry_run_prints_the_change_and_makes_none_even_without_opting_in(
    capsys: pytest.CaptureFixture[str],
) -> None:
    twilio = MemoryNumbers(number(voice_url="https://old.example/voice"))

    status, _ = run(twilio, "--dry-run", TWILIO_WIRE_NUMBER="")

    assert (status, twilio.updates) == (0, [])
    out = capsys.readouterr().out
    assert f"voice_url: https://old.example/voice -> {ENDPOINTS.voice_url}" in out
    assert out.endswith("wire_number: dry run; nothing changed\n")


def test_a_number_the_account_lacks_fails_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    twilio = MemoryNumbers(number())

    status, _ = run(twilio, TWILIO_PHONE_NUMBER="+15005550006")

    assert (status, twilio.updates) == (1, [])
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "TWILIO_PHONE_NUMBER +1********06 is not a number of account AC" in err


def test_a_routed_number_fails_and_is_not_changed(capsys: pytest.CaptureFixture[str]) -> None:
    twilio = MemoryNumbers(replace(number(), voice_application_sid="AP" + "4" * 32))

    status, _ = run(twilio)

    assert (status, twilio.updates) == (1, [])
    assert "instead of a URL" in capsys.readouterr().err


def test_a_missing_setting_exits_2_without_reading_twilio(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, connected = run(MemoryNumbers(number()), TWILIO_AUTH_TOKEN="")

    assert (status, connected) == (2, [])
    assert "TWILIO_AUTH_TOKEN" in capsys.readouterr().err


# azd's hook --------------------------------------------------------------------------------

AZURE_YAML = Path(__file__).resolve().parents[2] / "azure.yaml"


@pytest.mark.parametrize("os_name", ["posix", "windows"])
def test_the_postdeploy_hook_wires_the_number_then_runs_the_smoke_check(os_name: str) -> None:
    hook = yaml.safe_load(AZURE_YAML.read_text())["hooks"]["postdeploy"][os_name]
    script = hook["run"]

    assert hook["continueOnError"] is False
    assert hook["shell"] == {"posix": "sh", "windows": "pwsh"}[os_name]
    assert 0 <= script.index("-m telephony.wire_number") < script.index("-m telephony.smoke")
