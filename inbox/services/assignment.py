"""Assignment: push (auto-assign), pull (take next), the backlog sweep and team-lead operations.

Who gets a ticket is decided by ``inbox.routing.assign`` (pure); this module locks, reads
the agents' state, applies the decision and writes a ``ticket.assigned`` TicketEvent per
change (``assignee_id``, ``previous_assignee_id``, ``rule``, ``reason``; the actor on the
event row) and updates ``AgentProfile.last_assigned_at``.

Concurrency. Locks are taken in one order everywhere: agent rows (by id), then ticket
rows (by id, or in the sweep order). Automatic assignment (push and sweep) takes both
with ``SKIP LOCKED``, so it never waits: an agent another transaction holds is left out
of this round and a ticket another transaction holds is its business. Load is counted
after the agent rows are locked and every writer of an agent's load holds that lock, so
an agent never goes over capacity and a ticket never gets two owners. When agents were
left out, a sweep of the queue is queued after commit to catch up. On SQLite
``select_for_update`` is a no-op and the database's write lock (transactions start
``IMMEDIATE``) serialises the same code.

Side effects (realtime push, queued sweeps) happen after commit.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from inbox.models import AgentProfile, Queue, Ticket, TicketEvent
from inbox.realtime.publish import publish_on_commit
from inbox.routing.assign import (
    LOAD_STATUSES,
    ONLINE,
    AssignmentPool,
    TicketFacts,
    normalize_language,
    required_language,
)
from inbox.selectors.agents import (
    agent_loads,
    agent_queue_ids,
    agent_state,
    queue_member_rows,
    queues_served_languages,
)
from inbox.selectors.tickets import TicketFilters, tickets_filter, tickets_matching, user_is_lead
from inbox.services.events import event_for
from inbox.services.presence import agent_set_presence

logger = logging.getLogger(__name__)

ACTIVE_STATUSES: tuple[str, ...] = tuple(status.value for status in Ticket.ACTIVE_STATUSES)
#: Tickets per transaction in push assignment and in bulk operations: short transactions.
BATCH_SIZE = 500
#: Tickets per transaction in the sweep. Each transaction also pays a realtime push after
#: commit (one message per agent who got tickets, one for the queue and the leads), so a
#: bigger batch moves more tickets per push; a batch still commits in a fraction of a second.
SWEEP_BATCH_SIZE = 1000
#: Waiting tickets read ahead (without locks) per round trip of the sweep.
_PAGE = 5000
MAX_CAPACITY = 100
#: A customer's last agent is "theirs" for follow-ups within this many days.
DEFAULT_STICKY_DAYS = 30

RULE_PULL = "pull"
RULE_MANUAL = "manual"
RULE_RELEASED = "released"

_TICKET_FIELDS = (
    "id",
    "queue_id",
    "assignee_id",
    "status",
    "priority",
    "language",
    "opened_at",
    "customer_id",
)


class AssignmentError(Exception):
    """The operation cannot be done as asked; the message is for the user."""


@dataclass(slots=True)
class AssignmentResult:
    assigned: int = 0  # tickets given to an agent
    released: int = 0  # tickets taken from an agent who is not online, left waiting
    waiting: int = 0  # tickets that still wait for an agent
    contended: bool = False  # some agents were locked by another transaction and left out

    def merge(self, other: AssignmentResult) -> None:
        self.assigned += other.assigned
        self.released += other.released
        self.waiting += other.waiting
        self.contended = self.contended or other.contended


@dataclass(slots=True)
class RedistributeResult:
    presence: str
    reassigned: int = 0
    released: int = 0
    kept_pending: int = 0


class _Change(NamedTuple):
    ticket: Ticket
    assignee_id: int | None
    rule: str
    reason: str


# --- Push --------------------------------------------------------------------------------------


def assignment_assign(*, ticket_ids: Iterable[int], now: datetime | None = None) -> AssignmentResult:
    """Give each of these tickets an online owner, as its queue's mode allows.

    For new, reopened and otherwise re-activated tickets (status new or open); safe to call
    with any ids, any number of times:

    * a ticket whose agent is online keeps them (even at capacity: it is their conversation);
    * otherwise, in a push queue, it goes to the customer's last agent or the best agent
      (``choose_agent``), or waits for the sweep; in a pull queue it is released for the
      next agent who takes one; in a paused queue nothing changes;
    * solved, closed, pending, noise and queue-less tickets are left alone.
    """
    at = now or timezone.now()
    result = AssignmentResult()
    by_queue: dict[int, list[int]] = defaultdict(list)
    ids = sorted(set(ticket_ids))
    for chunk in _chunks(ids, BATCH_SIZE):
        rows = Ticket.objects.filter(
            pk__in=chunk, status__in=LOAD_STATUSES, is_noise=False, queue__isnull=False
        ).values_list("pk", "queue_id")
        for pk, queue_id in rows:
            by_queue[queue_id].append(pk)
    queues = Queue.objects.in_bulk(sorted(by_queue))
    contended: list[int] = []
    for queue_id in sorted(queues):
        queue = queues[queue_id]
        if queue.auto_assign_paused:
            continue
        for chunk in _chunks(sorted(by_queue[queue_id]), BATCH_SIZE):
            outcome = _assign_listed(queue, chunk, at)
            result.merge(outcome)
            if outcome.contended and outcome.waiting and queue_id not in contended:
                contended.append(queue_id)
    if contended:
        _sweep_after_commit(contended)
    return result


def _assign_listed(queue: Queue, ticket_ids: Sequence[int], at: datetime) -> AssignmentResult:
    result = AssignmentResult()
    push = queue.assignment_mode == Queue.AssignmentMode.PUSH
    with transaction.atomic():
        pool, result.contended = _locked_pool(queue.pk, at) if push else (None, False)
        tickets = list(
            Ticket.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(pk__in=ticket_ids, queue_id=queue.pk, status__in=LOAD_STATUSES, is_noise=False)
            .order_by("-priority", "opened_at", "pk")
            .only(*_TICKET_FIELDS)
        )
        owners = {t.assignee_id for t in tickets if t.assignee_id is not None}
        online = set(
            AgentProfile.objects.filter(user_id__in=owners, presence=ONLINE).values_list("user_id", flat=True)
        )
        homeless = [t for t in tickets if t.assignee_id is None or t.assignee_id not in online]
        sticky = _sticky_agents(homeless, at) if push and queue.sticky_follow_ups else {}
        changes: list[_Change] = []
        for ticket in homeless:
            choice = pool.assign(_facts(ticket), sticky_agent_id=sticky.get(ticket.pk)) if pool else None
            if choice is not None:
                changes.append(_Change(ticket, choice.agent_id, choice.rule, choice.reason))
                result.assigned += 1
            elif ticket.assignee_id is not None:
                changes.append(_Change(ticket, None, RULE_RELEASED, "agent not online: back to the queue"))
                result.released += 1
                result.waiting += 1
            else:
                result.waiting += 1
        _apply(changes, at=at, actor_id=None)
    return result


# --- Sweep -------------------------------------------------------------------------------------


class _Waiting(NamedTuple):
    pk: int
    language: str
    priority: int
    opened_at: datetime


def assignment_sweep(
    *, queue_id: int, now: datetime | None = None, batch_size: int = SWEEP_BATCH_SIZE
) -> AssignmentResult:
    """Assign the queue's waiting tickets, highest priority and oldest first, until no agent has room.

    Runs in short transactions of ``batch_size`` tickets. Tickets no agent with room may
    take (their language's agents are full) are passed over, so they never hold up the
    ones behind them. Only push queues that are not paused are swept.
    """
    result = AssignmentResult()
    queue = Queue.objects.filter(pk=queue_id).first()
    if queue is None:
        return result
    if queue.auto_assign_paused or queue.assignment_mode != Queue.AssignmentMode.PUSH:
        result.waiting = _waiting(queue_id).count()
        return result
    after: _Waiting | None = None
    stopped = False
    while not stopped:
        page = _waiting_page(queue_id, after=after)
        if not page:
            break
        after = page[-1]
        position = 0
        while position < len(page):
            position, outcome, has_room = _sweep_batch(
                queue, page, position, batch_size=batch_size, at=now or timezone.now()
            )
            result.merge(outcome)
            if not has_room:
                stopped = True
                break
        if len(page) < _PAGE:
            break
    result.waiting = _waiting(queue_id).count()
    return result


def _waiting(queue_id: int):
    return Ticket.objects.filter(
        queue_id=queue_id, assignee__isnull=True, status__in=LOAD_STATUSES, is_noise=False
    )


def _waiting_page(queue_id: int, *, after: _Waiting | None) -> list[_Waiting]:
    """The next waiting tickets in sweep order (priority high to low, then oldest), unlocked."""
    tickets = _waiting(queue_id)
    if after is not None:
        tickets = tickets.filter(
            Q(priority__lt=after.priority)
            | Q(priority=after.priority, opened_at__gt=after.opened_at)
            | Q(priority=after.priority, opened_at=after.opened_at, pk__gt=after.pk)
        )
    rows = tickets.order_by("-priority", "opened_at", "pk").values_list(
        "pk", "language", "priority", "opened_at"
    )
    return [_Waiting(*row) for row in rows[:_PAGE]]


def _sweep_batch(
    queue: Queue, page: list[_Waiting], position: int, *, batch_size: int, at: datetime
) -> tuple[int, AssignmentResult, bool]:
    """One transaction: lock the agents, then the next tickets someone with room may take.

    Returns where to go on in ``page``, the outcome, and whether any agent had room.
    """
    result = AssignmentResult()
    with transaction.atomic():
        pool, result.contended = _locked_pool(queue.pk, at)
        if not pool.has_room():
            return position, result, False
        open_languages = pool.languages_with_room()
        picked: list[int] = []
        while position < len(page) and len(picked) < batch_size:
            row = page[position]
            position += 1
            needed = required_language(row.language, pool.served)
            if needed is None or needed in open_languages:
                picked.append(row.pk)
        if not picked:
            return position, result, True
        tickets = list(
            Ticket.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(
                pk__in=picked,
                queue_id=queue.pk,
                assignee__isnull=True,
                status__in=LOAD_STATUSES,
                is_noise=False,
            )
            .order_by("-priority", "opened_at", "pk")
            .only(*_TICKET_FIELDS)
        )
        sticky = _sticky_agents(tickets, at) if queue.sticky_follow_ups else {}
        changes: list[_Change] = []
        for ticket in tickets:
            choice = pool.assign(_facts(ticket), sticky_agent_id=sticky.get(ticket.pk))
            if choice is not None:
                changes.append(_Change(ticket, choice.agent_id, choice.rule, choice.reason))
        _apply(changes, at=at, actor_id=None)
        result.assigned = len(changes)
    return position, result, True


# --- Pull --------------------------------------------------------------------------------------


def assignment_take_next(*, agent: AgentProfile, now: datetime | None = None) -> Ticket | None:
    """The agent takes the next ticket: highest priority, then oldest, of their queues.

    Draws from every queue the agent is a member of except paused ones, among tickets in a
    language they speak, without a language, or in a language nobody in that queue speaks.
    The agent must be online and under capacity. Returns None when nothing waits.
    """
    at = now or timezone.now()
    with transaction.atomic():
        me = AgentProfile.objects.select_for_update().filter(pk=agent.pk).first()
        if me is None:
            raise AssignmentError(_("This agent no longer exists."))
        if me.presence != ONLINE:
            raise AssignmentError(_("Set yourself online to take tickets."))
        load = agent_loads([me.user_id])[me.user_id]
        if load >= me.capacity:
            raise AssignmentError(
                _("You are at capacity (%(load)d of %(capacity)d active tickets).")
                % {"load": load, "capacity": me.capacity}
            )
        queue_ids = list(
            Queue.objects.filter(members=me.user_id, auto_assign_paused=False).values_list("id", flat=True)
        )
        if not queue_ids:
            return None
        mine = [code for code in (normalize_language(c) for c in me.languages or ()) if code]
        served = queues_served_languages(queue_ids)
        allowed = Q()
        for queue_id in queue_ids:
            allowed |= Q(queue_id=queue_id) & (_language_q(mine) | ~_language_q(sorted(served[queue_id])))
        ticket = (
            Ticket.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(allowed, assignee__isnull=True, status__in=LOAD_STATUSES, is_noise=False)
            .order_by("-priority", "opened_at", "pk")
            .first()
        )
        if ticket is None:
            return None
        reason = f"taken by the agent, load {load}/{me.capacity}"
        _apply([_Change(ticket, me.user_id, RULE_PULL, reason)], at=at, actor_id=me.user_id)
    ticket.refresh_from_db()
    return ticket


def _language_q(codes: Sequence[str]) -> Q:
    """Tickets in one of ``codes``, region subtags included (``nl`` matches ``nl-be``)."""
    matched = Q(pk__in=[])
    for code in codes:
        matched |= Q(language=code) | Q(language__startswith=f"{code}-") | Q(language__startswith=f"{code}_")
    return matched


# --- Entry points for status changes ----------------------------------------------------------


def assignment_capacity_freed(*, user_ids: Iterable[int]) -> None:
    """These agents have room again (a ticket of theirs went pending, solved or closed, or was
    taken from them): sweep their queues after commit."""
    _sweep_after_commit(agent_queue_ids(user_ids, auto_assign_only=True))


# --- Team-lead operations ---------------------------------------------------------------------


def ticket_reassign(
    *,
    ticket: Ticket,
    assignee: AbstractBaseUser | None,
    actor: AbstractBaseUser,
    reason: str = "",
    now: datetime | None = None,
) -> Ticket:
    """A lead gives one active ticket to ``assignee``, or back to its queue with None.

    A lead's choice is deliberate: it may exceed the agent's capacity or go to an agent
    who is not online. Returns the ticket as stored.
    """
    _require_lead(actor)
    at = now or timezone.now()
    with transaction.atomic():
        target = _lock_agent(assignee) if assignee is not None else None
        locked = (
            Ticket.objects.select_for_update(of=("self",)).filter(pk=ticket.pk).only(*_TICKET_FIELDS).first()
        )
        if locked is None:
            raise AssignmentError(_("This ticket no longer exists."))
        if locked.status not in ACTIVE_STATUSES:
            raise AssignmentError(_("Only new, open or pending tickets can be reassigned."))
        previous = locked.assignee_id
        new = target.user_id if target is not None else None
        if previous != new:
            text = reason or ("reassigned by a lead" if new else "unassigned by a lead")
            _apply([_Change(locked, new, RULE_MANUAL, text)], at=at, actor_id=actor.pk)
            freed = [previous] if previous is not None and locked.status in LOAD_STATUSES else []
            if freed:
                assignment_capacity_freed(user_ids=freed)
            if new is None and locked.queue_id is not None:
                _sweep_after_commit([locked.queue_id])
    return Ticket.objects.select_related("queue", "assignee", "source").get(pk=ticket.pk)


def tickets_bulk_reassign(
    *,
    filters: TicketFilters,
    assignee: AbstractBaseUser | None,
    actor: AbstractBaseUser,
    reason: str = "",
    now: datetime | None = None,
) -> int:
    """A lead gives every active ticket matching ``filters`` to ``assignee`` (None: back to
    their queues, where the sweep assigns them). Returns how many tickets changed hands."""
    _require_lead(actor)
    if filters.is_empty():
        raise AssignmentError(_("Give at least one filter: bulk reassign never applies to every ticket."))
    at = now or timezone.now()
    if assignee is not None:
        _lock_agent(assignee, lock=False)  # fails early on an unknown agent
    ids = list(
        tickets_matching(user=actor, filters=filters)
        .filter(status__in=ACTIVE_STATUSES)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    changed = 0
    text = reason or ("bulk reassigned by a lead" if assignee is not None else "bulk unassigned by a lead")
    for chunk in _chunks(ids, BATCH_SIZE):
        with transaction.atomic():
            target = _lock_agent(assignee) if assignee is not None else None
            new = target.user_id if target is not None else None
            locked = list(
                Ticket.objects.select_for_update(of=("self",))
                .filter(pk__in=chunk)
                .order_by("pk")
                .only(*_TICKET_FIELDS)
            )
            # Re-check under the lock: a ticket may have changed since it was listed.
            still = set(
                tickets_filter(
                    Ticket.objects.filter(pk__in=chunk, status__in=ACTIVE_STATUSES), filters
                ).values_list("pk", flat=True)
            )
            changes = [
                _Change(t, new, RULE_MANUAL, text) for t in locked if t.pk in still and t.assignee_id != new
            ]
            freed = sorted({c.ticket.assignee_id for c in changes if c.ticket.assignee_id is not None})
            queues = sorted({c.ticket.queue_id for c in changes if c.ticket.queue_id is not None})
            _apply(changes, at=at, actor_id=actor.pk)
            changed += len(changes)
            assignment_capacity_freed(user_ids=freed)
            if new is None:
                _sweep_after_commit(queues)
    return changed


def queue_move_backlog(
    *, source_queue: Queue, target_queue: Queue, actor: AbstractBaseUser, now: datetime | None = None
) -> int:
    """A lead moves the source queue's unassigned active tickets to the target queue.

    Tickets being assigned at this very moment (locked) stay. Returns how many moved.
    """
    _require_lead(actor)
    if source_queue.pk == target_queue.pk:
        raise AssignmentError(_("The source and target queue are the same."))
    at = now or timezone.now()
    ids = list(
        Ticket.objects.filter(
            queue_id=source_queue.pk, assignee__isnull=True, status__in=ACTIVE_STATUSES, is_noise=False
        )
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    moved = 0
    for chunk in _chunks(ids, BATCH_SIZE):
        with transaction.atomic():
            tickets = list(
                Ticket.objects.select_for_update(skip_locked=True, of=("self",))
                .filter(
                    pk__in=chunk, queue_id=source_queue.pk, assignee__isnull=True, status__in=ACTIVE_STATUSES
                )
                .order_by("pk")
                .only(*_TICKET_FIELDS)
            )
            if not tickets:
                continue
            Ticket.objects.filter(pk__in=[t.pk for t in tickets]).update(
                queue_id=target_queue.pk, updated_at=at
            )
            events = []
            for ticket in tickets:
                ticket.queue_id = target_queue.pk
                events.append(
                    event_for(
                        ticket, "ticket.queue_changed", actor_id=actor.pk,
                        from_queue_id=source_queue.pk, to_queue_id=target_queue.pk,
                        reason="backlog moved by a lead",
                    )
                )  # fmt: skip
            TicketEvent.objects.bulk_create(events)
            publish_on_commit(events)
            moved += len(tickets)
    if moved:
        _sweep_after_commit([target_queue.pk])
    return moved


def agent_set_capacity(*, agent: AgentProfile, capacity: int, actor: AbstractBaseUser) -> AgentProfile:
    """A lead changes how many active tickets the agent may hold; more room starts a sweep."""
    _require_lead(actor)
    if not 0 <= capacity <= MAX_CAPACITY:
        raise AssignmentError(_("Capacity must be between 0 and %(max)d.") % {"max": MAX_CAPACITY})
    with transaction.atomic():
        locked = AgentProfile.objects.select_for_update().get(pk=agent.pk)
        old = locked.capacity
        if old != capacity:
            locked.capacity = capacity
            locked.save(update_fields=["capacity"])
            event = event_for(
                None,
                "agent.capacity_changed",
                actor_id=actor.pk,
                agent_id=locked.user_id,
                old=old,
                new=capacity,
            )
            event.save()
            publish_on_commit([event])
            if capacity > old:
                assignment_capacity_freed(user_ids=[locked.user_id])
    agent.capacity = capacity
    return agent


def queue_set_auto_assign(*, queue: Queue, paused: bool, actor: AbstractBaseUser) -> Queue:
    """A lead pauses or resumes automatic assignment (and taking next) in a queue.

    Paused, tickets wait for a lead to hand them out; resuming sweeps the backlog.
    """
    _require_lead(actor)
    with transaction.atomic():
        locked = Queue.objects.select_for_update().get(pk=queue.pk)
        if locked.auto_assign_paused != paused:
            locked.auto_assign_paused = paused
            locked.save(update_fields=["auto_assign_paused"])
            event = event_for(None, "queue.auto_assign_changed", actor_id=actor.pk, paused=paused)
            event.queue_id = locked.pk
            event.save()
            publish_on_commit([event])
            if not paused:
                _sweep_after_commit([locked.pk])
    queue.auto_assign_paused = paused
    return queue


def agent_set_away_and_redistribute(
    *,
    agent: AgentProfile,
    presence: str,
    keep_pending: bool,
    actor: AbstractBaseUser,
    now: datetime | None = None,
) -> RedistributeResult:
    """A lead sets the agent away or offline and hands their tickets to the others.

    New and open tickets go to the best online agent of their queue, or back to the queue
    to wait when nobody has room. Pending tickets (waiting on the customer) stay with the
    agent with ``keep_pending``, else go back to their queue unassigned; once the customer
    answers they are open and are assigned like any waiting ticket.
    """
    _require_lead(actor)
    if presence not in (AgentProfile.Presence.AWAY, AgentProfile.Presence.OFFLINE):
        raise AssignmentError(_("Choose away or offline."))
    at = now or timezone.now()
    agent_set_presence(agent=agent, presence=presence, actor=actor, now=at)
    result = RedistributeResult(presence=agent.presence)
    statuses = LOAD_STATUSES if keep_pending else ACTIVE_STATUSES
    if keep_pending:
        result.kept_pending = Ticket.objects.filter(
            assignee_id=agent.user_id, status=Ticket.Status.PENDING
        ).count()
    rows = (
        Ticket.objects.filter(assignee_id=agent.user_id, status__in=statuses)
        .order_by("pk")
        .values_list("pk", "queue_id")
    )
    by_queue: dict[int | None, list[int]] = defaultdict(list)
    for pk, queue_id in rows:
        by_queue[queue_id].append(pk)
    reason = f"{agent.user.get_username()} set {presence} by a lead"
    for queue_id in sorted(by_queue, key=lambda q: (q is None, q or 0)):
        for chunk in _chunks(by_queue[queue_id], BATCH_SIZE):
            with transaction.atomic():
                pool, contended = _locked_pool(queue_id, at) if queue_id is not None else (None, False)
                tickets = list(
                    Ticket.objects.select_for_update(of=("self",))
                    .filter(pk__in=chunk, assignee_id=agent.user_id, status__in=statuses)
                    .order_by("-priority", "opened_at", "pk")
                    .only(*_TICKET_FIELDS)
                )
                changes: list[_Change] = []
                for ticket in tickets:
                    choice = None
                    if pool is not None and ticket.status in LOAD_STATUSES:
                        choice = pool.assign(_facts(ticket))
                    if choice is not None:
                        changes.append(
                            _Change(ticket, choice.agent_id, choice.rule, f"{reason}; {choice.reason}")
                        )
                        result.reassigned += 1
                    else:
                        changes.append(_Change(ticket, None, RULE_RELEASED, f"{reason}; back to the queue"))
                        result.released += 1
                _apply(changes, at=at, actor_id=actor.pk)
                if contended and queue_id is not None and any(c.assignee_id is None for c in changes):
                    _sweep_after_commit([queue_id])
    return result


# --- Shared machinery -------------------------------------------------------------------------


def _require_lead(actor: AbstractBaseUser) -> None:
    if not user_is_lead(actor):
        raise PermissionDenied(_("Only team leads and admins may do this."))


def _lock_agent(user: AbstractBaseUser, *, lock: bool = True) -> AgentProfile:
    profiles = AgentProfile.objects.select_for_update() if lock else AgentProfile.objects
    profile = profiles.filter(user_id=user.pk).first()
    if profile is None:
        raise AssignmentError(_("%(name)s is not an agent.") % {"name": user.get_username()})
    return profile


def _locked_pool(queue_id: int, at: datetime) -> tuple[AssignmentPool, bool]:
    """The queue's members, with the online ones this transaction could lock (skip locked).

    Returns the pool and whether some online member was left out because another
    transaction held their row. Call inside ``transaction.atomic``.
    """
    members = queue_member_rows(queue_id=queue_id)
    wanted = [row[0] for row in members if row[1] == ONLINE and row[3] > 0]
    locked: dict[int, tuple] = {}
    if wanted:
        locked = {
            row[0]: row
            for row in AgentProfile.objects.select_for_update(skip_locked=True)
            .filter(user_id__in=wanted, presence=ONLINE)
            .order_by("pk")
            .values_list("user_id", "presence", "languages", "capacity", "last_assigned_at")
        }
    loads = agent_loads(locked)
    states = []
    for user_id, presence, languages, capacity, last_assigned_at in members:
        load = 0
        if user_id in locked:
            _, presence, languages, capacity, last_assigned_at = locked[user_id]
            load = loads[user_id]
        elif presence == ONLINE:
            presence = "locked"  # held by another transaction: not ours to give work this round
        states.append(
            agent_state(
                user_id=user_id, presence=presence, languages=languages, capacity=capacity,
                load=load, last_assigned_at=last_assigned_at, queue_ids=(queue_id,),
            )
        )  # fmt: skip
    return AssignmentPool(states, queue_id=queue_id, now=at), len(locked) < len(wanted)


def _facts(ticket: Ticket) -> TicketFacts:
    return TicketFacts(
        ticket_id=ticket.pk, queue_id=ticket.queue_id, language=ticket.language,
        priority=ticket.priority, opened_at=ticket.opened_at,
    )  # fmt: skip


def _sticky_agents(tickets: Sequence[Ticket], at: datetime) -> dict[int, int]:
    """Ticket id → the agent of the customer's most recent other ticket within the window."""
    if not tickets:
        return {}
    window = timedelta(days=settings.WEBCARE.get("STICKY_FOLLOW_UP_DAYS", DEFAULT_STICKY_DAYS))
    customers = sorted({t.customer_id for t in tickets})
    last: dict[int, int] = {}
    these = {t.pk for t in tickets}
    for chunk in _chunks(customers, BATCH_SIZE):
        rows = (
            Ticket.objects.filter(
                customer_id__in=chunk, assignee__isnull=False, last_message_at__gte=at - window
            )
            .order_by("customer_id", "-last_message_at", "-pk")
            .values_list("customer_id", "assignee_id", "pk")
        )
        for customer_id, assignee_id, pk in rows:
            if pk not in these:
                last.setdefault(customer_id, assignee_id)
    return {t.pk: last[t.customer_id] for t in tickets if t.customer_id in last}


def _apply(changes: Sequence[_Change], *, at: datetime, actor_id: int | None) -> list[TicketEvent]:
    """Write the new owners, one ``ticket.assigned`` event each, and the agents' last assignment."""
    if not changes:
        return []
    _write_assignees([(c.ticket.pk, c.assignee_id) for c in changes], at)
    events = []
    for change in changes:
        ticket = change.ticket
        previous = ticket.assignee_id
        ticket.assignee_id = change.assignee_id
        ticket.assigned_at = at if change.assignee_id is not None else None
        events.append(
            event_for(
                ticket, "ticket.assigned", actor_id=actor_id,
                assignee_id=change.assignee_id, previous_assignee_id=previous,
                rule=change.rule, reason=change.reason,
            )
        )  # fmt: skip
    _insert_events(events)
    receivers = sorted({c.assignee_id for c in changes if c.assignee_id is not None})
    if receivers:
        AgentProfile.objects.filter(user_id__in=receivers).update(last_assigned_at=at)
    publish_on_commit(events)
    return events


def _write_assignees(rows: Sequence[tuple[int, int | None]], at: datetime) -> None:
    """Set each ticket's assignee (and ``assigned_at``, ``updated_at``) in one statement.

    A sweep hands hundreds of tickets to hundreds of agents per transaction; one UPDATE
    per agent, or ``bulk_update``'s CASE per row, costs several times the database work.
    PostgreSQL joins the rows from two arrays, each sent as one array literal (the
    driver's per-element array adaptation cost more than the update); other databases run
    one UPDATE per new owner.
    """
    connection = transaction.get_connection()
    if connection.vendor == "postgresql":
        meta = Ticket._meta
        table = connection.ops.quote_name(meta.db_table)
        pk_type = meta.pk.db_type(connection)
        assignee_type = meta.get_field("assignee").db_type(connection)
        ids = "{" + ",".join(str(int(pk)) for pk, _ in rows) + "}"
        owners = "{" + ",".join("NULL" if a is None else str(int(a)) for _, a in rows) + "}"
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET assignee_id = v.assignee_id, "
                f"assigned_at = CASE WHEN v.assignee_id IS NULL THEN NULL ELSE %s END, updated_at = %s "
                f"FROM UNNEST(%s::{pk_type}[], %s::{assignee_type}[]) AS v(id, assignee_id) "
                f"WHERE {table}.id = v.id",
                [at, at, ids, owners],
            )
        return
    by_owner: dict[int | None, list[int]] = defaultdict(list)
    for pk, assignee in rows:
        by_owner[assignee].append(pk)
    for assignee, pks in by_owner.items():
        Ticket.objects.filter(pk__in=pks).update(
            assignee_id=assignee, assigned_at=at if assignee is not None else None, updated_at=at
        )


def _insert_events(events: list[TicketEvent]) -> None:
    """Insert ``events`` and give them their ids (publishing needs them).

    On PostgreSQL the ids come from the table's sequence and the rows go in with COPY:
    ``bulk_create`` spent more time preparing a sweep's events than the database spent
    storing them. Elsewhere ``bulk_create``.
    """
    connection = transaction.get_connection()
    if connection.vendor != "postgresql" or not events:
        TicketEvent.objects.bulk_create(events)
        return
    meta = TicketEvent._meta
    table = connection.ops.quote_name(meta.db_table)
    created = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
            [meta.db_table, meta.pk.column, len(events)],
        )
        ids = sorted(row[0] for row in cursor.fetchall())
        columns = "id, ticket_id, queue_id, type, actor_id, payload, created_at"
        with (
            connection.wrap_database_errors,
            cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy,
        ):
            for event, pk in zip(events, ids, strict=True):
                event.pk, event.created_at = pk, created
                copy.write_row(
                    (
                        pk,
                        event.ticket_id,
                        event.queue_id,
                        event.type,
                        event.actor_id,
                        json.dumps(event.payload),
                        created,
                    )
                )
    for event in events:
        event._state.adding = False
        event._state.db = connection.alias


def _sweep_after_commit(queue_ids: Iterable[int]) -> None:
    from inbox.tasks.assignment import sweep_queues_on_commit

    sweep_queues_on_commit(queue_ids)


def _chunks(values: Sequence, size: int) -> Iterable[Sequence]:
    for start in range(0, len(values), size):
        yield values[start : start + size]
