"""Business time: when a team is on shift, and how SLA minutes map onto real instants.

A ``CalendarSpec`` is a team's week in its own time zone: shifts per weekday (split shifts
are several shifts on one day; ``end <= start`` runs past midnight, ``00:00-00:00`` is a
whole day), public holidays of a country (the ``holidays`` library) plus custom closed
dates, or simply ``always_open``.

The rules, each chosen so that a business minute is a real minute with someone on shift:

* A shift belongs to the day it starts. A holiday cancels the shifts that *start* on it,
  including the part of a night shift after midnight; a night shift that starts on the eve
  of a holiday runs to its end.
* Shift times are wall-clock times in the calendar's zone. A boundary is the first instant at
  which the wall clock shows that time: a boundary inside the hour skipped in spring is the
  jump itself (02:30 on the last Sunday of March in Amsterdam is 03:00 CEST), a boundary inside
  the hour repeated in autumn is its first pass. So 08:00-17:00 on a DST day is 9 hours, the
  night shift 22:00-06:00 into the spring change lasts 7 real hours and into the autumn
  change 9 (the repeated hour is worked twice).
* ``always_open`` counts every minute: holidays and shifts do not apply (a 24/7 team that
  closes on some days is seven ``00:00-00:00`` shifts plus those holidays).
* Overlapping shifts count once (admin and API refuse them anyway).

Everything runs on integer microseconds since the epoch, so results are exact and the
inverse operations agree to the microsecond. Open time is computed per local day (cut at
local midnight) and cached on the spec, so a target of weeks is a few dozen steps.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays as holidays_lib

_US_PER_SECOND = 1_000_000
_US_PER_MINUTE = 60 * _US_PER_SECOND
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_DAY = timedelta(days=1)
#: Consecutive days without open time after which a calendar is taken as never open again.
MAX_CLOSED_DAYS = 3 * 366
#: Days of open time a spec keeps cached (about 55 years): enough for any working set.
_CACHE_DAYS = 20_000


class CalendarNeverOpen(ValueError):
    """The calendar has no open time (left) in which a target could be reached."""


@dataclass(frozen=True, slots=True)
class Shift:
    """One shift on one weekday (0 = Monday), in wall-clock time of the calendar's zone."""

    weekday: int
    start: time
    end: time

    @property
    def overnight(self) -> bool:
        """Ends on the next day (``end <= start``; ``00:00-00:00`` is 24 hours)."""
        return self.end <= self.start

    def week_span(self) -> tuple[int, int]:
        """[start, end) in seconds since Monday 00:00 of a week without clock changes."""
        start = self.weekday * 86_400 + _seconds(self.start)
        length = (_seconds(self.end) - _seconds(self.start)) % 86_400 or 86_400
        return start, start + length


def _seconds(value: time) -> int:
    return value.hour * 3600 + value.minute * 60 + value.second


def overlapping_shifts(shifts: Iterable[Shift]) -> list[tuple[Shift, Shift]]:
    """Pairs of shifts that are on duty at the same time in a plain week (night shifts wrap
    from Sunday into Monday). Touching shifts (one ends when the next starts) do not overlap."""
    week = 7 * 86_400
    listed = list(shifts)
    spans: list[tuple[int, int, int]] = []
    for index, shift in enumerate(listed):
        start, end = shift.week_span()
        spans.append((start, end, index))
        if end > week:  # Sunday night into Monday morning
            spans.append((start - week, end - week, index))
    found: set[tuple[int, int]] = set()
    for a_start, a_end, a in spans:
        for b_start, b_end, b in spans:
            if a < b and a_start < b_end and b_start < a_end:
                found.add((a, b))
    return [(listed[a], listed[b]) for a, b in sorted(found)]


@lru_cache(maxsize=1024)
def public_holidays(country: str, subdivision: str, year: int) -> frozenset[date]:
    """Public holidays of ``country`` (ISO 3166-1 alpha-2) and ``subdivision`` in ``year``,
    including the days the country itself moves holidays to when they fall on a weekend (such a
    day can land in the year before, so the neighbouring years are asked too)."""
    if not country:
        return frozenset()
    days = holidays_lib.country_holidays(
        country, subdiv=subdivision or None, years=(year - 1, year, year + 1)
    )
    return frozenset(day for day in days if day.year == year)


def check_holiday_region(country: str, subdivision: str) -> None:
    """Raise ``ValueError`` unless the ``holidays`` library knows ``country``/``subdivision``."""
    if not country:
        if subdivision:
            raise ValueError("a subdivision needs a country")
        return
    supported = holidays_lib.list_supported_countries()
    if country not in supported:
        raise ValueError(f"unknown holiday country {country!r}")
    if subdivision and subdivision not in supported[country]:
        raise ValueError(f"unknown subdivision {subdivision!r} of {country}")


def check_time_zone(name: str) -> ZoneInfo:
    """The zone called ``name``; ``ValueError`` if there is none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


class _Day(NamedTuple):
    midnight: int
    next_midnight: int
    spans: tuple[tuple[int, int], ...]
    total: int


@dataclass(frozen=True, eq=False)
class CalendarSpec:
    """A business calendar as plain values. Compared by identity: the selector builds one per
    calendar and keeps it, so its cache of open time per day is reused."""

    time_zone: str = "UTC"
    always_open: bool = False
    shifts: tuple[Shift, ...] = ()
    holiday_country: str = ""
    holiday_subdivision: str = ""
    custom_holidays: frozenset[date] = frozenset()

    zone: ZoneInfo = field(init=False, repr=False)
    _by_weekday: tuple[tuple[Shift, ...], ...] = field(init=False, repr=False)
    _raw: dict[int, tuple[tuple[int, int], ...]] = field(init=False, repr=False, default_factory=dict)
    _days: dict[int, _Day] = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "zone", check_time_zone(self.time_zone))
        by_weekday: list[list[Shift]] = [[] for _ in range(7)]
        for shift in self.shifts:
            if not 0 <= shift.weekday <= 6:
                raise ValueError(f"weekday must be 0 (Monday) to 6 (Sunday), not {shift.weekday}")
            if shift.start.tzinfo is not None or shift.end.tzinfo is not None:
                raise ValueError("shift times are wall-clock times without a time zone")
            by_weekday[shift.weekday].append(shift)
        object.__setattr__(
            self, "_by_weekday", tuple(tuple(sorted(d, key=lambda s: s.start)) for d in by_weekday)
        )

    @property
    def never_open(self) -> bool:
        """No shift at all: no business minute ever passes."""
        return not self.always_open and not self.shifts

    def is_holiday(self, day: date) -> bool:
        if day in self.custom_holidays:
            return True
        return day in public_holidays(self.holiday_country, self.holiday_subdivision, day.year)

    # --- open time per local day, cached -----------------------------------------------------

    def _midnight(self, day: date) -> int:
        return _wall_to_us(self.zone, day, time(0))

    def _shifts_starting(self, day: date) -> tuple[tuple[int, int], ...]:
        """[start, end) of the shifts that start on ``day`` (none on a holiday), unclipped."""
        key = day.toordinal()
        found = self._raw.get(key)
        if found is None:
            spans = []
            if not self.is_holiday(day):
                for shift in self._by_weekday[day.weekday()]:
                    start = _wall_to_us(self.zone, day, shift.start)
                    end = _wall_to_us(self.zone, day + _ONE_DAY if shift.overnight else day, shift.end)
                    if end > start:  # a shift inside the skipped hour does not happen
                        spans.append((start, end))
            found = tuple(spans)
            if len(self._raw) >= _CACHE_DAYS:
                self._raw.clear()
            self._raw[key] = found
        return found

    def _open_on(self, day: date) -> _Day:
        """Local ``day`` from midnight to midnight and its open time: sorted, disjoint spans (a
        night shift is cut at midnight and continues the next day) and their total."""
        key = day.toordinal()
        found = self._days.get(key)
        if found is None:
            low, high = self._midnight(day), self._midnight(day + _ONE_DAY)
            spans = sorted(self._shifts_starting(day - _ONE_DAY) + self._shifts_starting(day))
            merged: list[list[int]] = []
            for start, end in spans:
                start, end = max(start, low), min(end, high)
                if end <= start:
                    continue
                if merged and start <= merged[-1][1]:
                    merged[-1][1] = max(merged[-1][1], end)
                else:
                    merged.append([start, end])
            found = _Day(low, high, tuple((a, b) for a, b in merged), sum(b - a for a, b in merged))
            if len(self._days) >= _CACHE_DAYS:
                self._days.clear()
            self._days[key] = found
        return found

    def _local_date(self, us: int) -> date:
        return _from_us(us).astimezone(self.zone).date()

    def _forward(self, from_us: int, until_us: int) -> Iterator[tuple[int, int]]:
        """Open spans from ``from_us`` in time order, the first one clipped to start there,
        until the local day that starts at or after ``until_us``."""
        day = self._local_date(from_us)
        while True:
            midnight, _, spans, _ = self._open_on(day)
            if midnight >= until_us:
                return
            for start, end in spans:
                if end > from_us:
                    yield max(start, from_us), end
            day += _ONE_DAY

    def _backward(self, to_us: int) -> Iterator[tuple[int, int]]:
        """Open spans before ``to_us`` in reverse time order, the last one clipped to end there."""
        # A fold at midnight can leave an instant of local date D inside D+1's window.
        day = self._local_date(to_us) + _ONE_DAY
        closed_days = 0
        while True:
            spans = self._open_on(day).spans
            for start, end in reversed(spans):
                if start < to_us:
                    yield start, min(end, to_us)
            if spans:
                closed_days = 0
            else:
                closed_days += 1
                if closed_days > MAX_CLOSED_DAYS:
                    raise CalendarNeverOpen(
                        f"no open time in {MAX_CLOSED_DAYS} days before {_from_us(to_us)}"
                    )
            day -= _ONE_DAY


#: Around the clock: what a policy without a calendar (and a queue without one) runs on.
ALWAYS_OPEN = CalendarSpec(time_zone="UTC", always_open=True)


# --- Public operations -------------------------------------------------------------------------


def business_add(spec: CalendarSpec, start: datetime, minutes: float) -> datetime:
    """The instant at which ``minutes`` business minutes after ``start`` have passed: the first
    instant that many open minutes later (so it may be the very end of a shift). Zero minutes
    is ``start`` itself. Returned in UTC."""
    need = _minutes_to_us(minutes)
    start_us = _to_us(start)
    if spec.always_open or need == 0:
        return _from_us(start_us + need)
    return _from_us(_advance(spec, start_us, need, at_end=True))


def business_horizon(spec: CalendarSpec, start: datetime, minutes: float) -> datetime:
    """The last instant up to which at most ``minutes`` business minutes pass after ``start``.

    Equal to ``business_add`` when that lands inside a shift; when it lands on a shift's end,
    the horizon is the start of the next open time (the closed gap adds no minutes). So
    ``business_minutes_between(start, t) <= minutes`` exactly when ``t <= horizon``."""
    need = _minutes_to_us(minutes)
    start_us = _to_us(start)
    if spec.always_open:
        return _from_us(start_us + need)
    return _from_us(_advance(spec, start_us, need, at_end=False))


def _advance(spec: CalendarSpec, from_us: int, need: int, *, at_end: bool) -> int:
    """The instant ``need`` microseconds of open time after ``from_us``. When that runs out
    exactly at the end of a span: that end if ``at_end``, else the start of the next span.
    Days that lie wholly ahead and do not use up ``need`` are skipped by their total."""
    _require_open(spec)
    day = spec._local_date(from_us)
    closed_days = 0
    while True:
        _, _, spans, total = spec._open_on(day)
        if not spans:
            closed_days += 1
            if closed_days > MAX_CLOSED_DAYS:
                raise CalendarNeverOpen(f"no open time in {MAX_CLOSED_DAYS} days after {_from_us(from_us)}")
        elif from_us <= spans[0][0] and (need > total or (need == total and not at_end)):
            need -= total
            closed_days = 0
        else:
            closed_days = 0
            for start, end in spans:
                if end <= from_us:
                    continue
                start = max(start, from_us)
                if need < end - start or (at_end and need == end - start):
                    return start + need
                need -= end - start
        day += _ONE_DAY


def business_subtract(spec: CalendarSpec, end: datetime, minutes: float) -> datetime:
    """The earliest instant from which at most ``minutes`` business minutes remain until ``end``."""
    need = _minutes_to_us(minutes)
    end_us = _to_us(end)
    if spec.always_open:
        return _from_us(end_us - need)
    _require_open(spec)
    for span_start, span_end in spec._backward(end_us):
        if need < span_end - span_start:
            return _from_us(span_end - need)
        need -= span_end - span_start
    raise AssertionError("unreachable: _backward ends only by raising")  # pragma: no cover


def business_minutes_between(spec: CalendarSpec, start: datetime, end: datetime) -> float:
    """Business minutes from ``start`` to ``end`` (negative when ``end`` is earlier)."""
    start_us, end_us = _to_us(start), _to_us(end)
    if end_us < start_us:
        return -business_minutes_between(spec, end, start)
    if spec.always_open:
        return (end_us - start_us) / _US_PER_MINUTE
    if spec.never_open:
        return 0.0
    total = 0
    day = spec._local_date(start_us)
    while True:
        midnight, next_midnight, spans, day_total = spec._open_on(day)
        if midnight >= end_us:
            break
        if spans and start_us <= midnight and next_midnight <= end_us:
            total += day_total
        else:
            for span_start, span_end in spans:
                span_start, span_end = max(span_start, start_us), min(span_end, end_us)
                if span_end > span_start:
                    total += span_end - span_start
        day += _ONE_DAY
    return total / _US_PER_MINUTE


def is_open(spec: CalendarSpec, at: datetime) -> bool:
    """Whether a business minute is running at ``at`` (a shift's start is open, its end is not)."""
    if spec.always_open:
        return True
    at_us = _to_us(at)
    day = spec._local_date(at_us)
    # After a fold at midnight the instant may lie in the next local day's window.
    return any(start <= at_us < end for d in (day, day + _ONE_DAY) for start, end in spec._open_on(d).spans)


def open_spans(spec: CalendarSpec, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """The open time between ``start`` and ``end`` as (from, to) pairs in UTC. Spans touching at
    local midnight are joined."""
    if spec.always_open:
        return [(start.astimezone(UTC), end.astimezone(UTC))] if end > start else []
    if spec.never_open:
        return []
    start_us, end_us = _to_us(start), _to_us(end)
    result: list[list[int]] = []
    for span_start, span_end in spec._forward(start_us, until_us=end_us):
        if span_start >= end_us:
            break
        span_end = min(span_end, end_us)
        if result and result[-1][1] == span_start:
            result[-1][1] = span_end
        else:
            result.append([span_start, span_end])
    return [(_from_us(a), _from_us(b)) for a, b in result]


# --- Helpers -----------------------------------------------------------------------------------


def _require_open(spec: CalendarSpec) -> None:
    if spec.never_open:
        raise CalendarNeverOpen("the calendar has no shifts and is not 24/7")


def _minutes_to_us(minutes: float) -> int:
    if isinstance(minutes, bool) or not math.isfinite(minutes) or minutes < 0:
        raise ValueError(f"minutes must be a finite number >= 0, not {minutes!r}")
    return round(minutes * _US_PER_MINUTE)


def _to_us(value: datetime) -> int:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("business time needs timezone-aware datetimes")
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * _US_PER_SECOND + delta.microseconds


def _from_us(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def _wall_to_us(zone: ZoneInfo, day: date, at: time) -> int:
    """The first instant at which the wall clock in ``zone`` shows ``day`` ``at`` (or later).

    An existing time maps to its first pass (``fold=0`` is the earlier of a repeated hour). A
    time the clock skips maps to the instant of the jump, found by bisecting the seconds
    between the two readings of the gap (transitions fall on whole seconds)."""
    naive = datetime.combine(day, at)
    earlier = naive.replace(tzinfo=zone, fold=0)
    instant = _to_us(earlier)
    if _from_us(instant).astimezone(zone).replace(tzinfo=None) == naive:
        return instant
    # In a gap: fold=0 reads it with the offset before the jump (after the jump in UTC),
    # fold=1 with the offset after it (before the jump in UTC).
    low = _to_us(naive.replace(tzinfo=zone, fold=1)) // _US_PER_SECOND
    high = -(-instant // _US_PER_SECOND)
    while low < high:
        middle = (low + high) // 2
        if _from_us(middle * _US_PER_SECOND).astimezone(zone).replace(tzinfo=None) >= naive:
            high = middle
        else:
            low = middle + 1
    return high * _US_PER_SECOND


def week_minutes(shifts: Iterable[Shift]) -> float:
    """Open minutes of these shifts in a plain week (no holidays or clock changes): for display."""
    return sum(end - start for start, end in _merged_week_spans(shifts)) / 60


def _merged_week_spans(shifts: Iterable[Shift]) -> list[tuple[int, int]]:
    week = 7 * 86_400
    spans: list[tuple[int, int]] = []
    for shift in shifts:
        start, end = shift.week_span()
        if end > week:
            spans.extend([(start, week), (0, end - week)])
        else:
            spans.append((start, end))
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(a, b) for a, b in merged]
