"""Push TicketEvents to the browser groups that may see them, after the transaction commits."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from redis.exceptions import RedisError

from inbox.models import TicketEvent
from inbox.realtime import groups

logger = logging.getLogger(__name__)

#: Handler name on the consumer (``desk.events`` → ``desk_events``).
MESSAGE_TYPE = "desk.events"


def serialize_event(event: TicketEvent) -> dict:
    return {
        "id": event.id,
        "type": event.type,
        "ticket_id": event.ticket_id,
        "queue_id": event.queue_id,
        "actor_id": event.actor_id,
        "payload": event.payload,
        "created_at": event.created_at.isoformat() if event.created_at else None,
    }


def route_events(
    events: Iterable[TicketEvent], *, fresh_ticket_ids: frozenset[int] = frozenset()
) -> dict[str, list[dict]]:
    """Group name → serialized events for it, in id order.

    Tickets created in this very transaction cannot have viewers yet, so their
    ``ticket.<id>`` group is skipped; everyone who may see them hears it through
    the queue, agent and leads groups.
    """
    by_group: dict[str, list[dict]] = defaultdict(list)
    for event in sorted(events, key=lambda e: e.id):
        data = serialize_event(event)
        by_group[groups.LEADS].append(data)
        if event.queue_id is not None:
            by_group[groups.queue(event.queue_id)].append(data)
        assignee_id = event.payload.get("assignee_id") if isinstance(event.payload, dict) else None
        if assignee_id:
            by_group[groups.agent(assignee_id)].append(data)
        if event.ticket_id is not None and event.ticket_id not in fresh_ticket_ids:
            by_group[groups.ticket(event.ticket_id)].append(data)
    return by_group


def send_now(by_group: dict[str, list[dict]]) -> None:
    layer = get_channel_layer()
    if layer is None or not by_group:
        return

    async def _send_all() -> None:
        for name, events in by_group.items():
            await layer.group_send(name, {"type": MESSAGE_TYPE, "events": events})

    async_to_sync(_send_all)()


def publish_on_commit(
    events: Iterable[TicketEvent], *, fresh_ticket_ids: frozenset[int] = frozenset()
) -> None:
    """Schedule the push for after commit. Events are already durable rows, so a
    failed push loses nothing: clients catch up from their last event id."""
    by_group = route_events(events, fresh_ticket_ids=fresh_ticket_ids)
    if not by_group:
        return

    def _send() -> None:
        try:
            send_now(by_group)
        except (OSError, RedisError):
            logger.warning("realtime push failed; clients will catch up by event id", exc_info=True)

    transaction.on_commit(_send, robust=False)
