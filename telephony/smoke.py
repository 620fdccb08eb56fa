"""The post-deploy smoke check of a running app (docs/deploy.md, "Smoke check").

    python -m telephony.smoke https://<app>.azurewebsites.net [--ready-within 180]
    python -m telephony.smoke "$PUBLIC_BASE_URL" --function-key "$KEY" --send-to +15558675310

1. health: GET /api/health answers 200 {"status": "ok"}: the settings load, the secrets
   are readable and Storage answers. With --ready-within, it is asked again until then,
   since a fresh deployment starts cold and its role assignments take minutes to apply.
2. webhook: POST /api/sms_url without X-Twilio-Signature answers 403: webhooks are
   signature-checked. Nothing is sent.
3. sms, only with --send-to (it sends a real message): POST /api/messages queues an SMS
   (with the function key), then GET /api/messages/{id} follows its record until a final
   status, for --wait seconds. Delivered (or read) passes; any other final status, or
   time running out, fails with the status, Twilio's code and the reason.

One line per step. The exit status is 0 when every step passed, 1 at the first step that
failed (named on stderr; later steps are not run), 2 for wrong arguments.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TextIO
from urllib.parse import quote

from telephony.adapters.deployed_app import Answer, DeployedApp
from telephony.errors import InvalidInputError, UnavailableError
from telephony.outbound.records import FINAL
from telephony.phone import parse_e164

OK_BODY = {"status": "ok"}
DELIVERED = frozenset({"delivered", "read"})
SMS_BODY = "Smoke check of the deployed app: this message can be ignored."
POLL_SECONDS = 2.0
DEFAULT_WAIT = 120.0


class StepFailed(Exception):
    """A step got something other than what it expects; the message says what."""


class App(Protocol):
    """What the steps ask of the app (telephony/adapters/deployed_app.py)."""

    def get(self, path: str, *, keyed: bool = False) -> Answer: ...

    def post(
        self,
        path: str,
        *,
        json_body: object | None = None,
        form: dict[str, str] | None = None,
        keyed: bool = False,
    ) -> Answer: ...


@dataclass(frozen=True)
class Waiting:
    """How steps wait: a monotonic clock and a sleep (tests pass their own)."""

    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


REAL_TIME = Waiting()


@dataclass(frozen=True)
class Step:
    name: str
    run: Callable[[], str]  # what the step saw, or StepFailed / UnavailableError


def check_health(app: App, ready_within: float = 0.0, waiting: Waiting = REAL_TIME) -> str:
    """GET /api/health is 200 {"status": "ok"}, asked again until `ready_within` passes."""
    deadline = waiting.clock() + ready_within
    while True:
        try:
            answer = app.get("health")
            if answer.status == 200 and answer.json() == OK_BODY:
                return '200 {"status": "ok"}'
            problem = f'expected 200 {{"status": "ok"}}, got {_shown(answer)}'
        except UnavailableError as exc:  # not answering yet, or at all
            problem = str(exc)
        if waiting.clock() >= deadline:
            raise StepFailed(problem + (f", for {ready_within:.0f} s" if ready_within else ""))
        waiting.sleep(POLL_SECONDS)


def check_unsigned_webhook(app: App) -> str:
    """POST /api/sms_url without a signature is refused with 403."""
    form = {"From": "+15005550006", "Body": "smoke check (unsigned)"}
    answer = app.post("sms_url", form=form)
    if answer.status != 403:
        raise StepFailed(f"an unsigned POST /api/sms_url: expected 403, got {_shown(answer)}")
    return "an unsigned POST /api/sms_url is refused with 403"


def check_sms(app: App, to: str, wait: float, waiting: Waiting = REAL_TIME) -> str:
    """An SMS queued through POST /api/messages reaches delivered within `wait` seconds."""
    key = f"smoke-{uuid.uuid4().hex[:12]}"
    command = {"kind": "sms", "to": to, "body": SMS_BODY, "idempotency_key": key}
    answer = app.post("messages", json_body=command, keyed=True)
    if answer.status != 202:
        hint = " (give --function-key)" if answer.status == 401 else ""
        raise StepFailed(f"POST /api/messages: expected 202, got {_shown(answer)}{hint}")
    record = _final_record(app, key, wait, waiting)
    if record["status"] not in DELIVERED:
        raise StepFailed(f"{key} ended {_outcome(record)}")
    return f"{key} to {record.get('to')} is {record['status']}"


def _final_record(app: App, key: str, wait: float, waiting: Waiting) -> dict[str, Any]:
    """The message's record once its status is final; StepFailed when `wait` runs out."""
    deadline = waiting.clock() + wait
    while True:
        answer = app.get(f"messages/{quote(key, safe='')}", keyed=True)
        record = answer.json()
        if answer.status != 200 or not isinstance(record, dict):
            raise StepFailed(f"GET /api/messages/{key}: expected 200, got {_shown(answer)}")
        if record.get("status") in FINAL:
            return record
        if waiting.clock() >= deadline:
            raise StepFailed(f"{key} is still {_outcome(record)} after {wait:.0f} s")
        waiting.sleep(POLL_SECONDS)


def _outcome(record: dict[str, Any]) -> str:
    """The status, with Twilio's error code and the reason when the record has them."""
    details = [f"{name} {record[name]}" for name in ("error_code", "reason") if record.get(name)]
    return str(record.get("status")) + (f" ({', '.join(details)})" if details else "")


def _shown(answer: Answer) -> str:
    """An answer in one short line: its status and the start of its body."""
    body = " ".join(answer.text.split())
    return f"{answer.status} {body[:200]}".rstrip()


def run(steps: Sequence[Step], out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Run `steps` in order, one line each; 0 when all pass, 1 at the first failure."""
    width = max(len(step.name) for step in steps)
    for number, step in enumerate(steps, 1):
        label = f"{number}. {step.name:<{width}}"
        try:
            seen = step.run()
        except (StepFailed, UnavailableError) as exc:
            print(f"{label}  FAILED: {exc}", file=out, flush=True)
            print(f"smoke check failed at step {number} ({step.name})", file=err)
            return 1
        print(f"{label}  ok: {seen}", file=out, flush=True)
    return 0


def steps_for(args: argparse.Namespace, app: App, waiting: Waiting = REAL_TIME) -> list[Step]:
    """The steps the arguments ask for: health and webhook, and sms with --send-to."""
    steps = [
        Step("health", lambda: check_health(app, args.ready_within, waiting)),
        Step("webhook", lambda: check_unsigned_webhook(app)),
    ]
    if args.send_to:
        steps.append(Step("sms", lambda: check_sms(app, args.send_to, args.wait, waiting)))
    return steps


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m telephony.smoke",
        description="The post-deploy smoke check of a running app (docs/deploy.md).",
    )
    parser.add_argument("base_url", help="the app's base URL, e.g. https://<app>.azurewebsites.net")
    parser.add_argument("--function-key", help="a function key, for the sms step")
    parser.add_argument("--send-to", help="E.164 number: also queue an SMS to it and follow it")
    parser.add_argument(
        "--wait",
        type=_seconds,
        default=DEFAULT_WAIT,
        help=f"seconds the SMS may take to a final status ({DEFAULT_WAIT:.0f})",
    )
    parser.add_argument(
        "--ready-within",
        type=_seconds,
        default=0.0,
        help="seconds to keep asking /api/health until it is ok (0: once)",
    )
    args = parser.parse_args(argv)
    if not args.base_url.startswith(("https://", "http://")):
        parser.error("base_url must start with https:// or http://")
    try:
        args.send_to = args.send_to and parse_e164(args.send_to, "--send-to")
    except InvalidInputError as exc:
        parser.error(str(exc))
    return args


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 3600:
        raise argparse.ArgumentTypeError("must be from 0 to 3600 seconds")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_arguments(argv)
    return run(steps_for(args, DeployedApp(args.base_url, args.function_key)))


if __name__ == "__main__":
    sys.exit(main())
