"""Collision presence: record who views and types on a ticket, and tell who must hear of it.

The state is ephemeral (Redis only, see ``inbox.selectors.collision`` for the layout and
why it is not a TicketEvent). Every write goes through one Lua script that, atomically:
applies the change, prunes ghost entries (no heartbeat for ``collision_stale_seconds()``),
computes the ticket's viewer list (each user once, typing if any of their tabs is) and
compares it with the list last announced. Only a different list is announced, with a
version that only grows, so a browser that gets two announcements out of order (two
servers sending at once) keeps the newer one.

Besides the viewers hash, per ticket:

* ``webcare:collision:state:<ticket id>``: hash ``snapshot`` (the announced list, in a
  canonical string form) and ``version``;
* ``webcare:collision:active``: sorted set of tickets with viewers (score: last write), which
  ``collision_sweep`` walks to announce ghosts leaving and typing running out when nobody
  else writes on the ticket (the server that recorded them may be gone).

Functions here are synchronous (redis-py); the consumer runs them in a worker thread.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from redis.commands.core import Script

from inbox.realtime import groups
from inbox.selectors.collision import (
    KEY_PREFIX,
    Viewer,
    collision_stale_seconds,
    viewers_key,
)
from inbox.services.locks import redis_client

#: Channel-layer handler of an announcement (``desk.collision`` → ``desk_collision``).
MESSAGE_TYPE = "desk.collision"
ACTIVE_KEY = f"{KEY_PREFIX}active"
SWEEP_LOCK_KEY = f"{KEY_PREFIX}sweep"
#: The announced list and its version outlive the viewers by this much, so versions keep
#: growing across short pauses (after that, the clock-based floor keeps them growing).
_STATE_TTL_SECONDS = 24 * 3600


def state_key(ticket_id: int) -> str:
    return f"{KEY_PREFIX}state:{ticket_id}"


# KEYS: viewers hash, state hash, active set.
# ARGV: op (set | del | none), field, value, now (s), stale_before (s), ticket id,
#       viewers ttl (ms), state ttl (ms).
_UPDATE_LUA = """
local viewers, state, active = KEYS[1], KEYS[2], KEYS[3]
local op, field = ARGV[1], ARGV[2]
local now, stale_before = tonumber(ARGV[4]), tonumber(ARGV[5])
-- Where to announce: the ticket's queue and assignee as the entries (also the ones removed
-- now) recorded them, else as remembered from the last write.
local queue_id, assignee_id, located = '', '', false
local function decode(raw_entry)
  local ok, entry = pcall(cjson.decode, raw_entry)
  if not ok or type(entry) ~= 'table' then return {} end
  located = true
  queue_id = type(entry.queue_id) == 'number' and string.format('%d', entry.queue_id) or ''
  assignee_id = type(entry.assignee_id) == 'number' and string.format('%d', entry.assignee_id) or ''
  return entry
end
if op == 'set' then
  redis.call('HSET', viewers, field, ARGV[3])
elseif op == 'del' then
  local old = redis.call('HGET', viewers, field)
  if old then decode(old) end
  redis.call('HDEL', viewers, field)
end
local raw = redis.call('HGETALL', viewers)
local by_user, users = {}, {}
for i = 1, #raw, 2 do
  local entry = decode(raw[i + 1])
  local uid, name, seen = entry.user_id, entry.name, tonumber(entry.seen)
  if type(uid) ~= 'number' or uid ~= math.floor(uid) or type(name) ~= 'string'
     or seen == nil or seen < stale_before then
    redis.call('HDEL', viewers, raw[i])
  else
    local typing = (tonumber(entry.typing_until) or 0) > now
    local user = by_user[uid]
    if user == nil then
      user = {uid = uid, name = name, typing = typing}
      by_user[uid] = user
      users[#users + 1] = user
    elseif typing then
      user.typing = true
    end
  end
end
table.sort(users, function(a, b)
  if a.name ~= b.name then return a.name < b.name end
  return a.uid < b.uid
end)
local parts, flat = {}, {}
for _, user in ipairs(users) do
  local typing = user.typing and 1 or 0
  parts[#parts + 1] = string.format('%d', user.uid) .. '\\31' .. user.name .. '\\31' .. typing
  flat[#flat + 1] = string.format('%d', user.uid)
  flat[#flat + 1] = user.name
  flat[#flat + 1] = typing
end
local snapshot = table.concat(parts, '\\30')
local version = tonumber(redis.call('HGET', state, 'version') or '0') or 0
local changed = 0
if snapshot ~= (redis.call('HGET', state, 'snapshot') or '') then
  changed = 1
  version = math.max(version + 1, math.floor(now * 1000))
  redis.call('HSET', state, 'snapshot', snapshot, 'version', string.format('%d', version))
end
if located then
  redis.call('HSET', state, 'queue_id', queue_id, 'assignee_id', assignee_id)
else
  queue_id = redis.call('HGET', state, 'queue_id') or ''
  assignee_id = redis.call('HGET', state, 'assignee_id') or ''
end
redis.call('PEXPIRE', state, ARGV[8])
if #users == 0 then
  redis.call('DEL', viewers)
  redis.call('ZREM', active, ARGV[6])
else
  redis.call('PEXPIRE', viewers, ARGV[7])
  redis.call('ZADD', active, now, ARGV[6])
end
return {changed, string.format('%d', version), queue_id, assignee_id, flat}
"""

_script: Script | None = None


def _update_script() -> Script:
    global _script
    if _script is None:
        _script = redis_client().register_script(_UPDATE_LUA)
    return _script


@dataclass(frozen=True, slots=True)
class ViewerEntry:
    """What one desk connection records on a ticket it watches."""

    user_id: int
    name: str
    queue_id: int | None
    assignee_id: int | None
    typing_until: float = 0.0

    def encode(self, *, seen: float) -> str:
        return json.dumps(
            {
                "user_id": self.user_id,
                "name": self.name,
                "seen": seen,
                "typing_until": self.typing_until,
                "queue_id": self.queue_id,
                "assignee_id": self.assignee_id,
            }
        )


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A ticket's viewers after a write; ``changed``: they differ from the last announcement."""

    ticket_id: int
    changed: bool
    version: int
    queue_id: int | None
    assignee_id: int | None
    viewers: tuple[Viewer, ...]

    def message(self) -> dict:
        """The channel-layer message announcing it (handled by ``DeskConsumer.desk_collision``)."""
        return {
            "type": MESSAGE_TYPE,
            "ticket_id": self.ticket_id,
            "version": self.version,
            "viewers": [{"user_id": v.user_id, "name": v.name, "typing": v.typing} for v in self.viewers],
        }

    def audience(self) -> list[str]:
        """Who hears it: the ticket's viewers, its queue (list rows), its assignee and the leads."""
        names = [groups.ticket(self.ticket_id), groups.LEADS]
        if self.queue_id is not None:
            names.append(groups.queue(self.queue_id))
        if self.assignee_id is not None:
            names.append(groups.agent(self.assignee_id))
        return names


def _args(op: str, ticket_id: int, field: str, value: str, now: float) -> tuple[list[str], list]:
    stale = collision_stale_seconds()
    keys = [viewers_key(ticket_id), state_key(ticket_id), ACTIVE_KEY]
    argv = [op, field, value, repr(now), repr(now - stale), str(ticket_id),
            str(int(stale * 3 * 1000)), str(_STATE_TTL_SECONDS * 1000)]  # fmt: skip
    return keys, argv


def _snapshot(ticket_id: int, reply: list) -> Snapshot:
    changed, version, queue_id, assignee_id, flat = reply
    viewers = tuple(
        Viewer(user_id=int(flat[i]), name=flat[i + 1].decode(), typing=bool(int(flat[i + 2])))
        for i in range(0, len(flat), 3)
    )
    return Snapshot(
        ticket_id=ticket_id,
        changed=bool(int(changed)),
        version=int(version),
        queue_id=int(queue_id) if queue_id else None,
        assignee_id=int(assignee_id) if assignee_id else None,
        viewers=viewers,
    )


def _run(op: str, *, ticket_id: int, field: str = "", value: str = "", now: float | None) -> Snapshot:
    keys, argv = _args(op, ticket_id, field, value, time.time() if now is None else now)
    return _snapshot(ticket_id, _update_script()(keys=keys, args=argv))


def collision_set(*, ticket_id: int, connection_id: str, entry: ViewerEntry, now: float | None = None) -> Snapshot:
    """Record (or refresh: heartbeat, typing) that ``connection_id`` has the ticket open."""
    at = time.time() if now is None else now
    return _run("set", ticket_id=ticket_id, field=connection_id, value=entry.encode(seen=at), now=at)


def collision_leave(*, ticket_id: int, connection_id: str, now: float | None = None) -> Snapshot:
    """``connection_id`` closed the ticket (unwatch, page left, socket closed)."""
    return _run("del", ticket_id=ticket_id, field=connection_id, now=now)


def collision_refresh(*, ticket_id: int, now: float | None = None) -> Snapshot:
    """Recompute the ticket's viewers: typing that ran out, ghosts that went stale."""
    return _run("none", ticket_id=ticket_id, now=now)


def collision_sweep(*, now: float | None = None, interval_seconds: float | None = None) -> list[Snapshot]:
    """Recompute every ticket with viewers; returns the snapshots that changed.

    With ``interval_seconds``, runs at most once per interval across all servers (a Redis
    lock that expires by itself) and returns ``[]`` when another server's turn it was.
    """
    at = time.time() if now is None else now
    client = redis_client()
    if interval_seconds is not None:
        if not client.set(SWEEP_LOCK_KEY, "1", nx=True, px=max(1, int(interval_seconds * 1000))):
            return []
    ticket_ids = [int(member) for member in client.zrange(ACTIVE_KEY, 0, -1)]
    if not ticket_ids:
        return []
    script = _update_script()
    pipe = client.pipeline(transaction=False)
    for ticket_id in ticket_ids:
        keys, argv = _args("none", ticket_id, "", "", at)
        script(keys=keys, args=argv, client=pipe)
    replies = pipe.execute()
    snapshots = [_snapshot(ticket_id, reply) for ticket_id, reply in zip(ticket_ids, replies, strict=True)]
    return [snapshot for snapshot in snapshots if snapshot.changed]
