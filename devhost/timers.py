"""Timer triggers: run each timer function on its schedule, one invocation at a time.

The rules of the host's timer listener, in one process:

- the next occurrence is counted from when the last invocation started; an invocation that
  outlasts the next occurrence is not overlapped: one invocation starts as soon as it
  ends, and the occurrences missed meanwhile are skipped;
- every invocation of a timer function, scheduled, at start-up or on demand (the admin
  API), waits for the one running: the host holds one lock per timer;
- ``runOnStartup`` runs it once as the host starts, before the schedule;
- an exception is logged and the schedule goes on;
- with ``useMonitor`` (the default), the function sees the schedule status (Last, Next,
  LastUpdated), except for schedules more frequent than once a minute, as in the host.
  The host stores that status in Storage to find an occurrence missed while no host ran
  and then runs it at start with ``past_due``; here it lives in memory, so ``past_due``
  is always false.

On stop, the schedule ends and a running invocation finishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import datetime

from azure.functions.timer import TimerRequest

from devhost.invoke import PROGRAMMATIC_REASON, Invoker
from devhost.metadata import TimerFunction
from devhost.schedule import is_frequent, occurrences

logger = logging.getLogger("devhost")

# .NET's default(DateTime): how the host writes "never" in a schedule status.
NEVER = "0001-01-01T00:00:00"
# Long sleeps are cut into pieces of this many seconds and measured against the wall
# clock again, so a machine that was suspended catches up when it wakes.
_MAX_SLEEP_SECONDS = 30.0


@dataclass(frozen=True)
class ScheduleStatus:
    """The host's ScheduleStatus; None stands for "never"."""

    last: datetime | None
    next: datetime
    last_updated: datetime | None

    def as_json(self) -> dict[str, str]:
        return {
            "Last": _iso(self.last),
            "Next": _iso(self.next),
            "LastUpdated": _iso(self.last_updated),
        }


def _iso(moment: datetime | None) -> str:
    # Local times with their offset, as the host serializes them for the worker.
    return moment.astimezone().isoformat() if moment else NEVER


def to_timer_request(status: ScheduleStatus | None, past_due: bool = False) -> TimerRequest:
    """The TimerRequest the worker builds from the host's TimerInfo JSON.

    The worker's class, a subclass of ``func.TimerRequest`` that also has the schedule.
    """
    return TimerRequest(
        past_due=past_due,
        schedule_status=status.as_json() if status else None,
        schedule={"AdjustForDST": True},
    )


class TimerListener:
    """Drives one timer-triggered function until `stopping` is set."""

    def __init__(self, function: TimerFunction, invoker: Invoker, stopping: asyncio.Event) -> None:
        self.function = function
        self.invoker = invoker
        self.stopping = stopping
        self._lock = asyncio.Lock()  # one invocation at a time, as the host's timer lock
        now = datetime.now()
        self._monitor = function.use_monitor and not is_frequent(function.schedule, now)
        self.status = ScheduleStatus(None, function.schedule.next_after(now), None)

    async def run(self) -> None:
        """Run on startup if asked, then on schedule until stopping."""
        function = self.function
        upcoming = ", ".join(
            moment.isoformat(sep=" ", timespec="seconds")
            for moment in occurrences(function.schedule, datetime.now(), 5)
        )
        logger.info(
            "%s: the next 5 occurrences of %s are %s", function.name, function.schedule, upcoming
        )
        if function.run_on_startup:
            await self._invoke("RunOnStartup", scheduled=False, update=True)
        while await self._sleep_until(self.status.next):
            await self._invoke(
                f"Timer fired at {datetime.now().isoformat()}", scheduled=True, update=True
            )

    async def run_now(self) -> None:
        """One invocation outside the schedule, as the admin API asks; the schedule stays."""
        await self._invoke(PROGRAMMATIC_REASON, scheduled=False, update=False)

    async def _sleep_until(self, due: datetime) -> bool:
        """Wait for `due` by the wall clock; False when the host stops first."""
        while (remaining := due.timestamp() - time.time()) > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), min(remaining, _MAX_SLEEP_SECONDS))
            if self.stopping.is_set():
                return False
        return not self.stopping.is_set()

    async def _invoke(self, reason: str, *, scheduled: bool, update: bool) -> None:
        async with self._lock:
            if self.stopping.is_set():
                return  # as the host: no new invocation once stopping
            invoked_at = datetime.now()
            request = to_timer_request(self.status if self._monitor else None)
            function = self.function
            with contextlib.suppress(Exception):  # the invoker logged it; the schedule goes on
                await self.invoker(
                    function.name, function.handler, {function.binding_name: request}, reason
                )
            if update:
                self._advance(invoked_at, scheduled)

    def _advance(self, invoked_at: datetime, scheduled: bool) -> None:
        # A timer that woke a little before its occurrence counts from the occurrence, so
        # the same occurrence does not come round twice.
        base = max(invoked_at, self.status.next) if scheduled else invoked_at
        self.status = ScheduleStatus(base, self.function.schedule.next_after(base), base)
        if self.status.next <= datetime.now() and not self.stopping.is_set():
            logger.info(
                "%s: the invocation ran past the next occurrence (%s); it runs again now, "
                "and later occurrences missed meanwhile are skipped",
                self.function.name,
                self.status.next.isoformat(sep=" ", timespec="seconds"),
            )
