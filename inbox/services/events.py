"""Building TicketEvent rows. Only services call this; they publish after commit."""

from __future__ import annotations

from typing import Any

from inbox.models import Ticket, TicketEvent


def event_for(
    ticket: Ticket | None, type_: str, *, actor_id: int | None = None, **payload: Any
) -> TicketEvent:
    """An unsaved event for ``ticket`` carrying its queue and assignee for routing the push."""
    if ticket is not None:
        payload.setdefault("assignee_id", ticket.assignee_id)
        payload.setdefault("status", ticket.status)
    return TicketEvent(
        ticket=ticket,
        queue_id=ticket.queue_id if ticket is not None else None,
        type=type_,
        actor_id=actor_id,
        payload=payload,
    )
