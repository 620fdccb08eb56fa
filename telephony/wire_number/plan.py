"""What wiring the Twilio number means, as values: the webhooks the app wants, how they
differ from what Twilio has, and what would make Twilio ignore them. No I/O.

Calls to the number go to the voice URL and report their status to the status callback,
both set on the number. Inbound messages go to the SMS URL, set on the number, unless the
number sends its messages through a Messaging Service (TWILIO_MESSAGING_SERVICE_SID): then
the service's inbound request URL is what Twilio calls, and the number's own SMS URL only
counts when the service says so (``use_inbound_webhook_on_number``).

Field names are Twilio's (the resources' JSON and the SDK's update arguments), so a plan
needs no translation on its way to the adapter. Every webhook is called with POST, the
method the app's signature check and handlers take.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

Target = Literal["number", "service"]
POST = "POST"


@dataclass(frozen=True)
class Endpoints:
    """The deployed app's webhook URLs (the VOICE_WEBHOOK_URL... outputs of the deployment)."""

    voice_url: str
    sms_url: str
    status_callback: str


@dataclass(frozen=True)
class NumberState:
    """An IncomingPhoneNumber as Twilio has it.

    `webhooks` maps Twilio's field names to their values ("" when none is set); the
    application and trunk SIDs ("" when none) route calls or messages past those URLs.
    """

    sid: str
    phone_number: str
    webhooks: Mapping[str, str]
    voice_application_sid: str = ""
    sms_application_sid: str = ""
    trunk_sid: str = ""


@dataclass(frozen=True)
class ServiceState:
    """A Messaging Service as Twilio has it: its webhooks, as NumberState has them."""

    sid: str
    webhooks: Mapping[str, str]
    use_inbound_webhook_on_number: bool = False


class PhoneNumbers(Protocol):
    """What wiring asks of Twilio's REST API (telephony.adapters.twilio_numbers)."""

    def find_number(self, phone_number: str) -> NumberState | None:
        """The account's number that is exactly `phone_number`, or None."""
        ...

    def fetch_service(self, sid: str) -> ServiceState | None:
        """The Messaging Service `sid`, or None when the account has no such service."""
        ...

    def update_number(self, sid: str, fields: Mapping[str, str]) -> None:
        """Set `fields` on the number `sid`."""
        ...

    def update_service(self, sid: str, fields: Mapping[str, str]) -> None:
        """Set `fields` on the Messaging Service `sid`."""
        ...


@dataclass(frozen=True)
class Change:
    """One field that wiring changes: on the number or on the Messaging Service."""

    target: Target
    field: str
    before: str
    after: str


@dataclass(frozen=True)
class Plan:
    """What to send to Twilio: each update is empty when that resource is already wired.

    An update carries every field wiring owns on that resource, not only the changed
    ones, so one request leaves it exactly as wanted.
    """

    number: NumberState
    service: ServiceState | None
    number_update: Mapping[str, str]
    service_update: Mapping[str, str]
    changes: tuple[Change, ...]
    problems: tuple[str, ...]

    @property
    def wired(self) -> bool:
        """Whether Twilio already has every webhook as the app wants it."""
        return not self.changes


def wanted_on_number(endpoints: Endpoints, sms_on_number: bool) -> dict[str, str]:
    """The number's fields: voice and its status callback, and SMS when the number has it."""
    fields = {"voice_url": endpoints.voice_url, "voice_method": POST}
    if sms_on_number:
        fields |= {"sms_url": endpoints.sms_url, "sms_method": POST}
    return fields | {"status_callback": endpoints.status_callback, "status_callback_method": POST}


def wanted_on_service(endpoints: Endpoints) -> dict[str, str]:
    """The Messaging Service's fields: inbound messages and their delivery status."""
    return {
        "inbound_request_url": endpoints.sms_url,
        "inbound_method": POST,
        "status_callback": endpoints.status_callback,
    }


def changes(target: Target, current: Mapping[str, str], wanted: Mapping[str, str]) -> list[Change]:
    """The fields of `wanted` that `current` does not already have."""
    return [
        Change(target, field, current.get(field) or "", value)
        for field, value in wanted.items()
        if not _same(field, current.get(field) or "", value)
    ]


def _same(field: str, current: str, wanted: str) -> bool:
    # HTTP methods are case-insensitive; URLs are compared exactly, because Twilio signs
    # each request with the exact URL it calls, and the app checks it against its own.
    if field.endswith("method"):
        return current.upper() == wanted
    return current == wanted


def plan_wiring(number: NumberState, service: ServiceState | None, endpoints: Endpoints) -> Plan:
    """The change that points `number` (and `service`, when messages go through one) at
    `endpoints`, and the problems that would make Twilio ignore it."""
    sms_on_number = service is None or service.use_inbound_webhook_on_number
    number_wanted = wanted_on_number(endpoints, sms_on_number)
    found = changes("number", number.webhooks, number_wanted)
    service_wanted: dict[str, str] = {}
    if service is not None:
        service_wanted = wanted_on_service(endpoints)
        found += changes("service", service.webhooks, service_wanted)
    return Plan(
        number=number,
        service=service,
        number_update=number_wanted if _touches(found, "number") else {},
        service_update=service_wanted if _touches(found, "service") else {},
        changes=tuple(found),
        problems=tuple(routing_problems(number, sms_on_number)),
    )


def _touches(found: Sequence[Change], target: Target) -> bool:
    return any(change.target == target for change in found)


def routing_problems(number: NumberState, sms_on_number: bool) -> list[str]:
    """Where the number routes calls or messages past its URLs, so the app's would be ignored.

    Twilio uses a SIP trunk or a TwiML App instead of the number's URLs. Replacing one is
    a decision about the number's other uses, so it is reported and left to its owner.
    """
    found = []
    if number.trunk_sid:
        found.append(f"calls to the number go to SIP trunk {number.trunk_sid} (trunk_sid)")
    elif number.voice_application_sid:
        found.append(
            f"calls to the number go to TwiML App {number.voice_application_sid} "
            "(voice_application_sid)"
        )
    if sms_on_number and number.sms_application_sid:
        found.append(
            f"messages to the number go to TwiML App {number.sms_application_sid} "
            "(sms_application_sid)"
        )
    return found


def describe(plan: Plan, number_label: str) -> list[str]:
    """The change, one line per field (`before -> after`), under the resource it is on."""
    lines: list[str] = []
    for target, label in (
        ("number", f"number {number_label} ({plan.number.sid})"),
        ("service", f"Messaging Service {plan.service.sid if plan.service else ''}"),
    ):
        mine = [change for change in plan.changes if change.target == target]
        if mine:
            lines.append(f"{label}:")
            lines += [f"  {c.field}: {c.before or '(none)'} -> {c.after}" for c in mine]
    return lines
