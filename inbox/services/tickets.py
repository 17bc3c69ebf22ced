"""Ticket state changes."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.db import transaction

from inbox.models import Ticket, TicketEvent
from inbox.realtime.publish import publish_on_commit
from inbox.services.events import event_for

_CHUNK = 900


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
                .filter(pk__in=ids[start : start + _CHUNK], status__in=(Ticket.Status.NEW, Ticket.Status.OPEN),
                        last_message_at__lt=quiet_since)
                .order_by("pk")
            )
            events: list[TicketEvent] = []
            for ticket in tickets:
                old = ticket.status
                ticket.status = Ticket.Status.SOLVED
                ticket.solved_at = ticket.last_message_at
                events.append(event_for(ticket, "ticket.status_changed", old=old, new="solved", reason=reason))
            Ticket.objects.bulk_update(tickets, ["status", "solved_at"])
            TicketEvent.objects.bulk_create(events)
            publish_on_commit(events)
            solved += len(tickets)
    return solved
