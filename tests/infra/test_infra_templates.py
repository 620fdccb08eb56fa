"""The templates parse, are wired as a compiler would check, hold secrets only in @secure()
parameters, and leak none of them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from telephony.config.settings import SETTINGS_BY_NAME
from tests.infra.bicep_templates import (
    INFRA_DIR,
    REPO_ROOT,
    all_templates,
    app_settings,
    bicep_files,
    looks_secret,
    references,
    template,
)

PREVIEW_API_VERSION = re.compile(r"-(preview|beta|alpha)$", re.IGNORECASE)

# Not secrets, although their names contain a word that usually means one.
NOT_SECRETS = {
    "secretCacheSeconds": "how long a secret is cached, in seconds",
}

# Output text that would expose a credential: list*() functions and key-bearing properties.
LEAKY_OUTPUT = re.compile(
    r"list_?[a-z]*keys|list_?secrets|list_?credentials|connectionstring|instrumentationkey"
    r"|primarykey|secondarykey|accountkey|sastoken",
    re.IGNORECASE,
)
# Output names may say "KEY_VAULT"; any other secret word in a name is a leak.
LEAKY_OUTPUT_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|CONNECTION_STRING|KEY(?!_VAULT)")


def module_config(module: dict[str, Any]) -> dict[str, Any]:
    """A module's name, scope and params, whether or not it is conditional (`= if (...)`)."""
    config: dict[str, Any] = module["config"]
    return config["config"] if "condition" in config and "config" in config else config


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: p.relative_to(INFRA_DIR).as_posix())
def test_every_bicep_file_parses(path: Path) -> None:
    tree = template(path.relative_to(INFRA_DIR).as_posix()).tree

    assert "resources" in tree or "modules" in tree, f"{path.name} declares nothing"


def test_main_delegates_to_modules() -> None:
    main = template("main.bicep")

    assert [r.type for r in main.resources()] == ["Microsoft.Resources/resourceGroups"]
    paths = {spec["detail"]["path"] for spec in main.modules.values()}
    for module in ("api", "storage", "keyvault", "monitoring", "rbac", "events"):
        assert f"app/{module}.bicep" in paths


def test_parameters_that_hold_secrets_are_secure() -> None:
    insecure = [
        f"{t.path}: {name}"
        for t in all_templates()
        for name in t.parameters
        if looks_secret(name) and name not in NOT_SECRETS and not t.is_secure(name)
    ]

    assert not insecure, f"secret-looking parameters without @secure(): {insecure}"


def test_secure_parameters_have_no_default_value() -> None:
    # An empty default only makes a secret optional; any other default would be in the repo.
    defaulted = [
        f"{t.path}: {name}"
        for t in all_templates()
        for name, spec in t.parameters.items()
        if t.is_secure(name) and spec.get("default") not in (None, "")
    ]

    assert not defaulted


def test_secure_parameters_flow_only_into_key_vault_secrets() -> None:
    main, vault = template("main.bicep"), template("app/keyvault.bicep")
    secure = [name for name in main.parameters if main.is_secure(name)]
    assert secure, "main.bicep declares no @secure() parameter"

    for name in secure:
        for symbol, module in main.modules.items():
            params = module_config(module)["params"]
            elsewhere = {k: v for k, v in params.items() if k != name}
            assert not references(elsewhere, name), f"{name} reaches module {symbol}"
            if name in params:
                assert module["detail"]["path"] == "app/keyvault.bicep", f"{name} -> {symbol}"
        for section in ("variables", "resources", "outputs"):
            assert not references(main.tree.get(section, {}), name), f"{name} used in {section}"

    for name in (n for n in vault.parameters if vault.is_secure(n)):
        for resource in vault.resources():
            if references(resource.body, name) or references(resource.condition, name):
                assert resource.type == "Microsoft.KeyVault/vaults/secrets", resource.symbol
        assert not references(vault.tree.get("outputs", {}), name)


def test_no_output_exposes_a_secret() -> None:
    for t in all_templates():
        secure = [name for name in t.parameters if t.is_secure(name)]
        for name, output in t.outputs.items():
            where = f"{t.path}: output {name}"
            assert not LEAKY_OUTPUT_NAME.search(name.upper()), where
            assert not any(d.get("type") == "secure" for d in output.get("decorators", [])), where
            value = output["value"]
            assert not LEAKY_OUTPUT.search(json.dumps(value)), where
            assert not any(references(value, param) for param in secure), where


def test_main_outputs_are_upper_snake_case_and_name_what_the_docs_use() -> None:
    outputs = template("main.bicep").outputs

    assert all(re.fullmatch(r"[A-Z][A-Z0-9_]*", name) for name in outputs)
    for name in (
        "AZURE_FUNCTION_APP_NAME",
        "PUBLIC_BASE_URL",
        "VOICE_WEBHOOK_URL",
        "SMS_WEBHOOK_URL",
        "STATUS_CALLBACK_URL",
        "OUTBOUND_QUEUE_NAME",
        "AZURE_KEY_VAULT_NAME",
        "EVENTS_QUEUE_NAME",
        "EVENT_GRID_TOPIC_ENDPOINT",
    ):
        assert name in outputs, name


@pytest.mark.parametrize(
    ("output", "path"),
    [
        ("VOICE_WEBHOOK_URL", "/api/voice_url"),
        ("SMS_WEBHOOK_URL", "/api/sms_url"),
        ("STATUS_CALLBACK_URL", "/api/status_callback"),
    ],
)
def test_webhook_outputs_are_the_routes_twilio_calls(output: str, path: str) -> None:
    value = template("main.bicep").outputs[output]["value"]

    assert value == "${api.outputs.baseUrl}" + path


def test_parameters_are_camel_case() -> None:
    bad = [
        f"{t.path}: {name}"
        for t in all_templates()
        for name in t.parameters
        if not re.fullmatch(r"[a-z][A-Za-z0-9]*", name)
    ]

    assert not bad


def test_modules_get_the_parameters_they_declare() -> None:
    # There is no offline Bicep compiler, so check the wiring a compiler would.
    main = template("main.bicep")
    for symbol, module in main.modules.items():
        target = template(module["detail"]["path"])
        passed = set(module_config(module)["params"])
        declared = set(target.parameters)
        required = {n for n, spec in target.parameters.items() if spec.get("default") is None}
        assert passed <= declared, f"{symbol}: unknown parameters {sorted(passed - declared)}"
        assert required <= passed, f"{symbol}: missing parameters {sorted(required - passed)}"


def test_module_outputs_used_by_main_exist() -> None:
    main = template("main.bicep")
    text = json.dumps(main.tree)
    for symbol, module in main.modules.items():
        declared = set(template(module["detail"]["path"]).outputs)
        used = set(re.findall(r"\b" + symbol + r"\.outputs\.(\w+)", text))
        used |= _accessed_outputs(main.tree, symbol)
        assert used <= declared, f"{symbol}: no such outputs {sorted(used - declared)}"


def _accessed_outputs(node: object, symbol: str) -> set[str]:
    """Names in `symbol.outputs.<name>` property accesses, as pycep nests them."""
    found: set[str] = set()
    if isinstance(node, dict):
        operator = node.get("operator")
        if isinstance(operator, dict) and operator.get("type") == "property_accessor":
            operands = operator["operands"]
            inner = operands["operand_2"]
            if operands["operand_1"] == symbol and isinstance(inner, dict):
                inner_operands = inner["operator"]["operands"]
                if inner_operands["operand_1"] == "outputs":
                    found.add(str(inner_operands["operand_2"]))
        for value in node.values():
            found |= _accessed_outputs(value, symbol)
    elif isinstance(node, list):
        for item in node:
            found |= _accessed_outputs(item, symbol)
    return found


def test_parameters_file_matches_main() -> None:
    document = json.loads((INFRA_DIR / "main.parameters.json").read_text())
    supplied = document["parameters"]
    main = template("main.bicep")

    assert set(supplied) <= set(main.parameters), "main.parameters.json names unknown parameters"
    required = {n for n, spec in main.parameters.items() if spec.get("default") is None}
    assert required <= set(supplied), f"not supplied: {sorted(required - set(supplied))}"
    assert supplied["environmentName"]["value"] == "${AZURE_ENV_NAME}"
    assert supplied["location"]["value"] == "${AZURE_LOCATION}"
    # Secrets come from the azd environment, never from a value in the repository.
    for name in (n for n in supplied if main.is_secure(n)):
        assert re.fullmatch(r"\$\{[A-Z0-9_]+\}", supplied[name]["value"]), name


def test_azure_yaml_deploys_the_api_service_as_a_python_function() -> None:
    text = (REPO_ROOT / "azure.yaml").read_text()
    api_service_tag = template("app/api.bicep").parameters["serviceName"]["default"]

    assert re.search(r"^services:\n  " + api_service_tag + r":\n", text, re.MULTILINE)
    for line in ("project: .", "language: python", "host: function"):
        assert re.search(r"^    " + re.escape(line) + r"$", text, re.MULTILINE), line


def test_no_resource_uses_a_preview_api_version() -> None:
    previews = [
        f"{t.path}: {symbol}@{spec['api_version']}"
        for t in all_templates()
        for symbol, spec in t.tree.get("resources", {}).items()
        if PREVIEW_API_VERSION.search(spec["api_version"])
    ]

    assert not previews


def test_each_resource_type_uses_one_api_version_everywhere() -> None:
    # An upgrade (docs/deploy.md, "API versions") moves every use of a type at once, so a
    # module's `existing` reference never reads a resource through an older shape.
    versions: dict[str, set[str]] = {}
    for t in all_templates():
        for spec in t.tree.get("resources", {}).values():
            versions.setdefault(spec["type"], set()).add(spec["api_version"])

    mixed = {type_: sorted(found) for type_, found in versions.items() if len(found) > 1}
    assert not mixed


def test_events_queue_and_reconcile_settings_reach_the_app_with_the_code_defaults() -> None:
    settings = app_settings()
    api = template("app/api.bicep").parameters
    main = template("main.bicep")
    passed = main.modules["api"]["config"]["params"]

    assert main.variables["eventsQueueName"] == SETTINGS_BY_NAME["EVENTS_QUEUE_NAME"].default
    assert settings["EVENTS_QUEUE_NAME"] == "eventsQueueName"
    assert _accessed_outputs(passed["eventsQueueName"], "storage") == {"eventsQueueName"}
    # The Functions host reads the schedule too, so it is never left empty.
    assert settings["RECONCILE_SCHEDULE"] == "reconcileSchedule"
    assert api["reconcileSchedule"]["default"] == SETTINGS_BY_NAME["RECONCILE_SCHEDULE"].default
    assert settings["RECONCILE_AFTER_MINUTES"] == "reconcileAfterMinutes"
    assert (
        api["reconcileAfterMinutes"]["default"]
        == SETTINGS_BY_NAME["RECONCILE_AFTER_MINUTES"].default
    )


def test_event_grid_is_off_unless_the_azd_environment_turns_it_on() -> None:
    document = json.loads((INFRA_DIR / "main.parameters.json").read_text())
    parameter = template("main.bicep").parameters["eventGridEnabled"]

    assert parameter["type"] == "bool"
    assert parameter["default"] is False
    assert document["parameters"]["eventGridEnabled"]["value"] == "${EVENT_GRID_ENABLED=false}"
