"""Soak: nothing lost, nothing sent twice, for queued commands under production faults.

Run: .venv/bin/python bench/soak.py            (5,000 commands, a few minutes)
     .venv/bin/python bench/soak.py --commands 20000 --keep

Puts the commands on the outbound queue (SMS, MMS, scheduled SMS and calls; about 10%
repeating an earlier idempotency key; invalid ones; SMS whose send_at is in the near past)
and runs them through the development host, the real queue trigger path, in two worker
processes with several threads each. The Twilio mock answers 10% of creates with 429, 5%
with 500, holds 1% past the app's 15 s read timeout, and drops 1% after the create (the
answer is lost: `in_doubt`). Meanwhile Azurite is restarted twice (its data on disk), one
worker is SIGKILLed in the middle of its batch (and replaced), and the mock is unreachable
for 10 s. Then the three ledgers are reconciled (tests/soak_harness.py says how) and the
report printed; the exit status is 1 when an invariant is broken.

The host's rules are host.json's (visibilityTimeout 30 s, maxDequeueCount 5). One
deviation: the dev host's message lease is 90 s (`--message-lease`) instead of the Functions
host's 10 minutes, so that the killed worker's messages come back within the run; they come
back after the app's 60 s claim lease, as they would in Azure.

tests/integration/test_soak.py runs a short version with exact assertions.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.soak_harness import SoakPlan, run_soak  # noqa: E402 - after the path is set


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=5000, help="queue messages (5000)")
    parser.add_argument("--threads", type=int, default=8, help="threads per worker (8)")
    parser.add_argument("--seed", type=int, default=SoakPlan.bench().seed)
    parser.add_argument(
        "--message-lease", type=float, default=90.0, help="dev host message lease, s (90)"
    )
    parser.add_argument(
        "--visibility-timeout", type=float, help="override host.json's visibilityTimeout, s"
    )
    parser.add_argument("--workdir", type=Path, help="where logs and Azurite's data go")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    plan = SoakPlan.bench(
        args.commands,
        threads=args.threads,
        seed=args.seed,
        message_lease=args.message_lease,
        visibility_timeout=args.visibility_timeout,
    )
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"soak: {plan.commands} commands; logs and data in {workdir}", flush=True)
    try:
        report = run_soak(plan, workdir, say=lambda line: print(line, flush=True))
        text = report.render()
        (workdir / "report.txt").write_text(text + "\n")
        print(text, flush=True)
        return 1 if report.problems() else 0
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
