"""The deployment package holds what the app runs on, and none of the development tools."""

from __future__ import annotations

import pytest

from tests.contract.package import ROOT, ignored, package_files


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


def test_the_package_holds_the_app_and_nothing_else() -> None:
    top = {path.split("/")[0] for path in package_files()}
    assert top == {"function_app.py", "host.json", "requirements.txt", "telephony", "flows",
                   ".funcignore"}  # fmt: skip
