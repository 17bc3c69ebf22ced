"""Ticket state changes."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from inbox.models import RoutingRule, Tag, Ticket, TicketEvent
from inbox.realtime.publish import publish_on_commit
from inbox.selectors.sla import sla_config
from inbox.services.assignment import assignment_capacity_freed
from inbox.services.events import event_for
from inbox.services.normalize import clean_text
from inbox.services.sla import sla_settle, sla_state_event, sla_switch_policy
from inbox.sla.policy import TicketClocks, sla_for_status_change

_CHUNK = 900
# Statuses that count towards an agent's load (see docs/assignment.md).
_LOAD_STATUSES = (Ticket.Status.NEW, Ticket.Status.OPEN)


def tickets_solve_history(*, ticket_ids: Iterable[int], quiet_since: datetime, reason: str) -> int:
    """Solve the still-active tickets among ``ticket_ids`` that have been quiet since
    ``quiet_since``: imported history that nobody needs to answer any more.

    ``solved_at`` is the time of the last message, so the reopen window counts from
    when the conversation really ended. Returns how many tickets were solved.
    """
    ids = sorted(set(ticket_ids))
    solved = 0
    for start in range(0, len(ids), _CHUNK):
        with transaction.atomic():
            tickets = list(
                Ticket.objects.select_for_update()
                .filter(
                    pk__in=ids[start : start + _CHUNK],
                    status__in=(Ticket.Status.NEW, Ticket.Status.OPEN),
                    last_message_at__lt=quiet_since,
                )
                .order_by("pk")
            )
            events: list[TicketEvent] = []
            for ticket in tickets:
                old = ticket.status
                ticket.status = Ticket.Status.SOLVED
                ticket.solved_at = ticket.last_message_at
                events.append(
                    event_for(ticket, "ticket.status_changed", old=old, new="solved", reason=reason)
                )
            Ticket.objects.bulk_update(tickets, ["status", "solved_at"])
            TicketEvent.objects.bulk_create(events)
            publish_on_commit(events)
            solved += len(tickets)
    return solved


class TicketChangeError(ValueError):
    """The status or priority change is not allowed; the message says why."""


#: Where each status may go. ``new`` is only where a ticket starts; a closed ticket is final (a
#: customer writing again gets a follow-up ticket).
STATUS_CHANGES: dict[str, frozenset[str]] = {
    Ticket.Status.NEW: frozenset(
        {Ticket.Status.OPEN, Ticket.Status.PENDING, Ticket.Status.SOLVED, Ticket.Status.CLOSED}
    ),
    Ticket.Status.OPEN: frozenset({Ticket.Status.PENDING, Ticket.Status.SOLVED, Ticket.Status.CLOSED}),
    Ticket.Status.PENDING: frozenset({Ticket.Status.OPEN, Ticket.Status.SOLVED, Ticket.Status.CLOSED}),
    Ticket.Status.SOLVED: frozenset({Ticket.Status.OPEN, Ticket.Status.CLOSED}),
    Ticket.Status.CLOSED: frozenset(),
}


def ticket_change_status(
    *, ticket: Ticket, status: str, actor: AbstractBaseUser | None, now: datetime | None = None
) -> Ticket:
    """Move ``ticket`` to ``status`` (same status: nothing happens).

    Solving stamps ``solved_at``; reopening a solved ticket clears it and counts the reopen.
    SLA clocks stop while pending and once solved or closed, and resume where they stood (see
    ``inbox.sla.policy.sla_for_status_change``). Writes ``ticket.status_changed`` (old, new,
    the actor) and, when the SLA state moves, ``sla.state_changed`` (and escalation)."""
    if status not in Ticket.Status.values:
        raise TicketChangeError(f"unknown status {status!r}")
    now = now or timezone.now()
    with transaction.atomic():
        ticket = Ticket.objects.select_for_update().get(pk=ticket.pk)
        old = ticket.status
        if status == old:
            return ticket
        if status not in STATUS_CHANGES[old]:
            raise TicketChangeError(f"a ticket cannot go from {old} to {status}")
        applied = sla_config().applied(ticket.sla_policy_id, ticket.queue_id)
        clocks = TicketClocks.of(ticket)
        change = sla_for_status_change(clocks, applied, new_status=status, at=now)
        fields = change.apply(ticket)
        ticket.status = status
        fields.append("status")
        if status == Ticket.Status.SOLVED:
            ticket.solved_at = now
            fields.append("solved_at")
        elif old == Ticket.Status.SOLVED and status == Ticket.Status.OPEN:
            ticket.solved_at = None
            ticket.reopened_count += 1
            fields += ["solved_at", "reopened_count"]
        actor_id = actor.pk if actor is not None else None
        events = [event_for(ticket, "ticket.status_changed", actor_id=actor_id, old=old, new=status)]
        if change.state_change is not None:
            events.append(sla_state_event(ticket=ticket, change=change.state_change))
        settle_fields, settle_events = sla_settle(ticket=ticket, applied=applied, now=now)
        ticket.save(update_fields=[*dict.fromkeys(fields + settle_fields), "updated_at"])
        events += settle_events
        TicketEvent.objects.bulk_create(events)
        publish_on_commit(events)
        if ticket.assignee_id and old in _LOAD_STATUSES and status not in _LOAD_STATUSES:
            # The agent has room again: the backlog sweep runs after commit.
            assignment_capacity_freed(user_ids=[ticket.assignee_id])
    return ticket


def ticket_change_priority(
    *, ticket: Ticket, priority: int, actor: AbstractBaseUser | None, now: datetime | None = None
) -> Ticket:
    """Set ``ticket``'s priority (same priority: nothing happens). Writes
    ``ticket.priority_changed``.

    The SLA policy is selected again for the new priority, unless a routing rule set it
    explicitly; if it changes, due times follow (``sla.policy_changed``, and
    ``sla.state_changed`` when the state moves)."""
    if priority not in Ticket.Priority.values:
        raise TicketChangeError(f"unknown priority {priority!r}")
    now = now or timezone.now()
    with transaction.atomic():
        ticket = Ticket.objects.select_for_update().get(pk=ticket.pk)
        old = ticket.priority
        if priority == old:
            return ticket
        ticket.priority = priority
        fields = ["priority"]
        actor_id = actor.pk if actor is not None else None
        events = [event_for(ticket, "ticket.priority_changed", actor_id=actor_id, old=old, new=priority)]
        if not _policy_set_by_routing(ticket):
            config = sla_config()
            selected = config.select(queue_id=ticket.queue_id, priority=priority)
            new_policy_id = selected.policy.id if selected is not None else None
            if new_policy_id != ticket.sla_policy_id:
                sla_fields, sla_events = sla_switch_policy(
                    ticket=ticket, config=config, policy_id=new_policy_id, actor=actor, now=now
                )
                fields += sla_fields
                events += sla_events
        ticket.save(update_fields=[*dict.fromkeys(fields), "updated_at"])
        TicketEvent.objects.bulk_create(events)
        publish_on_commit(events)
    return ticket


def _policy_set_by_routing(ticket: Ticket) -> bool:
    if ticket.routing_rule_id is None or ticket.sla_policy_id is None:
        return False
    rule_policy = (
        RoutingRule.objects.filter(pk=ticket.routing_rule_id).values_list("sla_policy_id", flat=True).first()
    )
    return rule_policy == ticket.sla_policy_id


# --- Tags --------------------------------------------------------------------------------------

TAG_MAX_LENGTH: int = Tag._meta.get_field("name").max_length


def ticket_set_tags(*, ticket: Ticket, names: Iterable[str], actor: AbstractBaseUser | None) -> Ticket:
    """Give ``ticket`` exactly the tags ``names`` (same set: nothing happens).

    Names are trimmed and inner white space collapsed; a name matching an existing tag
    without regard to case uses that tag (``Refund`` → ``refund``); new tags are created.
    Writes ``ticket.tags_changed`` (``added``, ``removed``, ``tags``: all names, sorted)."""
    wanted = _clean_tag_names(names)
    with transaction.atomic():
        locked = Ticket.objects.select_for_update().get(pk=ticket.pk)
        return _write_tags(locked, wanted, actor)


def ticket_change_tags(
    *, ticket: Ticket, add: Iterable[str] = (), remove: Iterable[str] = (), actor: AbstractBaseUser | None
) -> Ticket:
    """Add and remove some tags of ``ticket``, keeping the others: the set is computed under
    the ticket's lock, so two agents tagging at once both keep their tag."""
    adding = _clean_tag_names(add)
    removing = {name.casefold() for name in _clean_tag_names(remove)}
    with transaction.atomic():
        locked = Ticket.objects.select_for_update().get(pk=ticket.pk)
        current = list(locked.tags.order_by("name").values_list("name", flat=True))
        wanted = [name for name in current if name.casefold() not in removing] + adding
        return _write_tags(locked, wanted, actor)


def _clean_tag_names(names: Iterable[str]) -> list[str]:
    cleaned: dict[str, str] = {}
    for raw in names:
        name = " ".join(clean_text(str(raw)).split())
        if not name:
            continue
        if len(name) > TAG_MAX_LENGTH:
            raise TicketChangeError(
                _("A tag is at most %(max)d characters long: %(name)s") % {"max": TAG_MAX_LENGTH, "name": name}
            )
        cleaned.setdefault(name.casefold(), name)
    return list(cleaned.values())


def _write_tags(ticket: Ticket, wanted: list[str], actor: AbstractBaseUser | None) -> Ticket:
    current = set(ticket.tags.values_list("name", flat=True))
    tags: dict[str, Tag] = {}
    if wanted:
        matching = Q()
        for name in wanted:
            matching |= Q(name__iexact=name)
        existing = list(Tag.objects.filter(matching).order_by("name"))
        for name in wanted:
            exact = next((tag for tag in existing if tag.name == name), None)
            tag = exact or next((tag for tag in existing if tag.name.casefold() == name.casefold()), None)
            if tag is None:
                tag, _created = Tag.objects.get_or_create(name=name)
            tags.setdefault(tag.name, tag)
    final = set(tags)
    if final == current:
        return ticket
    ticket.tags.set(list(tags.values()))
    ticket.save(update_fields=["updated_at"])
    event = event_for(
        ticket, "ticket.tags_changed", actor_id=actor.pk if actor is not None else None,
        added=sorted(final - current), removed=sorted(current - final), tags=sorted(final),
    )
    event.save()
    publish_on_commit([event])
    return ticket
