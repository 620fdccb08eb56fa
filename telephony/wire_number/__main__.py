"""Point the Twilio number's webhooks at the deployed app; azd's postdeploy hook runs it.

    python -m telephony.wire_number [--dry-run]

It reads the azd environment, which azd passes to its hooks: TWILIO_WIRE_NUMBER, which
must be true before anything changes; TWILIO_ACCOUNT_SID with TWILIO_AUTH_TOKEN, or
TWILIO_API_KEY_SID with TWILIO_API_KEY_SECRET; TWILIO_PHONE_NUMBER; the optional
TWILIO_MESSAGING_SERVICE_SID; and the deployment's VOICE_WEBHOOK_URL, SMS_WEBHOOK_URL and
STATUS_CALLBACK_URL outputs (else PUBLIC_BASE_URL followed by /api/voice_url, /api/sms_url
and /api/status_callback).

It sets the number's voice URL and status callback, and its SMS URL, or with a Messaging
Service the service's inbound request URL and status callback, all with POST. It prints
each field it changes as `before -> after`, and nothing is sent when Twilio already has
them all, so running it again changes nothing. --dry-run prints the change and makes
none, whether TWILIO_WIRE_NUMBER is true or not.

Exit status: 0 when the number is wired (now or already), skipped or dry-run; 1 when
Twilio refuses, cannot be reached, or routes the number past its URLs; 2 when a setting
is missing or invalid.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TextIO

from telephony.config.settings import Settings
from telephony.errors import (
    InvalidInputError,
    SettingsError,
    TwilioRejectedError,
    TwilioUnavailableError,
)
from telephony.phone import mask, parse_e164
from telephony.wire_number.plan import (
    Endpoints,
    NumberState,
    PhoneNumbers,
    Plan,
    ServiceState,
    describe,
    plan_wiring,
)

PROG = "wire_number"
SKIPPED = (
    f"{PROG}: skipped (set TWILIO_WIRE_NUMBER=true in the azd environment to point the "
    "Twilio number's webhooks at the app)"
)
OK, TWILIO_FAILED, SETTINGS_FAILED = 0, 1, 2
_SERVICE_SID = re.compile(r"MG[0-9a-fA-F]{32}")
# Output name, and the path under PUBLIC_BASE_URL when the output is not there.
_ENDPOINTS = (
    ("VOICE_WEBHOOK_URL", "voice_url"),
    ("SMS_WEBHOOK_URL", "sms_url"),
    ("STATUS_CALLBACK_URL", "status_callback"),
)


@dataclass(frozen=True)
class Wiring:
    """What to wire, with whose credentials: read from the environment, checked."""

    phone_number: str
    service_sid: str | None
    endpoints: Endpoints
    account_sid: str
    username: str
    password: str = field(repr=False)  # the auth token or API key secret: never shown
    api_base_url: str | None = None


Connect = Callable[[Wiring], PhoneNumbers]


def main(
    argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    connect: Connect | None = None,
) -> int:
    """Run the command; return its exit status. `connect` replaces Twilio in tests."""
    dry_run = _arguments(argv).dry_run
    env = os.environ if env is None else env
    try:
        if not (opted_in(env) or dry_run):
            print(SKIPPED)
            return OK
        wiring = read_wiring(env)
        numbers = (connect or _twilio)(wiring)
    except SettingsError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return SETTINGS_FAILED
    except ModuleNotFoundError as exc:
        # The hook runs the deploying machine's Python, which may lack the app's packages.
        print(f"{PROG}: {exc.name} is missing: pip install -r requirements.txt", file=sys.stderr)
        return SETTINGS_FAILED
    try:
        return wire(numbers, wiring, dry_run=dry_run, out=sys.stdout)
    except (TwilioRejectedError, TwilioUnavailableError) as exc:
        print(f"{PROG}: {_twilio_failure(exc, wiring)}", file=sys.stderr)
        return TWILIO_FAILED


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m telephony.wire_number",
        description="Point the Twilio number's webhooks at the deployed app.",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the change and make none")
    return parser.parse_args(argv)


def opted_in(env: Mapping[str, str]) -> bool:
    """TWILIO_WIRE_NUMBER: true or false (empty: false); a typo is an error, not a skip."""
    value = env.get("TWILIO_WIRE_NUMBER", "").strip().lower()
    if value not in ("", "true", "false"):
        raise SettingsError("TWILIO_WIRE_NUMBER must be true or false")
    return value == "true"


def read_wiring(env: Mapping[str, str]) -> Wiring:
    """The number, service, endpoints and credentials; SettingsError names what is wrong."""
    settings = Settings.from_env(env)
    if not settings.account_sid:
        raise SettingsError("TWILIO_ACCOUNT_SID is not set")
    username, password = _login(env, settings.account_sid, settings.api_key_sid)
    return Wiring(
        phone_number=_phone_number(settings.phone_number),
        service_sid=_service_sid(settings.messaging_service_sid),
        endpoints=endpoints(env, settings.public_base_url),
        account_sid=settings.account_sid,
        username=username,
        password=password,
        api_base_url=settings.twilio_api_base_url,
    )


def _login(env: Mapping[str, str], account_sid: str, api_key_sid: str | None) -> tuple[str, str]:
    """(API key SID, secret) when an API key is set, else (account SID, auth token)."""
    if api_key_sid:
        secret = env.get("TWILIO_API_KEY_SECRET", "").strip()
        if not secret:
            raise SettingsError("TWILIO_API_KEY_SID is set but TWILIO_API_KEY_SECRET is not")
        return api_key_sid, secret
    token = env.get("TWILIO_AUTH_TOKEN", "").strip()
    if not token:
        # A token typed at azd's prompt is a provisioning parameter, which hooks never see.
        raise SettingsError(
            "TWILIO_AUTH_TOKEN (or TWILIO_API_KEY_SID and TWILIO_API_KEY_SECRET) is not set; "
            "put it in the azd environment with azd env set"
        )
    return account_sid, token


def _phone_number(value: str | None) -> str:
    if not value:
        raise SettingsError("TWILIO_PHONE_NUMBER is not set")
    try:
        return parse_e164(value, "TWILIO_PHONE_NUMBER")
    except InvalidInputError as exc:
        raise SettingsError(exc.message) from None


def _service_sid(value: str | None) -> str | None:
    if value is not None and not _SERVICE_SID.fullmatch(value):
        raise SettingsError("TWILIO_MESSAGING_SERVICE_SID must be MG followed by 32 hex digits")
    return value


def endpoints(env: Mapping[str, str], public_base_url: str | None) -> Endpoints:
    """The deployment's webhook URLs: its outputs, else PUBLIC_BASE_URL + /api/<function>."""
    urls = []
    for output, function in _ENDPOINTS:
        url = env.get(output, "").strip()
        if not url and public_base_url:
            url = f"{public_base_url}/api/{function}"
        if not url:
            raise SettingsError(f"neither {output} nor PUBLIC_BASE_URL is set (azd provision)")
        # Twilio signs the exact URL it calls; the app only runs behind https.
        if not url.startswith("https://"):
            raise SettingsError(f"{output} must be an https:// URL")
        urls.append(url)
    return Endpoints(*urls)


def wire(numbers: PhoneNumbers, wiring: Wiring, *, dry_run: bool, out: TextIO) -> int:
    """Read the number (and service), print the change, and make it unless `dry_run`."""
    current = _current(numbers, wiring)
    if isinstance(current, str):
        print(f"{PROG}: {current}", file=sys.stderr)
        return TWILIO_FAILED
    plan = plan_wiring(*current, wiring.endpoints)
    label = f"number {mask(wiring.phone_number)} ({plan.number.sid})"
    for line in describe(plan, mask(wiring.phone_number)):
        print(f"{PROG}: {line}", file=out)
    if plan.problems:
        for problem in plan.problems:
            print(f"{PROG}: {problem}, which Twilio uses instead of a URL", file=sys.stderr)
        print(f"{PROG}: detach it in the Twilio Console, then deploy again", file=sys.stderr)
        return TWILIO_FAILED
    if plan.wired:
        print(f"{PROG}: {label} is already wired to the app; nothing changed", file=out)
    elif dry_run:
        print(f"{PROG}: dry run; nothing changed", file=out)
    else:
        _apply(numbers, plan)
        print(f"{PROG}: {label} now points at the app", file=out)
    return OK


def _current(
    numbers: PhoneNumbers, wiring: Wiring
) -> tuple[NumberState, ServiceState | None] | str:
    """The number and the service as Twilio has them, or why they cannot be wired."""
    number = numbers.find_number(wiring.phone_number)
    if number is None:
        return (
            f"TWILIO_PHONE_NUMBER {mask(wiring.phone_number)} is not a number of account "
            f"{wiring.account_sid} (IncomingPhoneNumbers has no such number)"
        )
    if not wiring.service_sid:
        return number, None
    service = numbers.fetch_service(wiring.service_sid)
    if service is None:
        return (
            f"TWILIO_MESSAGING_SERVICE_SID {wiring.service_sid} is not a Messaging Service "
            f"of account {wiring.account_sid}"
        )
    return number, service


def _apply(numbers: PhoneNumbers, plan: Plan) -> None:
    """One request per resource that needs a change: the number first, then the service."""
    if plan.number_update:
        numbers.update_number(plan.number.sid, plan.number_update)
    if plan.service_update and plan.service is not None:
        numbers.update_service(plan.service.sid, plan.service_update)


def _twilio_failure(exc: TwilioRejectedError | TwilioUnavailableError, wiring: Wiring) -> str:
    """One line that says what to do; Twilio's message never carries a credential."""
    if isinstance(exc, TwilioUnavailableError):
        # Safe to repeat: a second run changes only what the first did not.
        return f"{exc.message}; run it again later"
    code = f", error {exc.code}" if exc.code else ""
    if exc.twilio_status in (401, 403):
        names = (
            "TWILIO_API_KEY_SID and TWILIO_API_KEY_SECRET"
            if wiring.username != wiring.account_sid
            else "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN"
        )
        return (
            f"Twilio refused the credentials (HTTP {exc.twilio_status}{code}): "
            f"check {names} in the azd environment"
        )
    return f"Twilio refused the request (HTTP {exc.twilio_status}{code}): {exc.message}"


def _twilio(wiring: Wiring) -> PhoneNumbers:
    from telephony.adapters.twilio_numbers import TwilioPhoneNumbers
    from telephony.adapters.twilio_rest import Credentials

    credentials = Credentials(wiring.account_sid, wiring.username, wiring.password)
    return TwilioPhoneNumbers(credentials, wiring.api_base_url)


if __name__ == "__main__":
    raise SystemExit(main())
