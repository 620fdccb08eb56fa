"""The app's settings: one declaration per setting, read from the environment.

`SETTINGS` is the single list of what the app reads. The README's settings table and the
infrastructure drift test are both checked against it, so a new setting is declared here
first, with its meaning.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import time

from telephony.errors import SettingsError


@dataclass(frozen=True)
class SettingSpec:
    """One app setting: its name, whether it is a secret, its default and its meaning."""

    name: str
    meaning: str
    default: str | None = None
    secret_name: str | None = None  # Key Vault secret name, for secrets
    local_only: bool = False  # never set in Azure (development and tests)
    # Read on the deploying machine from the azd environment (by an azd hook), never by
    # the app: not an app setting either.
    deploy_only: bool = False

    @property
    def is_secret(self) -> bool:
        return self.secret_name is not None


# Set by the platform, not by this app: Development under Core Tools and the dev host.
ENVIRONMENT = "AZURE_FUNCTIONS_ENVIRONMENT"
DEFAULT_GREETING = "Hello Monkey!"
DEFAULT_SMS_REPLY = "Hey, thanks for the ping! Twilio and Azure rock!"

SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec("TWILIO_ACCOUNT_SID", "Twilio account SID (AC...)."),
    SettingSpec(
        "TWILIO_AUTH_TOKEN",
        "Twilio auth token: REST auth (unless an API key is set) and webhook signatures.",
        secret_name="twilio-auth-token",
    ),
    SettingSpec(
        "TWILIO_AUTH_TOKEN_SECONDARY",
        "Previous auth token, accepted for webhook signatures during a rotation.",
        secret_name="twilio-auth-token-secondary",
    ),
    SettingSpec("TWILIO_API_KEY_SID", "Optional API key SID (SK...) for REST auth."),
    SettingSpec(
        "TWILIO_API_KEY_SECRET",
        "Secret of TWILIO_API_KEY_SID.",
        secret_name="twilio-api-key-secret",
    ),
    SettingSpec("TWILIO_PHONE_NUMBER", "Default sender number, E.164."),
    SettingSpec(
        "TWILIO_MESSAGING_SERVICE_SID",
        "Optional Messaging Service SID (MG...) used as the SMS sender.",
    ),
    SettingSpec("KEY_VAULT_URI", "When set, secrets not in the environment come from this vault."),
    SettingSpec(
        "PUBLIC_BASE_URL",
        "Externally visible base URL (https://host), for signatures and callback URLs; "
        "required outside local development for make_call and POST /api/messages.",
    ),
    SettingSpec("OUTBOUND_QUEUE_NAME", "Queue of outbound commands.", default="outbound-messages"),
    SettingSpec("DELIVERIES_TABLE_NAME", "Table of delivery records.", default="deliveries"),
    SettingSpec(
        "ALLOWED_DESTINATION_COUNTRIES",
        "Comma-separated ISO regions (US,CA,GB) every number the app calls or texts must be "
        "in; empty: the country of TWILIO_PHONE_NUMBER. Premium-rate numbers never pass.",
    ),
    SettingSpec(
        "ALLOWED_URL_HOSTS",
        "Comma-separated hosts a call's url may name (Twilio fetches TwiML there); "
        "empty: url is refused.",
    ),
    SettingSpec(
        "VOICE_GREETING", "What voice_url says when no VOICE_FLOW is set.", default=DEFAULT_GREETING
    ),
    SettingSpec(
        "CALL_FLOWS_FILE",
        "Call flow document (YAML or JSON), relative to the app's folder.",
        default="flows/call-flows.yaml",
    ),
    SettingSpec("VOICE_FLOW", "Optional flow (from CALL_FLOWS_FILE) that answers inbound calls."),
    SettingSpec(
        "SMS_RULES_FILE",
        "Optional SMS routing rules (YAML or JSON), relative to the app's folder.",
    ),
    SettingSpec(
        "OPTOUTS_TABLE_NAME", "Table of numbers that opted out of messages.", default="optouts"
    ),
    SettingSpec(
        "SMS_AUTO_REPLY",
        "What sms_url replies when no SMS_RULES_FILE is set.",
        default=DEFAULT_SMS_REPLY,
    ),
    SettingSpec(
        "SECRET_CACHE_SECONDS",
        "How long a secret read from Key Vault is reused before it is read again.",
        default="300",
    ),
    SettingSpec(
        "CALL_TRAILS_TABLE_NAME",
        "Table of the webhooks of calls in a flow, kept until the call's "
        "telephony.call.completed event is published.",
        default="calltrails",
    ),
    SettingSpec(
        "CALL_DATA_TABLE_NAME",
        "Table of the data of calls to a flow that declares data, kept by an id in the call's "
        "URLs until the call is over (docs/flows.md).",
        default="calldata",
    ),
    SettingSpec(
        "EVENTS_QUEUE_NAME",
        "Queue of outcome events (docs/events.md); set it empty to publish no queue events.",
        default="telephony-events",
    ),
    SettingSpec(
        "EVENT_GRID_TOPIC_ENDPOINT",
        "Optional Event Grid custom topic endpoint that outcome events are also published to "
        "(the app's identity needs EventGrid Data Sender on it).",
    ),
    SettingSpec(
        "RECONCILE_SCHEDULE",
        "NCRONTAB schedule of the reconcile timer (the host reads it as %RECONCILE_SCHEDULE%).",
        default="0 */5 * * * *",
    ),
    SettingSpec(
        "RECONCILE_AFTER_MINUTES",
        "Age after which reconcile asks Twilio about a record no callback has settled.",
        default="30",
    ),
    SettingSpec(
        "QUIET_HOURS",
        "Default quiet hours of queued sends, HH:MM-HH:MM in the recipient's local time "
        "(21:00-08:00): a send inside is deferred, never dropped. A command's own quiet_hours "
        "wins; empty: none.",
    ),
    SettingSpec(
        "TWILIO_WIRE_NUMBER",
        "Deploy time only: true lets azd's postdeploy hook point the webhooks of "
        "TWILIO_PHONE_NUMBER (and the Messaging Service's inbound URL) at the app "
        "(python -m telephony.wire_number, docs/deploy.md).",
        deploy_only=True,
    ),
    SettingSpec(
        "TWILIO_API_BASE_URL",
        "Local development and tests only: base URL of a Twilio API mock.",
        local_only=True,
    ),
)

SETTINGS_BY_NAME: dict[str, SettingSpec] = {spec.name: spec for spec in SETTINGS}


@dataclass(frozen=True)
class Settings:
    """Non-secret settings, parsed once. Secrets are read through the secret store."""

    account_sid: str | None
    api_key_sid: str | None
    phone_number: str | None
    messaging_service_sid: str | None
    key_vault_uri: str | None
    public_base_url: str | None
    outbound_queue_name: str
    deliveries_table_name: str
    allowed_countries: frozenset[str]
    allowed_url_hosts: frozenset[str]
    voice_greeting: str
    sms_auto_reply: str
    call_flows_file: str
    voice_flow: str | None
    sms_rules_file: str | None
    optouts_table_name: str
    secret_cache_seconds: float
    twilio_api_base_url: str | None
    events_queue_name: str | None = "telephony-events"  # None: no queue events
    call_trails_table_name: str = "calltrails"
    call_data_table_name: str = "calldata"
    event_grid_endpoint: str | None = None
    reconcile_after_minutes: float = 30.0
    quiet_hours: tuple[time, time] | None = None  # (start, end); None: no default
    # The platform's AZURE_FUNCTIONS_ENVIRONMENT (Core Tools and the development host set
    # Development): only there may callback URLs fall back to the request's Host.
    development: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or SETTINGS_BY_NAME[name].default

        def need(name: str) -> str:
            value = get(name)
            assert value is not None, f"{name} has no default"
            return value

        return cls(
            account_sid=get("TWILIO_ACCOUNT_SID"),
            api_key_sid=get("TWILIO_API_KEY_SID"),
            phone_number=get("TWILIO_PHONE_NUMBER"),
            messaging_service_sid=get("TWILIO_MESSAGING_SERVICE_SID"),
            key_vault_uri=get("KEY_VAULT_URI"),
            public_base_url=_base_url(get("PUBLIC_BASE_URL"), "PUBLIC_BASE_URL"),
            outbound_queue_name=need("OUTBOUND_QUEUE_NAME"),
            deliveries_table_name=need("DELIVERIES_TABLE_NAME"),
            allowed_countries=_regions(get("ALLOWED_DESTINATION_COUNTRIES")),
            allowed_url_hosts=_hosts(get("ALLOWED_URL_HOSTS")),
            voice_greeting=need("VOICE_GREETING"),
            sms_auto_reply=need("SMS_AUTO_REPLY"),
            call_flows_file=need("CALL_FLOWS_FILE"),
            voice_flow=get("VOICE_FLOW"),
            sms_rules_file=get("SMS_RULES_FILE"),
            optouts_table_name=need("OPTOUTS_TABLE_NAME"),
            secret_cache_seconds=_seconds(need("SECRET_CACHE_SECONDS"), "SECRET_CACHE_SECONDS"),
            twilio_api_base_url=_base_url(get("TWILIO_API_BASE_URL"), "TWILIO_API_BASE_URL"),
            # Present but empty turns queue events off; absent takes the default.
            events_queue_name=_optional_name(env, "EVENTS_QUEUE_NAME", get),
            call_trails_table_name=need("CALL_TRAILS_TABLE_NAME"),
            call_data_table_name=need("CALL_DATA_TABLE_NAME"),
            event_grid_endpoint=_https_url(
                get("EVENT_GRID_TOPIC_ENDPOINT"), "EVENT_GRID_TOPIC_ENDPOINT"
            ),
            reconcile_after_minutes=_minutes(need("RECONCILE_AFTER_MINUTES")),
            quiet_hours=_quiet_hours(get("QUIET_HOURS")),
            development=env.get(ENVIRONMENT, "").strip().lower() == "development",
        )


def _base_url(value: str | None, name: str) -> str | None:
    if value is None:
        return None
    if not value.startswith(("https://", "http://")):
        raise SettingsError(f"{name} must start with https:// or http://")
    return value.rstrip("/")


def _optional_name(
    env: Mapping[str, str], name: str, get: Callable[[str], str | None]
) -> str | None:
    """The setting, its default when absent, None when it is set empty (turned off)."""
    if name in env and not env[name].strip():
        return None
    return get(name)


def _https_url(value: str | None, name: str) -> str | None:
    if value is not None and not value.startswith("https://"):
        raise SettingsError(f"{name} must start with https://")
    return value


_QUIET_HOURS = re.compile(r"(?:[01][0-9]|2[0-3]):[0-5][0-9]-(?:[01][0-9]|2[0-3]):[0-5][0-9]")


def _quiet_hours(value: str | None) -> tuple[time, time] | None:
    """21:00-08:00 as (start, end): the command schema's HH:MM, 24-hour."""
    if value is None:
        return None
    if not _QUIET_HOURS.fullmatch(value.replace(" ", "")):
        raise SettingsError("QUIET_HOURS must be HH:MM-HH:MM, such as 21:00-08:00")
    start, end = value.replace(" ", "").split("-")
    return time.fromisoformat(start), time.fromisoformat(end)


def _minutes(value: str) -> float:
    minutes = _seconds(value, "RECONCILE_AFTER_MINUTES")  # the same rules: a number, >= 0
    if not 1 <= minutes <= 10_080:  # also refuses nan and inf
        raise SettingsError("RECONCILE_AFTER_MINUTES must be from 1 to 10080 (a week)")
    return minutes


def _regions(value: str | None) -> frozenset[str]:
    if not value:
        return frozenset()
    regions = frozenset(part.strip().upper() for part in value.split(",") if part.strip())
    bad = sorted(r for r in regions if len(r) != 2 or not r.isalpha())
    if bad:
        raise SettingsError(f"ALLOWED_DESTINATION_COUNTRIES has invalid regions: {', '.join(bad)}")
    return regions


def _hosts(value: str | None) -> frozenset[str]:
    if not value:
        return frozenset()
    hosts = frozenset(part.strip().lower() for part in value.split(",") if part.strip())
    bad = sorted(h for h in hosts if "/" in h or ":" in h or " " in h)
    if bad:
        raise SettingsError(f"ALLOWED_URL_HOSTS takes host names only: {', '.join(bad)}")
    return hosts


def url_host_allowed(url: str, hosts: Collection[str]) -> bool:
    """Whether `url` names one of `hosts` (ALLOWED_URL_HOSTS) and nothing that parsers could
    read differently: no user info, no backslash, no port but 443."""
    from urllib.parse import urlsplit

    if "\\" in url:
        return False
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return False
    host = (parts.hostname or "").lower()
    return parts.netloc.lower() in (host, f"{host}:443") and port in (None, 443) and host in hosts


def _seconds(value: str, name: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise SettingsError(f"{name} must be a number") from None
    if seconds < 0:
        raise SettingsError(f"{name} must not be negative")
    return seconds
