"""The development host runs the app in the Development environment, as Core Tools does.

GIVEN `python -m devhost` serving a one-function app, WHEN the app reads
AZURE_FUNCTIONS_ENVIRONMENT, THEN it is Development (so make_call may fall back to the
request's host without PUBLIC_BASE_URL), unless the environment the host was started with
names another; local.settings.json cannot change it (Core Tools refuses the key there).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devhost.config import ENVIRONMENT_SETTING, apply_development_environment

ROOT = Path(__file__).resolve().parents[2]
LISTENING = re.compile(r"Development host listening on (http://\S+)")
APP = """
import os
import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.route(route="environment", methods=["GET"])
def environment(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(os.environ.get("AZURE_FUNCTIONS_ENVIRONMENT", "<unset>"))
"""


Serve = Callable[..., str]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Serve]:
    processes: list[subprocess.Popen[str]] = []

    def serve(file_value: str | None = None, **environ: str) -> str:
        """Start the host; return what the app reads as its environment."""
        (tmp_path / "envapp.py").write_text(APP)
        (tmp_path / "host.json").write_text(json.dumps({"version": "2.0"}))
        values = {ENVIRONMENT_SETTING: file_value} if file_value is not None else {}
        (tmp_path / "local.settings.json").write_text(json.dumps({"Values": values}))
        env = {k: v for k, v in os.environ.items() if k != ENVIRONMENT_SETTING}
        process = subprocess.Popen(
            [sys.executable, "-m", "devhost", "--app", "envapp:app",
             "--app-dir", str(tmp_path), "--settings", str(tmp_path / "local.settings.json"),
             "--host-json", str(tmp_path / "host.json"), "--port", "0"],
            cwd=ROOT, env={**env, **environ}, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        processes.append(process)
        base = _listening(process)
        with urllib.request.urlopen(f"{base}/api/environment", timeout=10) as response:
            body: bytes = response.read()
        return body.decode()

    yield serve
    for process in processes:
        process.terminate()
        process.wait(20)


def _listening(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    seen: list[str] = []
    found = threading.Event()
    result: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            seen.append(line)
            match = LISTENING.search(line)
            if match and not found.is_set():
                result.append(match[1])
                found.set()

    threading.Thread(target=read, daemon=True).start()
    assert found.wait(30), "devhost did not start:\n" + "".join(seen)
    return result[0]


def test_the_app_runs_in_development(served: Serve) -> None:
    assert served() == "Development"


def test_local_settings_cannot_change_it(served: Serve) -> None:
    assert served(file_value="Production") == "Development"


def test_the_environment_the_host_starts_with_wins(served: Serve) -> None:
    assert served(AZURE_FUNCTIONS_ENVIRONMENT="Staging") == "Staging"


@pytest.mark.parametrize(
    ("before", "after"), [({}, "Development"), ({ENVIRONMENT_SETTING: ""}, "Development"),
                          ({ENVIRONMENT_SETTING: "Production"}, "Production")],
)  # fmt: skip
def test_apply_development_environment(before: dict[str, str], after: str) -> None:
    env = dict(before)
    assert apply_development_environment(env) == after
    assert env == {ENVIRONMENT_SETTING: after}
