"""Nothing lost, nothing sent twice: queued commands as a system, under production faults.

GIVEN a few hundred commands on the outbound queue (SMS and calls, duplicate keys, invalid
ones, send_at in the past), run by two development host processes against Azurite and the
Twilio mock, WHEN the mock answers 429 and 500 at random, hangs past the read timeout and
drops connections after creating, and meanwhile Azurite restarts, a worker is SIGKILLed in
the middle of its batch and the mock is unreachable for 10 s, THEN every command ends with a
final record, the queue is empty, and no key has more than one create Twilio accepted.

bench/soak.py runs the same with 5,000 commands; tests/soak_harness.py is the harness.
"""

from __future__ import annotations

from pathlib import Path

from tests.soak_harness import SoakPlan, fault_kind, run_soak


def test_no_command_is_lost_or_sent_twice_under_faults(tmp_path: Path) -> None:
    plan = SoakPlan.short()

    report = run_soak(plan, tmp_path)  # its progress lines show when the test fails

    text = report.render()
    assert report.problems() == [], text
    assert report.lost == [] and report.double_sent == {}, text
    assert report.queue_left == 0, text
    kinds = [event.kind for event in report.timeline]
    assert (kinds.count("kill"), kinds.count("restart"), kinds.count("outage")) == (1, 1, 1)
    kill = next(event for event in report.timeline if event.kind == "kill")
    assert kill.running >= plan.min_in_flight_at_kill, text
    faults = {fault_kind(create) for create in report.creates}
    assert {"429", "500", "hang", "drop"} <= faults, text
