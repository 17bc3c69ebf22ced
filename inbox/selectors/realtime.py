from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Max

from inbox.models import Queue, TicketEvent
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


def last_event_id() -> int:
    """The newest TicketEvent id: where a page's live updates start from."""
    return TicketEvent.objects.aggregate(last=Max("id"))["last"] or 0
