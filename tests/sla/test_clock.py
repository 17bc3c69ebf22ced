"""Business time: exact examples (night shifts, split shifts, holidays, both DST changes of
Europe/Amsterdam, weekends) and properties that must hold for any calendar."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inbox.sla.clock import (
    ALWAYS_OPEN,
    CalendarNeverOpen,
    CalendarSpec,
    Shift,
    business_add,
    business_horizon,
    business_minutes_between,
    business_subtract,
    check_holiday_region,
    is_open,
    open_spans,
    overlapping_shifts,
    public_holidays,
    week_minutes,
)
from tests.sla import ams

WEEKDAYS = range(5)
EVERY_DAY = range(7)


def calendar(*shifts: tuple[object, time, time], **kwargs) -> CalendarSpec:
    """``calendar((WEEKDAYS, time(9), time(17)))``: the same shift on each of those days."""
    listed = tuple(Shift(day, start, end) for days, start, end in shifts for day in days)
    return CalendarSpec(time_zone=kwargs.pop("time_zone", "Europe/Amsterdam"), shifts=listed, **kwargs)


OFFICE = calendar((WEEKDAYS, time(9), time(17)))
OFFICE_NL = calendar((WEEKDAYS, time(9), time(17)), holiday_country="NL")
NIGHTS = calendar((EVERY_DAY, time(22), time(6)))
SPLIT = calendar((WEEKDAYS, time(8), time(12)), (WEEKDAYS, time(13), time(17)))
AROUND_THE_CLOCK_SHIFTS = calendar((EVERY_DAY, time(0), time(0)))


def spans_local(spec: CalendarSpec, start: datetime, end: datetime) -> list[tuple[str, str]]:
    return [
        (a.astimezone(spec.zone).isoformat(), b.astimezone(spec.zone).isoformat())
        for a, b in open_spans(spec, start, end)
    ]


# --- Weekends, split shifts, night shifts --------------------------------------------------------


def test_a_target_spanning_a_weekend_continues_on_monday():
    assert business_add(OFFICE, ams(2026, 11, 6, 16, 0), 120) == ams(2026, 11, 9, 10, 0)
    assert business_minutes_between(OFFICE, ams(2026, 11, 6, 16, 0), ams(2026, 11, 9, 10, 0)) == 120.0


def test_a_ticket_arriving_while_closed_starts_counting_at_the_next_shift():
    assert business_add(OFFICE, ams(2026, 11, 7, 11, 0), 30) == ams(2026, 11, 9, 9, 30)  # Saturday
    assert business_add(OFFICE, ams(2026, 11, 9, 7, 0), 30) == ams(2026, 11, 9, 9, 30)  # before opening


def test_a_target_ending_exactly_at_closing_is_due_at_closing():
    assert business_add(OFFICE, ams(2026, 11, 2, 16, 0), 60) == ams(2026, 11, 2, 17, 0)


def test_zero_minutes_is_the_start_itself_even_when_closed():
    assert business_add(OFFICE, ams(2026, 11, 7, 11, 0), 0) == ams(2026, 11, 7, 11, 0)


def test_split_shift_skips_the_lunch_break():
    assert business_add(SPLIT, ams(2026, 11, 2, 11, 30), 60) == ams(2026, 11, 2, 13, 30)
    assert business_minutes_between(SPLIT, ams(2026, 11, 2, 11, 0), ams(2026, 11, 2, 14, 0)) == 120.0
    assert business_minutes_between(SPLIT, ams(2026, 11, 2, 0, 0), ams(2026, 11, 3, 0, 0)) == 480.0
    assert spans_local(SPLIT, ams(2026, 11, 2, 0, 0), ams(2026, 11, 3, 0, 0)) == [
        ("2026-11-02T08:00:00+01:00", "2026-11-02T12:00:00+01:00"),
        ("2026-11-02T13:00:00+01:00", "2026-11-02T17:00:00+01:00"),
    ]


def test_overnight_shift_runs_past_midnight():
    assert business_add(NIGHTS, ams(2026, 11, 3, 21, 0), 60) == ams(2026, 11, 3, 23, 0)
    # 30 minutes left of the night, the other 30 the next evening.
    assert business_add(NIGHTS, ams(2026, 11, 4, 5, 30), 60) == ams(2026, 11, 4, 22, 30)
    assert business_minutes_between(NIGHTS, ams(2026, 11, 3, 20, 0), ams(2026, 11, 4, 8, 0)) == 480.0
    # The night is one span even though open time is kept per local day.
    assert spans_local(NIGHTS, ams(2026, 11, 3, 12, 0), ams(2026, 11, 4, 12, 0)) == [
        ("2026-11-03T22:00:00+01:00", "2026-11-04T06:00:00+01:00"),
    ]


def test_overnight_shift_belongs_to_the_weekday_it_starts():
    weeknights = calendar((WEEKDAYS, time(22), time(6)))
    # Friday night runs into Saturday morning; the next night shift starts Monday evening.
    assert business_add(weeknights, ams(2026, 11, 7, 5, 0), 120) == ams(2026, 11, 9, 23, 0)
    assert is_open(weeknights, ams(2026, 11, 7, 5, 59)) is True  # Saturday, on Friday's shift
    assert is_open(weeknights, ams(2026, 11, 8, 23, 0)) is False  # Sunday evening


def test_a_whole_day_shift_is_24_hours():
    assert business_minutes_between(AROUND_THE_CLOCK_SHIFTS, ams(2026, 11, 2), ams(2026, 11, 9)) == 7 * 1440.0


# --- Holidays ------------------------------------------------------------------------------------


def test_kings_day_is_closed_with_dutch_holidays():
    assert date(2026, 4, 27) in public_holidays("NL", "", 2026)
    # Friday 24 April 16:00 + 2 h: one hour on Friday, Monday is King's Day, one hour on Tuesday.
    assert business_add(OFFICE_NL, ams(2026, 4, 24, 16, 0), 120) == ams(2026, 4, 28, 10, 0)
    assert business_add(OFFICE, ams(2026, 4, 24, 16, 0), 120) == ams(2026, 4, 27, 10, 0)
    assert business_minutes_between(OFFICE_NL, ams(2026, 4, 27, 0, 0), ams(2026, 4, 28, 0, 0)) == 0.0


def test_a_custom_closed_date_adds_to_the_public_holidays():
    spec = calendar(
        (WEEKDAYS, time(9), time(17)), holiday_country="NL", custom_holidays=frozenset({date(2026, 12, 24)})
    )
    # Wednesday 23 Dec 16:30 + 60: 30 min, then Thursday (custom), Friday (Christmas), the
    # weekend, and Monday 28 December is a working day again.
    assert business_add(spec, ams(2026, 12, 23, 16, 30), 60) == ams(2026, 12, 28, 9, 30)
    assert business_add(OFFICE_NL, ams(2026, 12, 23, 16, 30), 60) == ams(2026, 12, 24, 9, 30)


def test_a_holiday_cancels_the_night_shift_starting_on_it_not_the_one_from_the_eve():
    spec = calendar((EVERY_DAY, time(22), time(6)), holiday_country="NL")
    # Sunday 26 April 22:00 runs into King's Day; the night starting on King's Day is off.
    assert spans_local(spec, ams(2026, 4, 26, 12, 0), ams(2026, 4, 28, 12, 0)) == [
        ("2026-04-26T22:00:00+02:00", "2026-04-27T06:00:00+02:00"),
    ]


def test_always_open_ignores_holidays_and_shifts():
    spec = CalendarSpec(time_zone="Europe/Amsterdam", always_open=True, holiday_country="NL")
    assert business_add(spec, ams(2026, 4, 26, 23, 0), 120) == ams(2026, 4, 27, 1, 0)


def test_unknown_holiday_regions_are_refused():
    check_holiday_region("NL", "")
    check_holiday_region("", "")
    with pytest.raises(ValueError, match="unknown holiday country 'XX'"):
        check_holiday_region("XX", "")
    with pytest.raises(ValueError, match="unknown subdivision 'ZZ' of NL"):
        check_holiday_region("NL", "ZZ")


# --- Daylight saving time in Europe/Amsterdam ----------------------------------------------------
# 2026: clocks go forward on Sunday 29 March (02:00 CET -> 03:00 CEST) and back on Sunday
# 25 October (03:00 CEST -> 02:00 CET).


def test_a_day_shift_on_the_dst_sundays_is_nine_wall_clock_hours():
    every_day = calendar((EVERY_DAY, time(8), time(17)))
    for sunday in (29, 3), (25, 10):
        day, month = sunday
        assert business_minutes_between(every_day, ams(2026, month, day), ams(2026, month, day + 1)) == 540.0


def test_the_night_into_the_spring_change_is_one_hour_shorter():
    assert business_minutes_between(NIGHTS, ams(2026, 3, 28, 12, 0), ams(2026, 3, 29, 12, 0)) == 420.0
    assert business_add(NIGHTS, ams(2026, 3, 28, 23, 0), 360) == ams(2026, 3, 29, 6, 0)
    assert business_add(NIGHTS, ams(2026, 3, 28, 23, 0), 361) == ams(2026, 3, 29, 22, 1)


def test_the_night_into_the_autumn_change_is_one_hour_longer():
    assert business_minutes_between(NIGHTS, ams(2026, 10, 24, 12, 0), ams(2026, 10, 25, 12, 0)) == 540.0
    assert business_add(NIGHTS, ams(2026, 10, 24, 23, 0), 480) == ams(2026, 10, 25, 6, 0)


def test_the_dst_weeks_have_an_hour_less_and_an_hour_more_around_the_clock():
    week = 7 * 1440.0
    assert business_minutes_between(AROUND_THE_CLOCK_SHIFTS, ams(2026, 3, 23), ams(2026, 3, 30)) == week - 60
    assert (
        business_minutes_between(AROUND_THE_CLOCK_SHIFTS, ams(2026, 10, 19), ams(2026, 10, 26)) == week + 60
    )
    # Office hours do not touch the night of the change.
    assert business_minutes_between(OFFICE, ams(2026, 3, 23), ams(2026, 3, 30)) == 5 * 480.0
    assert business_minutes_between(OFFICE, ams(2026, 10, 19), ams(2026, 10, 26)) == 5 * 480.0


def test_a_shift_starting_in_the_skipped_hour_starts_at_the_jump():
    spec = calendar(([6], time(2, 30), time(4)))
    assert spans_local(spec, ams(2026, 3, 29), ams(2026, 3, 30)) == [
        ("2026-03-29T03:00:00+02:00", "2026-03-29T04:00:00+02:00"),
    ]
    assert business_minutes_between(spec, ams(2026, 3, 22), ams(2026, 3, 23)) == 90.0


def test_boundaries_in_the_repeated_hour_take_its_first_pass():
    ends_in_fold = calendar(([6], time(1), time(2, 30)))
    starts_in_fold = calendar(([6], time(2, 30), time(4)))
    first_pass = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST
    assert open_spans(ends_in_fold, ams(2026, 10, 25), ams(2026, 10, 26)) == [
        (datetime(2026, 10, 24, 23, 0, tzinfo=UTC), first_pass)
    ]
    assert open_spans(starts_in_fold, ams(2026, 10, 25), ams(2026, 10, 26)) == [
        (first_pass, datetime(2026, 10, 25, 3, 0, tzinfo=UTC))  # 04:00 CET: 150 real minutes
    ]


def test_a_target_across_the_spring_change_week_of_office_hours():
    every_day = calendar((EVERY_DAY, time(8), time(17)), holiday_country="NL")
    # Saturday 28 March 16:00 + 10 h: 1 h Saturday, 9 h Sunday (the short day still has 9
    # wall-clock office hours), due when Sunday closes.
    assert business_add(every_day, ams(2026, 3, 28, 16, 0), 600) == ams(2026, 3, 29, 17, 0)


# --- Inverses, horizon, errors -------------------------------------------------------------------


def test_subtract_finds_the_earliest_instant_with_that_much_time_left():
    assert business_subtract(OFFICE, ams(2026, 11, 9, 12, 0), 60) == ams(2026, 11, 9, 11, 0)
    # From Friday closing time until Monday 10:00 one business hour remains.
    assert business_subtract(OFFICE, ams(2026, 11, 9, 10, 0), 60) == ams(2026, 11, 6, 17, 0)
    assert business_subtract(OFFICE, ams(2026, 11, 9, 9, 0), 0) == ams(2026, 11, 6, 17, 0)
    assert business_subtract(OFFICE, ams(2026, 11, 9, 10, 0), 120) == ams(2026, 11, 6, 16, 0)


def test_horizon_runs_to_the_next_opening_when_the_minutes_end_at_closing():
    assert business_horizon(OFFICE, ams(2026, 11, 6, 16, 0), 60) == ams(2026, 11, 9, 9, 0)
    assert business_horizon(OFFICE, ams(2026, 11, 6, 16, 0), 30) == ams(2026, 11, 6, 16, 30)
    assert business_horizon(OFFICE, ams(2026, 11, 7, 12, 0), 0) == ams(2026, 11, 9, 9, 0)


def test_a_calendar_without_shifts_never_reaches_a_target():
    never = CalendarSpec(time_zone="Europe/Amsterdam")
    assert never.never_open is True
    assert business_minutes_between(never, ams(2026, 11, 2), ams(2026, 11, 9)) == 0.0
    with pytest.raises(CalendarNeverOpen):
        business_add(never, ams(2026, 11, 2), 10)


def test_a_calendar_closed_for_years_gives_up_instead_of_looping():
    day = date(2026, 1, 1)
    closed = frozenset(day + timedelta(days=n) for n in range(4 * 366))
    spec = calendar((EVERY_DAY, time(9), time(17)), custom_holidays=closed)
    with pytest.raises(CalendarNeverOpen):
        business_add(spec, ams(2026, 1, 1), 10)


@pytest.mark.parametrize("minutes", [-1, float("nan"), float("inf")])
def test_minutes_must_be_finite_and_not_negative(minutes):
    with pytest.raises(ValueError, match="minutes must be a finite number >= 0"):
        business_add(OFFICE, ams(2026, 11, 2), minutes)


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        business_add(OFFICE, datetime(2026, 11, 2, 9), 10)


def test_unknown_time_zone_is_refused():
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        CalendarSpec(time_zone="Mars/Olympus")


def test_a_long_target_steps_through_days_not_minutes():
    spec = calendar((WEEKDAYS, time(9), time(17)), holiday_country="NL")
    # Four weeks of office hours from Monday 2 November (no Dutch holiday in November).
    assert business_add(spec, ams(2026, 11, 2, 9, 0), 20 * 480) == ams(2026, 11, 27, 17, 0)
    assert len(spec._days) <= 27


def test_overlapping_shifts_are_found_across_midnight_and_the_week_end():
    monday_night = Shift(0, time(22), time(6))
    tuesday_early = Shift(1, time(5), time(9))
    tuesday_late = Shift(1, time(6), time(9))  # touches Monday night's end: fine
    sunday_night = Shift(6, time(23), time(1))
    monday_early = Shift(0, time(0, 30), time(2))
    assert overlapping_shifts([monday_night, tuesday_late]) == []
    assert overlapping_shifts([monday_night, tuesday_early, sunday_night, monday_early]) == [
        (monday_night, tuesday_early),
        (sunday_night, monday_early),
    ]


def test_week_minutes_counts_overlaps_once():
    assert week_minutes([Shift(d, time(9), time(17)) for d in WEEKDAYS]) == 2400.0
    assert week_minutes([Shift(0, time(9), time(17)), Shift(0, time(12), time(18))]) == 540.0


# --- Properties ----------------------------------------------------------------------------------

ZONES = [
    "Europe/Amsterdam",
    "America/New_York",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "America/Santiago",
    "UTC",
]
quarter_hours = st.builds(lambda q: time(q // 4, (q % 4) * 15), st.integers(0, 95))
shifts = st.builds(Shift, st.integers(0, 6), quarter_hours, quarter_hours)
calendars = st.builds(
    lambda zone, listed, country, closed: CalendarSpec(
        time_zone=zone, shifts=tuple(listed), holiday_country=country, custom_holidays=frozenset(closed)
    ),
    st.sampled_from(ZONES),
    st.lists(shifts, min_size=1, max_size=8),
    st.sampled_from(["", "NL"]),
    st.lists(st.dates(date(2025, 12, 1), date(2027, 3, 1)), max_size=10),
)
instants = st.datetimes(datetime(2026, 1, 1), datetime(2027, 1, 1), timezones=st.just(UTC))
minutes = st.one_of(st.integers(0, 30_000), st.floats(0, 30_000, allow_nan=False))
PROPERTY = settings(max_examples=150, deadline=None)


@PROPERTY
@given(calendars, instants, minutes)
def test_adding_then_measuring_gives_the_minutes_back(spec, start, m):
    due = business_add(spec, start, m)
    assert due >= start
    assert business_minutes_between(spec, start, due) == pytest.approx(m, abs=1e-6)


@PROPERTY
@given(calendars, instants, minutes, minutes)
def test_more_minutes_are_never_due_earlier(spec, start, a, b):
    low, high = sorted((a, b))
    assert business_add(spec, start, low) <= business_add(spec, start, high)


@PROPERTY
@given(calendars, instants, instants, instants)
def test_business_minutes_add_up_and_grow_with_the_end(spec, a, b, c):
    a, b, c = sorted((a, b, c))
    ab, bc, ac = (business_minutes_between(spec, x, y) for x, y in ((a, b), (b, c), (a, c)))
    assert 0 <= ab <= ac and 0 <= bc <= ac
    assert ab + bc == pytest.approx(ac, abs=1e-6)
    assert ab <= (b - a).total_seconds() / 60 + 1e-9
    assert business_minutes_between(spec, c, a) == -ac


@PROPERTY
@given(calendars, instants, minutes)
def test_horizon_and_subtract_are_the_exact_bounds(spec, start, m):
    one = timedelta(microseconds=1)
    horizon = business_horizon(spec, start, m)
    assert business_add(spec, start, m) <= horizon
    assert business_minutes_between(spec, start, horizon) == pytest.approx(m, abs=1e-6)
    assert business_minutes_between(spec, start, horizon + one) > m
    earliest = business_subtract(spec, horizon, m)
    assert business_minutes_between(spec, earliest, horizon) == pytest.approx(m, abs=1e-6)
    assert business_minutes_between(spec, earliest - one, horizon) > m


@PROPERTY
@given(instants, instants, minutes)
def test_always_open_is_wall_clock_time(a, b, m):
    assert business_minutes_between(ALWAYS_OPEN, a, b) == pytest.approx(
        (b - a).total_seconds() / 60, abs=1e-6
    )
    assert business_add(ALWAYS_OPEN, a, m) == a + timedelta(microseconds=round(m * 60_000_000))
