"""Timer functions that tests/integration/test_devhost_timers.py serves with the development host.

Each invocation appends one JSON object a line, what its TimerRequest said and when it
started and ended, to the file named by the setting DEVHOST_TIMER_RECORDS. Schedules come
from settings, so each test host picks its own.
"""

from __future__ import annotations

import json
import os
import threading
import time

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
_records_lock = threading.Lock()


def _record(name: str, timer: func.TimerRequest, started: float) -> None:
    fields = {
        "function": name,
        "is_timer_request": isinstance(timer, func.TimerRequest),
        "past_due": timer.past_due,
        "schedule_status": getattr(timer, "schedule_status", None),
        "schedule": getattr(timer, "schedule", None),
        "started": started,
        "ended": time.time(),
    }
    line = json.dumps(fields) + "\n"
    with _records_lock, open(os.environ["DEVHOST_TIMER_RECORDS"], "a", encoding="utf-8") as f:
        f.write(line)


@app.function_name("tick")
@app.timer_trigger(
    arg_name="timer", schedule="%TICK_SCHEDULE%", run_on_startup=False, use_monitor=False
)
def tick(timer: func.TimerRequest) -> None:
    _record("tick", timer, time.time())


@app.function_name("slow")
@app.timer_trigger(arg_name="timer", schedule="%SLOW_SCHEDULE%", use_monitor=False)
def slow(timer: func.TimerRequest) -> None:
    """Runs longer than its schedule's period, which must not make invocations overlap."""
    started = time.time()
    time.sleep(float(os.environ.get("SLOW_SECONDS", "1.5")))
    _record("slow", timer, started)


@app.function_name("flaky")
@app.timer_trigger(arg_name="timer", schedule="%FLAKY_SCHEDULE%", use_monitor=False)
def flaky(timer: func.TimerRequest) -> None:
    _record("flaky", timer, time.time())
    raise RuntimeError("the timer function failed")


@app.function_name("nightly")
@app.timer_trigger(arg_name="timer", schedule="0 30 2 * * *", run_on_startup=True)
async def nightly(timer: func.TimerRequest) -> None:
    """Once a day, and once as the host starts; useMonitor left at the host's default."""
    _record("nightly", timer, time.time())


@app.function_name("manual")
@app.timer_trigger(arg_name="timer", schedule="%MANUAL_SCHEDULE%")
def manual(timer: func.TimerRequest) -> None:
    """Run through the admin API by the tests; its schedule is far away."""
    _record("manual", timer, time.time())


@app.route(route="ping", methods=["GET"])
def ping(req: func.HttpRequest) -> str:
    return "pong"
