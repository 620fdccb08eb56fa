"""The deployment package holds what the app runs on, and none of the development tools."""

from __future__ import annotations

from fnmatch import fnmatch
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PATTERNS = [
    line.strip()
    for line in (ROOT / ".funcignore").read_text().splitlines()
    if line.strip() and not line.startswith("#")
]


def ignored(path: str) -> bool:
    """True when a .funcignore pattern matches the path or one of its parent folders."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    return any(fnmatch(prefix, pattern) for prefix in prefixes for pattern in PATTERNS)


@pytest.mark.parametrize(
    "path",
    [
        "function_app.py",
        "host.json",
        "requirements.txt",
        "telephony/container.py",
        "telephony/schemas/outbound-command.v1.json",
        "telephony/schemas/call-flows.v1.json",
        "flows/call-flows.yaml",
        "flows/sms-rules.yaml",
    ],
)
def test_what_the_app_runs_on_is_deployed(path: str) -> None:
    assert (ROOT / path).exists()
    assert not ignored(path)


@pytest.mark.parametrize(
    "path",
    ["tests/conftest.py", "devhost/stack.py", "localpeers/azurite.py", "bench/outbound.py",
     "node_modules/x", ".venv/bin/python", "local.settings.json", "infra/main.bicep"],
)  # fmt: skip
def test_development_files_are_not_deployed(path: str) -> None:
    assert ignored(path)
