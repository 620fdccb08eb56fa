"""The test tree's layout holds: markers come from directories, and tests/unit stays pure.

tests/conftest.py marks every test by its directory (unit, functional, peers, infra), so
`pytest -m unit` is only as honest as what lives in tests/unit. A test there that imports a
peer, starts a process, opens a socket or asks for a peer fixture would run under
`make unit` and need what `make unit` does not start; these checks read the files (with
ast, so names in strings and comments do not count) and refuse it.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import MARKER_BY_DIRECTORY

TESTS = Path(__file__).resolve().parents[1]
UNIT = TESTS / "unit"
PEERS = TESTS / "peers"
PYPROJECT = TESTS.parent / "pyproject.toml"

# Modules a unit test may not import (nor any module below them).
FORBIDDEN_MODULES = ("tests.peers", "tests.integration", "localpeers", "subprocess", "socket")
# Calls that name fixtures in strings rather than as parameters.
FIXTURE_NAMING_CALLS = {"usefixtures", "getfixturevalue"}


def unit_files() -> list[Path]:
    return sorted(UNIT.rglob("*.py"))


def parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def package_of(path: Path) -> list[str]:
    return list(path.relative_to(TESTS.parent).with_suffix("").parts[:-1])


def imported_modules(path: Path) -> Iterator[tuple[int, str]]:
    """Every module a file imports, relative imports resolved, with its line."""
    for node in ast.walk(parsed(path)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_of(path)[: len(package_of(path)) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            yield node.lineno, module
            for alias in node.names:  # `from tests import peers` imports tests.peers
                yield node.lineno, f"{module}.{alias.name}"


def is_forbidden(module: str) -> bool:
    return any(module == name or module.startswith(name + ".") for name in FORBIDDEN_MODULES)


def is_fixture(decorator: ast.expr) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    return isinstance(target, ast.Attribute) and target.attr == "fixture"


def fixture_names(path: Path) -> set[str]:
    """Names of the @pytest.fixture functions a file defines (honouring name=...)."""
    names = set()
    for node in ast.walk(parsed(path)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for decorator in node.decorator_list:
                if not is_fixture(decorator):
                    continue
                name = node.name
                if isinstance(decorator, ast.Call):
                    for keyword in decorator.keywords:
                        if keyword.arg == "name" and isinstance(keyword.value, ast.Constant):
                            name = str(keyword.value.value)
                names.add(name)
    return names


def peer_modules() -> list[Path]:
    return sorted(path for path in PEERS.glob("*.py") if path.name != "__init__.py")


def peer_fixtures() -> set[str]:
    return set().union(*(fixture_names(path) for path in peer_modules()))


def requested_fixtures(path: Path) -> Iterator[tuple[int, str]]:
    """Fixture names a file asks for: function parameters, usefixtures, getfixturevalue."""
    for node in ast.walk(parsed(path)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            arguments = node.args
            for arg in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]:
                yield node.lineno, arg.arg
        elif isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in FIXTURE_NAMING_CALLS:
                for value in node.args:
                    if isinstance(value, ast.Constant) and isinstance(value.value, str):
                        yield node.lineno, value.value


def where(path: Path, line: int) -> str:
    return f"{path.relative_to(TESTS.parent)}:{line}"


def test_the_peer_fixtures_are_found() -> None:
    modules = peer_modules()
    assert modules, "no fixture modules in tests/peers"
    for path in modules:
        assert fixture_names(path), f"no @pytest.fixture found in {path.name}"


def test_unit_tests_import_no_peer_process_or_socket() -> None:
    files = unit_files()
    assert files
    found = [
        f"{where(path, line)} imports {module}"
        for path in files
        for line, module in imported_modules(path)
        if is_forbidden(module)
    ]
    assert found == [], "move these to tests/integration:\n" + "\n".join(found)


def test_unit_tests_ask_for_no_peer_fixture() -> None:
    peers = peer_fixtures()
    assert peers
    found = [
        f"{where(path, line)} asks for {name}"
        for path in unit_files()
        for line, name in requested_fixtures(path)
        if name in peers
    ]
    assert found == [], "move these to tests/integration:\n" + "\n".join(found)


def test_every_test_file_is_in_a_marked_directory() -> None:
    # A test outside these directories would get no marker, and no -m would select it.
    files = sorted(TESTS.rglob("test_*.py"))
    assert files
    unmarked = [
        str(path.relative_to(TESTS.parent))
        for path in files
        if path.relative_to(TESTS).parts[0] not in MARKER_BY_DIRECTORY
    ]
    assert unmarked == []


def test_the_directory_markers_are_registered() -> None:
    declared = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["tool"]["pytest"][
        "ini_options"
    ]["markers"]
    registered = {line.split(":", 1)[0].strip() for line in declared}
    assert set(MARKER_BY_DIRECTORY.values()) <= registered


@pytest.mark.parametrize(
    ("source", "module"),
    [
        ("import subprocess", "subprocess"),
        ("from socket import socket", "socket"),
        ("from localpeers.azurite import Azurite", "localpeers.azurite"),
        ("from tests import peers", "tests.peers"),
        ("from ..peers.fixtures import twilio_mock", "tests.peers.fixtures"),
        ("from ..integration import test_outbound_queue", "tests.integration"),
    ],
)
def test_the_import_check_sees_each_way_of_importing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, module: str
) -> None:
    # A file under a stand-in tests/unit, so relative imports resolve as they would there.
    monkeypatch.setattr(f"{__name__}.TESTS", tmp_path / "tests")
    path = tmp_path / "tests" / "unit" / "test_example.py"
    path.parent.mkdir(parents=True)
    path.write_text(source + "\n", encoding="utf-8")
    modules = [name for _, name in imported_modules(path)]
    assert module in modules
    assert any(is_forbidden(name) for name in modules)


def test_the_fixture_check_sees_parameters_and_named_fixtures(tmp_path: Path) -> None:
    path = tmp_path / "test_example.py"
    path.write_text(
        "import pytest\n"
        "@pytest.mark.usefixtures('azurite')\n"
        "def test_a(twilio_mock): ...\n"
        "def test_b(request):\n"
        "    request.getfixturevalue('local_key_vault')\n",
        encoding="utf-8",
    )
    names = {name for _, name in requested_fixtures(path)}
    assert {"azurite", "twilio_mock", "local_key_vault"} <= names
