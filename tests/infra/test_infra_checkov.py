"""Checkov's Bicep checks pass over infra/, with every skip explained in .checkov.yaml."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from tests.infra.bicep_templates import REPO_ROOT

CONFIG = REPO_ROOT / ".checkov.yaml"
# Checkov pins its own pycep-parser and packaging, which clash with this project's test
# tools, so it is installed in a virtual environment of its own.
LOCAL_CHECKOV = REPO_ROOT / ".venv-checkov" / "bin" / "checkov"


def checkov_executable() -> str | None:
    if explicit := os.environ.get("CHECKOV"):
        return explicit
    if LOCAL_CHECKOV.exists():
        return str(LOCAL_CHECKOV)
    return shutil.which("checkov")


# Storage and Key Vault network checks that must pass, not be skipped: with vnetEnabled (the
# default) both have their public endpoints closed.
NETWORK_CHECKS = ("CKV_AZURE_35", "CKV_AZURE_59", "CKV_AZURE_109", "CKV_AZURE_189")
# One result in --compact output: the check's line, then one line per resource.
CHECK_RESULT = re.compile(r"^Check: (CKV2?_[A-Z]+_\d+):.*\n\t(PASSED|FAILED|SKIPPED) for", re.M)


def run_checkov(*args: str) -> subprocess.CompletedProcess[str]:
    checkov = checkov_executable()
    if checkov is None:
        pytest.fail("checkov not found: install it into .venv-checkov (see README) or set CHECKOV")
    return subprocess.run(
        [checkov, "-d", "infra", "--framework", "bicep", "--config-file", str(CONFIG), *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_checkov_finds_no_failed_check() -> None:
    result = run_checkov("--compact", "--quiet")

    summary = re.search(
        r"Passed checks: (\d+), Failed checks: (\d+), Skipped checks: \d+"
        r"(?:, Parsing errors: (\d+))?",
        result.stdout,
    )
    assert summary, f"no Checkov summary:\n{result.stdout}\n{result.stderr}"
    passed, failed = int(summary[1]), int(summary[2])
    assert failed == 0, result.stdout
    # A file Checkov cannot parse is silently left unchecked (its older pycep-parser rejects,
    # for one, more than four comment lines between two properties of an object).
    assert int(summary[3] or 0) == 0, result.stdout
    assert passed > 0
    assert result.returncode == 0, result.stdout + result.stderr


def test_storage_and_key_vault_network_checks_pass_and_are_not_skipped() -> None:
    result = run_checkov("--compact", "--check", ",".join(NETWORK_CHECKS))
    outcomes: dict[str, set[str]] = {}
    for check, outcome in CHECK_RESULT.findall(result.stdout):
        outcomes.setdefault(check, set()).add(outcome)

    assert outcomes == {check: {"PASSED"} for check in NETWORK_CHECKS}, result.stdout
    assert not set(NETWORK_CHECKS) & set(_skipped_checks())


def _skipped_checks() -> list[str]:
    lines = CONFIG.read_text().splitlines()
    start = lines.index("skip-check:")
    return re.findall(r"^  - (CKV2?_[A-Z]+_\d+)", "\n".join(lines[start + 1 :]), re.M)


def test_every_checkov_skip_has_a_reason() -> None:
    lines = CONFIG.read_text().splitlines()
    start = lines.index("skip-check:")
    entries = [line for line in lines[start + 1 :] if line.lstrip().startswith("- ")]

    assert entries
    for entry in entries:
        assert re.fullmatch(r"  - CKV2?_[A-Z]+_\d+  # \S.{10,}", entry), entry


def test_checkov_config_is_offline() -> None:
    # A download would make the result depend on a remote service (and fail without one).
    assert "skip-download: true" in CONFIG.read_text().splitlines()
