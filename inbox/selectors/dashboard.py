"""Reads of the lead dashboard: the floor per queue, the agents on it, a queue's active tickets.

Every read starts from the permission-aware selectors (``queues_visible_to``,
``agents_visible_to``, ``tickets_visible_to``) and costs a fixed number of queries however
many queues, agents and tickets there are: the queue metrics are one grouped query over the
tickets with conditional counts, plus one grouped query over messages for the oldest
waiting customer.

Definitions (docs/desk/dashboard.md). Only *active* tickets count (new, open, pending) and
never tickets routing marked as noise:

* **backlog**: active and unassigned (what "Move backlog" moves);
* **assigned**: new or open with an agent (what counts towards the agents' load);
* **pending**: waiting on the customer, assigned or not;
* **at risk** / **breached**: new or open with that SLA state (a pending ticket's clock is
  stopped: nothing to do about it until the customer answers);
* **oldest waiting**: the earliest customer message that no agent has answered yet, over
  the queue's new and open tickets: a ticket nobody answered waits since its first message,
  an answered one since the first customer message after the last answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Case, Count, DateTimeField, F, Min, Q, QuerySet, Value, When

from inbox.models import AgentProfile, Message, Queue, Ticket
from inbox.routing.assign import LOAD_STATUSES
from inbox.selectors.agents import agents_visible_to, queues_visible_to
from inbox.selectors.tickets import tickets_visible_to

ACTIVE_STATUSES: Final = tuple(status.value for status in Ticket.ACTIVE_STATUSES)

#: What the ticket table can show; each key but "all" is also a queue metric.
SHOW_ALL: Final = "all"
METRIC_FILTERS: Final[dict[str, Q]] = {
    "backlog": Q(assignee__isnull=True),
    "assigned": Q(assignee__isnull=False, status__in=LOAD_STATUSES),
    "pending": Q(status=Ticket.Status.PENDING),
    "at_risk": Q(sla_state=Ticket.SlaState.AT_RISK, status__in=LOAD_STATUSES),
    "breached": Q(sla_state=Ticket.SlaState.BREACHED, status__in=LOAD_STATUSES),
}
SHOW_CHOICES: Final = (SHOW_ALL, *METRIC_FILTERS)

#: The tickets the dashboard is about: active, not noise.
_ON_THE_FLOOR = Q(status__in=ACTIVE_STATUSES, is_noise=False)


@dataclass(frozen=True, slots=True)
class QueueMetrics:
    """One queue's row on the dashboard."""

    queue_id: int
    name: str
    assignment_mode: str
    assignment_mode_label: str
    auto_assign_paused: bool
    is_default: bool
    member_count: int
    online_count: int
    active: int
    backlog: int
    assigned: int
    pending: int
    at_risk: int
    breached: int
    oldest_waiting_since: datetime | None

    @property
    def alarm(self) -> str:
        """ "breached" (red) when any ticket is breached, else "at_risk" (orange), else ""."""
        if self.breached:
            return "breached"
        if self.at_risk:
            return "at_risk"
        return ""


@dataclass(frozen=True, slots=True)
class AgentRow:
    """One agent's card on the dashboard."""

    user_id: int
    name: str
    username: str
    role: str
    presence: str
    presence_label: str
    capacity: int
    load: int
    languages: tuple[str, ...]
    queue_ids: tuple[int, ...]
    queue_names: tuple[str, ...]

    @property
    def over_capacity(self) -> bool:
        return self.load > self.capacity

    @property
    def at_capacity(self) -> bool:
        return self.load >= self.capacity


def dashboard_queues(*, user: AbstractBaseUser | AnonymousUser) -> list[QueueMetrics]:
    """The queues ``user`` may see, by name, each with its floor metrics. Three queries."""
    queues = list(queues_visible_to(user))
    if not queues:
        return []
    ids = [queue.pk for queue in queues]
    counts = {
        row["queue_id"]: row
        for row in Ticket.objects.filter(_ON_THE_FLOOR, queue_id__in=ids)
        .order_by()
        .values("queue_id")
        .annotate(
            active=Count("id"),
            **{name: Count("id", filter=condition) for name, condition in METRIC_FILTERS.items()},
        )
    }
    oldest = dict(
        Message.objects.filter(_unanswered_customer_messages(), ticket__queue_id__in=ids)
        .order_by()
        .values_list("ticket__queue_id")
        .annotate(oldest=Min("created_at"))
    )
    empty = dict.fromkeys(("active", *METRIC_FILTERS), 0)
    return [
        QueueMetrics(
            queue_id=queue.pk,
            name=queue.name,
            assignment_mode=queue.assignment_mode,
            assignment_mode_label=str(Queue.AssignmentMode(queue.assignment_mode).label),
            auto_assign_paused=queue.auto_assign_paused,
            is_default=queue.is_default,
            member_count=queue.member_count,
            online_count=queue.online_count,
            oldest_waiting_since=oldest.get(queue.pk),
            **{name: counts.get(queue.pk, empty)[name] for name in empty},
        )
        for queue in queues
    ]


def _unanswered_customer_messages() -> Q:
    """Customer messages of new and open tickets written after the last agent answer."""
    return (
        Q(direction=Message.Direction.INBOUND)
        & Q(ticket__status__in=LOAD_STATUSES, ticket__is_noise=False)
        & (Q(ticket__first_response_at__isnull=True) | Q(created_at__gt=F("ticket__first_response_at")))
        & (Q(ticket__last_agent_reply_at__isnull=True) | Q(created_at__gt=F("ticket__last_agent_reply_at")))
    )


def dashboard_agents(
    *, user: AbstractBaseUser | AnonymousUser, queues: Sequence[QueueMetrics]
) -> list[AgentRow]:
    """The agents ``user`` may see, by username, with load, capacity and queue names.

    ``queues`` (from ``dashboard_queues``) names the queues; two queries.
    """
    names = {queue.queue_id: queue.name for queue in queues}
    return [_agent_row(profile, names) for profile in agents_visible_to(user)]


def _agent_row(profile: AgentProfile, queue_names: dict[int, str]) -> AgentRow:
    queue_ids = tuple(queue.pk for queue in profile.user.desk_queues.all())
    return AgentRow(
        user_id=profile.user_id,
        name=profile.user.get_full_name() or profile.user.get_username(),
        username=profile.user.get_username(),
        role=profile.role,
        presence=profile.presence,
        presence_label=str(AgentProfile.Presence(profile.presence).label),
        capacity=profile.capacity,
        load=profile.load,
        languages=tuple(profile.languages or ()),
        queue_ids=queue_ids,
        queue_names=tuple(
            sorted((queue_names[qid] for qid in queue_ids if qid in queue_names), key=str.casefold)
        ),
    )


def dashboard_tickets(
    *, user: AbstractBaseUser | AnonymousUser, queue_id: int, show: str = SHOW_ALL
) -> QuerySet[Ticket]:
    """The queue's active tickets ``user`` may see, narrowed to one metric (``show``).

    Ordered like the inbox: nearest SLA due first (tickets without a running clock last),
    then higher priority, then oldest.
    """
    if show not in SHOW_CHOICES:
        raise ValueError(f"unknown ticket selection {show!r}")
    tickets = tickets_visible_to(user).filter(_ON_THE_FLOOR, queue_id=queue_id)
    if show != SHOW_ALL:
        tickets = tickets.filter(METRIC_FILTERS[show])
    return (
        tickets.select_related("customer")
        .annotate(sla_due=_sla_due())
        .order_by(F("sla_due").asc(nulls_last=True), "-priority", "opened_at", "pk")
    )


def _sla_due() -> Case:
    """The nearest open target of a running clock, as ``{% sla_clock %}`` shows it."""
    running = Q(status__in=LOAD_STATUSES)
    return Case(
        When(
            running & Q(first_response_at__isnull=True, first_response_due_at__isnull=False),
            then=F("first_response_due_at"),
        ),
        When(running & Q(next_response_due_at__isnull=False), then=F("next_response_due_at")),
        When(running & Q(resolution_due_at__isnull=False), then=F("resolution_due_at")),
        default=Value(None),
        output_field=DateTimeField(),
    )
