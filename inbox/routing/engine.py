"""Placeholder routing: the source's default queue, else the desk's default queue.

The rule engine (conditions on language, text, followers ...) replaces the body of
``decide`` in the routing issue; callers already pass the facts it will need.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class RoutingFacts:
    source_id: int
    platform: str
    is_public: bool
    language: str
    text: str
    followers_count: int | None
    verified: bool
    source_default_queue_id: int | None
    desk_default_queue_id: int | None


@dataclass(frozen=True, slots=True)
class RoutingDecision:
    queue_id: int | None
    priority: int | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)
    reason: str = ""


def decide(facts: RoutingFacts) -> RoutingDecision:
    if facts.source_default_queue_id is not None:
        return RoutingDecision(queue_id=facts.source_default_queue_id, reason="source default queue")
    return RoutingDecision(queue_id=facts.desk_default_queue_id, reason="desk default queue")
