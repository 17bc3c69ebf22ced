"""Reads of the live desk: which groups a connection joins, and what it missed (catch-up)."""

from __future__ import annotations

from collections.abc import Collection

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Max, Q

from inbox.models import Queue, TicketEvent
from inbox.realtime import groups
from inbox.selectors.tickets import tickets_visible_to, user_is_lead


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


def desk_user(user_id: int) -> AbstractBaseUser | None:
    """The user as the database has them now (role, active), or None when they may not use the desk.

    A desk connection lives for hours; its permissions are re-read from here rather than
    from the user object loaded when it connected.
    """
    user = get_user_model().objects.select_related("agent_profile").filter(pk=user_id).first()
    if user is None or not user.is_active:
        return None
    return user


def events_visible_after(
    *,
    user: AbstractBaseUser | AnonymousUser,
    after_id: int,
    limit: int,
    watched_ticket_ids: Collection[int] = (),
) -> list[TicketEvent]:
    """The events with id > ``after_id`` that the live push would have sent to ``user``'s
    connection, in id order, at most ``limit``.

    The same scope as ``inbox.realtime.publish.route_events`` and ``groups_for_user``:
    a lead gets every event; an agent the events of the queues they are a member of now
    (re-read, not remembered from when they connected), the events whose ``assignee_id`` is
    them, and the events of the tickets the connection watches (already permission-checked
    when it started watching). The query walks the primary key from ``after_id`` (the
    index), so its cost grows with the events since then, not with the whole log.
    """
    if not user.is_authenticated or limit <= 0:
        return []
    events = TicketEvent.objects.filter(id__gt=after_id).order_by("id")
    if not user_is_lead(user):
        queue_ids = list(Queue.objects.filter(members=user).values_list("id", flat=True))
        scope = Q(queue_id__in=queue_ids) | Q(payload__assignee_id=user.pk)
        if watched_ticket_ids:
            scope |= Q(ticket_id__in=sorted(watched_ticket_ids))
        events = events.filter(scope)
    return list(events[:limit])


def ticket_watch_target(*, user: AbstractBaseUser | AnonymousUser, ticket_id: int) -> tuple[int | None, int | None] | None:
    """(queue id, assignee id) of the ticket when ``user`` may see it, else None.

    The permission check before a connection joins the ticket's group: the same
    ``tickets_visible_to`` as the ticket page.
    """
    row = tickets_visible_to(user).filter(pk=ticket_id).values_list("queue_id", "assignee_id").first()
    return (row[0], row[1]) if row is not None else None


def tickets_still_visible(*, user: AbstractBaseUser | AnonymousUser, ticket_ids: Collection[int]) -> set[int]:
    """The ids among ``ticket_ids`` that ``user`` may still see."""
    if not ticket_ids:
        return set()
    return set(tickets_visible_to(user).filter(pk__in=sorted(ticket_ids)).values_list("pk", flat=True))
