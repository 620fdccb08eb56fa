"""Function metadata of a v2-programming-model app, as the Functions host receives it.

The Python worker indexes an app by calling ``app.get_functions()`` and sends each
function's ``get_function_json()`` to the host; this module reads the same JSON, so routes,
methods, auth levels, queue names and timer schedules mean here what they mean in Azure.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import azure.functions as func

from devhost.schedule import Schedule, ScheduleError, parse_schedule

HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE")
DEFAULT_CONNECTION = "AzureWebJobsStorage"
_SETTING_EXPRESSION = re.compile(r"%([^%]+)%")

Handler = Callable[..., Any]


class MetadataError(ValueError):
    """The app cannot be loaded, or a binding expression cannot be resolved."""


@dataclass(frozen=True)
class HttpFunction:
    """An HTTP-triggered function; `methods` is None when every method is allowed."""

    name: str
    route: str
    methods: tuple[str, ...] | None
    auth_level: str
    binding_name: str
    handler: Handler

    def allows(self, method: str) -> bool:
        return self.methods is None or method.upper() in self.methods


@dataclass(frozen=True)
class QueueFunction:
    """A queue-triggered function; `queue_name` is resolved from any %SETTING% expression."""

    name: str
    queue_name: str
    connection: str
    binding_name: str
    handler: Handler


@dataclass(frozen=True)
class TimerFunction:
    """A timer-triggered function; `schedule` is parsed from the resolved expression."""

    name: str
    schedule: Schedule
    run_on_startup: bool
    use_monitor: bool
    binding_name: str
    handler: Handler


@dataclass(frozen=True)
class UnsupportedFunction:
    """A function this host cannot run, and why (Core Tools can); or, `in_error`, one that
    no host can run as configured (a missing app setting, a bad schedule)."""

    name: str
    reason: str
    in_error: bool = False


Function = HttpFunction | QueueFunction | TimerFunction | UnsupportedFunction


def import_app(spec: str) -> func.FunctionApp:
    """Import "module:attribute"; with no attribute, the module's one FunctionApp."""
    module_name, _, attribute = spec.partition(":")
    module = importlib.import_module(module_name)
    if attribute:
        app = getattr(module, attribute, None)
        if not isinstance(app, func.FunctionApp):
            raise MetadataError(f"{spec} is not an azure.functions.FunctionApp")
        return app
    apps = [value for value in vars(module).values() if isinstance(value, func.FunctionApp)]
    if len(apps) != 1:
        raise MetadataError(f"{module_name} defines {len(apps)} FunctionApps; name one")
    return apps[0]


def resolve_setting_expressions(value: str, environ: Mapping[str, str]) -> str:
    """Replace each %NAME% with the app setting NAME, as the host's name resolver does."""

    def setting(match: re.Match[str]) -> str:
        name = match[1]
        if name not in environ:
            raise MetadataError(
                f"app setting {name!r} (used as %{name}%) is not set in the environment "
                "or in local.settings.json Values"
            )
        return environ[name]

    return _SETTING_EXPRESSION.sub(setting, value)


def read_functions(app: func.FunctionApp, environ: Mapping[str, str]) -> list[Function]:
    """Every function of `app`, with its trigger's metadata.

    ``get_functions()`` may be called only once per app (a second call reports every
    function as a duplicate), so this is the one place that calls it.
    """
    functions: list[Function] = []
    for function in app.get_functions():
        handler = function.get_user_function()
        name = function.get_function_name() or handler.__name__
        bindings = json.loads(function.get_function_json())["bindings"]
        try:
            functions.append(_describe(name, bindings, handler, environ))
        except MetadataError as exc:
            # As the Functions host does: this function is in error, the others still run.
            functions.append(UnsupportedFunction(name, str(exc), in_error=True))
    return functions


def _describe(
    name: str, bindings: list[dict[str, Any]], handler: Handler, environ: Mapping[str, str]
) -> Function:
    triggers = [b for b in bindings if str(b.get("type", "")).endswith("Trigger")]
    if len(triggers) != 1:
        return UnsupportedFunction(name, "expected exactly one trigger binding")
    trigger = triggers[0]
    others = [b for b in bindings if b is not trigger]
    kind = trigger["type"]
    if kind == "httpTrigger":
        # The HTTP response is the return value ("$return"); other outputs need the host.
        others = [b for b in others if not (b["type"] == "http" and b["name"] == "$return")]
    if others:
        kinds = ", ".join(sorted({f"{b['type']} ({b['name']})" for b in others}))
        return UnsupportedFunction(name, f"bindings this host does not provide: {kinds}")
    extra = _unsupplied_parameters(handler, trigger["name"])
    if extra:
        return UnsupportedFunction(name, f"parameters this host does not supply: {extra}")
    if kind == "httpTrigger":
        methods = trigger.get("methods")
        return HttpFunction(
            name=name,
            route=(trigger.get("route") or name).strip("/"),
            methods=tuple(str(m).upper() for m in methods) if methods else None,
            auth_level=str(trigger.get("authLevel") or "FUNCTION").upper(),
            binding_name=trigger["name"],
            handler=handler,
        )
    if kind == "queueTrigger":
        # The host lower-cases queue names (the service only accepts lower case).
        queue_name = resolve_setting_expressions(trigger["queueName"], environ).lower()
        return QueueFunction(
            name=name,
            queue_name=queue_name,
            connection=trigger.get("connection") or DEFAULT_CONNECTION,
            binding_name=trigger["name"],
            handler=handler,
        )
    if kind == "timerTrigger":
        return _timer(name, trigger, handler, environ)
    return UnsupportedFunction(name, f"trigger type {kind} is not supported")


def _timer(
    name: str, trigger: dict[str, Any], handler: Handler, environ: Mapping[str, str]
) -> TimerFunction:
    expression = resolve_setting_expressions(str(trigger.get("schedule") or ""), environ)
    try:
        schedule = parse_schedule(expression)
    except ScheduleError as exc:
        raise MetadataError(f"timer schedule {exc}") from None
    return TimerFunction(
        name=name,
        schedule=schedule,
        # The decorators leave out what was not given; these are the host's defaults.
        run_on_startup=bool(trigger.get("runOnStartup", False)),
        use_monitor=bool(trigger.get("useMonitor", True)),
        binding_name=trigger["name"],
        handler=handler,
    )


def _unsupplied_parameters(handler: Handler, binding_name: str) -> str:
    """Parameters without a default that are not the trigger binding (e.g. ``context``)."""
    names = [
        parameter.name
        for parameter in inspect.signature(handler).parameters.values()
        if parameter.name != binding_name and parameter.default is inspect.Parameter.empty
    ]
    return ", ".join(names)
