"""A connector whose platform answers are scripted per test.

It is the platform side of unit tests for the outbox and the poller: each call pops
the next scripted answer, and every post it accepts is kept by idempotency key like
a real platform would, so "posted twice" is observable.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from inbox.connectors.base import Connector, FetchResult, SendResult
from inbox.connectors.registry import _registry, register


class ScriptedPlatform:
    def __init__(self) -> None:
        self.pages: deque[Any] = deque()  # FetchResult or an exception to raise
        self.sends: deque[Any] = deque()  # "ok", "post-then-timeout" or an exception
        self.finds: deque[BaseException] = deque()  # exceptions for the next lookups
        self.posts: dict[str, dict] = {}  # idempotency key -> post
        self.fetch_calls: list[Any] = []
        self.send_calls = 0

    def post(self, delivery) -> SendResult:
        key = str(delivery.idempotency_key)
        if key not in self.posts:
            self.posts[key] = {"id": f"p{len(self.posts) + 1}", "text": delivery.message.text}
        return SendResult(platform_id=self.posts[key]["id"])


PLATFORM = ScriptedPlatform()


def _p() -> ScriptedPlatform:
    return PLATFORM


class ScriptedConnector(Connector):
    platform = "scripted"

    def fetch(self, cursor: Any) -> FetchResult:
        _p().fetch_calls.append(cursor)
        answer = _p().pages.popleft() if _p().pages else FetchResult([], cursor)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def send_reply(self, delivery) -> SendResult:
        _p().send_calls += 1
        answer = _p().sends.popleft() if _p().sends else "ok"
        if answer == "post-then-timeout":
            from inbox.connectors.base import OutcomeUnknown

            _p().post(delivery)
            raise OutcomeUnknown("read timed out after 10s")
        if isinstance(answer, BaseException):
            raise answer
        return _p().post(delivery)

    def find_sent(self, delivery) -> SendResult | None:
        if _p().finds:
            raise _p().finds.popleft()
        post = _p().posts.get(str(delivery.idempotency_key))
        return SendResult(platform_id=post["id"]) if post else None


def install() -> ScriptedPlatform:
    global PLATFORM
    _registry()
    register(ScriptedConnector)
    PLATFORM = ScriptedPlatform()
    return PLATFORM
