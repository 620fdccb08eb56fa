"""Call flows in fresh interpreters: the check command as a module, and the app's cold start.

GIVEN a new Python process, WHEN it runs `python -m telephony.flows check` or imports the
app, THEN the command exits 0 for the shipped document, and the import loads no flow code.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The shipped defaults, whatever the shell running the tests has set.
ENV = {k: v for k, v in os.environ.items() if k not in {"CALL_FLOWS_FILE", "VOICE_FLOW"}}


def test_check_runs_as_a_module() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "telephony.flows", "check"],
        cwd=ROOT, env=ENV, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "call-flows.yaml: ok (4 flows" in result.stdout


def test_importing_the_app_loads_no_flow_code_nor_its_parsers() -> None:
    # Cold start: the flow code and its parsers are imported on first use.
    code = (
        "import sys, function_app\n"
        "loaded = {'yaml', 'jsonschema', 'telephony.flows'} & set(sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False,
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
