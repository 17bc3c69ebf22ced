from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from inbox.models import Queue
from inbox.realtime import groups
from inbox.selectors.tickets import user_is_lead


def groups_for_user(user: AbstractBaseUser | AnonymousUser) -> list[str]:
    """The channel-layer groups a desk connection of ``user`` may join."""
    if not user.is_authenticated:
        return []
    names = [groups.agent(user.pk)]
    if user_is_lead(user):
        names.append(groups.LEADS)
    else:
        names.extend(
            groups.queue(qid) for qid in Queue.objects.filter(members=user).values_list("id", flat=True)
        )
    return names
