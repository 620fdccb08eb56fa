"""The smoke check's steps against a scripted app: what passes, what fails and how it is
said, the exit status, and the arguments (tests/integration/test_health_and_smoke.py runs
the command against the app itself)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable

import pytest

from telephony.adapters.deployed_app import Answer
from telephony.errors import UnavailableError
from telephony.smoke import (
    POLL_SECONDS,
    Step,
    StepFailed,
    Waiting,
    check_health,
    check_sms,
    check_unsigned_webhook,
    parse_arguments,
    run,
    steps_for,
)

OK = Answer(200, '{"status": "ok"}')
UNAVAILABLE = Answer(503, '{"status": "unavailable"}')
TO = "+15558675310"

Reply = Answer | Exception | Callable[[dict[str, object]], Answer]


class ScriptedApp:
    """Answers each (method, path) from a list, the last one repeated; records requests."""

    def __init__(self, **script: list[Reply]) -> None:
        self.script = script
        self.requests: list[tuple[str, str, bool, object]] = []

    def get(self, path: str, *, keyed: bool = False) -> Answer:
        return self._answer("GET", path, keyed, None)

    def post(
        self,
        path: str,
        *,
        json_body: object | None = None,
        form: dict[str, str] | None = None,
        keyed: bool = False,
    ) -> Answer:
        return self._answer("POST", path, keyed, json_body if json_body is not None else form)

    def _answer(self, method: str, path: str, keyed: bool, body: object) -> Answer:
        self.requests.append((method, path, keyed, body))
        name = path.split("/")[0]
        replies = self.script[name]
        reply = replies.pop(0) if len(replies) > 1 else replies[0]
        if isinstance(reply, Exception):
            raise reply
        return reply(body) if callable(reply) else reply  # type: ignore[arg-type]


class Ticks:
    """A clock that sleeping moves."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def waiting(self) -> Waiting:
        return Waiting(clock=lambda: self.now, sleep=self._sleep)

    def _sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def record(status: str, **fields: object) -> Answer:
    body = {"id": "smoke-x", "to": "+1********10", "status": status, **fields}
    return Answer(200, json.dumps(body))


# ---------------------------------------------------------------------------- health


def test_health_passes_on_200_ok() -> None:
    assert check_health(ScriptedApp(health=[OK])) == '200 {"status": "ok"}'


@pytest.mark.parametrize(
    "answer",
    [UNAVAILABLE, Answer(200, '{"status": "degraded"}'), Answer(200, "<html>ok</html>")],
)
def test_health_fails_on_anything_but_200_ok(answer: Answer) -> None:
    with pytest.raises(StepFailed) as failed:
        check_health(ScriptedApp(health=[answer]))
    assert str(failed.value).startswith('expected 200 {"status": "ok"}, got ')
    assert str(answer.status) in str(failed.value)


def test_health_is_asked_again_until_ready_within_passes() -> None:
    # GIVEN an app that refuses connections, then is unavailable, then ok (a cold start)
    app = ScriptedApp(health=[UnavailableError("cannot connect"), UNAVAILABLE, OK])
    ticks = Ticks()
    # WHEN asked with 60 s to get ready, THEN it passes after two pauses
    assert check_health(app, ready_within=60, waiting=ticks.waiting()).startswith("200")
    assert ticks.slept == [POLL_SECONDS, POLL_SECONDS]


def test_health_gives_up_when_ready_within_has_passed_and_says_what_it_last_saw() -> None:
    ticks = Ticks()
    with pytest.raises(StepFailed) as failed:
        check_health(ScriptedApp(health=[UNAVAILABLE]), ready_within=10, waiting=ticks.waiting())
    assert str(failed.value) == (
        'expected 200 {"status": "ok"}, got 503 {"status": "unavailable"}, for 10 s'
    )
    assert ticks.now == pytest.approx(10, abs=POLL_SECONDS)


def test_health_without_ready_within_asks_once() -> None:
    app = ScriptedApp(health=[UNAVAILABLE, OK])
    with pytest.raises(StepFailed):
        check_health(app, waiting=Ticks().waiting())
    assert len(app.requests) == 1


# ---------------------------------------------------------------------------- webhook


def test_an_unsigned_webhook_must_be_refused() -> None:
    app = ScriptedApp(sms_url=[Answer(403, "Forbidden")])
    assert "403" in check_unsigned_webhook(app)
    [(method, path, keyed, form)] = app.requests
    assert (method, path, keyed) == ("POST", "sms_url", False)
    assert isinstance(form, dict) and "Body" in form


def test_an_unsigned_webhook_that_is_answered_fails_the_step() -> None:
    app = ScriptedApp(sms_url=[Answer(200, "<Response><Message>hi</Message></Response>")])
    with pytest.raises(StepFailed, match="expected 403, got 200 <Response>"):
        check_unsigned_webhook(app)


# ---------------------------------------------------------------------------- sms


def queued(body: dict[str, object]) -> Answer:
    return Answer(202, json.dumps({"id": body["idempotency_key"], "status": "pending"}))


def test_an_sms_followed_to_delivered_passes() -> None:
    # GIVEN an app that queues it, then reports queued, sent, delivered
    app = ScriptedApp(
        messages=[queued, record("pending"), record("queued"), record("sent"), record("delivered")]
    )
    ticks = Ticks()
    # WHEN the step runs
    seen = check_sms(app, TO, wait=60, waiting=ticks.waiting())
    # THEN it passes, naming the id and the masked number the API shows
    assert seen.endswith("to +1********10 is delivered")
    post = app.requests[0]
    assert post[:3] == ("POST", "messages", True)  # with the function key
    command = post[3]
    assert isinstance(command, dict)
    assert command["kind"] == "sms" and command["to"] == TO
    assert str(command["idempotency_key"]).startswith("smoke-")
    assert all(r[:1] == ("GET",) and r[2] for r in app.requests[1:])  # reads keyed too
    assert app.requests[1][1] == f"messages/{command['idempotency_key']}"


def test_an_sms_that_ends_failed_fails_the_step_with_twilio_s_code() -> None:
    app = ScriptedApp(messages=[queued, record("failed", error_code=21610, reason=None)])
    with pytest.raises(StepFailed) as failed:
        check_sms(app, TO, wait=60, waiting=Ticks().waiting())
    assert str(failed.value).endswith("ended failed (error_code 21610)")


def test_an_sms_still_sent_when_the_wait_is_over_fails_the_step() -> None:
    ticks = Ticks()
    app = ScriptedApp(messages=[queued, record("sent")])
    with pytest.raises(StepFailed) as failed:
        check_sms(app, TO, wait=10, waiting=ticks.waiting())
    assert str(failed.value).endswith("is still sent after 10 s")
    assert ticks.now == pytest.approx(10, abs=POLL_SECONDS)


def test_a_refused_post_fails_the_step_and_401_hints_at_the_key() -> None:
    app = ScriptedApp(messages=[Answer(401, "")])
    with pytest.raises(StepFailed, match=r"expected 202, got 401 \(give --function-key\)"):
        check_sms(app, TO, wait=10, waiting=Ticks().waiting())


# ---------------------------------------------------------------------------- run


def test_run_prints_one_line_per_step_and_exits_0() -> None:
    out, err = io.StringIO(), io.StringIO()
    steps = [Step("health", lambda: "200"), Step("webhook", lambda: "403")]
    assert run(steps, out, err) == 0
    assert out.getvalue().splitlines() == ["1. health   ok: 200", "2. webhook  ok: 403"]
    assert err.getvalue() == ""


def test_run_stops_at_the_first_failing_step_names_it_and_exits_1() -> None:
    out, err = io.StringIO(), io.StringIO()
    later: list[str] = []

    def fails() -> str:
        raise UnavailableError("GET https://app/api/health: cannot connect (Connection refused)")

    steps = [Step("health", fails), Step("webhook", lambda: later.append("ran") or "403")]
    assert run(steps, out, err) == 1
    assert out.getvalue() == (
        "1. health   FAILED: GET https://app/api/health: cannot connect (Connection refused)\n"
    )
    assert err.getvalue() == "smoke check failed at step 1 (health)\n"
    assert later == []


def test_the_sms_step_runs_only_with_send_to() -> None:
    app = ScriptedApp()
    assert [s.name for s in steps_for(parse_arguments(["https://app"]), app)] == [
        "health",
        "webhook",
    ]
    args = parse_arguments(["https://app", "--send-to", TO, "--function-key", "k"])
    assert [s.name for s in steps_for(args, app)] == ["health", "webhook", "sms"]


@pytest.mark.parametrize(
    "argv",
    [
        ["app.azurewebsites.net"],  # no scheme
        ["https://app", "--send-to", "5558675310"],  # not E.164
        ["https://app", "--wait", "-1"],
        ["https://app", "--ready-within", "soon"],
        [],
    ],
)
def test_wrong_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_arguments(argv)
    assert exited.value.code == 2
    assert "Traceback" not in capsys.readouterr().err
