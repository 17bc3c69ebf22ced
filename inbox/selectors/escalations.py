"""Scoped reads of escalations, and the "waiting on internal" clock of a ticket."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import models
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from inbox.models import Escalation, InternalTeam, Queue, TicketEvent
from inbox.selectors.tickets import tickets_visible_to, user_is_lead


class DueState(models.TextChoices):
    """Where an escalation stands against its team's answer target."""

    NO_TARGET = "no_target", _("No answer target")
    ON_TIME = "on_time", _("On time")
    OVERDUE = "overdue", _("Overdue")


class EmailState(models.TextChoices):
    """What happened to the e-mail to an e-mail team."""

    NOT_EMAILED = "", _("Not e-mailed")
    QUEUED = "queued", _("Queued")
    SENT = "sent", _("Sent")
    FAILED = "failed", _("Failed")


@dataclass(frozen=True, slots=True)
class EscalationClock:
    """The escalation's own clock: how long the team has taken, against its target."""

    waited_seconds: int | None
    due_state: str


@dataclass(frozen=True, slots=True)
class WaitingOnInternal:
    """A ticket's state while it waits on one or more internal teams."""

    escalation_id: int
    team_id: int
    team_name: str
    since: datetime
    due_at: datetime | None
    waited_seconds: int
    due_state: str
    #: Escalations of this ticket still waiting (to any team).
    open_count: int


def internal_teams_visible_to(user: AbstractBaseUser | AnonymousUser) -> QuerySet[InternalTeam]:
    """Every desk user may see the teams (to choose one); nobody else."""
    if not user.is_authenticated:
        return InternalTeam.objects.none()
    return InternalTeam.objects.select_related("queue")


def escalations_visible_to(user: AbstractBaseUser | AnonymousUser) -> QuerySet[Escalation]:
    """Escalations of tickets the user may see, and those addressed to a desk queue they are in.

    A team's experts answer in the desk without being members of the ticket's queue.
    """
    base = Escalation.objects.select_related("ticket", "team", "team__queue", "created_by")
    if not user.is_authenticated:
        return base.none()
    if user_is_lead(user):
        return base
    visible_tickets = tickets_visible_to(user).values("pk")
    expert_queues = Queue.objects.filter(members=user).values("pk")
    return base.filter(Q(ticket__in=visible_tickets) | Q(team__queue__in=expert_queues))


def escalation_may_answer(*, user: AbstractBaseUser | AnonymousUser, escalation: Escalation) -> bool:
    """Members of the team's desk queue answer; leads may answer for any team."""
    if not user.is_authenticated:
        return False
    if user_is_lead(user):
        return True
    queue_id = escalation.team.queue_id
    return queue_id is not None and Queue.objects.filter(pk=queue_id, members=user).exists()


def escalation_may_cancel(*, user: AbstractBaseUser | AnonymousUser, escalation: Escalation) -> bool:
    """Whoever works the ticket may stop waiting on the team."""
    return tickets_visible_to(user).filter(pk=escalation.ticket_id).exists()


def escalation_clock(*, escalation: Escalation, now: datetime | None = None) -> EscalationClock:
    """Time the team has taken (until the answer, or until now while waiting) and the due state.

    A cancelled escalation's clock stopped without an answer: no time, no due state to show.
    """
    now = now or timezone.now()
    if escalation.status == Escalation.Status.CANCELLED:
        return EscalationClock(waited_seconds=None, due_state=DueState.NO_TARGET)
    end = escalation.answered_at if escalation.status == Escalation.Status.ANSWERED else now
    waited = max(0, int((end - escalation.created_at).total_seconds()))
    if escalation.due_at is None:
        state = DueState.NO_TARGET
    else:
        state = DueState.OVERDUE if end > escalation.due_at else DueState.ON_TIME
    return EscalationClock(waited_seconds=waited, due_state=state)


def tickets_waiting_on_internal(
    *, ticket_ids: Iterable[int], now: datetime | None = None
) -> dict[int, WaitingOnInternal]:
    """For each given ticket that waits on an internal team: the escalation that waits longest.

    One query for any number of tickets; tickets with nothing waiting are left out.
    """
    now = now or timezone.now()
    ids = list(set(ticket_ids))
    if not ids:
        return {}
    waiting = (
        Escalation.objects.filter(ticket_id__in=ids, status=Escalation.Status.WAITING)
        .select_related("team")
        .order_by("ticket_id", "created_at", "id")
    )
    by_ticket: dict[int, list[Escalation]] = defaultdict(list)
    for escalation in waiting:
        by_ticket[escalation.ticket_id].append(escalation)
    result: dict[int, WaitingOnInternal] = {}
    for ticket_id, escalations in by_ticket.items():
        oldest = escalations[0]
        clock = escalation_clock(escalation=oldest, now=now)
        result[ticket_id] = WaitingOnInternal(
            escalation_id=oldest.pk,
            team_id=oldest.team_id,
            team_name=oldest.team.name,
            since=oldest.created_at,
            due_at=oldest.due_at,
            waited_seconds=clock.waited_seconds or 0,
            due_state=clock.due_state,
            open_count=len(escalations),
        )
    return result


def escalation_email_states(*, escalations: Iterable[Escalation]) -> dict[int, str]:
    """Escalation id → state of its e-mail, from the ``escalation.emailed/email_failed`` events.

    One query for any number of escalations. Teams without an e-mail address get "".
    """
    emailed = [e for e in escalations if e.team.email]
    if not emailed:
        return {}
    # Not sent while waiting: queued. Answered or cancelled before it went out: never will be.
    states = {
        e.pk: EmailState.QUEUED.value
        if e.status == Escalation.Status.WAITING
        else EmailState.NOT_EMAILED.value
        for e in emailed
    }
    events = TicketEvent.objects.filter(
        ticket_id__in={e.ticket_id for e in emailed},
        type__in=("escalation.emailed", "escalation.email_failed"),
    ).values_list("type", "payload")
    for type_, payload in events:
        escalation_id = payload.get("escalation_id") if isinstance(payload, dict) else None
        if escalation_id not in states:
            continue
        if type_ == "escalation.emailed":
            states[escalation_id] = EmailState.SENT.value
        elif states[escalation_id] != EmailState.SENT:
            states[escalation_id] = EmailState.FAILED.value
    return states
