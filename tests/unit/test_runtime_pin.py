"""The Functions Python runtime is pinned exactly, and the tests run the pinned one."""

from __future__ import annotations

import re
import sys
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = "azure-functions-runtime"


def requirement(name: str) -> str:
    """The requirements.txt specifier of `name` ("==1.3.0", ">=2.3,<3")."""
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        found = re.fullmatch(rf"{re.escape(name)}\s*([<>=!~].*)", line.split("#")[0].strip())
        if found:
            return found.group(1).replace(" ", "")
    raise AssertionError(f"{name} is not in requirements.txt")


def test_the_runtime_is_pinned_to_one_released_version() -> None:
    assert re.fullmatch(r"==\d+\.\d+\.\d+", requirement(RUNTIME)), requirement(RUNTIME)


def test_the_tests_run_the_pinned_runtime() -> None:
    assert version(RUNTIME) == requirement(RUNTIME).removeprefix("==")


def test_the_programming_model_is_the_line_built_for_python_3_13() -> None:
    assert requirement("azure-functions").startswith(">=2.")
    assert int(version("azure-functions").split(".")[0]) == 2


def test_the_app_runs_on_the_python_of_python_version() -> None:
    wanted = (ROOT / ".python-version").read_text().splitlines()[0].strip()
    assert f"{sys.version_info.major}.{sys.version_info.minor}" == wanted
