"""Assignment tests. Factories shared by them (and by tests/api/test_team.py) live here."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

import factory
from django.utils import timezone

from inbox.models import AgentProfile, Queue, Source, Ticket
from tests.factories import AgentProfileFactory, ContactFactory, SourceFactory

#: Tickets open from here on, a minute apart unless told otherwise.
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.get_fixed_timezone(0))




def _shared_source() -> Source:
    return Source.objects.filter(name="assignment-tests").first() or SourceFactory(name="assignment-tests")


class TicketFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Ticket

    source = factory.LazyFunction(_shared_source)
    contact = factory.SubFactory(ContactFactory)
    customer = factory.SelfAttribute("contact.customer")
    status = Ticket.Status.NEW
    priority = Ticket.Priority.NORMAL
    language = ""
    opened_at = factory.Sequence(lambda n: T0 + timedelta(minutes=n))
    last_message_at = factory.SelfAttribute("opened_at")


def make_agent(
    *,
    queues: Iterable[Queue] = (),
    languages: Iterable[str] = ("en",),
    capacity: int = 8,
    presence: str = AgentProfile.Presence.ONLINE,
    role: str = AgentProfile.Role.AGENT,
    last_assigned_at: datetime | None = None,
    username: str | None = None,
) -> AgentProfile:
    """An agent (profile and user) who is a member of ``queues``."""
    extra = {"user__username": username} if username else {}
    profile = AgentProfileFactory(
        languages=list(languages), capacity=capacity, presence=presence, role=role,
        last_assigned_at=last_assigned_at, **extra,
    )  # fmt: skip
    for queue in queues:
        queue.members.add(profile.user)
    return profile
