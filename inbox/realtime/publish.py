"""Push TicketEvents to the browser groups that may see them, after the transaction commits."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections import defaultdict
from collections.abc import Iterable

from channels.layers import BaseChannelLayer, get_channel_layer
from channels_redis.core import RedisChannelLayer
from django.db import transaction
from redis.exceptions import RedisError

from inbox.models import TicketEvent
from inbox.realtime import groups

logger = logging.getLogger(__name__)

#: Handler name on the consumer (``desk.events`` → ``desk_events``).
MESSAGE_TYPE = "desk.events"
#: A push that takes longer is given up (clients catch up by event id).
SEND_TIMEOUT_SECONDS = 10.0
#: Groups sent to at once (each takes a Redis connection from the layer's pool).
SEND_CONCURRENCY = 8

_loop_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_loop_pid: int | None = None


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


def _push_loop() -> asyncio.AbstractEventLoop:
    """The process's event loop for pushes, running in a daemon thread.

    ``async_to_sync`` called outside any event loop starts a new thread and a new loop
    each time, and channels_redis keeps its Redis connections per loop, so every push
    paid for a thread, a loop and a Redis connection. One long-lived loop keeps the
    pool. A forked child (Celery prefork) makes its own.
    """
    global _loop, _loop_pid
    with _loop_lock:
        if _loop is None or _loop_pid != os.getpid() or _loop.is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="realtime-push", daemon=True).start()
            _loop, _loop_pid = loop, os.getpid()
        return _loop


async def _groups_with_members(layer: BaseChannelLayer, names: list[str]) -> list[str]:
    """The groups among ``names`` that have a member, asked in one pipelined round trip per shard.

    Most ``ticket.<id>`` groups have no viewer, and channels_redis spends two round trips
    on each group before it finds that out. A group joined right after this check misses
    the push exactly as one joined right after the send would: it catches up by event id.
    Other layers get every group.
    """
    if not isinstance(layer, RedisChannelLayer):
        return names
    shards: dict[int, list[str]] = defaultdict(list)
    for name in names:
        shards[layer.consistent_hash(name)].append(name)
    listened: set[str] = set()
    for index, shard_names in shards.items():
        pipe = layer.connection(index).pipeline(transaction=False)
        for name in shard_names:
            pipe.zcard(layer._group_key(name))  # the group's sorted set of channels
        counts = await pipe.execute()
        listened.update(name for name, count in zip(shard_names, counts, strict=True) if count)
    return [name for name in names if name in listened]


def send_now(by_group: dict[str, list[dict]]) -> None:
    """Send now, blocking until Redis took every group's message (or the timeout passed)."""
    layer = get_channel_layer()
    if layer is None or not by_group:
        return
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("send_now blocks: call it from synchronous code, not inside an event loop")

    async def _send_all() -> None:
        # Groups are independent (each gets one message), so they go out side by side.
        gate = asyncio.Semaphore(SEND_CONCURRENCY)

        async def send(name: str) -> None:
            async with gate:
                await layer.group_send(name, {"type": MESSAGE_TYPE, "events": by_group[name]})

        await asyncio.gather(*(send(name) for name in await _groups_with_members(layer, list(by_group))))

    future = asyncio.run_coroutine_threadsafe(_send_all(), _push_loop())
    try:
        future.result(timeout=SEND_TIMEOUT_SECONDS)
    except TimeoutError:
        future.cancel()
        raise


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
