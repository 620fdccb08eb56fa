"""TCP connections opened to the Twilio API for 200 make_call requests.

Run: .venv/bin/python bench/connections.py   (or `make bench`)

The app's make_call (one pooled client per process) beside the tutorial's pattern (a new
twilio Client per request), both against the local Twilio API peer, whose proxy counts the
connections it accepts. Requests run on 16 threads, the host's concurrency.
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

REQUESTS = 200
THREADS = 16
TO, FROM = "+15558675310", "+15017122661"
SID, TOKEN = "AC" + "a" * 32, "bench-token"


def app_pattern(base_url: str, storage: str) -> None:
    from telephony.container import build_container, set_container
    from tests.app_client import post_json

    set_container(build_container({
        "TWILIO_ACCOUNT_SID": SID, "TWILIO_AUTH_TOKEN": TOKEN, "TWILIO_PHONE_NUMBER": FROM,
        "TWILIO_API_BASE_URL": base_url, "PUBLIC_BASE_URL": "https://bench.example",
        "AzureWebJobsStorage": storage,  # make_call checks the opt-out table first
    }))  # fmt: skip

    def call(_: int) -> None:
        assert post_json("make_call", {"to": TO, "say": "hi"}).status_code == 201

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(call, range(REQUESTS)))
    set_container(None)


def tutorial_pattern(base_url: str, storage: str) -> None:
    from twilio.rest import Client

    def call(_: int) -> None:
        client = Client(SID, TOKEN)  # a new client, and so a new connection, per request
        client.api.base_url = base_url
        client.calls.create(to=TO, from_=FROM, twiml="<Response><Say>hi</Say></Response>")

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(call, range(REQUESTS)))


def main() -> None:
    from localpeers.azurite import Azurite
    from localpeers.twilio_mock import TwilioMock
    from telephony.adapters.twilio_rest import POOL_SIZE

    results = {"requests": REQUESTS, "threads": THREADS, "pool_size": POOL_SIZE}
    with TwilioMock() as mock, Azurite() as azurite:
        for name, run in (("app", app_pattern), ("new_client_per_request", tutorial_pattern)):
            mock.reset()
            run(mock.base_url, azurite.connection_string)
            assert len(mock.find_requests("/Calls.json", method="POST")) == REQUESTS
            results[f"{name}_connections"] = mock.connections_opened
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
