"""Timer schedules as the development host reads them, without running it: NCRONTAB with
seconds first, time spans, and the timer metadata of an app with its %NAME% settings.

The host running timer functions, as a process, is tested in
tests/integration/test_devhost_timers.py.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import azure.functions as func
import pytest

from devhost.metadata import TimerFunction, UnsupportedFunction, read_functions
from devhost.schedule import (
    CronSchedule,
    IntervalSchedule,
    ScheduleError,
    is_frequent,
    occurrences,
    parse_schedule,
)
from devhost.timers import NEVER, ScheduleStatus, to_timer_request

NOON = datetime(2025, 6, 2, 12, 3, 7)  # a Monday


def test_every_five_minutes_fires_on_minute_multiples_of_five_at_second_zero() -> None:
    found = occurrences(parse_schedule("0 */5 * * * *"), NOON, 4)
    assert found == [NOON.replace(minute=m, second=0) for m in (5, 10, 15, 20)]
    assert all(moment.minute % 5 == 0 and moment.second == 0 for moment in found)


def test_the_first_field_is_seconds() -> None:
    start = datetime(2025, 6, 2, 12, 0, 0)
    assert occurrences(parse_schedule("*/10 * * * * *"), start, 3) == [
        start + timedelta(seconds=s) for s in (10, 20, 30)
    ]
    later = datetime(2025, 6, 2, 12, 0, 5, 500_000)
    assert parse_schedule("*/10 * * * * *").next_after(later) == start + timedelta(seconds=10)
    assert parse_schedule("30 0 9 * * *").next_after(NOON) == datetime(2025, 6, 3, 9, 0, 30)


def test_the_next_occurrence_is_strictly_after_the_given_time() -> None:
    on_the_dot = datetime(2025, 6, 2, 12, 5, 0)
    assert parse_schedule("0 */5 * * * *").next_after(on_the_dot) == on_the_dot.replace(minute=10)


def test_day_and_day_of_week_must_both_match_as_in_ncrontab() -> None:
    # Classic cron would also fire on every Friday and every 13th; NCRONTAB only on both.
    fridays_13th = occurrences(parse_schedule("0 0 9 13 * Fri"), NOON, 2)
    assert fridays_13th == [datetime(2025, 6, 13, 9), datetime(2026, 2, 13, 9)]


def test_month_and_day_names() -> None:
    weekdays = occurrences(parse_schedule("0 0 9 * Jun Mon-Fri"), NOON, 5)
    assert [moment.day for moment in weekdays] == [3, 4, 5, 6, 9]


def test_a_time_span_repeats_that_long_after_the_last_run() -> None:
    schedule = parse_schedule("00:05:00")
    assert schedule == IntervalSchedule("00:05:00", timedelta(minutes=5))
    assert schedule.next_after(NOON) == NOON + timedelta(minutes=5)
    assert parse_schedule("1.02:00:00") == IntervalSchedule("1.02:00:00", timedelta(hours=26))
    assert parse_schedule(" 0 */5 * * * * ") == CronSchedule("0 */5 * * * *")


@pytest.mark.parametrize(
    ("expression", "says"),
    [
        ("0 */5 * * *", "six fields"),  # classic five-field cron: the host refuses it
        ("0 0 */5 * * * *", "six fields"),
        ("", "six fields"),
        ("0 0 0 * * 5L", "day-of-week"),  # croniter extensions NCRONTAB does not have
        ("0 0 H * * *", "hour"),
        ("0 0 0 ? * *", "day"),
        ("0 0 0 * * 1#2", "day-of-week"),
        ("0 0 0 * Mon *", "month"),  # a day's name in the month field
        ("60 * * * * *", "not a valid NCRONTAB"),
        ("0 0 0 31 2 *", "not a valid NCRONTAB"),  # February 31st never comes
        ("00:00:00", "longer than zero"),
        ("5:xx", "time span"),
    ],
)
def test_expressions_the_host_refuses(expression: str, says: str) -> None:
    with pytest.raises(ScheduleError, match=says):
        parse_schedule(expression, now=NOON)


def test_schedules_more_frequent_than_once_a_minute() -> None:
    assert is_frequent(parse_schedule("*/10 * * * * *"), NOON)
    assert is_frequent(parse_schedule("00:00:30"), NOON)
    assert not is_frequent(parse_schedule("0 */5 * * * *"), NOON)
    assert not is_frequent(parse_schedule("00:05:00"), NOON)


def _reconcile_app(schedule: str, **options: bool) -> func.FunctionApp:
    app = func.FunctionApp()

    @app.function_name("reconcile")
    @app.timer_trigger(arg_name="timer", schedule=schedule, **options)
    def reconcile(timer: func.TimerRequest) -> None: ...

    return app


def test_the_schedule_setting_is_resolved_from_the_settings() -> None:
    app = _reconcile_app("%RECONCILE_SCHEDULE%", run_on_startup=True, use_monitor=False)
    [function] = read_functions(app, {"RECONCILE_SCHEDULE": "0 */5 * * * *"})
    assert isinstance(function, TimerFunction)
    assert function.schedule == CronSchedule("0 */5 * * * *")
    assert (function.run_on_startup, function.use_monitor) == (True, False)
    assert function.binding_name == "timer"


def test_left_out_options_are_the_hosts_defaults() -> None:
    [function] = read_functions(_reconcile_app("00:05:00"), {})
    assert isinstance(function, TimerFunction)
    assert (function.run_on_startup, function.use_monitor) == (False, True)


def test_a_missing_setting_puts_the_function_in_error_naming_the_setting() -> None:
    [function] = read_functions(_reconcile_app("%RECONCILE_SCHEDULE%"), {})
    assert isinstance(function, UnsupportedFunction) and function.in_error
    assert function.name == "reconcile" and "'RECONCILE_SCHEDULE'" in function.reason
    assert "local.settings.json" in function.reason


def test_an_invalid_schedule_puts_the_function_in_error() -> None:
    [function] = read_functions(_reconcile_app("%S%"), {"S": "*/5 * * * *"})
    assert isinstance(function, UnsupportedFunction) and function.in_error
    assert "six fields" in function.reason


def test_the_timer_request_carries_the_schedule_status_as_the_worker_builds_it() -> None:
    status = ScheduleStatus(None, datetime(2025, 6, 2, 12, 5), None)
    request = to_timer_request(status)
    assert isinstance(request, func.TimerRequest)
    assert request.past_due is False
    assert request.schedule == {"AdjustForDST": True}
    assert request.schedule_status["Last"] == NEVER
    assert request.schedule_status["Next"].startswith("2025-06-02T12:05:00")
    assert to_timer_request(None).schedule_status == {}
