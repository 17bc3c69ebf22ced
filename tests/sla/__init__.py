"""SLA tests: business time, the SLA rules, the periodic evaluation. Factories for them below."""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

import factory

from inbox.models import (
    BusinessCalendar,
    BusinessHours,
    CalendarHoliday,
    SlaPolicy,
    Ticket,
)
from tests.factories import ContactFactory, QueueFactory, SourceFactory

AMS = ZoneInfo("Europe/Amsterdam")


def ams(*args: int) -> datetime:
    """An Amsterdam wall-clock time: ``ams(2026, 3, 27, 16, 0)``."""
    return datetime(*args, tzinfo=AMS)


class BusinessCalendarFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = BusinessCalendar

    name = factory.Sequence(lambda n: f"Calendar {n}")
    time_zone = "Europe/Amsterdam"


class BusinessHoursFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = BusinessHours

    calendar = factory.SubFactory(BusinessCalendarFactory)
    weekday = 0
    start = time(9)
    end = time(17)


class CalendarHolidayFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CalendarHoliday

    calendar = factory.SubFactory(BusinessCalendarFactory)
    name = "Closed"


def office_calendar(
    name: str = "Office", *, start: time = time(9), end: time = time(17), **kwargs
) -> BusinessCalendar:
    """Monday to Friday, one shift a day."""
    calendar = BusinessCalendarFactory(name=name, **kwargs)
    for weekday in range(5):
        BusinessHoursFactory(calendar=calendar, weekday=weekday, start=start, end=end)
    return calendar


class SlaPolicyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SlaPolicy

    name = factory.Sequence(lambda n: f"Policy {n}")




class TicketFactory(factory.django.DjangoModelFactory):
    """A ticket as ingest leaves it; SLA fields are set by the tests through the SLA rules."""

    class Meta:
        model = Ticket

    source = factory.SubFactory(SourceFactory)
    queue = factory.SubFactory(QueueFactory)
    contact = factory.SubFactory(ContactFactory)
    customer = factory.LazyAttribute(lambda t: t.contact.customer)
    opened_at = factory.LazyFunction(lambda: ams(2026, 11, 2, 9, 0))
    last_message_at = factory.LazyAttribute(lambda t: t.opened_at)
    last_customer_message_at = factory.LazyAttribute(lambda t: t.opened_at)
