"""Quiet hours: what they cost a queued send in Table round trips and queue messages.

Run: .venv/bin/python bench/quiet_hours.py   (or `make bench`)

Against Azurite and the Twilio mock (Prism serving Twilio's OpenAPI description), with
QUIET_HOURS=21:00-08:00 and a New York number, counted at the Table client:

1. A send outside quiet hours (13:00 in New York), events off and on: the target is what a
   send costs without quiet hours, 3 and 4 round trips.
2. A send inside them (07:00) with no Messaging Service: the deferral (its round trips, and
   the command put back on the queue), then the send when the command comes back at 08:00.
3. The arithmetic: the next allowed instant for a number with one zone and with sixteen.
"""

from __future__ import annotations

import json
import sys
import time
import timeit
from collections import Counter
from datetime import UTC, datetime, timedelta
from datetime import time as daytime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.events import READS, WRITES, counted, settings  # noqa: E402
from localpeers.azurite import Azurite  # noqa: E402
from localpeers.twilio_mock import TwilioMock  # noqa: E402
from telephony.container import Container, build_container  # noqa: E402
from telephony.outbound.commands import QuietHours  # noqa: E402
from telephony.outbound.quiet import next_allowed  # noqa: E402

SENDS = 20
NEW_YORK = "+12125551234"
RUSSIAN_MOBILE = "+79161234567"  # sixteen zones, Bucharest (UTC+2) to Anadyr (UTC+12)
AT_ONE_PM = datetime(2026, 11, 26, 18, tzinfo=UTC)  # in New York
AT_SEVEN_AM = datetime(2026, 11, 26, 12, tzinfo=UTC)
NIGHT = QuietHours(daytime(21), daytime(8))


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def app(azurite: Azurite, twilio: TwilioMock, clock: Clock, events: bool) -> Container:
    env = settings(azurite, twilio, QUIET_HOURS="21:00-08:00", TWILIO_MESSAGING_SERVICE_SID="")
    if not events:
        env["EVENTS_QUEUE_NAME"] = ""
    env["OUTBOUND_QUEUE_NAME"] = f"quiet-{env['DELIVERIES_TABLE_NAME'][-8:]}"
    return build_container(env, clock=clock)


def _sms(key: str) -> str:
    return json.dumps({"kind": "sms", "to": NEW_YORK, "body": "Your order shipped",
                       "idempotency_key": key})  # fmt: skip


def outside(azurite: Azurite, twilio: TwilioMock, events: bool) -> float:
    """Round trips per send at 13:00 in New York."""
    counts: Counter[str] = Counter()
    container = counted(app(azurite, twilio, Clock(AT_ONE_PM), events), counts)
    container.outbound.handle(_sms("warm-up"), "m", 1)  # tables and queues exist now
    counts.clear()
    for n in range(SENDS):
        container.outbound.handle(_sms(f"send-{n}"), f"m{n}", 1)
    return sum(counts[name] for name in READS + WRITES) / SENDS


def inside(azurite: Azurite, twilio: TwilioMock, events: bool) -> tuple[float, int, float]:
    """Round trips per deferral at 07:00, messages put back, round trips per return at 08:00."""
    clock = Clock(AT_SEVEN_AM)
    counts: Counter[str] = Counter()
    container = counted(app(azurite, twilio, clock, events), counts)
    queue = _queue(azurite, container)
    clock.now = AT_ONE_PM
    container.outbound.handle(_sms("warm-up"), "m", 1)
    clock.now = AT_SEVEN_AM
    counts.clear()
    for n in range(SENDS):
        container.outbound.handle(_sms(f"quiet-{n}"), f"q{n}", 1)
    deferral = sum(counts[name] for name in READS + WRITES) / SENDS
    put_back = queue.get_queue_properties().approximate_message_count
    clock.now = AT_SEVEN_AM + timedelta(hours=1)
    counts.clear()
    for n in range(SENDS):  # the commands as they come back (their content, new messages)
        container.outbound.handle(_sms(f"quiet-{n}"), f"back{n}", 1)
    return deferral, put_back, sum(counts[name] for name in READS + WRITES) / SENDS


def _queue(azurite: Azurite, container: Container) -> Any:
    from azure.storage.queue import QueueClient

    queue = QueueClient.from_connection_string(
        azurite.connection_string, container.settings.outbound_queue_name
    )
    queue.create_queue()
    return queue


def arithmetic() -> tuple[float, float]:
    """Milliseconds per next_allowed call (after the first, which loads the zone data)."""
    timings = []
    for number in (NEW_YORK, RUSSIAN_MOBILE):
        next_allowed(number, NIGHT, AT_SEVEN_AM)
        runs = 200
        timings.append(timeit.timeit(lambda n=number: next_allowed(n, NIGHT, AT_SEVEN_AM),
                                     number=runs) / runs * 1000)  # fmt: skip
    return timings[0], timings[1]


def main() -> int:
    started = time.monotonic()
    with Azurite() as azurite, TwilioMock() as twilio:
        off, on = outside(azurite, twilio, False), outside(azurite, twilio, True)
        print("1. a send outside quiet hours (QUIET_HOURS set), against Azurite and Prism")
        print(f"   Table round trips per send: events off {off:.2f}, on {on:.2f}")
        for events in (False, True):
            deferral, put_back, back = inside(azurite, twilio, events)
            print(f"2. a send inside quiet hours, events {'on' if events else 'off'}: "
                  f"{deferral:.2f} round trips per deferral, {put_back} of {SENDS} commands "
                  f"back on the queue; {back:.2f} per send when they return")  # fmt: skip
    one, sixteen = arithmetic()
    print(f"3. next_allowed: {one:.2f} ms for one zone, {sixteen:.2f} ms for sixteen")
    print(f"({time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
