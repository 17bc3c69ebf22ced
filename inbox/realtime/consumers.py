"""The desk's WebSocket: one connection per browser tab, pushed TicketEvents.

The connection also carries the agent's presence: opening it, a ``{"type": "heartbeat"}``
frame every ``presence.HEARTBEAT_SECONDS`` and closing it are reported to
``inbox.services.presence``.
"""

from __future__ import annotations

import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from redis.exceptions import RedisError

from inbox.selectors.realtime import groups_for_user
from inbox.services.presence import presence_connect, presence_disconnect, presence_heartbeat

logger = logging.getLogger(__name__)


class DeskConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        # Permission is decided by the same selectors as every other read.
        self.joined: list[str] = await database_sync_to_async(groups_for_user)(user)
        # Presence first: this tab does not need to hear its own agent come online.
        self.user_id: int = user.pk
        await self._presence(presence_connect)
        for name in self.joined:
            await self.channel_layer.group_add(name, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        try:
            for name in getattr(self, "joined", []):
                await self.channel_layer.group_discard(name, self.channel_name)
        finally:
            if getattr(self, "user_id", None) is not None:
                await self._presence(presence_disconnect)

    async def receive_json(self, content, **kwargs) -> None:
        if isinstance(content, dict) and content.get("type") == "heartbeat":
            await self._presence(presence_heartbeat)

    async def desk_events(self, message: dict) -> None:
        await self.send_json({"type": "events", "events": message["events"]})

    async def _presence(self, report) -> None:
        # Presence lives in Redis; an outage must not cost the agent their live desk
        # (connections expire by heartbeat once Redis is back).
        try:
            await database_sync_to_async(report)(user_id=self.user_id, connection_id=self.channel_name)
        except (RedisError, OSError):
            logger.warning("presence %s failed for user %s", report.__name__, self.user_id, exc_info=True)
