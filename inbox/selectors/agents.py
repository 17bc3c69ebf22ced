"""Agents, their load and their queues: reads for the API, the desk and assignment."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Count, IntegerField, OuterRef, Prefetch, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from inbox.models import AgentProfile, Queue, Ticket
from inbox.routing.assign import LOAD_STATUSES, AgentState, normalize_language
from inbox.selectors.tickets import user_is_lead

_CHUNK = 900


def _load_subquery() -> Coalesce:
    counted = (
        Ticket.objects.filter(assignee_id=OuterRef("user_id"), status__in=LOAD_STATUSES)
        .order_by()
        .values("assignee_id")
        .annotate(n=Count("id"))
        .values("n")
    )
    return Coalesce(Subquery(counted, output_field=IntegerField()), Value(0))


def agent_loads(user_ids: Iterable[int]) -> dict[int, int]:
    """Active tickets (``LOAD_STATUSES``) per agent; every asked id is in the answer."""
    ids = sorted(set(user_ids))
    loads = dict.fromkeys(ids, 0)
    for start in range(0, len(ids), _CHUNK):
        rows = (
            Ticket.objects.filter(assignee_id__in=ids[start : start + _CHUNK], status__in=LOAD_STATUSES)
            .order_by()
            .values_list("assignee_id")
            .annotate(n=Count("id"))
        )
        loads.update(rows)
    return loads


def agent_state(
    *,
    user_id: int,
    presence: str,
    languages: Iterable[str],
    capacity: int,
    load: int,
    last_assigned_at: datetime | None,
    queue_ids: Iterable[int],
) -> AgentState:
    """An ``AgentState`` with language codes normalized as tickets' are."""
    return AgentState(
        user_id=user_id,
        presence=presence,
        languages=frozenset(filter(None, (normalize_language(code) for code in languages or ()))),
        capacity=capacity,
        load=load,
        last_assigned_at=last_assigned_at,
        queue_ids=frozenset(queue_ids),
    )


def queue_member_rows(*, queue_id: int) -> list[tuple[int, str, list[str], int, datetime | None]]:
    """(user id, presence, languages, capacity, last assigned at) of every member of the queue."""
    return list(
        AgentProfile.objects.filter(user__desk_queues=queue_id)
        .order_by("user_id")
        .values_list("user_id", "presence", "languages", "capacity", "last_assigned_at")
    )


def queue_agent_states(*, queue_id: int) -> list[AgentState]:
    """Every member of the queue with their load, in two queries."""
    rows = queue_member_rows(queue_id=queue_id)
    loads = agent_loads(row[0] for row in rows)
    return [
        agent_state(
            user_id=uid, presence=presence, languages=languages, capacity=capacity,
            load=loads[uid], last_assigned_at=last, queue_ids=(queue_id,),
        )
        for uid, presence, languages, capacity, last in rows
    ]  # fmt: skip


def queues_served_languages(queue_ids: Iterable[int]) -> dict[int, frozenset[str]]:
    """Per queue, the languages at least one member speaks (online or not)."""
    served: dict[int, set[str]] = defaultdict(set)
    ids = sorted(set(queue_ids))
    rows = Queue.members.through.objects.filter(queue_id__in=ids).values_list(
        "queue_id", "user__agent_profile__languages"
    )
    for queue_id, languages in rows:
        served[queue_id].update(filter(None, (normalize_language(code) for code in languages or ())))
    return {queue_id: frozenset(served.get(queue_id, ())) for queue_id in ids}


def agent_queue_ids(user_ids: Iterable[int], *, auto_assign_only: bool = False) -> list[int]:
    """Queues the agents are members of (those the sweep runs on, with ``auto_assign_only``)."""
    queues = Queue.objects.filter(members__in=sorted(set(user_ids)))
    if auto_assign_only:
        queues = queues.filter(assignment_mode=Queue.AssignmentMode.PUSH, auto_assign_paused=False)
    return sorted(set(queues.values_list("id", flat=True)))


def agents_visible_to(user: AbstractBaseUser | AnonymousUser) -> QuerySet[AgentProfile]:
    """Leads see every agent; an agent sees the members of their queues and themselves.

    Each row carries ``load`` (active tickets) and its queues prefetched, so a list costs
    a fixed number of queries.
    """
    base = (
        AgentProfile.objects.select_related("user")
        .annotate(load=_load_subquery())
        .prefetch_related(Prefetch("user__desk_queues", queryset=Queue.objects.only("id").order_by("id")))
        .order_by("user__username", "pk")
    )
    if not user.is_authenticated:
        return base.none()
    if user_is_lead(user):
        return base
    colleagues = Queue.members.through.objects.filter(
        queue_id__in=Queue.members.through.objects.filter(user_id=user.pk).values("queue_id")
    ).values("user_id")
    return base.filter(Q(user_id__in=colleagues) | Q(user_id=user.pk))


def queues_visible_to(user: AbstractBaseUser | AnonymousUser) -> QuerySet[Queue]:
    """Leads see every queue; agents see the queues they are members of.

    Each row carries ``waiting`` (unassigned new or open tickets), ``member_count`` and
    ``online_count``.
    """
    waiting = (
        Ticket.objects.filter(
            queue_id=OuterRef("pk"), assignee__isnull=True, status__in=LOAD_STATUSES, is_noise=False
        )
        .order_by()
        .values("queue_id")
        .annotate(n=Count("id"))
        .values("n")
    )
    members = Queue.members.through.objects.filter(queue_id=OuterRef("pk"))

    def counted(rows: QuerySet) -> Coalesce:
        return Coalesce(
            Subquery(
                rows.order_by().values("queue_id").annotate(n=Count("id")).values("n"),
                output_field=IntegerField(),
            ),
            Value(0),
        )

    base = Queue.objects.annotate(
        waiting=Coalesce(Subquery(waiting, output_field=IntegerField()), Value(0)),
        member_count=counted(members),
        online_count=counted(members.filter(user__agent_profile__presence=AgentProfile.Presence.ONLINE)),
    ).order_by("name")
    if not user.is_authenticated:
        return base.none()
    if user_is_lead(user):
        return base
    return base.filter(pk__in=Queue.members.through.objects.filter(user_id=user.pk).values("queue_id"))
