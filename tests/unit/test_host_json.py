"""host.json agrees with the code that depends on it."""

from __future__ import annotations

import json
from pathlib import Path

from telephony.adapters.storage import POOL_SIZE
from telephony.adapters.twilio_rest import CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS
from telephony.adapters.twilio_rest import POOL_SIZE as TWILIO_POOL_SIZE
from telephony.outbound.service import LEASE, MAX_DEQUEUE_COUNT

QUEUES = json.loads((Path(__file__).resolve().parents[2] / "host.json").read_text())["extensions"][
    "queues"
]


def test_poison_status_is_recorded_on_the_hosts_last_attempt() -> None:
    assert QUEUES["maxDequeueCount"] == MAX_DEQUEUE_COUNT


def test_raw_messages_and_base64_both_reach_the_function() -> None:
    assert QUEUES["messageEncoding"] == "none"


def test_pools_cover_the_queue_concurrency_of_one_instance() -> None:
    in_flight = QUEUES["batchSize"] + QUEUES["newBatchThreshold"]
    assert in_flight <= TWILIO_POOL_SIZE
    assert in_flight <= POOL_SIZE


def test_lease_outlives_a_twilio_request() -> None:
    assert LEASE.total_seconds() > CONNECT_TIMEOUT_SECONDS + READ_TIMEOUT_SECONDS


def test_the_hosts_retries_outlast_a_dead_workers_claim() -> None:
    # A claim found with a live lease (its worker died, or its insert's answer was lost)
    # makes the host retry; it is parked in_doubt only once the lease has run out. Should
    # the retries end first, the message would go to the poison queue with its record
    # still claimed: never final. tests/soak_harness.py keeps this when it shortens the
    # back-off.
    hours, minutes, seconds = (int(part) for part in QUEUES["visibilityTimeout"].split(":"))
    visibility = hours * 3600 + minutes * 60 + seconds
    assert (QUEUES["maxDequeueCount"] - 1) * visibility > LEASE.total_seconds()
