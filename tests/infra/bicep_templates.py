"""The Bicep templates under infra/, parsed with pycep-parser, for the infrastructure tests.

pycep turns a template into nested dicts. Two quirks shape the functions below: a bare
identifier (a parameter, variable or resource symbol) is a plain string leaf, so a reference
to a parameter is a leaf equal to its name; and a conditional resource, like a resource
declared in a loop (`[for ... in ...: {...}]`), nests its body as `config.config` beside
`config.condition` (and `config.loop_type`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pycep import BicepParser

REPO_ROOT = Path(__file__).resolve().parents[2]
INFRA_DIR = REPO_ROOT / "infra"

# Parameter names that suggest a secret: any of these words, or a name ending in "key"
# (so keyVaultName and twilioApiKeySid are not secrets, twilioApiKeySecret is).
_SECRET_WORDS = re.compile(r"token|secret|password|passwd|credential|key$", re.IGNORECASE)


def bicep_files() -> list[Path]:
    return sorted(INFRA_DIR.rglob("*.bicep"))


@functools.cache
def _parser() -> BicepParser:
    return BicepParser()


@functools.cache
def template(relative_path: str) -> Template:
    """The template at infra/<relative_path>, parsed once per test run."""
    tree: dict[str, Any] = dict(_parser().parse(file_path=INFRA_DIR / relative_path))
    return Template(relative_path, tree)


def all_templates() -> list[Template]:
    return [template(path.relative_to(INFRA_DIR).as_posix()) for path in bicep_files()]


def looks_secret(name: str) -> bool:
    return _SECRET_WORDS.search(name) is not None


def leaves(node: Any) -> Iterator[str]:
    """Every string leaf under a parsed node (dict keys excluded)."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from leaves(value)
    elif isinstance(node, list):
        for item in node:
            yield from leaves(item)


def references(node: Any, symbol: str) -> bool:
    """Whether a parsed expression mentions `symbol`, bare or inside a string interpolation."""
    interpolated = re.compile(r"\$\{[^}]*\b" + re.escape(symbol) + r"\b")
    return any(leaf == symbol or interpolated.search(leaf) for leaf in leaves(node))


@dataclass(frozen=True)
class Resource:
    symbol: str
    type: str
    existing: bool
    condition: Any  # None when the resource is unconditional
    body: dict[str, Any]  # name, parent, scope, properties, ...
    loop: dict[str, Any] | None = None  # pycep's loop_type of a `[for ...]` resource

    @property
    def properties(self) -> dict[str, Any]:
        props = self.body.get("properties", {})
        assert isinstance(props, dict), f"{self.symbol}: properties is not an object literal"
        return props


@dataclass(frozen=True)
class Template:
    path: str
    tree: dict[str, Any]

    @property
    def parameters(self) -> dict[str, dict[str, Any]]:
        return dict(self.tree.get("parameters", {}))

    @property
    def variables(self) -> dict[str, Any]:
        return {name: spec["value"] for name, spec in self.tree.get("variables", {}).items()}

    @property
    def outputs(self) -> dict[str, dict[str, Any]]:
        return dict(self.tree.get("outputs", {}))

    @property
    def modules(self) -> dict[str, dict[str, Any]]:
        return dict(self.tree.get("modules", {}))

    def is_secure(self, parameter: str) -> bool:
        decorators = self.parameters[parameter].get("decorators", [])
        return any(decorator.get("type") == "secure" for decorator in decorators)

    def resources(self, type_: str | None = None, *, existing: bool = False) -> list[Resource]:
        """Declared resources (or, with existing=True, only `existing` references)."""
        found = []
        for symbol, spec in self.tree.get("resources", {}).items():
            config = spec["config"]
            condition, loop = None, None
            if "condition" in config and "config" in config:
                condition, loop = config["condition"], config.get("loop_type")
                config = config["config"]
            resource = Resource(symbol, spec["type"], spec["existing"], condition, config, loop)
            if resource.existing == existing and type_ in (None, resource.type):
                found.append(resource)
        return found

    def resource(self, type_: str) -> Resource:
        """The one declared resource of `type_`."""
        matches = self.resources(type_)
        assert len(matches) == 1, f"{self.path}: expected one {type_}, found {len(matches)}"
        return matches[0]


def app_settings() -> dict[str, Any]:
    """The one appsettings block of the Function App (infra/app/api.bicep)."""
    configs = [
        resource
        for resource in template("app/api.bicep").resources("Microsoft.Web/sites/config")
        if resource.body["name"] == "appsettings"
    ]
    assert len(configs) == 1, "expected one Microsoft.Web/sites/config 'appsettings' resource"
    return configs[0].properties
