"""SLA writes: the periodic evaluation (at risk, breached, escalation), a lead changing a
ticket's policy, and changes to policies and business calendars.

The rules themselves are pure (``inbox.sla.policy``); this module loads, locks, applies
their field updates, writes the events and publishes them after commit.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime

from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from redis.exceptions import RedisError

from inbox.models import BusinessCalendar, BusinessHours, CalendarHoliday, SlaPolicy, Ticket, TicketEvent
from inbox.realtime.publish import publish_on_commit
from inbox.selectors.sla import VERSION_KEY, forget_sla_config, sla_config
from inbox.services.events import event_for
from inbox.sla.clock import (
    ALWAYS_OPEN,
    CalendarSpec,
    Shift,
    check_holiday_region,
    check_time_zone,
    overlapping_shifts,
)
from inbox.sla.policy import (
    AppliedPolicy,
    SlaConfig,
    SlaState,
    StateChange,
    Target,
    TicketClocks,
    at_risk_horizon,
    sla_evaluate_ticket,
    sla_for_policy_change,
    sla_state_update,
)

logger = logging.getLogger(__name__)

_RUNNING = (Ticket.Status.NEW, Ticket.Status.OPEN)
_DUE_FIELDS = {
    Target.FIRST_RESPONSE: "first_response_due_at",
    Target.NEXT_RESPONSE: "next_response_due_at",
    Target.RESOLUTION: "resolution_due_at",
}


class SlaConfigError(ValueError):
    """A calendar or policy cannot be saved as given; the message says why."""


WEEKDAY_NAMES = (_("Mon"), _("Tue"), _("Wed"), _("Thu"), _("Fri"), _("Sat"), _("Sun"))


# --- Events ------------------------------------------------------------------------------------


def sla_state_event(*, ticket: Ticket, change: StateChange) -> TicketEvent:
    """An unsaved ``sla.state_changed`` event for ``change`` (for callers that write in bulk)."""
    return event_for(
        ticket,
        "sla.state_changed",
        target=change.target,
        old=change.old,
        new=change.new,
        due_at=change.due_at.isoformat() if change.due_at is not None else None,
    )


def sla_settle(
    *, ticket: Ticket, applied: AppliedPolicy | None, now: datetime
) -> tuple[list[str], list[TicketEvent]]:
    """Bring ``ticket.sla_state`` (in memory, locked by the caller) to how the ticket stands at
    ``now``, escalating a new breach of an active ticket. Returns the changed fields and the
    unsaved events, in order: ``sla.state_changed``, then ``sla.breached``, then
    ``ticket.priority_changed``."""
    clocks = TicketClocks.of(ticket)
    update = sla_state_update(clocks, sla_evaluate_ticket(clocks, applied, now=now), now=now)
    change = update.state_change
    if change is None:
        return [], []
    fields = update.apply(ticket)
    events = [sla_state_event(ticket=ticket, change=change)]
    if change.new == SlaState.BREACHED and applied is not None and ticket.status in Ticket.ACTIVE_STATUSES:
        fields += _escalate(ticket, applied, change, events)
    return fields, events


def _escalate(
    ticket: Ticket, applied: AppliedPolicy, change: StateChange, events: list[TicketEvent]
) -> list[str]:
    policy = applied.policy
    due_at = change.due_at.isoformat() if change.due_at is not None else None
    if policy.notify_leads:
        events.append(
            event_for(ticket, "sla.breached", target=change.target, due_at=due_at, policy_id=policy.id)
        )
    if policy.raise_priority and ticket.priority < Ticket.Priority.URGENT:
        old = ticket.priority
        ticket.priority = old + 1
        events.append(
            event_for(ticket, "ticket.priority_changed", old=old, new=ticket.priority, reason="sla breached")
        )
        return ["priority"]
    return []


# --- The periodic evaluation -------------------------------------------------------------------


def sla_evaluate(*, now: datetime | None = None, batch_size: int = 200) -> int:
    """Move running tickets whose time has come to at risk or breached: events, escalation.

    Candidates come from one query on the stored due times: for each policy (and each calendar
    it may run on) the instant up to which a due time means at risk now is computed once, so
    the database compares columns and nothing is scanned in Python. Each batch is then locked
    (by id) and judged again exactly, so a run that overlaps another, or a second run, writes
    nothing new. Returns how many tickets changed state."""
    now = now or timezone.now()
    config = sla_config()
    ids = _candidate_ids(config, now)
    changed = 0
    for start in range(0, len(ids), batch_size):
        changed += _evaluate_batch(config, ids[start : start + batch_size], now)
    return changed


def _candidate_ids(config: SlaConfig, now: datetime) -> list[int]:
    calendars_of_queues = {c for c in config.queue_calendars.values() if c in config.calendars}
    conditions = Q()
    for policy in config.policies.by_id.values():
        if not policy.has_targets:
            continue
        if policy.calendar_id in config.calendars:
            calendars: list[CalendarSpec] = [config.calendars[policy.calendar_id]]
        else:
            calendars = [config.calendars[c] for c in sorted(calendars_of_queues)] + [ALWAYS_OPEN]
        breach = Q()
        risk = Q()
        for target, due_field in _DUE_FIELDS.items():
            extra = {"first_response_at__isnull": True} if target is Target.FIRST_RESPONSE else {}
            breach |= Q(**{f"{due_field}__lte": now}, **extra)
            horizons = [
                at_risk_horizon(AppliedPolicy(policy, calendar), target, now=now) for calendar in calendars
            ]
            known = [h for h in horizons if h is not None]
            if known:
                risk |= Q(**{f"{due_field}__lte": max(known)}, **extra)
        due = breach
        if risk:
            due |= Q(sla_state__in=(SlaState.NONE, SlaState.OK)) & risk
        conditions |= Q(sla_policy_id=policy.id) & due
    if not conditions:
        return []
    return list(
        Ticket.objects.filter(
            status__in=_RUNNING, sla_state__in=(SlaState.NONE, SlaState.OK, SlaState.AT_RISK)
        )
        .filter(conditions)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def _evaluate_batch(config: SlaConfig, ids: Sequence[int], now: datetime) -> int:
    with transaction.atomic():
        tickets = list(
            Ticket.objects.select_for_update().filter(pk__in=ids, status__in=_RUNNING).order_by("pk")
        )
        changed: list[Ticket] = []
        events: list[TicketEvent] = []
        for ticket in tickets:
            applied = config.applied(ticket.sla_policy_id, ticket.queue_id)
            if applied is None:
                continue
            fields, ticket_events = sla_settle(ticket=ticket, applied=applied, now=now)
            if fields:
                ticket.updated_at = now
                changed.append(ticket)
                events.extend(ticket_events)
        if changed:
            Ticket.objects.bulk_update(
                changed, ["sla_state", "sla_state_changed_at", "priority", "updated_at"]
            )
            TicketEvent.objects.bulk_create(events)
            publish_on_commit(events)
    return len(changed)


# --- A lead sets a ticket's policy -------------------------------------------------------------


def sla_apply_policy(
    *,
    ticket: Ticket,
    policy: SlaPolicy | None,
    actor: AbstractBaseUser | None = None,
    now: datetime | None = None,
) -> Ticket:
    """Put ``ticket`` on ``policy`` (None: no SLA). Due times keep each target's start and
    paused time (see ``sla_for_policy_change``); the state is judged anew, and a new breach
    escalates like in the periodic evaluation. Writes ``sla.policy_changed``."""
    now = now or timezone.now()
    with transaction.atomic():
        ticket = Ticket.objects.select_for_update().get(pk=ticket.pk)
        new_id = policy.pk if policy is not None else None
        if ticket.sla_policy_id == new_id:
            return ticket
        config = sla_config(fresh=True)
        fields, events = sla_switch_policy(
            ticket=ticket, config=config, policy_id=new_id, actor=actor, now=now
        )
        ticket.save(update_fields=[*dict.fromkeys(fields), "updated_at"])
        TicketEvent.objects.bulk_create(events)
        publish_on_commit(events)
    return ticket


def sla_switch_policy(
    *, ticket: Ticket, config: SlaConfig, policy_id: int | None, actor: AbstractBaseUser | None, now: datetime
) -> tuple[list[str], list[TicketEvent]]:
    """Move the locked ``ticket`` (in memory, not saved) to ``policy_id``: the changed fields
    and the unsaved events (``sla.policy_changed``, then any from ``sla_settle``)."""
    old_id = ticket.sla_policy_id
    old = config.applied(old_id, ticket.queue_id)
    new = config.applied(policy_id, ticket.queue_id)
    change = sla_for_policy_change(TicketClocks.of(ticket), old, new)
    fields = change.apply(ticket)
    actor_id = actor.pk if actor is not None else None
    events = [
        event_for(
            ticket,
            "sla.policy_changed",
            actor_id=actor_id,
            old_policy_id=old_id,
            new_policy_id=ticket.sla_policy_id,
            **{name: _iso(getattr(ticket, name)) for name in _DUE_FIELDS.values()},
        )
    ]
    settle_fields, settle_events = sla_settle(ticket=ticket, applied=new, now=now)
    return [_field_name(f) for f in fields + settle_fields], events + settle_events


def _field_name(attname: str) -> str:
    return "sla_policy" if attname == "sla_policy_id" else attname


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


# --- Calendars and policies --------------------------------------------------------------------


def sla_config_changed() -> None:
    """Calendars, policies or queue calendars changed: after commit, this process forgets its
    copy and every other process reloads within ``CHECK_SECONDS``."""
    transaction.on_commit(_bump_version)


def _bump_version() -> None:
    forget_sla_config()
    try:
        cache.add(VERSION_KEY, 0, timeout=None)
        cache.incr(VERSION_KEY)
    except (RedisError, OSError, ValueError):
        logger.warning(
            "cannot bump the SLA configuration version; other processes reload by age", exc_info=True
        )


def business_calendar_create(
    *,
    name: str,
    time_zone: str = "Europe/Amsterdam",
    always_open: bool = False,
    holiday_country: str = "",
    holiday_subdivision: str = "",
    hours: Iterable[Shift] = (),
    holidays: Iterable[tuple[date, str]] = (),
) -> BusinessCalendar:
    """A calendar with its weekly shifts and custom closed dates."""
    hours, holidays = list(hours), list(holidays)
    with transaction.atomic():
        calendar = BusinessCalendar.objects.create(
            name=name,
            time_zone=time_zone,
            always_open=always_open,
            holiday_country=holiday_country,
            holiday_subdivision=holiday_subdivision,
        )
        _check_calendar(calendar, hours)
        _replace_hours(calendar, hours)
        _replace_holidays(calendar, holidays)
        sla_config_changed()
    return calendar


_CALENDAR_FIELDS = frozenset({"name", "time_zone", "always_open", "holiday_country", "holiday_subdivision"})


def business_calendar_update(
    *,
    calendar: BusinessCalendar,
    changes: Mapping[str, object],
    hours: Iterable[Shift] | None = None,
    holidays: Iterable[tuple[date, str]] | None = None,
) -> BusinessCalendar:
    """Change a calendar's fields; ``hours`` and ``holidays``, when given, replace the old ones.
    Due times already on tickets stay as they were computed."""
    unknown = set(changes) - _CALENDAR_FIELDS
    if unknown:
        raise SlaConfigError(f"unknown calendar fields: {', '.join(sorted(unknown))}")
    with transaction.atomic():
        calendar = BusinessCalendar.objects.select_for_update().get(pk=calendar.pk)
        for name, value in changes.items():
            setattr(calendar, name, value)
        shifts = (
            list(hours)
            if hours is not None
            else [Shift(h.weekday, h.start, h.end) for h in calendar.hours.all()]
        )
        _check_calendar(calendar, shifts)
        if changes:
            calendar.save(update_fields=list(changes))
        if hours is not None:
            _replace_hours(calendar, shifts)
        if holidays is not None:
            _replace_holidays(calendar, list(holidays))
        sla_config_changed()
    return calendar


def business_calendar_delete(*, calendar: BusinessCalendar) -> None:
    """Delete a calendar; its policies and queues fall back as documented (queue, then 24/7)."""
    with transaction.atomic():
        calendar.delete()
        sla_config_changed()


def _check_calendar(calendar: BusinessCalendar, shifts: list[Shift]) -> None:
    problems = calendar_problems(
        time_zone=calendar.time_zone,
        always_open=calendar.always_open,
        shifts=shifts,
        holiday_country=calendar.holiday_country,
        holiday_subdivision=calendar.holiday_subdivision,
    )
    if problems:
        raise SlaConfigError(" ".join(str(p) for p in problems))


def calendar_problems(
    *,
    time_zone: str,
    always_open: bool,
    shifts: Sequence[Shift],
    holiday_country: str,
    holiday_subdivision: str,
) -> list[str]:
    """Why a calendar with these values cannot be saved (empty when it can)."""
    return region_problems(
        time_zone=time_zone, holiday_country=holiday_country, holiday_subdivision=holiday_subdivision
    ) + shift_problems(always_open=always_open, shifts=shifts)


def region_problems(*, time_zone: str, holiday_country: str, holiday_subdivision: str) -> list[str]:
    """Unknown time zone, or a holiday country or subdivision the holidays library does not know."""
    problems = []
    try:
        check_time_zone(time_zone)
    except ValueError:
        problems.append(_("Unknown time zone %(zone)s.") % {"zone": time_zone})
    try:
        check_holiday_region(holiday_country, holiday_subdivision)
    except ValueError:
        problems.append(
            _("The holidays library does not know the country %(country)s (subdivision %(subdivision)s).")
            % {"country": holiday_country or "-", "subdivision": holiday_subdivision or "-"}
        )
    return problems


def shift_problems(*, always_open: bool, shifts: Sequence[Shift]) -> list[str]:
    """Weekdays out of range, shifts that overlap, or a calendar that is never open."""
    problems = []
    if any(not 0 <= shift.weekday <= 6 for shift in shifts):
        problems.append(_("Weekday must be 0 (Monday) to 6 (Sunday)."))
    if not always_open and not shifts:
        problems.append(_("A calendar that is not 24/7 needs at least one shift."))
    for a, b in overlapping_shifts(shifts):
        problems.append(_("Shifts %(a)s and %(b)s overlap.") % {"a": shift_label(a), "b": shift_label(b)})
    return problems


def shift_label(shift: Shift) -> str:
    """``Mon 22:00-06:00`` in the active language."""
    day = WEEKDAY_NAMES[shift.weekday] if 0 <= shift.weekday <= 6 else str(shift.weekday)
    return f"{day} {shift.start:%H:%M}-{shift.end:%H:%M}"


def _replace_hours(calendar: BusinessCalendar, shifts: list[Shift]) -> None:
    BusinessHours.objects.filter(calendar=calendar).delete()
    BusinessHours.objects.bulk_create(
        BusinessHours(calendar=calendar, weekday=s.weekday, start=s.start, end=s.end) for s in shifts
    )


def _replace_holidays(calendar: BusinessCalendar, holidays: list[tuple[date, str]]) -> None:
    days = [day for day, _ in holidays]
    if len(set(days)) != len(days):
        raise SlaConfigError(str(_("A date can be a holiday only once per calendar.")))
    CalendarHoliday.objects.filter(calendar=calendar).delete()
    CalendarHoliday.objects.bulk_create(
        CalendarHoliday(calendar=calendar, date=day, name=name) for day, name in holidays
    )


_POLICY_FIELDS = frozenset(
    {
        "name",
        "queue",
        "priority",
        "calendar",
        "first_response_minutes",
        "next_response_minutes",
        "resolution_minutes",
        "at_risk_ratio",
        "notify_leads",
        "raise_priority",
    }
)


def sla_policy_create(*, name: str, **values: object) -> SlaPolicy:
    """A policy. ``values`` are ``SlaPolicy`` fields (queue, priority, calendar, minutes ...).
    Tickets already open keep their policy; new tickets pick the most specific match."""
    unknown = set(values) - _POLICY_FIELDS
    if unknown:
        raise SlaConfigError(f"unknown policy fields: {', '.join(sorted(unknown))}")
    with transaction.atomic():
        policy = SlaPolicy(name=name, **values)
        _check_policy(policy)
        policy.save()
        sla_config_changed()
    return policy


def sla_policy_update(*, policy: SlaPolicy, changes: Mapping[str, object]) -> SlaPolicy:
    """Change a policy. Due times already on tickets stay; ``sla_apply_policy`` recomputes one."""
    unknown = set(changes) - _POLICY_FIELDS
    if unknown:
        raise SlaConfigError(f"unknown policy fields: {', '.join(sorted(unknown))}")
    with transaction.atomic():
        policy = SlaPolicy.objects.select_for_update().get(pk=policy.pk)
        for name, value in changes.items():
            setattr(policy, name, value)
        _check_policy(policy)
        if changes:
            policy.save(update_fields=list(changes))
        sla_config_changed()
    return policy


def sla_policy_delete(*, policy: SlaPolicy) -> None:
    """Delete a policy: its tickets keep their due times but lose the policy (no evaluation)."""
    with transaction.atomic():
        policy.delete()
        sla_config_changed()


def _check_policy(policy: SlaPolicy) -> None:
    problems = policy_problems(
        pk=policy.pk,
        queue_id=policy.queue_id,
        priority=policy.priority,
        at_risk_ratio=policy.at_risk_ratio,
    )
    if problems:
        raise SlaConfigError(" ".join(str(p) for p in problems))


def policy_problems(
    *, pk: int | None, queue_id: int | None, priority: int | None, at_risk_ratio: float
) -> list[str]:
    """Why a policy with these values cannot be saved (empty when it can)."""
    problems = []
    if priority is not None and priority not in Ticket.Priority.values:
        problems.append(_("Priority must be one of %(values)s.") % {"values": sorted(Ticket.Priority.values)})
    if not 0 < at_risk_ratio <= 1:
        problems.append(_("At risk must be above 0 and at most 1 (0.8 is 80% of the target)."))
    same = SlaPolicy.objects.filter(queue_id=queue_id, priority=priority)
    if pk is not None:
        same = same.exclude(pk=pk)
    if same.exists():
        problems.append(_("Another policy already covers this queue and priority."))
    return problems
