"""Who may call what: agents work tickets, leads and admins also run the floor."""

from __future__ import annotations

from rest_framework.permissions import BasePermission

from inbox.selectors.tickets import user_is_lead


class IsLead(BasePermission):
    """Team leads and admins only."""

    message = "Only team leads and admins may do this."

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated and user_is_lead(request.user))
