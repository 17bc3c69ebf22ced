"""The desk's WebSocket: one connection per browser tab.

It carries, server → browser, the TicketEvents pushed live (``desk.events``), a catch-up
after a (re)connect and the collision presence of tickets (``desk.collision``); browser →
server, JSON frames:

* ``{"type": "heartbeat"}`` every ``presence.HEARTBEAT_SECONDS``: keeps the agent's presence
  and the tab's viewer entries alive, re-reads the user's permissions (groups) and lets one
  server in the cluster sweep stale viewers. With ``"ack": true`` the server answers
  ``{"type": "pong"}`` (the browser uses it to notice a dead connection).
* ``{"type": "resume", "last_event_id": N}``: send every event the user may see with an id
  above ``N - OVERLAP`` in frames of ``FRAME_SIZE`` (``"catchup": true``), then
  ``{"type": "resumed", "last_event_id": M}``; when more than ``CATCHUP_LIMIT`` are
  missing, ``{"type": "reset", "last_event_id": M}`` instead (the pages re-fetch).
* ``{"type": "watch", "ticket_id": T}`` / ``{"type": "unwatch", "ticket_id": T}``: the tab
  shows ticket T (permission checked before joining ``ticket.T``).
* ``{"type": "typing", "ticket_id": T, "typing": true|false}`` on a watched ticket; typing
  runs out by itself ``collision_typing_seconds()`` after the last ``true``.

Bad frames get ``{"type": "error", "code": ..., "message": ...}`` and change nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, replace

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from redis.exceptions import RedisError

from inbox.realtime import groups
from inbox.realtime.collision import (
    Snapshot,
    ViewerEntry,
    collision_leave,
    collision_refresh,
    collision_set,
    collision_sweep,
)
from inbox.realtime.publish import serialize_event
from inbox.selectors.collision import collision_typing_seconds
from inbox.selectors.realtime import (
    desk_user,
    events_visible_after,
    groups_for_user,
    last_event_id,
    ticket_watch_target,
    tickets_still_visible,
)
from inbox.services.presence import (
    HEARTBEAT_SECONDS,
    presence_connect,
    presence_disconnect,
    presence_heartbeat,
)

logger = logging.getLogger(__name__)

#: Catch-up starts this many ids before the client's last one: transactions commit out of id
#: order, so an event with a lower id can become visible after a higher one was pushed.
OVERLAP = 50
#: More missing events than this and the client is told to re-fetch its pages instead.
CATCHUP_LIMIT = 2000
#: Events per catch-up frame.
FRAME_SIZE = 200
#: A client further behind than this many ids is reset without scanning the log at all.
MAX_SCAN = 100_000
#: Tickets one connection may watch at once (a ticket page watches one).
MAX_WATCHED = 20
#: Event ids remembered per connection to send each once.
_MAX_SENT_IDS_KEPT = 5000
#: Collision versions remembered per connection (forgetting costs at most a repeated frame).
_MAX_VERSIONS_KEPT = 5000
#: WebSocket close code for "not signed in (any more)".
CLOSE_UNAUTHENTICATED = 4401


class FrameError(ValueError):
    def __init__(self, code: str, message: str, **extra) -> None:
        super().__init__(message)
        self.code = code
        self.extra = extra


@dataclass(frozen=True, slots=True)
class CatchUp:
    events: list[dict]
    last_event_id: int
    reset: bool


def catch_up(*, user_id: int, after_id: int, watched_ticket_ids: list[int]) -> CatchUp | None:
    """What a connection missed after ``after_id`` (None: the user may not use the desk any more)."""
    user = desk_user(user_id)
    if user is None:
        return None
    head = last_event_id()
    start = max(0, after_id - OVERLAP)
    if after_id > head or head - start > MAX_SCAN:
        # Ahead of the log (another database) or very far behind: start over from now.
        return CatchUp(events=[], last_event_id=head, reset=True)
    events = events_visible_after(
        user=user, after_id=start, limit=CATCHUP_LIMIT + 1, watched_ticket_ids=watched_ticket_ids
    )
    if len(events) > CATCHUP_LIMIT:
        return CatchUp(events=[], last_event_id=max(head, events[-1].id), reset=True)
    newest = events[-1].id if events else 0
    return CatchUp(
        events=[serialize_event(event) for event in events],
        last_event_id=max(after_id, head, newest),
        reset=False,
    )


@dataclass(frozen=True, slots=True)
class Access:
    groups: list[str]
    visible_watched: set[int]


def current_access(*, user_id: int, watched_ticket_ids: list[int]) -> Access | None:
    """The groups the user may be in now and which watched tickets they may still see."""
    user = desk_user(user_id)
    if user is None:
        return None
    return Access(
        groups=groups_for_user(user),
        visible_watched=tickets_still_visible(user=user, ticket_ids=watched_ticket_ids),
    )


def _ticket_id(content: dict) -> int:
    value = content.get("ticket_id")
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise FrameError("bad_request", "ticket_id must be a positive integer")
    return value


class DeskConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.user = user
        self.user_id: int = user.pk
        self.viewer_name: str = user.get_full_name() or user.get_username()
        #: Ticket id → this connection's viewer entry on it.
        self.watching: dict[int, ViewerEntry] = {}
        self.typing_expiry: dict[int, asyncio.Task] = {}
        #: Event ids sent on this connection, oldest first (bounded; the browser dedupes too).
        self.sent_ids: dict[int, None] = {}
        #: Ticket id → the newest collision version sent to this connection.
        self.collision_versions: dict[int, int] = {}
        # Permission is decided by the same selectors as every other read.
        self.joined: list[str] = await database_sync_to_async(groups_for_user)(user)
        # Presence first: this tab does not need to hear its own agent come online.
        await self._presence(presence_connect)
        for name in self.joined:
            await self.channel_layer.group_add(name, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        # Presence first: whatever the cleanup below meets (a slow channel layer, a Redis
        # hiccup), the agent must not stay "online" after their last tab closed.
        try:
            if getattr(self, "user_id", None) is not None:
                await self._presence(presence_disconnect)
        finally:
            for task in getattr(self, "typing_expiry", {}).values():
                task.cancel()
            for ticket_id in list(getattr(self, "watching", {})):
                await self._unwatch(ticket_id)
            for name in getattr(self, "joined", []):
                await self.channel_layer.group_discard(name, self.channel_name)

    # --- Frames from the browser ------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs) -> None:
        if text_data is None:
            await self._error("bad_request", "frames are JSON text")
            return
        try:
            content = json.loads(text_data)
        except ValueError:
            await self._error("bad_json", "the frame is not valid JSON")
            return
        await self.receive_json(content)

    async def receive_json(self, content, **kwargs) -> None:
        if not isinstance(content, dict):
            await self._error("bad_request", "a frame is a JSON object with a type")
            return
        handler = {
            "heartbeat": self._on_heartbeat,
            "resume": self._on_resume,
            "watch": self._on_watch,
            "unwatch": self._on_unwatch,
            "typing": self._on_typing,
        }.get(content.get("type"))
        if handler is None:
            await self._error("unknown_type", f"unknown frame type {content.get('type')!r}")
            return
        try:
            await handler(content)
        except FrameError as exc:
            await self._error(exc.code, str(exc), **exc.extra)

    async def _on_heartbeat(self, content: dict) -> None:
        await self._presence(presence_heartbeat)
        for ticket_id, entry in list(self.watching.items()):
            snapshot = await self._collision(
                collision_set, ticket_id=ticket_id, connection_id=self.channel_name, entry=entry
            )
            if snapshot is not None and snapshot.changed:
                await self._announce(snapshot)
        if not await self._check_access():
            return
        snapshots = await self._redis(collision_sweep, interval_seconds=HEARTBEAT_SECONDS)
        for snapshot in snapshots or []:
            await self._announce(snapshot)
        if content.get("ack") is True:
            await self.send_json({"type": "pong"})

    async def _on_resume(self, content: dict) -> None:
        after = content.get("last_event_id")
        if isinstance(after, bool) or not isinstance(after, int) or after < 0:
            raise FrameError("bad_request", "last_event_id must be a non-negative integer")
        result = await database_sync_to_async(catch_up)(
            user_id=self.user_id, after_id=after, watched_ticket_ids=sorted(self.watching)
        )
        if result is None:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        if result.reset:
            await self.send_json({"type": "reset", "last_event_id": result.last_event_id})
            return
        self._remember_sent(result.events)
        for start in range(0, len(result.events), FRAME_SIZE):
            await self.send_json(
                {"type": "events", "events": result.events[start : start + FRAME_SIZE], "catchup": True}
            )
        await self.send_json({"type": "resumed", "last_event_id": result.last_event_id})

    async def _on_watch(self, content: dict) -> None:
        ticket_id = _ticket_id(content)
        entry = self.watching.get(ticket_id)
        if entry is None:
            if len(self.watching) >= MAX_WATCHED:
                raise FrameError("too_many", f"a connection watches at most {MAX_WATCHED} tickets",
                                 ticket_id=ticket_id)  # fmt: skip
            target = await database_sync_to_async(ticket_watch_target)(user=self.user, ticket_id=ticket_id)
            if target is None:
                raise FrameError("forbidden", "you may not see this ticket", ticket_id=ticket_id)
            entry = ViewerEntry(
                user_id=self.user_id, name=self.viewer_name, queue_id=target[0], assignee_id=target[1]
            )
            await self.channel_layer.group_add(groups.ticket(ticket_id), self.channel_name)
            self.watching[ticket_id] = entry
        snapshot = await self._collision(
            collision_set, ticket_id=ticket_id, connection_id=self.channel_name, entry=entry
        )
        if snapshot is None:
            raise FrameError("unavailable", "viewers are unavailable right now", ticket_id=ticket_id)
        if snapshot.changed:
            await self._announce(snapshot)  # reaches this connection too, through ticket.T
        else:
            await self.desk_collision(snapshot.message())

    async def _on_unwatch(self, content: dict) -> None:
        ticket_id = _ticket_id(content)
        if ticket_id in self.watching:
            await self._unwatch(ticket_id)

    async def _on_typing(self, content: dict) -> None:
        ticket_id = _ticket_id(content)
        typing = content.get("typing")
        if not isinstance(typing, bool):
            raise FrameError("bad_request", "typing must be true or false", ticket_id=ticket_id)
        entry = self.watching.get(ticket_id)
        if entry is None:
            raise FrameError("not_watching", "watch the ticket before typing on it", ticket_id=ticket_id)
        seconds = collision_typing_seconds()
        entry = replace(entry, typing_until=time.time() + seconds if typing else 0.0)
        self.watching[ticket_id] = entry
        pending = self.typing_expiry.pop(ticket_id, None)
        if pending is not None:
            pending.cancel()
        snapshot = await self._collision(
            collision_set, ticket_id=ticket_id, connection_id=self.channel_name, entry=entry
        )
        if snapshot is not None and snapshot.changed:
            await self._announce(snapshot)
        if typing:
            self.typing_expiry[ticket_id] = asyncio.create_task(self._expire_typing(ticket_id, seconds))

    # --- Messages from the channel layer ----------------------------------------------------

    async def desk_events(self, message: dict) -> None:
        # A push reaches a connection once per group it is in (a watched ticket's events come
        # through the ticket's group and the queue's): send each event once.
        events = [event for event in message["events"] if event["id"] not in self.sent_ids]
        if not events:
            return
        self._remember_sent(events)
        await self.send_json({"type": "events", "events": events, "catchup": False})

    def _remember_sent(self, events: list[dict]) -> None:
        for event in events:
            self.sent_ids[event["id"]] = None
        while len(self.sent_ids) > _MAX_SENT_IDS_KEPT:
            del self.sent_ids[next(iter(self.sent_ids))]

    async def desk_collision(self, message: dict) -> None:
        # One announcement reaches a connection through several groups (the ticket's, its
        # queue's, the leads'), and two servers' announcements can cross: send each version
        # once, and never an older one after a newer.
        ticket_id, version = message["ticket_id"], message["version"]
        if version <= self.collision_versions.get(ticket_id, -1):
            return
        if len(self.collision_versions) >= _MAX_VERSIONS_KEPT:
            self.collision_versions.clear()
        self.collision_versions[ticket_id] = version
        await self.send_json(
            {
                "type": "collision",
                "ticket_id": message["ticket_id"],
                "version": message["version"],
                "viewers": message["viewers"],
            }
        )

    # --- Helpers ----------------------------------------------------------------------------

    async def _unwatch(self, ticket_id: int) -> None:
        self.watching.pop(ticket_id, None)
        pending = self.typing_expiry.pop(ticket_id, None)
        if pending is not None:
            pending.cancel()
        await self.channel_layer.group_discard(groups.ticket(ticket_id), self.channel_name)
        snapshot = await self._collision(collision_leave, ticket_id=ticket_id, connection_id=self.channel_name)
        if snapshot is not None and snapshot.changed:
            await self._announce(snapshot)

    async def _expire_typing(self, ticket_id: int, seconds: float) -> None:
        # A little after the entry's typing_until, so the recomputation sees it run out.
        await asyncio.sleep(seconds + 0.05)
        if self.typing_expiry.get(ticket_id) is not asyncio.current_task():
            return
        del self.typing_expiry[ticket_id]
        entry = self.watching.get(ticket_id)
        if entry is not None:
            self.watching[ticket_id] = replace(entry, typing_until=0.0)
        snapshot = await self._collision(collision_refresh, ticket_id=ticket_id)
        if snapshot is not None and snapshot.changed:
            await self._announce(snapshot)

    async def _check_access(self) -> bool:
        """Follow permission changes of a long-lived connection: join and leave groups as the
        user's role and queues say now, stop watching tickets they may no longer see. A change
        of groups resets the pages (what they show depends on it). False: connection closed."""
        access = await database_sync_to_async(current_access)(
            user_id=self.user_id, watched_ticket_ids=sorted(self.watching)
        )
        if access is None:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return False
        for ticket_id in sorted(set(self.watching) - access.visible_watched):
            await self._unwatch(ticket_id)
            await self._error("forbidden", "you may not see this ticket any more", ticket_id=ticket_id)
        added = [name for name in access.groups if name not in self.joined]
        removed = [name for name in self.joined if name not in access.groups]
        if not added and not removed:
            return True
        for name in added:
            await self.channel_layer.group_add(name, self.channel_name)
        for name in removed:
            await self.channel_layer.group_discard(name, self.channel_name)
        self.joined = list(access.groups)
        head = await database_sync_to_async(last_event_id)()
        await self.send_json({"type": "reset", "last_event_id": head})
        return True

    async def _announce(self, snapshot: Snapshot) -> None:
        message = snapshot.message()
        try:
            for name in snapshot.audience():
                await self.channel_layer.group_send(name, message)
        except (RedisError, OSError):
            # Browsers keep the viewers they were last told until the next announcement.
            logger.warning("collision announcement for ticket %s failed", snapshot.ticket_id, exc_info=True)

    async def _error(self, code: str, message: str, **extra) -> None:
        await self.send_json({"type": "error", "code": code, "message": message, **extra})

    async def _collision(self, operation, **kwargs) -> Snapshot | None:
        return await self._redis(operation, **kwargs)

    async def _redis(self, operation, **kwargs):
        # Collision presence is a courtesy: a Redis outage must not cost the agent their live
        # desk. It is logged, the viewers shown go stale, and the next heartbeat writes again.
        try:
            return await sync_to_async(operation, thread_sensitive=False)(**kwargs)
        except (RedisError, OSError):
            logger.warning("collision %s failed on %s", operation.__name__, self.channel_name, exc_info=True)
            return None

    async def _presence(self, report) -> None:
        # Presence lives in Redis; an outage must not cost the agent their live desk
        # (connections expire by heartbeat once Redis is back).
        try:
            await database_sync_to_async(report)(user_id=self.user_id, connection_id=self.channel_name)
        except (RedisError, OSError):
            logger.warning("presence %s failed for user %s", report.__name__, self.user_id, exc_info=True)
