"""Quiet hours: when a send may reach its recipient, by the clock where the number is.

A window is [start, end) of the recipient's wall clock, wrapping midnight when end < start
(21:00 to 08:00); start == end is no window at all, which is how a command opts out of the
QUIET_HOURS default ({"start": "00:00", "end": "00:00"}). A send is allowed at an instant
when, in every zone of the number, the wall clock then reads outside the window. The clock
as the recipient sees it decides, so on the days clocks change a local time that is skipped
(spring forward) is never quiet, and one that repeats (fall back) is quiet both times.

The zones are phonenumbers' time zones of the number. Several zones (a mobile range that
spans a country): the send waits for the earliest instant allowed in all of them. Where
those never all open (zones hours apart and long windows), it goes at the earliest instant
outside quiet hours in the most zones: deferred as little as the zones allow, never dropped.
A number phonenumbers cannot place takes its country's zones when its calling code is one
country's (+33: Paris); a shared calling code (+1 runs from Guam to the Caribbean, +7, +44)
says nothing about where the recipient is, so such a number has no quiet hours, and a
warning is logged.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING

from telephony.logs import log_event

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from telephony.outbound.commands import QuietHours

logger = logging.getLogger(__name__)

# How far ahead the next allowed instant is looked for. The zones' windows repeat daily,
# shifted by at most a clock change (2 hours), so two days hold every pattern there is.
HORIZON = timedelta(days=2)
# The step that finds clock changes: no zone changes its clock twice within an hour.
_STEP = timedelta(hours=1)


def next_allowed(number: str, quiet: QuietHours, now: datetime) -> datetime | None:
    """The earliest instant from `now` at which a send to `number` is outside `quiet`;
    None when the send is allowed now (or the number's zone is unknown, logged)."""
    if quiet.start == quiet.end:
        return None
    zones = recipient_zones(number)
    if not zones:
        log_event(logger, "quiet_hours_zone_unknown", logging.WARNING, to=number)
        return None
    return earliest_allowed(zones, quiet, now)


def earliest_allowed(
    zones: Sequence[ZoneInfo], quiet: QuietHours, now: datetime
) -> datetime | None:
    """The earliest instant from `now` outside `quiet` in all `zones`, else (they never all
    open) the earliest outside it in the most zones; None when that instant is `now`.

    The number of zones in quiet hours only falls where a zone's clock reaches the window's
    end or changes (DST), so the best instant is `now` or one of those: each is tried.
    """
    now = now.astimezone(UTC)
    candidates = sorted(_candidates(zones, quiet, now, now + HORIZON))
    best = min(candidates, key=lambda moment: quiet_zones(zones, quiet, moment))
    return None if best == now else best


def quiet_zones(zones: Iterable[ZoneInfo], quiet: QuietHours, moment: datetime) -> int:
    """In how many of `zones` the wall clock reads inside `quiet` at `moment`."""
    return sum(is_quiet(zone, quiet, moment) for zone in zones)


def is_quiet(zone: ZoneInfo, quiet: QuietHours, moment: datetime) -> bool:
    """Whether the wall clock in `zone` reads inside `quiet` at `moment`."""
    clock = moment.astimezone(zone).time()
    if quiet.start <= quiet.end:
        return quiet.start <= clock < quiet.end
    return clock >= quiet.start or clock < quiet.end  # the window wraps midnight


def recipient_zones(number: str) -> tuple[ZoneInfo, ...]:
    """The time zones of `number` (E.164, or a channel address such as whatsapp:+1...)."""
    # Imported here: phonenumbers' time zone data is a cold-start cost that only sends
    # with quiet hours pay.
    import phonenumbers
    from phonenumbers import timezone as numbering
    from phonenumbers.tzdata import TIMEZONE_DATA

    try:
        parsed = phonenumbers.parse(number.rpartition(":")[2], None)
    except phonenumbers.NumberParseException:
        return ()
    names = tuple(numbering.time_zones_for_number(parsed))
    if numbering.UNKNOWN_TIMEZONE in names:  # a number phonenumbers cannot place
        code = parsed.country_code or 0
        one_country = len(phonenumbers.region_codes_for_country_code(code)) == 1
        names = TIMEZONE_DATA.get(str(code), ()) if one_country else ()
    return tuple(zone for name in names if (zone := _zone(name)) is not None)


def _zone(name: str) -> ZoneInfo | None:
    # Imported here, as phonenumbers is: finding the time zone database costs start-up time.
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        # A zone newer than this host's time zone database: the number's other zones, or
        # its country's, still decide.
        log_event(logger, "quiet_hours_zone_missing", logging.WARNING, zone=name)
        return None


def _candidates(
    zones: Sequence[ZoneInfo], quiet: QuietHours, now: datetime, limit: datetime
) -> Iterator[datetime]:
    yield now
    for zone in zones:
        moments = (*_window_ends(zone, quiet.end, now, limit), *_clock_changes(zone, now, limit))
        yield from (moment for moment in moments if now < moment <= limit)


def _window_ends(zone: ZoneInfo, end: time, now: datetime, limit: datetime) -> Iterator[datetime]:
    """Each instant the wall clock in `zone` reads `end` between `now` and `limit`: both
    readings of a repeated time (fold). A skipped one yields the instants around the gap,
    which are harmless extra candidates; the change itself is one of _clock_changes."""
    first, last = now.astimezone(zone).date(), limit.astimezone(zone).date()
    for offset in range(-1, (last - first).days + 2):
        day = first + timedelta(days=offset)
        for fold in (0, 1):
            yield _instant(day, end, zone, fold)


def _instant(day: date, clock: time, zone: ZoneInfo, fold: int) -> datetime:
    return datetime.combine(day, clock, tzinfo=zone).replace(fold=fold).astimezone(UTC)


def _clock_changes(zone: ZoneInfo, start: datetime, limit: datetime) -> Iterator[datetime]:
    """The instants between `start` and `limit` at which `zone` changes its UTC offset."""
    moment, offset = start, start.astimezone(zone).utcoffset()
    while moment < limit:
        later = moment + _STEP
        later_offset = later.astimezone(zone).utcoffset()
        if later_offset != offset:
            yield _change_between(zone, moment, later)
            offset = later_offset
        moment = later


def _change_between(zone: ZoneInfo, before: datetime, after: datetime) -> datetime:
    """The first second with `after`'s offset (clock changes fall on whole seconds)."""
    old = before.astimezone(zone).utcoffset()
    low, high = math.floor(before.timestamp()), math.ceil(after.timestamp())
    while high - low > 1:  # low has the old offset, high the new one
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, UTC).astimezone(zone).utcoffset() == old:
            low = middle
        else:
            high = middle
    return datetime.fromtimestamp(high, UTC)
