"""The demo connector: a seeded stream of customer messages and a fake platform to answer on.

``fetch`` emits every stream message whose platform time has come, plus the customers'
answers to replies the brand posted (read from the fake platform in Redis). The cursor
holds all progress, so fetching the same cursor twice at the same moment returns the
same batch; the poller stores the next cursor once the batch committed.

``send_reply`` behaves like a real platform: it validates, dedupes on the idempotency
key, and (when configured) fails in a chosen way on a deterministic share of deliveries.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from django.utils import timezone
from redis.exceptions import RedisError, WatchError

from inbox.connectors.base import (
    Connector,
    FetchResult,
    InboundMessage,
    OutcomeUnknown,
    PermanentError,
    RetryableError,
    SendResult,
)
from inbox.connectors.simulated.generator import (
    StreamSpec,
    answer_to_brand_reply,
    scheduled_at,
    stream_message,
)
from inbox.connectors.simulated.platform import SimulatedPlatform, payload

if TYPE_CHECKING:
    from inbox.models import Message, OutboundDelivery, Source

FAILURE_KINDS = ("retryable", "permanent", "timeout")
MAX_REPLY_LENGTH = 500
RETRY_AFTER_SECONDS = 2.0
# Brand replies examined per fetch when looking for customer answers that are due.
REPLY_WINDOW = 1000


def _number(config: Mapping[str, Any], key: str, default: float, *, low: float, high: float | None) -> float:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PermanentError(f"simulated source config: {key} must be a number, got {value!r}")
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise PermanentError(f"simulated source config: {key} must be {bounds}, got {value!r}")
    return float(value)


def _integer(config: Mapping[str, Any], key: str, default: int, *, low: int | None) -> int:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise PermanentError(f"simulated source config: {key} must be an integer, got {value!r}")
    if low is not None and value < low:
        raise PermanentError(f"simulated source config: {key} must be at least {low}, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class SimulatedConfig:
    """``Source.config`` of a simulated source; every key is optional."""

    seed: int = 1
    rate_per_minute: float = 12.0
    max_batch: int = 50
    # Share of stream messages that follow up the same customer's earlier message.
    follow_up_rate: float = 0.2
    # Share of brand replies the customer answers.
    reply_follow_up_rate: float = 0.5
    reply_failure_rate: float = 0.0
    reply_failure_kind: str = "retryable"

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any] | None) -> SimulatedConfig:
        config = config or {}
        default = cls()
        if not isinstance(config, Mapping):
            raise PermanentError(f"simulated source config must be an object, got {type(config).__name__}")
        kind = config.get("reply_failure_kind", default.reply_failure_kind)
        if kind not in FAILURE_KINDS:
            raise PermanentError(
                f"simulated source config: reply_failure_kind must be one of {', '.join(FAILURE_KINDS)}, "
                f"got {kind!r}"
            )
        rate = _number(config, "rate_per_minute", default.rate_per_minute, low=0.0, high=None)
        if rate == 0:
            raise PermanentError("simulated source config: rate_per_minute must be above 0")
        return cls(
            seed=_integer(config, "seed", default.seed, low=None),
            rate_per_minute=rate,
            max_batch=_integer(config, "max_batch", default.max_batch, low=1),
            follow_up_rate=_number(config, "follow_up_rate", default.follow_up_rate, low=0.0, high=1.0),
            reply_follow_up_rate=_number(
                config, "reply_follow_up_rate", default.reply_follow_up_rate, low=0.0, high=1.0
            ),
            reply_failure_rate=_number(
                config, "reply_failure_rate", default.reply_failure_rate, low=0.0, high=1.0
            ),
            reply_failure_kind=kind,
        )

    @property
    def stream(self) -> StreamSpec:
        return StreamSpec(
            seed=self.seed,
            rate_per_minute=self.rate_per_minute,
            follow_up_rate=self.follow_up_rate,
            reply_follow_up_rate=self.reply_follow_up_rate,
        )


@dataclass(frozen=True, slots=True)
class SimulatedCursor:
    """Progress through the stream and through the brand's replies."""

    # Next stream sequence number.
    n: int
    # Time of sequence number 0's slot: the first poll.
    started_at: datetime
    # Every brand reply before this index has been answered (or will never be).
    reply_index: int
    # Replies at or after reply_index whose answer was already emitted.
    answered: frozenset[int]

    @classmethod
    def load(cls, value: Any, now: datetime) -> SimulatedCursor:
        if value is None:
            return cls(n=0, started_at=now, reply_index=0, answered=frozenset())
        try:
            started_at = datetime.fromisoformat(value["started_at"])
            cursor = cls(
                n=int(value["n"]),
                started_at=started_at,
                reply_index=int(value.get("reply_index", 0)),
                answered=frozenset(int(i) for i in value.get("answered", ())),
            )
        except (TypeError, KeyError, ValueError, AttributeError) as exc:
            raise PermanentError(f"simulated cursor is malformed ({exc!r}): {value!r}") from exc
        if started_at.tzinfo is None or cursor.n < 0 or cursor.reply_index < 0:
            raise PermanentError(f"simulated cursor is malformed: {value!r}")
        return cursor

    def dump(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "started_at": self.started_at.isoformat(),
            "reply_index": self.reply_index,
            "answered": sorted(self.answered),
        }


def _reply_context(message: Message) -> tuple[str, str, str]:
    """(message answered, conversation, customer) of an outbound message."""
    parent = message.in_reply_to if message.in_reply_to_id else None
    in_reply_to = message.in_reply_to_external_id or (parent.external_id if parent is not None else "") or ""
    conversation = message.conversation_id or (parent.conversation_id if parent is not None else "")
    customer = message.ticket.contact.external_id if message.ticket_id else ""
    return in_reply_to, conversation, customer


class SimulatedConnector(Connector):
    platform: ClassVar[str] = "simulated"

    def __init__(
        self,
        source: Source,
        *,
        clock: Callable[[], datetime] | None = None,
        platform: SimulatedPlatform | None = None,
    ) -> None:
        super().__init__(source)
        self._clock = clock if clock is not None else timezone.now
        self._platform = platform

    @cached_property
    def config(self) -> SimulatedConfig:
        return SimulatedConfig.from_mapping(self.source.config)

    @property
    def fake_platform(self) -> SimulatedPlatform:
        if self._platform is None:
            self._platform = SimulatedPlatform(self.source.pk)
        return self._platform

    # --- Inbound ------------------------------------------------------------------

    def fetch(self, cursor: Any) -> FetchResult:
        config = self.config
        spec = config.stream
        now = self._clock()
        state = SimulatedCursor.load(cursor, now)
        limit = config.max_batch

        due_stream: list[InboundMessage] = []
        n = state.n
        while len(due_stream) < limit and scheduled_at(spec, state.started_at, n) <= now:
            due_stream.append(stream_message(spec, state.started_at, n))
            n += 1
        stream_cut = len(due_stream) == limit and scheduled_at(spec, state.started_at, n) <= now

        try:
            replies = self.fake_platform.replies(state.reply_index, REPLY_WINDOW)
        except RedisError as exc:
            raise RetryableError(f"simulated platform unavailable: {exc}") from exc
        due_answers: list[tuple[int, InboundMessage]] = []
        silent: set[int] = set()
        for reply in replies:
            if reply.index in state.answered:
                continue
            answer = answer_to_brand_reply(spec, reply)
            if answer is None:
                silent.add(reply.index)
            elif answer.created_at <= now:
                due_answers.append((reply.index, answer))

        # Oldest first; the stream is ordered by time, so what is taken of it is a prefix.
        candidates: list[tuple[datetime, int, int, InboundMessage]] = [
            (message.created_at, 0, offset, message) for offset, message in enumerate(due_stream)
        ]
        candidates.extend((message.created_at, 1, index, message) for index, message in due_answers)
        candidates.sort(key=lambda item: item[:3])
        taken = candidates[:limit]

        answered = set(state.answered)
        answered.update(index for _, kind, index, _ in taken if kind == 1)
        reply_index = state.reply_index
        for reply in replies:
            if reply.index not in answered and reply.index not in silent:
                break
            reply_index = reply.index + 1
        next_cursor = SimulatedCursor(
            n=state.n + sum(1 for _, kind, _, _ in taken if kind == 0),
            started_at=state.started_at,
            reply_index=reply_index,
            answered=frozenset(i for i in answered if i >= reply_index),
        )
        window_full = len(replies) == REPLY_WINDOW and reply_index > state.reply_index
        return FetchResult(
            messages=[message for *_, message in taken],
            next_cursor=next_cursor.dump(),
            has_more=len(candidates) > len(taken) or stream_cut or window_full,
        )

    # --- Outbound -----------------------------------------------------------------

    def _injected_failure(self, idempotency_key: str) -> str | None:
        config = self.config
        if config.reply_failure_rate <= 0:
            return None
        roll = random.Random(f"{config.seed}:send:{idempotency_key}").random()
        return config.reply_failure_kind if roll < config.reply_failure_rate else None

    def send_reply(self, delivery: OutboundDelivery) -> SendResult:
        message = delivery.message
        text = message.text or ""
        if not text.strip():
            raise PermanentError("text is empty")
        if len(text) > MAX_REPLY_LENGTH:
            raise PermanentError(f"text is {len(text)} characters long; the limit is {MAX_REPLY_LENGTH}")
        key = str(delivery.idempotency_key)
        failure = self._injected_failure(key)
        # Retryable failures and timeouts hit the first attempt only, so a retry succeeds.
        first_attempt = delivery.attempts <= 1
        if failure == "permanent":
            raise PermanentError("simulated 422: status is a duplicate of a recent post")
        if failure == "retryable" and first_attempt:
            raise RetryableError("simulated 503: service unavailable", retry_after=RETRY_AFTER_SECONDS)
        in_reply_to, conversation, customer = _reply_context(message)
        try:
            reply, _ = self.fake_platform.post_reply(
                idempotency_key=key,
                text=text,
                in_reply_to_external_id=in_reply_to,
                conversation_id=conversation,
                is_public=message.is_public,
                customer_id=customer,
                posted_at=self._clock(),
            )
        except WatchError as exc:
            raise RetryableError(f"simulated platform busy: {exc}") from exc
        except RedisError as exc:
            # The write may have reached Redis before the connection failed.
            raise OutcomeUnknown(f"simulated platform did not answer: {exc}") from exc
        if failure == "timeout" and first_attempt:
            raise OutcomeUnknown("simulated timeout: no response after the post was sent")
        return SendResult(platform_id=reply.platform_id, raw=payload(reply))

    def find_sent(self, delivery: OutboundDelivery) -> SendResult | None:
        try:
            reply = self.fake_platform.find_post(str(delivery.idempotency_key))
        except RedisError as exc:
            raise RetryableError(f"simulated platform unavailable: {exc}") from exc
        if reply is None:
            return None
        return SendResult(platform_id=reply.platform_id, raw=payload(reply))
