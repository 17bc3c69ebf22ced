"""Reads for SLA: the policy and calendar configuration (cached per process) and the querysets
the API lists.

``sla_config()`` is cheap enough to call once per ingest batch: it returns the process's copy
and asks Redis for the shared version at most every ``CHECK_SECONDS``. Services that change
calendars or policies bump that version after commit (``inbox.services.sla.sla_config_changed``),
so every process reloads within a few seconds; a copy older than ``MAX_AGE_SECONDS`` is reloaded
regardless (queues changing their calendar, or a bump lost while Redis was away).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.cache import cache
from django.db.models import QuerySet
from redis.exceptions import RedisError

from inbox.models import BusinessCalendar, BusinessHours, CalendarHoliday, Queue, SlaPolicy
from inbox.sla.clock import CalendarSpec, Shift
from inbox.sla.policy import PolicySpec, PolicyTable, SlaConfig

logger = logging.getLogger(__name__)

#: Cache key of the configuration's version, bumped by every change.
VERSION_KEY = "sla:config-version"
CHECK_SECONDS = 2.0
MAX_AGE_SECONDS = 60.0


@dataclass(slots=True)
class _Loaded:
    config: SlaConfig
    version: int | None
    loaded_at: float
    checked_at: float


_lock = threading.Lock()
_loaded: _Loaded | None = None


def sla_config(*, fresh: bool = False) -> SlaConfig:
    """Policies and calendars as plain values. ``fresh`` reloads from the database now."""
    global _loaded
    now = time.monotonic()
    loaded = _loaded
    if not fresh and loaded is not None and now - loaded.loaded_at < MAX_AGE_SECONDS:
        if now - loaded.checked_at < CHECK_SECONDS:
            return loaded.config
        version = _shared_version()
        if version == loaded.version:
            loaded.checked_at = now
            return loaded.config
    else:
        version = _shared_version()
    config = _load()
    with _lock:
        _loaded = _Loaded(config, version, now, now)
    return config


def forget_sla_config() -> None:
    """Drop this process's copy: the next ``sla_config()`` reads the database. Tests call it
    between cases, since their rolled-back writes never bump the shared version."""
    global _loaded
    with _lock:
        _loaded = None


def _shared_version() -> int | None:
    try:
        return cache.get(VERSION_KEY)
    except (RedisError, OSError):
        logger.warning("cannot read the SLA configuration version; reloading by age only", exc_info=True)
        return None


def _load() -> SlaConfig:
    shifts: dict[int, list[Shift]] = defaultdict(list)
    for calendar_id, weekday, start, end in BusinessHours.objects.values_list(
        "calendar_id", "weekday", "start", "end"
    ):
        shifts[calendar_id].append(Shift(weekday, start, end))
    closed: dict[int, set] = defaultdict(set)
    for calendar_id, day in CalendarHoliday.objects.values_list("calendar_id", "date"):
        closed[calendar_id].add(day)
    calendars: dict[int, CalendarSpec] = {}
    for calendar in BusinessCalendar.objects.all():
        try:
            calendars[calendar.pk] = _spec(calendar, shifts[calendar.pk], closed[calendar.pk])
        except ValueError:
            # Admin and API refuse such data; if it got in anyway, its policies run around the clock.
            logger.error("business calendar %s is invalid and is ignored", calendar.pk, exc_info=True)
    policies = PolicyTable(
        PolicySpec(
            id=row["id"],
            name=row["name"],
            queue_id=row["queue_id"],
            priority=row["priority"],
            calendar_id=row["calendar_id"],
            first_response_minutes=row["first_response_minutes"],
            next_response_minutes=row["next_response_minutes"],
            resolution_minutes=row["resolution_minutes"],
            at_risk_ratio=row["at_risk_ratio"],
            notify_leads=row["notify_leads"],
            raise_priority=row["raise_priority"],
        )
        for row in SlaPolicy.objects.values()
    )
    queue_calendars = dict(Queue.objects.values_list("id", "calendar_id"))
    return SlaConfig(policies=policies, calendars=calendars, queue_calendars=queue_calendars)


def _spec(calendar: BusinessCalendar, shifts: list[Shift], closed: set) -> CalendarSpec:
    return CalendarSpec(
        time_zone=calendar.time_zone,
        always_open=calendar.always_open,
        shifts=tuple(shifts),
        holiday_country=calendar.holiday_country,
        holiday_subdivision=calendar.holiday_subdivision,
        custom_holidays=frozenset(closed),
    )


def calendar_spec(calendar: BusinessCalendar) -> CalendarSpec:
    """The spec of one calendar straight from the database (prefetch ``hours`` and
    ``custom_holidays`` to spare the queries). ``ValueError`` if its data is invalid."""
    return _spec(
        calendar,
        [Shift(h.weekday, h.start, h.end) for h in calendar.hours.all()],
        {h.date for h in calendar.custom_holidays.all()},
    )


# --- Querysets for the API -----------------------------------------------------------------------


def business_calendars_visible_to(user: AbstractBaseUser | AnonymousUser) -> QuerySet[BusinessCalendar]:
    """Every desk user may read every calendar (they decide when SLA clocks run)."""
    base = BusinessCalendar.objects.prefetch_related("hours", "custom_holidays").order_by("name", "pk")
    return base if user.is_authenticated else base.none()


def sla_policies_visible_to(user: AbstractBaseUser | AnonymousUser) -> QuerySet[SlaPolicy]:
    base = SlaPolicy.objects.select_related("queue", "calendar").order_by("name", "pk")
    return base if user.is_authenticated else base.none()
