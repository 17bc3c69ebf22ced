from __future__ import annotations

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
