"""Seconds from `make run` to all three serving, and the stack's peak memory.

Run: .venv/bin/python bench/stack_startup.py   (or `make bench`)

Starts the same entry point `make run` uses (python -m devhost.stack), five times, on free
ports; the clock stops when it prints that the function app serves (it prints that only
once Azurite and the Twilio mock answer and the host answers its status page). Memory is
the largest sum of resident memory over the stack's processes, sampled while the demo runs
against it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RUNS = 5


from localpeers.processes import live_descendants  # noqa: E402


def _rss_mb(pids: set[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def one_run() -> tuple[float, float]:
    started = time.monotonic()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devhost.stack",
            "--port",
            "0",
            "--twilio-port",
            "0",
            "--storage-ports",
            "0,0,0",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    url = None
    for line in process.stdout:
        found = re.match(r"Function app\s+(http://\S+)/api/", line)
        if found:
            url = found[1]
            break
    seconds = time.monotonic() - started
    assert url, "the stack did not start"
    threading.Thread(target=process.stdout.read, daemon=True).start()
    peak = 0.0
    demo = subprocess.Popen(
        [sys.executable, "-m", "devhost.demo"],
        cwd=ROOT,
        env={**os.environ, "DEMO_APP_URL": url},
        stdout=subprocess.DEVNULL,
    )
    while demo.poll() is None:
        peak = max(peak, _rss_mb(live_descendants(process.pid)))
        time.sleep(0.05)
    peak = max(peak, _rss_mb(live_descendants(process.pid)))
    process.send_signal(signal.SIGINT)
    process.wait(60)
    assert demo.returncode == 0, "the demo failed"
    return seconds, peak


def main() -> None:
    one_run()  # the first run after an install compiles and caches; not counted
    results = [one_run() for _ in range(RUNS)]
    seconds = [s for s, _ in results]
    print(
        json.dumps(
            {
                "runs": RUNS,
                "startup_seconds": seconds,
                "startup_median_s": statistics.median(seconds),
                "peak_rss_mb": max(m for _, m in results),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
