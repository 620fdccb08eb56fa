"""Timer schedules as the Functions host reads them: NCRONTAB with seconds, or a time span.

The host tries the expression as a six-field NCRONTAB expression first,
``{second} {minute} {hour} {day} {month} {day-of-week}``, then as a .NET TimeSpan
(``hh:mm:ss``, ``d.hh:mm:ss``), which repeats that long after each run. croniter does the
calendar arithmetic; it reads the seconds field first when asked, and it is told to match
day and day-of-week together, as NCRONTAB does (classic cron matches either).

Times are the host's local time without a zone, as the host's own schedule uses
``DateTime.Now`` (UTC in Azure unless WEBSITE_TIME_ZONE says otherwise).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from croniter import croniter

from devhost.config import ConfigError, parse_timespan

NCRONTAB_FIELDS = "{second} {minute} {hour} {day} {month} {day-of-week}"
_MONTHS = frozenset("jan feb mar apr may jun jul aug sep oct nov dec".split())
_DAYS = frozenset("sun mon tue wed thu fri sat".split())
# Names NCRONTAB accepts, by field position (month, day-of-week); numbers elsewhere.
_NAMES_BY_FIELD = {4: _MONTHS, 5: _DAYS}
# NCRONTAB has lists, ranges and steps only; croniter's extensions (L, W, #, ?, H) would
# work here and fail in Azure, so they are refused.
_FIELD = re.compile(r"[0-9A-Za-z*,/-]+")
_WORD = re.compile(r"[A-Za-z]+")


class ScheduleError(ValueError):
    """The expression is neither an NCRONTAB expression nor a time span the host accepts."""


@dataclass(frozen=True)
class CronSchedule:
    """An NCRONTAB expression with a seconds field first."""

    expression: str

    def next_after(self, moment: datetime) -> datetime:
        """The first occurrence strictly after `moment`."""
        cron = croniter(self.expression, moment, day_or=False, second_at_beginning=True)
        return cron.get_next(datetime)

    def __str__(self) -> str:
        return self.expression


@dataclass(frozen=True)
class IntervalSchedule:
    """A time span: the next run is that long after the last one started."""

    expression: str
    interval: timedelta

    def next_after(self, moment: datetime) -> datetime:
        return moment + self.interval

    def __str__(self) -> str:
        return f"every {self.expression}"


Schedule = CronSchedule | IntervalSchedule


def parse_schedule(expression: str, now: datetime | None = None) -> Schedule:
    """The schedule `expression` describes, or ScheduleError saying why the host refuses it."""
    text = expression.strip()
    if " " not in text and ":" in text:
        return _interval(text)
    fields = text.split()
    if len(fields) != len(NCRONTAB_FIELDS.split()):
        raise ScheduleError(
            f"{expression!r} is neither an NCRONTAB expression with six fields, "
            f"{NCRONTAB_FIELDS}, nor a time span like 00:05:00"
        )
    for index, field in enumerate(fields):
        _check_field(expression, index, field)
    schedule = CronSchedule(" ".join(fields))
    try:
        schedule.next_after(now or datetime.now())  # also finds dates that never come
    except ValueError as exc:
        reason = re.sub(r"\[[^\]]*\]\s*", "", str(exc))  # croniter quotes its own field order
        raise ScheduleError(
            f"{expression!r} is not a valid NCRONTAB expression: {reason}"
        ) from None
    return schedule


def _check_field(expression: str, index: int, field: str) -> None:
    names = _NAMES_BY_FIELD.get(index, frozenset())
    words = _WORD.findall(field)
    if _FIELD.fullmatch(field) and all(word.lower() in names for word in words):
        return
    position = NCRONTAB_FIELDS.split()[index]
    raise ScheduleError(
        f"{expression!r}: {field!r} is not valid NCRONTAB for {position} "
        "(numbers, names of months and days, *, lists, ranges and steps only)"
    )


def _interval(text: str) -> IntervalSchedule:
    try:
        seconds = parse_timespan(text, "schedule")
    except ConfigError:
        raise ScheduleError(f"{text!r} is not a time span like 00:05:00") from None
    if seconds <= 0:
        raise ScheduleError(f"{text!r}: a time span schedule must be longer than zero")
    return IntervalSchedule(text, timedelta(seconds=seconds))


def occurrences(schedule: Schedule, start: datetime, count: int) -> list[datetime]:
    """The next `count` occurrences after `start`, as the host logs them at start-up."""
    found: list[datetime] = []
    moment = start
    for _ in range(count):
        moment = schedule.next_after(moment)
        found.append(moment)
    return found


def is_frequent(schedule: Schedule, now: datetime) -> bool:
    """More than one occurrence a minute: the host keeps no schedule status for these."""
    if isinstance(schedule, IntervalSchedule):
        return schedule.interval < timedelta(minutes=1)
    second = occurrences(schedule, now, 2)[1]
    return second - now < timedelta(minutes=1)
