"""Put an outbound command on the queue, from Python or the command line.

    python -m telephony.outbound.enqueue sms +15558675310 "Your order shipped" [--key order-42]
    python -m telephony.outbound.enqueue call +15558675310 --say "Your code is 1 2 3 4"
    python -m telephony.outbound.enqueue call +15558675310 --flow appointment-reminder \
        --data '{"time": "tomorrow at 10 AM", "place": "12 Elm Street"}'

Uses the app's settings: AzureWebJobsStorage (or the identity-based service URIs) and
OUTBOUND_QUEUE_NAME. The command is validated against the published schema first, so a
typo fails here rather than as a rejected record.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from telephony.config.settings import Settings
from telephony.errors import CommandRejectedError, UnavailableError
from telephony.outbound.commands import CommandRules, parse_command


def enqueue(command: Mapping[str, Any], env: Mapping[str, str] | None = None) -> str:
    """Validate `command`, put it on the outbound queue, and return its idempotency key."""
    from telephony.adapters.storage import queue_client, queue_sender

    env = os.environ if env is None else env
    settings = Settings.from_env(env)
    document = {"idempotency_key": uuid.uuid4().hex, **command}
    # A producer may not share the app's sender settings: the worker checks those again.
    rules = CommandRules(None, messaging_service_sid=settings.messaging_service_sid or "unknown")
    parse_command(document, document["idempotency_key"], rules, datetime.now(UTC))
    queue_sender(queue_client(env, settings.outbound_queue_name))(json.dumps(document))
    return str(document["idempotency_key"])


def _arguments(argv: Sequence[str] | None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="python -m telephony.outbound.enqueue", description=__doc__
    )
    parser.add_argument("kind", choices=["sms", "call"])
    parser.add_argument("to", help="E.164 number, e.g. +15558675310")
    parser.add_argument("body", nargs="?", help="SMS text")
    parser.add_argument("--from", dest="from_", help="sender (default: the app's)")
    parser.add_argument("--media-url", action="append", dest="media_urls", default=None)
    parser.add_argument("--send-at", help="ISO date-time, 15 minutes to 35 days ahead")
    parser.add_argument("--say", help="call: text to speak")
    parser.add_argument("--url", help="call: https URL of TwiML (a host of ALLOWED_URL_HOSTS)")
    parser.add_argument("--twiml", help="call: a <Response> document")
    parser.add_argument("--flow", help="call: a flow of CALL_FLOWS_FILE (docs/flows.md)")
    parser.add_argument("--data", type=_json_object, help="call: the flow's data, a JSON object")
    parser.add_argument("--key", dest="idempotency_key", help="idempotency key")
    args = vars(parser.parse_args(argv))
    return {"from" if k == "from_" else k: v for k, v in args.items() if v is not None}


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        raise argparse.ArgumentTypeError("not JSON") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("not a JSON object")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    try:
        key = enqueue(_arguments(argv))
    except CommandRejectedError as exc:
        print(f"invalid command: {exc.message}", file=sys.stderr)
        return 2
    except UnavailableError as exc:  # a setting, or Storage: no traceback for either
        print(f"not enqueued: {exc}", file=sys.stderr)
        return 1
    print(key)
    return 0


if __name__ == "__main__":
    sys.exit(main())
