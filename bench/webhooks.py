"""Webhook benchmarks: cold start against a floor process, and warm latency.

Run: .venv/bin/python bench/webhooks.py   (or `make bench`)

Cold start: for each of N fresh interpreters, the time from before the first import to a
signed sms_url reply, in-process. The floor process imports only what any such app needs
(azure.functions, twilio.twiml, twilio.request_validator) and builds the same reply.
Figures are ratios against the floor measured in the same run.

    .venv/bin/python bench/webhooks.py --compare .venv-py311/bin/python

also measures the same pair under another interpreter (`make bench-311` builds one with
Python 3.11 and the app's dependencies), each against the floor of its own Python.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TOKEN = "bench-auth-token"
URL = "https://bench.example/api/sms_url"
PARAMS = {"MessageSid": "SM" + "1" * 32, "From": "+15558675310", "To": "+15017122661", "Body": "hi"}


def _prelude(signature: str) -> str:
    return (
        "import time\nt0 = time.perf_counter()\n"
        f"URL = {URL!r}\nPARAMS = {PARAMS!r}\nSIG = {signature!r}\nTOKEN = {TOKEN!r}\n"
    )


APP_PROCESS = """
import azure.functions as func
from urllib.parse import urlencode
import function_app
fn = {f.get_function_name(): f for f in function_app.app.get_functions()}["sms_url"]
req = func.HttpRequest("POST", URL, headers={"Content-Type": "application/x-www-form-urlencoded",
    "X-Twilio-Signature": SIG}, body=urlencode(PARAMS).encode())
resp = fn.get_user_function()(req)
assert resp.status_code == 200, resp.status_code
print(time.perf_counter() - t0)
"""

FLOOR_PROCESS = """
import azure.functions as func
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse
from urllib.parse import urlencode, parse_qsl
req = func.HttpRequest("POST", URL, headers={"Content-Type": "application/x-www-form-urlencoded",
    "X-Twilio-Signature": SIG}, body=urlencode(PARAMS).encode())
params = dict(parse_qsl(req.get_body().decode()))
assert RequestValidator(TOKEN).validate(req.url, params, req.headers["X-Twilio-Signature"])
reply = MessagingResponse()
reply.message("Hey, thanks for the ping! Twilio and Azure rock!")
resp = func.HttpResponse(str(reply), mimetype="application/xml")
assert resp.status_code == 200
print(time.perf_counter() - t0)
"""


def _signature() -> str:
    from twilio.request_validator import RequestValidator

    return RequestValidator(TOKEN).compute_signature(URL, PARAMS)  # type: ignore[no-any-return]


def _run(
    body: str, runs: int, python: str = sys.executable, extra: dict[str, str] | None = None
) -> list[float]:
    env = {**os.environ, "TWILIO_AUTH_TOKEN": TOKEN, "TWILIO_ACCOUNT_SID": "AC" + "a" * 32}
    env.pop("KEY_VAULT_URI", None)
    # The webhook's own path, with no Storage here: the outcome event it publishes is a
    # Storage round trip, timed by bench/events.py against Azurite.
    env["EVENTS_QUEUE_NAME"] = ""
    env.update(extra or {})
    script = _prelude(_signature()) + body
    times = []
    for _ in range(runs):
        out = subprocess.run(
            [python, "-c", script],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return times


def cold_start(pythons: list[str], runs: int = 10) -> dict[str, dict[str, float | str]]:
    """Median seconds to import and serve one request, app and floor, per interpreter."""
    app: dict[str, list[float]] = {python: [] for python in pythons}
    floor: dict[str, list[float]] = {python: [] for python in pythons}
    for _ in range(runs):
        # Interleaved so that drift in machine load touches every series alike.
        for python in pythons:
            app[python] += _run(APP_PROCESS, 1, python)
            floor[python] += _run(FLOOR_PROCESS, 1, python)
    report: dict[str, dict[str, float | str]] = {}
    for python in pythons:
        app_median, floor_median = statistics.median(app[python]), statistics.median(floor[python])
        report[_version(python)] = {
            "python": python,
            "app_median_s": app_median,
            "floor_median_s": floor_median,
            "ratio": app_median / floor_median,
        }
    return report


def _version(python: str) -> str:
    script = "import sys; print('%d.%d' % sys.version_info[:2])"
    return subprocess.run(
        [python, "-c", script], capture_output=True, text=True, check=True
    ).stdout.strip()


def warm_latency(requests: int = 2000) -> dict[str, dict[str, float]]:
    """p50/p99 milliseconds of signed sms_url and voice_url calls in this process."""
    from urllib.parse import urlencode

    import azure.functions as func
    from twilio.request_validator import RequestValidator

    from telephony.container import build_container, set_container
    from tests.app_client import function

    env = {"TWILIO_AUTH_TOKEN": TOKEN, "TWILIO_ACCOUNT_SID": "AC" + "a" * 32}
    set_container(build_container({**env, "EVENTS_QUEUE_NAME": ""}))  # as _run: no Storage
    results = {}
    for name in ("sms_url", "voice_url"):
        url = f"https://bench.example/api/{name}"
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(url, PARAMS),
        }
        body = urlencode(PARAMS).encode()
        handler = function(name)
        samples = []
        for _ in range(requests):
            req = func.HttpRequest("POST", url, headers=headers, body=body)
            start = time.perf_counter()
            resp = handler(req)
            samples.append((time.perf_counter() - start) * 1000)
            assert resp.status_code == 200
        cuts = statistics.quantiles(samples, n=100)
        results[name] = {"p50_ms": cuts[49], "p99_ms": cuts[98]}
    set_container(None)
    return results


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Webhook cold start and warm latency.")
    parser.add_argument("--compare", action="append", default=[], metavar="PYTHON",
                        help="another interpreter with the app's dependencies")  # fmt: skip
    args = parser.parse_args()
    pythons = [sys.executable, *args.compare]
    report = {"cold_start": cold_start(pythons), "warm_latency": warm_latency()}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
