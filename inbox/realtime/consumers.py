"""The desk's WebSocket: one connection per browser tab, pushed TicketEvents."""

from __future__ import annotations

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from inbox.selectors.realtime import groups_for_user


class DeskConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        # Permission is decided by the same selectors as every other read.
        self.joined: list[str] = await database_sync_to_async(groups_for_user)(user)
        for name in self.joined:
            await self.channel_layer.group_add(name, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        for name in getattr(self, "joined", []):
            await self.channel_layer.group_discard(name, self.channel_name)

    async def desk_events(self, message: dict) -> None:
        await self.send_json({"type": "events", "events": message["events"]})
