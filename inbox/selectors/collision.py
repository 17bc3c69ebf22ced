"""Who is viewing and who is typing on which ticket (ephemeral, kept in Redis).

Collision state is not a ``TicketEvent``: typing changes every few seconds per agent, and
writing each into the append-only audit log would flood it (and every catch-up) with
noise nobody needs later. It lives in Redis only, one hash per ticket:

* ``webcare:collision:viewers:<ticket id>``: field = desk connection id (one per browser
  tab), value = JSON ``{"user_id", "name", "seen", "typing_until", "queue_id",
  "assignee_id"}``. ``seen`` is refreshed by the tab's heartbeat; an entry older than
  ``collision_stale_seconds()`` belongs to a connection that died without saying so (a
  crashed server, a lost network) and counts for nothing. ``typing_until`` is when the
  agent's last keystroke stops counting as typing.

Writes (watch, typing, leave, the stale sweep) are in ``inbox.realtime.collision``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from django.conf import settings

from inbox.services.locks import redis_client

KEY_PREFIX = "webcare:collision:"
#: Typing without a new keystroke stops counting after this many seconds.
DEFAULT_TYPING_SECONDS = 6.0


@dataclass(frozen=True, slots=True)
class Viewer:
    user_id: int
    name: str
    typing: bool


def viewers_key(ticket_id: int) -> str:
    return f"{KEY_PREFIX}viewers:{ticket_id}"


def collision_stale_seconds() -> float:
    """A viewer entry without a heartbeat for this long is a ghost (default: the presence TTL)."""
    config = settings.WEBCARE
    return float(config.get("COLLISION_STALE_SECONDS", config.get("PRESENCE_TTL_SECONDS", 60)))


def collision_typing_seconds() -> float:
    return float(settings.WEBCARE.get("COLLISION_TYPING_SECONDS", DEFAULT_TYPING_SECONDS))


def viewers_from_entries(entries: Mapping[bytes | str, bytes | str], *, now: float) -> list[Viewer]:
    """The live viewers among one ticket's raw hash entries: each user once (typing if any of
    their tabs is), ordered by name, then user id. Must agree with the Lua script of
    ``inbox.realtime.collision``, which computes the same list when it writes."""
    stale_before = now - collision_stale_seconds()
    users: dict[int, Viewer] = {}
    for raw in entries.values():
        try:
            entry = json.loads(raw)
            user_id, name, seen = entry["user_id"], entry["name"], float(entry["seen"])
            typing_until = float(entry.get("typing_until") or 0)
        except (ValueError, TypeError, KeyError):
            continue  # a malformed entry is pruned by the next write
        if not isinstance(user_id, int) or not isinstance(name, str) or seen < stale_before:
            continue
        typing = typing_until > now
        known = users.get(user_id)
        if known is None:
            users[user_id] = Viewer(user_id=user_id, name=name, typing=typing)
        elif typing and not known.typing:
            users[user_id] = Viewer(user_id=user_id, name=known.name, typing=True)
    return sorted(users.values(), key=lambda v: (v.name, v.user_id))


def viewers_for(ticket_ids: Iterable[int], *, now: float | None = None) -> dict[int, list[Viewer]]:
    """Ticket id → the agents who have it open now (each once, typing if any of their tabs is).

    Every asked id is in the answer (an empty list when nobody views it). One pipelined
    Redis round trip for all tickets. The asking user is included: callers showing
    "who else" leave themselves out. ``now`` (Unix seconds) is for tests.
    """
    ids = sorted({int(tid) for tid in ticket_ids})
    if not ids:
        return {}
    pipe = redis_client().pipeline(transaction=False)
    for ticket_id in ids:
        pipe.hgetall(viewers_key(ticket_id))
    rows = pipe.execute()
    at = time.time() if now is None else now
    return {ticket_id: viewers_from_entries(raw, now=at) for ticket_id, raw in zip(ids, rows, strict=True)}
