"""Who may call what: agents work tickets, leads and admins also run the floor."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from rest_framework.permissions import BasePermission

from inbox.selectors.tickets import user_is_lead


class IsLead(BasePermission):
    """Team leads and admins only."""

    message = "Only team leads and admins may do this."

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated and user_is_lead(request.user))


class IsAgent(BasePermission):
    """Users with an agent profile (agents and leads); admins without one cannot take tickets."""

    message = _("Only agents may do this.")

    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and getattr(user, "agent_profile", None) is not None)


class IsSelfOrLead(BasePermission):
    """The agent themselves, or a team lead or admin (object level: an AgentProfile)."""

    message = _("Only the agent or a team lead may do this.")

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated)

    def has_object_permission(self, request, view, obj) -> bool:
        return obj.user_id == request.user.pk or user_is_lead(request.user)
