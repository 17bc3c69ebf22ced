"""Sources as the desk shows them: leads and admins see every source and its health."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet

from inbox.models import Source
from inbox.selectors.tickets import user_is_lead


def sources_visible_to(user: AbstractBaseUser | AnonymousUser) -> QuerySet[Source]:
    if not user.is_authenticated or not user_is_lead(user):
        return Source.objects.none()
    return Source.objects.select_related("default_queue").order_by("name")
