"""Agent presence: online, away or offline, from open desk connections and manual choices.

Every desk tab holds a WebSocket; its consumer reports the connection
(``presence_connect``), a heartbeat every ``HEARTBEAT_SECONDS`` (``presence_heartbeat``)
and the close (``presence_disconnect``). Connections live in Redis:

* ``webcare:presence:conns:<user id>``: sorted set, connection id → time of its last heartbeat;
* ``webcare:presence:users``: user ids that may have connections (for expiry);
* ``webcare:presence:manual:<user id>``: ``away`` or ``offline`` when the agent or a lead chose
  it; no key means "online when connected".

The presence in the database (``AgentProfile.presence``, what assignment reads) follows:
no live connection → offline; otherwise the manual choice, else online. A heartbeat never
overrides a manual "away". A connection whose heartbeat is older than the TTL is dropped
by ``presence_expire`` (run by beat), so a crashed browser or server cannot keep an agent
online. Each change is a ``presence.changed`` event for the leads; coming online starts a
backlog sweep of the agent's queues.

The database row lock on the agent orders concurrent changes; the presence is always
recomputed from Redis under that lock, so the last writer sees every connection.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from inbox.models import AgentProfile
from inbox.realtime.publish import publish_on_commit
from inbox.selectors.agents import agent_queue_ids
from inbox.selectors.tickets import user_is_lead
from inbox.services.events import event_for
from inbox.services.locks import redis_client

KEY_PREFIX = "webcare:presence:"
USERS_KEY = f"{KEY_PREFIX}users"
#: How often a desk tab should send ``{"type": "heartbeat"}``.
HEARTBEAT_SECONDS = 20
#: A connection without a heartbeat for this long is dead (three missed heartbeats).
DEFAULT_TTL_SECONDS = 60
#: Connection sets of users who never come back are cleaned up by Redis after this.
_CONNS_KEY_TTL_SECONDS = 24 * 3600

Presence = AgentProfile.Presence
_MANUAL = {Presence.AWAY.value, Presence.OFFLINE.value}


def presence_ttl_seconds() -> float:
    return float(settings.WEBCARE.get("PRESENCE_TTL_SECONDS", DEFAULT_TTL_SECONDS))


def _conns_key(user_id: int) -> str:
    return f"{KEY_PREFIX}conns:{user_id}"


def _manual_key(user_id: int) -> str:
    return f"{KEY_PREFIX}manual:{user_id}"


def _at(now: datetime | None) -> datetime:
    return now if now is not None else timezone.now()


def _record(user_id: int, connection_id: str, at: datetime) -> bool:
    """Store the connection's heartbeat; True when the connection was not known (new or expired)."""
    pipe = redis_client().pipeline(transaction=True)
    pipe.zadd(_conns_key(user_id), {connection_id: at.timestamp()})
    pipe.expire(_conns_key(user_id), _CONNS_KEY_TTL_SECONDS)
    pipe.sadd(USERS_KEY, user_id)
    added, _, _ = pipe.execute()
    return bool(added)


def presence_connect(*, user_id: int, connection_id: str, now: datetime | None = None) -> str | None:
    """A desk connection opened. Returns the agent's presence (None: the user is no agent)."""
    at = _at(now)
    _record(user_id, connection_id, at)
    return _sync(user_id, at, reason="connected")


def presence_heartbeat(*, user_id: int, connection_id: str, now: datetime | None = None) -> None:
    """A desk connection is alive. Touches the database only when the connection had expired."""
    at = _at(now)
    if _record(user_id, connection_id, at):
        _sync(user_id, at, reason="connected")


def presence_disconnect(*, user_id: int, connection_id: str, now: datetime | None = None) -> str | None:
    """A desk connection closed; the agent goes offline when it was their last one."""
    at = _at(now)
    redis_client().zrem(_conns_key(user_id), connection_id)
    return _sync(user_id, at, reason="disconnected")


def presence_expire(*, now: datetime | None = None) -> list[int]:
    """Drop connections without a heartbeat for the TTL; returns the agents whose presence changed.

    Looks at every user with a recorded connection and every agent the database has
    online or away, so an agent left online by a lost Redis goes offline too.
    """
    at = _at(now)
    cutoff = at.timestamp() - presence_ttl_seconds()
    client = redis_client()
    listed = {int(uid) for uid in client.smembers(USERS_KEY)}
    presence = dict(
        AgentProfile.objects.filter(user_id__in=sorted(listed)).values_list("user_id", "presence")
    ) if listed else {}  # fmt: skip
    presence.update(
        AgentProfile.objects.exclude(presence=Presence.OFFLINE).values_list("user_id", "presence")
    )
    users = sorted(listed | presence.keys())
    if not users:
        return []
    pipe = client.pipeline(transaction=False)
    for user_id in users:
        pipe.zremrangebyscore(_conns_key(user_id), "-inf", f"({cutoff}")
        pipe.zcard(_conns_key(user_id))
    counts = pipe.execute()[1::2]
    gone = [user_id for user_id, count in zip(users, counts, strict=True) if not count]
    if gone:
        # A connect racing this removal is listed again by its next heartbeat, and the
        # database side (presence not offline) brings it back here meanwhile.
        client.srem(USERS_KEY, *gone)
    changed = []
    for user_id, count in zip(users, counts, strict=True):
        current = presence.get(user_id)
        if current is None:
            continue  # connections of a user who is no agent
        if (count == 0) != (current == Presence.OFFLINE):
            if _sync(user_id, at, reason="heartbeat expired" if count == 0 else "connected") is not None:
                changed.append(user_id)
    return changed


def agent_set_presence(
    *, agent: AgentProfile, presence: str, actor: AbstractBaseUser, now: datetime | None = None
) -> AgentProfile:
    """The agent (for themselves) or a lead chooses online, away or offline.

    "away" and "offline" stick until the agent or a lead sets "online"; heartbeats and
    reconnects do not change them. "online" takes effect while the agent has a desk
    connection open: without one they stay offline.
    """
    if presence not in Presence.values:
        raise ValueError(f"unknown presence {presence!r}")
    if actor.pk != agent.user_id and not user_is_lead(actor):
        raise PermissionDenied(_("Only the agent or a team lead can change this presence."))
    client = redis_client()
    if presence in _MANUAL:
        client.set(_manual_key(agent.user_id), presence)
    else:
        client.delete(_manual_key(agent.user_id))
    by = "the agent" if actor.pk == agent.user_id else "a lead"
    _sync(agent.user_id, _at(now), reason=f"set {presence} by {by}", actor_id=actor.pk)
    agent.refresh_from_db(fields=["presence", "presence_changed_at"])
    return agent


def presence_manual(*, user_id: int) -> str | None:
    """The presence the agent or a lead chose (away or offline), or None."""
    value = redis_client().get(_manual_key(user_id))
    return value.decode() if value is not None else None


def _sync(user_id: int, at: datetime, *, reason: str, actor_id: int | None = None) -> str | None:
    """Make the database presence of ``user_id`` what their connections and choice say.

    Returns the presence, or None when the user has no agent profile.
    """
    with transaction.atomic():
        profile = AgentProfile.objects.select_for_update().filter(user_id=user_id).first()
        if profile is None:
            return None
        pipe = redis_client().pipeline(transaction=False)
        pipe.zcount(_conns_key(user_id), at.timestamp() - presence_ttl_seconds(), "+inf")
        pipe.get(_manual_key(user_id))
        live, manual = pipe.execute()
        if not live:
            target = Presence.OFFLINE.value
        else:
            target = (
                manual.decode()
                if manual is not None and manual.decode() in _MANUAL
                else Presence.ONLINE.value
            )
        if target == profile.presence:
            return target
        previous = profile.presence
        profile.presence = target
        profile.presence_changed_at = at
        profile.save(update_fields=["presence", "presence_changed_at"])
        event = event_for(
            None, "presence.changed", actor_id=actor_id,
            agent_id=user_id, presence=target, previous=previous, reason=reason,
        )  # fmt: skip
        event.save()
        publish_on_commit([event])
        if target == Presence.ONLINE:
            from inbox.tasks.assignment import sweep_queues_on_commit

            sweep_queues_on_commit(agent_queue_ids([user_id], auto_assign_only=True))
    return target
