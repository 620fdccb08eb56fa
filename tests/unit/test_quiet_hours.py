"""Quiet hours arithmetic: the recipient's zones, the next allowed instant, and the setting.

GIVEN any window (wrapping midnight or not), any set of zones and any moment, including
the hours around clock changes in New York, London and Lord Howe (a 30-minute change),
THEN the instant returned is allowed in every zone, no earlier minute is, and where the
zones' windows never all open it is the earliest instant quiet in the fewest zones.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telephony.config.settings import Settings
from telephony.errors import SettingsError
from telephony.outbound.commands import QuietHours
from telephony.outbound.quiet import (
    HORIZON,
    earliest_allowed,
    is_quiet,
    next_allowed,
    quiet_zones,
    recipient_zones,
)

NIGHT = QuietHours(time(21), time(8))
NEW_YORK = "+12125551234"  # a Manhattan number: America/New_York
AUSTRALIAN_MOBILE = "+61412345678"  # eight zones, from Cocos (+6:30) to Lord Howe (+11)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


# Zones with the shapes that matter: DST north and south, a 30-minute DST (Lord Howe), a
# negative DST (Dublin), quarter-hour offsets, the date line, and none at all.
ZONES = [
    "America/New_York", "Europe/London", "Australia/Lord_Howe", "Europe/Dublin",
    "Asia/Kathmandu", "Pacific/Chatham", "America/St_Johns", "America/Santiago",
    "Pacific/Kiritimati", "Pacific/Pago_Pago", "Asia/Kolkata", "Africa/Casablanca",
]  # fmt: skip
# The clock changes of 2026 in the three zones the issue names (from the tz database).
CHANGES = [
    utc(2026, 3, 8, 7), utc(2026, 11, 1, 6),  # New York: 02:00 -> 03:00, 02:00 -> 01:00
    utc(2026, 3, 29, 1), utc(2026, 10, 25, 1),  # London: 01:00 -> 02:00, 02:00 -> 01:00
    utc(2026, 4, 4, 15), utc(2026, 10, 3, 15, 30),  # Lord Howe: 02:00 -> 01:30, 02:00 -> 02:30
]  # fmt: skip

clock_times = st.integers(0, 24 * 60 - 1).map(lambda m: time(m // 60, m % 60))
windows = st.builds(QuietHours, clock_times, clock_times).filter(lambda q: q.start != q.end)
# Edges between midnight and 04:00, where clocks change: an edge skipped or shown twice.
small_hours = st.integers(0, 4 * 60 - 1).map(lambda m: time(m // 60, m % 60))
edges = st.one_of(clock_times, small_hours)
windows_near_changes = st.builds(QuietHours, edges, edges).filter(lambda q: q.start != q.end)
moments = st.datetimes(datetime(2020, 1, 1), datetime(2035, 12, 31), timezones=st.just(UTC))
near_changes = st.builds(
    lambda change, seconds: change + timedelta(seconds=seconds),
    st.sampled_from(CHANGES),
    st.integers(-30 * 3600, 30 * 3600),
)
zone_sets = st.lists(st.sampled_from(ZONES), min_size=1, max_size=3, unique=True).map(
    lambda names: [ZoneInfo(name) for name in names]
)


def check_against_every_minute(zones: list[ZoneInfo], quiet: QuietHours, now: datetime) -> None:
    """The answer against a scan of every minute of the horizon (the oracle)."""
    answer = earliest_allowed(zones, quiet, now)
    chosen = now if answer is None else answer
    assert now <= chosen <= now + HORIZON
    minutes = [now + timedelta(minutes=m) for m in range(int(HORIZON.total_seconds()) // 60)]
    counts = [quiet_zones(zones, quiet, minute) for minute in minutes]
    fewest = quiet_zones(zones, quiet, chosen)
    assert fewest <= min(counts)  # nothing in the horizon is quiet in fewer zones
    earlier = [c for minute, c in zip(minutes, counts, strict=True) if minute < chosen]
    assert all(count > fewest for count in earlier)  # and no earlier minute is as good
    if answer is not None:
        assert quiet_zones(zones, quiet, answer - timedelta(seconds=1)) > fewest or (
            answer - timedelta(seconds=1) < now
        )


@settings(max_examples=150, deadline=None)
@given(zones=zone_sets, quiet=windows, now=moments)
def test_the_answer_is_the_earliest_instant_allowed_in_all_zones_or_the_fewest(
    zones: list[ZoneInfo], quiet: QuietHours, now: datetime
) -> None:
    check_against_every_minute(zones, quiet, now)


@settings(max_examples=300, deadline=None)
@given(
    zone=st.sampled_from(["America/New_York", "Europe/London", "Australia/Lord_Howe"]),
    quiet=windows_near_changes,
    now=near_changes,
)
def test_around_clock_changes_the_wall_clock_decides(
    zone: str, quiet: QuietHours, now: datetime
) -> None:
    check_against_every_minute([ZoneInfo(zone)], quiet, now)


@settings(max_examples=300, deadline=None)
@given(zone=st.sampled_from(ZONES), quiet=windows, now=st.one_of(moments, near_changes))
def test_one_zone_is_never_quiet_for_more_than_a_day(
    zone: str, quiet: QuietHours, now: datetime
) -> None:
    answer = earliest_allowed([ZoneInfo(zone)], quiet, now)
    if answer is None:
        assert not is_quiet(ZoneInfo(zone), quiet, now)
        return
    assert is_quiet(ZoneInfo(zone), quiet, now)
    assert not is_quiet(ZoneInfo(zone), quiet, answer)
    # A window is shorter than a day; a clock change lengthens it by its size at most.
    assert answer - now <= timedelta(hours=26)


@settings(max_examples=200, deadline=None)
@given(start=clock_times, end=clock_times, now=moments)
def test_a_window_wrapping_midnight_is_quiet_exactly_outside_its_complement(
    start: time, end: time, now: datetime
) -> None:
    zone = ZoneInfo("Europe/London")
    if start == end:
        return
    wrapped, complement = QuietHours(start, end), QuietHours(end, start)
    assert is_quiet(zone, wrapped, now) != is_quiet(zone, complement, now)


# Examples, each a rule of docs/outbound.md#quiet-hours.


def test_a_night_in_new_york_ends_at_eight_local() -> None:
    assert next_allowed(NEW_YORK, NIGHT, utc(2026, 11, 26, 3)) == utc(2026, 11, 26, 13)
    assert next_allowed(NEW_YORK, NIGHT, utc(2026, 11, 26, 13)) is None  # 08:00: allowed
    assert next_allowed(NEW_YORK, NIGHT, utc(2026, 11, 26, 2)) == utc(2026, 11, 26, 13)  # 21:00
    assert next_allowed(NEW_YORK, NIGHT, utc(2026, 11, 26, 1, 59)) is None  # 20:59
    assert next_allowed(NEW_YORK, NIGHT, utc(2026, 11, 26, 18)) is None  # 13:00


def test_a_window_within_one_day_does_not_wrap() -> None:
    lunch = QuietHours(time(12), time(13, 30))
    assert next_allowed(NEW_YORK, lunch, utc(2026, 11, 26, 17, 15)) == utc(2026, 11, 26, 18, 30)
    assert next_allowed(NEW_YORK, lunch, utc(2026, 11, 26, 3)) is None


def test_start_equal_to_end_is_no_quiet_hours() -> None:
    assert next_allowed(NEW_YORK, QuietHours(time(0), time(0)), utc(2026, 11, 26, 3)) is None


def test_a_skipped_end_ends_quiet_hours_when_the_clock_jumps_past_it() -> None:
    # New York, 8 March 2026: 01:59:59 EST is followed by 03:00 EDT; 02:30 never shows.
    early = QuietHours(time(21), time(2, 30))
    assert next_allowed(NEW_YORK, early, utc(2026, 3, 8, 4)) == utc(2026, 3, 8, 7)


def test_a_skipped_start_makes_the_jump_land_inside_quiet_hours() -> None:
    dawn = QuietHours(time(2, 30), time(6))
    assert next_allowed(NEW_YORK, dawn, utc(2026, 3, 8, 6, 59)) is None  # 01:59 EST
    assert next_allowed(NEW_YORK, dawn, utc(2026, 3, 8, 7)) == utc(2026, 3, 8, 10)  # 03:00 EDT


def test_a_repeated_hour_is_quiet_both_times_it_shows() -> None:
    # New York, 1 November 2026: 01:00 to 02:00 shows twice (EDT, then EST).
    late = QuietHours(time(21), time(1, 30))
    assert next_allowed(NEW_YORK, late, utc(2026, 11, 1, 2)) == utc(2026, 11, 1, 5, 30)
    assert next_allowed(NEW_YORK, late, utc(2026, 11, 1, 5, 45)) is None  # 01:45 EDT
    assert next_allowed(NEW_YORK, late, utc(2026, 11, 1, 6, 10)) == utc(2026, 11, 1, 6, 30)


def test_lord_howe_moves_its_clock_by_thirty_minutes() -> None:
    # 4 October 2026: 01:59:59 +10:30 is followed by 02:30 +11:00; 02:15 never shows.
    zone = ZoneInfo("Australia/Lord_Howe")
    quiet = QuietHours(time(22), time(2, 15))
    assert earliest_allowed([zone], quiet, utc(2026, 10, 3, 12)) == utc(2026, 10, 3, 15, 30)
    # 5 April 2026: 01:59:59 +11:00 is followed by 01:30 +10:30, so 01:30-02:00 shows twice.
    quiet = QuietHours(time(22), time(1, 45))
    assert earliest_allowed([zone], quiet, utc(2026, 4, 4, 12)) == utc(2026, 4, 4, 14, 45)
    assert earliest_allowed([zone], quiet, utc(2026, 4, 4, 15)) == utc(2026, 4, 4, 15, 15)


def test_a_number_in_several_zones_waits_until_all_of_them_are_allowed() -> None:
    # 27 November 2026, 01:30 UTC: 08:00 on Cocos, 12:30 on Lord Howe (summer time).
    assert len(recipient_zones(AUSTRALIAN_MOBILE)) == 8
    assert next_allowed(AUSTRALIAN_MOBILE, NIGHT, utc(2026, 11, 26, 14)) == utc(2026, 11, 27, 1, 30)


def test_zones_whose_windows_never_all_open_send_when_the_most_zones_are_allowed() -> None:
    # Allowed 02:00-06:00 local: eight zones 4.5 hours apart never share an instant. At
    # 18:00 UTC six are allowed (Perth 02:00 to Lord Howe 05:00); Cocos and Christmas sleep.
    dawn_only = QuietHours(time(6), time(2))
    zones = recipient_zones(AUSTRALIAN_MOBILE)
    answer = next_allowed(AUSTRALIAN_MOBILE, dawn_only, utc(2026, 11, 26, 14))
    assert answer == utc(2026, 11, 26, 18)
    assert quiet_zones(zones, dawn_only, answer) == 2


def test_a_number_phonenumbers_cannot_place_takes_its_countrys_zones() -> None:
    assert recipient_zones("+49301") == (ZoneInfo("Europe/Berlin"),)


def test_a_shared_calling_code_says_nothing_so_there_are_no_quiet_hours(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    assert recipient_zones("+15558675310") == ()  # +1 runs from Guam to the Caribbean
    assert next_allowed("+15558675310", NIGHT, utc(2026, 11, 26, 3)) is None
    assert "quiet_hours_zone_unknown" in caplog.text
    assert "+15558675310" not in caplog.text  # masked


def test_a_whatsapp_address_has_the_zones_of_its_number() -> None:
    assert recipient_zones(f"whatsapp:{NEW_YORK}") == recipient_zones(NEW_YORK)


def test_the_setting_is_a_window_or_nothing() -> None:
    assert Settings.from_env({"QUIET_HOURS": "21:00-08:00"}).quiet_hours == (time(21), time(8))
    assert Settings.from_env({"QUIET_HOURS": " 21:30 - 07:15 "}).quiet_hours == (
        time(21, 30),
        time(7, 15),
    )
    assert Settings.from_env({"QUIET_HOURS": ""}).quiet_hours is None
    assert Settings.from_env({}).quiet_hours is None
    for bad in ("21-08", "21:00", "24:00-08:00", "21:00-08:60", "9:00-17:00"):
        with pytest.raises(SettingsError, match="QUIET_HOURS"):
            Settings.from_env({"QUIET_HOURS": bad})
