"""Who is viewing and who is typing on which ticket (ephemeral, kept in Redis).

Placeholder signature; the live-update work fills it in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Viewer:
    user_id: int
    name: str
    typing: bool


def viewers_for(ticket_ids: Iterable[int]) -> dict[int, list[Viewer]]:
    """Ticket id → the agents who have it open now (each once, typing if any of their tabs is)."""
    return {}
