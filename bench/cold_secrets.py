"""Network round trips before the first signed webhook answer on a cold instance.

Run: .venv/bin/python bench/cold_secrets.py [--runs N]

Each run is a fresh interpreter, as a cold instance is: KEY_VAULT_URI names the local Key
Vault stand-in (the production URL shape, routed through its CONNECT proxy),
IDENTITY_ENDPOINT/IDENTITY_HEADER its managed identity endpoint, and no auth token is in
the environment. The process imports the app and serves one signed sms_url. The stand-ins
count what that cost: token requests, vault requests (the SDK's unauthenticated challenge
request included), 404s (an optional secret that is not set) and connections to the vault.

Scenarios, interleaved run by run so that drift in machine load touches each alike:
- env_token: the auth token in the environment and no vault; no round trips, the floor
  the wall times are divided by;
- eager: the previous token read up front beside the current one, as a validator that asks
  for both tokens on every request would (reproduced by reading it before the call);
- current: the app as it is, a request signed with the current token;
- rotation: the previous token set in the vault and the request signed with it.

Wall times, medians: answer_s from the call to the answer, with the identity and Key Vault
SDKs already imported (their import, which the first read would do, is sdk_import_s), and
total_s from the start of the interpreter to the answer, every import included. Ratios are
against env_token and eager from the same run. On loopback a round trip costs little beside
the SDKs' own work; the counts are the figure that carries over to Azure, where each one
crosses a network (and the token request reaches Entra ID behind the identity endpoint).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from localpeers.keyvault import LocalKeyVault  # noqa: E402

# The variables that would route the SDK past the stand-ins, kept in one place.
from tests.peers.keyvault_fixtures import _CONFLICTING  # noqa: E402

ACCOUNT_SID = "AC" + "a" * 32
CURRENT_TOKEN = "bench-current-auth-token"
PREVIOUS_TOKEN = "bench-previous-auth-token"
PRIMARY_SECRET, SECONDARY_SECRET = "twilio-auth-token", "twilio-auth-token-secondary"
SECRETS = (PRIMARY_SECRET, SECONDARY_SECRET)
URL = "https://bench.example/api/sms_url"
PARAMS = {"MessageSid": "SM" + "1" * 32, "From": "+15558675310", "To": "+15017122661", "Body": "hi"}
_SECRET_SETTINGS = ("TWILIO_AUTH_TOKEN", "TWILIO_AUTH_TOKEN_SECONDARY", "TWILIO_API_KEY_SECRET")

PROCESS = """
import time
t0 = time.perf_counter()
import json
from urllib.parse import urlencode
import azure.functions as func
import function_app
sms_url = {f.get_function_name(): f for f in function_app.app.get_functions()}["sms_url"]
t1 = time.perf_counter()
import azure.identity, azure.keyvault.secrets  # on the first read otherwise; timed apart
t2 = time.perf_counter()
req = func.HttpRequest("POST", URL, headers={"Content-Type": "application/x-www-form-urlencoded",
    "X-Twilio-Signature": SIG}, body=urlencode(PARAMS).encode())
if EAGER:
    from telephony.container import get_container
    get_container().secrets.get("TWILIO_AUTH_TOKEN_SECONDARY")
resp = sms_url.get_user_function()(req)
t3 = time.perf_counter()
print(json.dumps({"status": resp.status_code, "sdk_import_s": t2 - t1, "answer_s": t3 - t2,
    "total_s": t3 - t0}))
"""


@dataclass(frozen=True)
class Scenario:
    name: str
    signed_with: str
    secondary_in_vault: bool = False
    eager: bool = False
    token_in_env: bool = False


SCENARIOS = (
    Scenario("env_token", CURRENT_TOKEN, token_in_env=True),
    Scenario("eager", CURRENT_TOKEN, eager=True),
    Scenario("current", CURRENT_TOKEN),
    Scenario("rotation", PREVIOUS_TOKEN, secondary_in_vault=True),
)


def _signature(token: str) -> str:
    from twilio.request_validator import RequestValidator

    return RequestValidator(token).compute_signature(URL, PARAMS)  # type: ignore[no-any-return]


def _environment(vault: LocalKeyVault, scenario: Scenario) -> dict[str, str]:
    drop = {*_CONFLICTING, *_SECRET_SETTINGS}
    env = {name: value for name, value in os.environ.items() if name not in drop}
    env.update(vault.environment())
    env.update(KEY_VAULT_URI=vault.vault_url, TWILIO_ACCOUNT_SID=ACCOUNT_SID)
    env["EVENTS_QUEUE_NAME"] = ""  # no Storage here: the webhook's own path only
    if scenario.token_in_env:  # no vault at all: what the secrets path adds is measured
        env["TWILIO_AUTH_TOKEN"] = CURRENT_TOKEN
        del env["KEY_VAULT_URI"]
    return env


def _counters(vault: LocalKeyVault) -> dict[str, int]:
    return {
        "token_requests": vault.token_request_count,
        "vault_requests": sum(vault.request_count(name) for name in SECRETS),
        "challenges": vault.challenge_count,
        "not_found": vault.response_count(404),
        "vault_connections": vault.connection_count,
    }


def run_once(vault: LocalKeyVault, scenario: Scenario) -> tuple[dict[str, float], dict[str, int]]:
    """One fresh process serving one webhook: its timings, and the round trips it cost."""
    if scenario.secondary_in_vault:
        vault.set_secret(SECONDARY_SECRET, PREVIOUS_TOKEN)
    else:
        vault.delete_secret(SECONDARY_SECRET)
    script = (
        f"URL = {URL!r}\nPARAMS = {PARAMS!r}\nSIG = {_signature(scenario.signed_with)!r}\n"
        f"EAGER = {scenario.eager!r}\n{PROCESS}"
    )
    before = _counters(vault)
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=_environment(vault, scenario),
        capture_output=True,
        text=True,
        check=True,
    )
    after = _counters(vault)
    timings = json.loads(out.stdout.strip().splitlines()[-1])
    assert timings.pop("status") == 200, out.stdout
    trips = {name: after[name] - before[name] for name in after}
    trips["round_trips"] = trips["token_requests"] + trips["vault_requests"]
    return timings, trips


def measure(runs: int) -> dict[str, dict[str, object]]:
    """Median timings and the round trips of every scenario (the same in every run)."""
    timings: dict[str, list[dict[str, float]]] = {s.name: [] for s in SCENARIOS}
    trips: dict[str, list[dict[str, int]]] = {s.name: [] for s in SCENARIOS}
    with LocalKeyVault() as vault:
        vault.set_secret(PRIMARY_SECRET, CURRENT_TOKEN)
        for _ in range(runs):
            for scenario in SCENARIOS:
                timing, trip = run_once(vault, scenario)
                timings[scenario.name].append(timing)
                trips[scenario.name].append(trip)
    return {name: _summary(timings[name], trips[name]) for name in timings}


def _summary(timings: list[dict[str, float]], trips: list[dict[str, int]]) -> dict[str, object]:
    distinct = {json.dumps(trip, sort_keys=True) for trip in trips}
    medians = {key: statistics.median(t[key] for t in timings) for key in timings[0]}
    return {**json.loads(min(distinct)), **medians, "round_trips_vary": len(distinct) > 1}


def _ratios(report: dict[str, dict[str, object]]) -> dict[str, dict[str, float]]:
    def ratio(name: str, base: str, key: str) -> float:
        return float(report[name][key]) / float(report[base][key])  # type: ignore[arg-type]

    return {
        name: {
            "answer_vs_env_token": ratio(name, "env_token", "answer_s"),
            "answer_vs_eager": ratio(name, "eager", "answer_s"),
            "total_vs_env_token": ratio(name, "env_token", "total_s"),
        }
        for name in report
    }


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Round trips before a cold webhook's answer.")
    parser.add_argument("--runs", type=int, default=7, help="fresh processes per scenario")
    args = parser.parse_args()
    report = measure(args.runs)
    print(json.dumps({"runs": args.runs, "scenarios": report, "ratios": _ratios(report)}, indent=2))


if __name__ == "__main__":
    main()
