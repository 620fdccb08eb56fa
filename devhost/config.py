"""host.json and local.settings.json, read the way the Functions host and Core Tools read them."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger("devhost")

DEFAULT_ROUTE_PREFIX = "api"
DEFAULT_HTTP_PORT = 7071
# The queue extension polls at least every 100 ms. Its default maximum is one minute, but
# the host lowers that to 2 s when it runs in the Development environment, as under Core
# Tools; this host is always a development host.
MIN_POLLING_INTERVAL = 0.1
DEVELOPMENT_MAX_POLLING_INTERVAL = 2.0
MAX_BATCH_SIZE = 32  # the most messages one Get Messages call of the Queue service returns
# Core Tools runs the app in the Development environment, and apps read it (this one lets
# callback URLs fall back to the request's host only there). A value the environment
# already has wins; local.settings.json may not set it (Core Tools refuses a duplicate key).
ENVIRONMENT_SETTING = "AZURE_FUNCTIONS_ENVIRONMENT"
DEVELOPMENT_ENVIRONMENT = "Development"

_TIMESPAN = re.compile(
    r"^(?:(?P<days>\d+)\.)?(?P<hours>\d{1,2}):(?P<minutes>\d{1,2})"
    r"(?::(?P<seconds>\d{1,2})(?:\.(?P<fraction>\d{1,7}))?)?$"
)


class ConfigError(ValueError):
    """host.json or local.settings.json holds something the host would refuse."""


@dataclass(frozen=True)
class QueueOptions:
    """host.json ``extensions.queues``; times are in seconds."""

    batch_size: int = 16
    new_batch_threshold: int = 8
    max_polling_interval: float = DEVELOPMENT_MAX_POLLING_INTERVAL
    visibility_timeout: float = 0.0
    max_dequeue_count: int = 5
    message_encoding: str = "base64"


@dataclass(frozen=True)
class HostConfig:
    """The parts of host.json this host honours."""

    route_prefix: str = DEFAULT_ROUTE_PREFIX
    queues: QueueOptions = field(default_factory=QueueOptions)


@dataclass(frozen=True)
class LocalSettings:
    """What local.settings.json contributed: the names it set, and Host.LocalHttpPort."""

    applied: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    local_http_port: int | None = None


def parse_timespan(value: object, setting: str) -> float:
    """Seconds in a .NET TimeSpan ("[d.]hh:mm[:ss[.fffffff]]"); a bare number is milliseconds.

    Numbers as milliseconds is how host.json version 1 wrote maxPollingInterval.
    """
    if isinstance(value, bool):
        raise ConfigError(f"{setting}: expected a time span, got {value!r}")
    if isinstance(value, int | float):
        return float(value) / 1000.0
    match = _TIMESPAN.match(str(value).strip())
    if match is None:
        raise ConfigError(f"{setting}: {value!r} is not a time span like 00:00:30")
    parts = {name: int(text) for name, text in match.groupdict().items() if text and name}
    fraction = match["fraction"]
    return (
        parts.get("days", 0) * 86400
        + parts["hours"] * 3600
        + parts["minutes"] * 60
        + parts.get("seconds", 0)
        + (int(fraction) / 10 ** len(fraction) if fraction else 0.0)
    )


def _lower_keys(value: Any) -> Any:
    # The host's configuration is case-insensitive ("routePrefix" == "routeprefix").
    if isinstance(value, dict):
        return {str(key).lower(): _lower_keys(item) for key, item in value.items()}
    return value


def _int(section: Mapping[str, Any], key: str, default: int, setting: str) -> int:
    value = section.get(key.lower(), default)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ConfigError(f"{setting}: expected an integer, got {value!r}")
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{setting}: expected an integer, got {value!r}") from None


def queue_options(section: Mapping[str, Any]) -> QueueOptions:
    """Validate ``extensions.queues`` (already lower-cased) and fill in the host's defaults."""
    prefix = "extensions.queues."
    batch_size = _int(section, "batchSize", 16, prefix + "batchSize")
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise ConfigError(f"{prefix}batchSize must be between 1 and {MAX_BATCH_SIZE}")
    threshold = _int(section, "newBatchThreshold", batch_size // 2, prefix + "newBatchThreshold")
    if threshold < 0:
        raise ConfigError(f"{prefix}newBatchThreshold must not be negative")
    max_dequeue = _int(section, "maxDequeueCount", 5, prefix + "maxDequeueCount")
    if max_dequeue < 1:
        raise ConfigError(f"{prefix}maxDequeueCount must be at least 1")
    polling = DEVELOPMENT_MAX_POLLING_INTERVAL
    if "maxpollinginterval" in section:
        polling = parse_timespan(section["maxpollinginterval"], prefix + "maxPollingInterval")
        if polling < MIN_POLLING_INTERVAL:
            raise ConfigError(f"{prefix}maxPollingInterval must be at least 00:00:00.1")
    visibility = 0.0
    if "visibilitytimeout" in section:
        visibility = parse_timespan(section["visibilitytimeout"], prefix + "visibilityTimeout")
        if visibility < 0:
            raise ConfigError(f"{prefix}visibilityTimeout must not be negative")
    encoding = str(section.get("messageencoding", "base64")).lower()
    if encoding not in ("base64", "none"):
        raise ConfigError(f"{prefix}messageEncoding must be base64 or none, not {encoding!r}")
    return QueueOptions(
        batch_size=batch_size,
        new_batch_threshold=threshold,
        max_polling_interval=polling,
        visibility_timeout=visibility,
        max_dequeue_count=max_dequeue,
        message_encoding=encoding,
    )


def load_host_json(path: Path) -> HostConfig:
    """Read host.json; a missing file gives the host's defaults (with a warning)."""
    if not path.is_file():
        logger.warning("%s not found; using the host's defaults", path)
        return HostConfig()
    try:
        document = _lower_keys(json.loads(path.read_text(encoding="utf-8-sig")))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from None
    extensions = document.get("extensions") or {}
    http = extensions.get("http") or {}
    prefix = http.get("routeprefix", DEFAULT_ROUTE_PREFIX)
    if not isinstance(prefix, str):
        raise ConfigError("extensions.http.routePrefix must be a string")
    return HostConfig(
        route_prefix=prefix.strip("/"),
        queues=queue_options(extensions.get("queues") or {}),
    )


def apply_development_environment(environ: MutableMapping[str, str] | None = None) -> str:
    """Set AZURE_FUNCTIONS_ENVIRONMENT to Development unless it is set; return its value.

    Called before local.settings.json is read, so that, as under Core Tools, the file
    cannot change it and only the environment the host was started with can.
    """
    env = os.environ if environ is None else environ
    if not env.get(ENVIRONMENT_SETTING):
        env[ENVIRONMENT_SETTING] = DEVELOPMENT_ENVIRONMENT
    return env[ENVIRONMENT_SETTING]


def load_local_settings(
    path: Path, environ: MutableMapping[str, str] | None = None
) -> LocalSettings:
    """Copy local.settings.json "Values" into the environment without overriding it.

    Core Tools does the same: a variable already set in the environment wins, which is how
    a developer or a test overrides one setting without editing the file.
    """
    env = os.environ if environ is None else environ
    if not path.is_file():
        logger.warning("%s not found; using the environment only", path)
        return LocalSettings()
    try:
        document = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from None
    if document.get("IsEncrypted"):
        raise ConfigError(f"{path} is encrypted; only Core Tools can decrypt it")
    applied, skipped = [], []
    for name, value in (document.get("Values") or {}).items():
        if value is None:
            continue
        if name in env:
            skipped.append(name)
            continue
        env[name] = value if isinstance(value, str) else json.dumps(value)
        applied.append(name)
    port = (document.get("Host") or {}).get("LocalHttpPort")
    return LocalSettings(
        applied=tuple(applied),
        skipped=tuple(skipped),
        local_http_port=int(port) if port is not None else None,
    )
