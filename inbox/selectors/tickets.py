from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Q, QuerySet

from inbox.models import AgentProfile, Ticket


def user_is_lead(user: AbstractBaseUser | AnonymousUser) -> bool:
    if not user.is_authenticated:
        return False
    if user.is_superuser:
        return True
    profile = getattr(user, "agent_profile", None)
    return profile is not None and profile.role == AgentProfile.Role.LEAD


def tickets_visible_to(user: AbstractBaseUser | AnonymousUser) -> QuerySet[Ticket]:
    """Leads see every ticket; agents see their queues' tickets and their own."""
    base = Ticket.objects.select_related("queue", "assignee", "contact", "source")
    if not user.is_authenticated:
        return base.none()
    if user_is_lead(user):
        return base
    return base.filter(Q(queue__members=user) | Q(assignee=user)).distinct()


@dataclass(frozen=True, slots=True)
class TicketFilters:
    """Which tickets: the filters of the ticket list and of a lead's bulk reassign.

    Empty fields do not constrain. ``unassigned`` and ``assignee_id`` exclude each other.
    """

    queue_id: int | None = None
    statuses: tuple[str, ...] = ()
    language: str = ""
    priorities: tuple[int, ...] = ()
    assignee_id: int | None = None
    unassigned: bool = False
    tag: str = ""
    platform: str = ""

    def is_empty(self) -> bool:
        return self == TicketFilters()


def tickets_filter(tickets: QuerySet[Ticket], filters: TicketFilters) -> QuerySet[Ticket]:
    """``tickets`` narrowed by ``filters`` (the caller scoped them already)."""
    if filters.queue_id is not None:
        tickets = tickets.filter(queue_id=filters.queue_id)
    if filters.statuses:
        tickets = tickets.filter(status__in=filters.statuses)
    if filters.language:
        tickets = tickets.filter(language=filters.language)
    if filters.priorities:
        tickets = tickets.filter(priority__in=filters.priorities)
    if filters.unassigned:
        tickets = tickets.filter(assignee__isnull=True)
    elif filters.assignee_id is not None:
        tickets = tickets.filter(assignee_id=filters.assignee_id)
    if filters.tag:
        tickets = tickets.filter(
            pk__in=Ticket.tags.through.objects.filter(tag__name=filters.tag).values("ticket_id")
        )
    if filters.platform:
        tickets = tickets.filter(source__platform=filters.platform)
    return tickets


def tickets_matching(*, user: AbstractBaseUser | AnonymousUser, filters: TicketFilters) -> QuerySet[Ticket]:
    """The tickets ``user`` may see that match ``filters``."""
    return tickets_filter(tickets_visible_to(user), filters)
