"""State of the fake platform: the brand's posts, kept in Redis.

Every worker process (poller, sender) must see the same posts, so nothing lives in
process memory. Keys, all under ``webcare:sim:<source id>:``:

* ``posts``: hash, idempotency key → JSON of the post (the platform's dedupe table,
  like Mastodon's ``Idempotency-Key`` header).
* ``replies``: list of the same JSON in posting order (the brand's timeline); a
  post's place in this list is its ``index`` and never changes.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from typing import Any

from django.conf import settings
from redis import Redis, WatchError

from inbox.connectors.simulated.generator import BrandReply

KEY_PREFIX = "webcare:sim"
SOCKET_TIMEOUT_SECONDS = 5.0
# Optimistic-lock retries when several senders post to one source at the same moment.
_POST_RETRIES = 20


@lru_cache(maxsize=4)
def _client(url: str) -> Redis:
    return Redis.from_url(
        url,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
        health_check_interval=30,
    )


def redis_client() -> Redis:
    """The shared client for ``settings.REDIS_URL`` (one connection pool per process)."""
    return _client(settings.REDIS_URL)


def _encode(reply: BrandReply) -> str:
    return json.dumps(
        {
            "index": reply.index,
            "id": reply.platform_id,
            "idempotency_key": reply.idempotency_key,
            "text": reply.text,
            "in_reply_to_id": reply.in_reply_to_external_id,
            "conversation_id": reply.conversation_id,
            "is_public": reply.is_public,
            "customer_id": reply.customer_id,
            "posted_at": reply.posted_at.isoformat(),
        },
        ensure_ascii=False,
    )


def _decode(data: bytes | str) -> BrandReply:
    value: dict[str, Any] = json.loads(data)
    return BrandReply(
        index=int(value["index"]),
        platform_id=str(value["id"]),
        idempotency_key=str(value["idempotency_key"]),
        text=str(value["text"]),
        in_reply_to_external_id=str(value["in_reply_to_id"]),
        conversation_id=str(value["conversation_id"]),
        is_public=bool(value["is_public"]),
        customer_id=str(value["customer_id"]),
        posted_at=datetime.fromisoformat(value["posted_at"]),
    )


def payload(reply: BrandReply) -> dict[str, Any]:
    """The post as the platform's API would return it."""
    result: dict[str, Any] = json.loads(_encode(reply))
    return result


class SimulatedPlatform:
    """The fake platform as seen from one source."""

    def __init__(self, source_id: int, *, client: Redis | None = None) -> None:
        self.source_id = source_id
        self.client = client if client is not None else redis_client()
        prefix = f"{KEY_PREFIX}:{source_id}:"
        self.posts_key = f"{prefix}posts"
        self.replies_key = f"{prefix}replies"

    def post_reply(
        self,
        *,
        idempotency_key: str,
        text: str,
        in_reply_to_external_id: str,
        conversation_id: str,
        is_public: bool,
        customer_id: str,
        posted_at: datetime,
    ) -> tuple[BrandReply, bool]:
        """Publish a reply once per idempotency key. Returns the post and whether it is new."""
        for _ in range(_POST_RETRIES):
            with self.client.pipeline() as pipe:
                try:
                    # Both keys change only together, so watching the hash guards the list too.
                    pipe.watch(self.posts_key)
                    existing = pipe.hget(self.posts_key, idempotency_key)
                    if existing is not None:
                        return _decode(existing), False
                    index = int(pipe.llen(self.replies_key))
                    reply = BrandReply(
                        index=index,
                        platform_id=f"simpost-{self.source_id}-{index + 1}",
                        idempotency_key=idempotency_key,
                        text=text,
                        in_reply_to_external_id=in_reply_to_external_id,
                        conversation_id=conversation_id,
                        is_public=is_public,
                        customer_id=customer_id,
                        posted_at=posted_at,
                    )
                    data = _encode(reply)
                    pipe.multi()
                    pipe.hset(self.posts_key, idempotency_key, data)
                    pipe.rpush(self.replies_key, data)
                    pipe.execute()
                    return reply, True
                except WatchError:
                    continue
        raise WatchError(f"could not post to {self.posts_key} after {_POST_RETRIES} concurrent retries")

    def find_post(self, idempotency_key: str) -> BrandReply | None:
        data = self.client.hget(self.posts_key, idempotency_key)
        return _decode(data) if data is not None else None

    def replies(self, start: int, count: int) -> list[BrandReply]:
        """Up to ``count`` brand replies from position ``start`` of the timeline, oldest first."""
        if count <= 0:
            return []
        return [_decode(item) for item in self.client.lrange(self.replies_key, start, start + count - 1)]

    def reply_count(self) -> int:
        return int(self.client.llen(self.replies_key))
