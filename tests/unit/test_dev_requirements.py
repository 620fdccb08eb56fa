"""Every package the development code imports is declared, not borrowed from a dependency.

The local peers, tests, benchmarks and the development host import aiohttp, requests and
others that the runtime packages happen to bring along; a new twilio or Azure release could
stop bringing them. So each third-party module imported in those folders must come from a
distribution named in requirements.txt or requirements-dev.txt.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("localpeers", "tests", "bench", "devhost")
FIRST_PARTY = frozenset({"telephony", "localpeers", "devhost", "tests", "bench", "function_app"})
# Compiled by the contract tests from tests/contract/host_protocol.proto.
GENERATED = frozenset({"host_protocol_pb2"})
REQUIREMENTS = ("requirements.txt", "requirements-dev.txt")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*")


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares it."""
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> set[str]:
    """Normalized names of the distributions the requirements files list."""
    names = set()
    for file_name in REQUIREMENTS:
        for line in (ROOT / file_name).read_text(encoding="utf-8").splitlines():
            match = _NAME.match(line.split("#", 1)[0].strip())
            if match:
                names.add(normalize(match.group()))
    return names


def imported_modules(path: Path) -> Iterator[str]:
    """Dotted names of the absolute imports in `path` (``from a import b`` gives ``a.b``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def third_party_imports() -> dict[str, set[str]]:
    """Each imported third-party dotted name, with the files (relative) that import it."""
    found: dict[str, set[str]] = {}
    for folder in SCANNED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for module in imported_modules(path):
                top = module.split(".")[0]
                if top not in sys.stdlib_module_names and top not in FIRST_PARTY | GENERATED:
                    found.setdefault(module, set()).add(str(path.relative_to(ROOT)))
    return found


@cache
def _distributions_by_module() -> Mapping[str, list[str]]:
    return importlib.metadata.packages_distributions()


@cache
def _files(distribution: str) -> frozenset[str]:
    return frozenset(str(file) for file in importlib.metadata.files(distribution) or ())


def _holds(distribution: str, module_path: str) -> bool:
    files = _files(distribution)
    return any(f.startswith(f"{module_path}/") or f.startswith(f"{module_path}.") for f in files)


def providers(module: str) -> set[str]:
    """Normalized names of the installed distributions that provide `module`.

    A namespace package such as ``azure`` spans many distributions; the one that holds the
    longest prefix of the dotted name (``azure/core`` for ``azure.core.exceptions``) wins.
    """
    parts = module.split(".")
    candidates = _distributions_by_module().get(parts[0], [])
    for depth in range(len(parts), 0, -1):
        module_path = "/".join(parts[:depth])
        holders = {normalize(d) for d in candidates if _holds(d, module_path)}
        if holders:
            return holders
    return {normalize(d) for d in candidates}


def test_every_third_party_import_is_declared() -> None:
    names = declared()
    undeclared: dict[str, set[str]] = {}
    for module, files in third_party_imports().items():
        provided_by = providers(module)
        if not provided_by & names:
            label = f"{module.split('.')[0]} ({', '.join(sorted(provided_by)) or 'not installed'})"
            undeclared.setdefault(label, set()).update(files)
    assert not undeclared, "declare in requirements-dev.txt:\n" + "\n".join(
        f"{label}, imported in {', '.join(sorted(files))}"
        for label, files in sorted(undeclared.items())
    )


def test_the_scan_sees_imports_in_each_folder() -> None:
    # Guards the test above against passing because it scanned nothing.
    importers = {file for files in third_party_imports().values() for file in files}
    assert {Path(file).parts[0] for file in importers} == set(SCANNED)
    assert providers("aiohttp.web.Application") == {"aiohttp"}


def test_namespace_packages_resolve_to_the_distribution_that_holds_the_module() -> None:
    assert providers("azure.core.exceptions.HttpResponseError") == {"azure-core"}
    assert providers("azure.data.tables.TableClient") == {"azure-data-tables"}
    assert providers("yaml.safe_load") == {"pyyaml"}


def test_requirement_lines_yield_normalized_names() -> None:
    assert normalize("PyYAML") == "pyyaml"
    assert normalize("pycep_parser") == normalize("Pycep.Parser") == "pycep-parser"
    assert {"twilio", "pytest", "pycep-parser"} <= declared()
    assert "-r" not in declared()
