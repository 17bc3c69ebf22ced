"""Who is viewing and who is typing: the socket protocol, the Redis state and ``viewers_for``."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from inbox.models import Ticket
from inbox.realtime import collision, groups
from inbox.realtime.collision import (
    ViewerEntry,
    collision_leave,
    collision_refresh,
    collision_set,
    collision_sweep,
)
from inbox.realtime.routing import websocket_urlpatterns
from inbox.selectors import collision as collision_selectors
from inbox.selectors.collision import Viewer, viewers_for, viewers_key
from inbox.services.ingest import ingest_batch
from inbox.services.tickets import ticket_change_status
from tests.factories import AgentProfileFactory, QueueFactory, SourceFactory, inbound

app = URLRouter(websocket_urlpatterns)
T0 = 1_800_000_000.0  # an injected clock for the Redis-level tests


def communicator_for(user) -> WebsocketCommunicator:
    comm = WebsocketCommunicator(app, "/ws/desk/")
    comm.scope["user"] = user
    return comm


def group_size(redis_client, name: str) -> int:
    return redis_client.zcard(get_channel_layer()._group_key(name))


def viewers_of(frame: dict) -> list[tuple[str, bool]]:
    assert frame["type"] == "collision"
    return [(v["name"], v["typing"]) for v in frame["viewers"]]


class Team:
    """Care (pull queue) with Anna and Carl, Baggage with Bob, a lead; one care and one baggage ticket."""

    def __init__(self) -> None:
        self.care = QueueFactory(name="Care", slug="care", assignment_mode="pull")
        self.baggage = QueueFactory(name="Baggage", slug="baggage", assignment_mode="pull")
        self.anna = AgentProfileFactory(user__username="anna", user__first_name="Anna", user__last_name="Smit").user
        self.carl = AgentProfileFactory(user__username="carl", user__first_name="Carl").user
        self.bob = AgentProfileFactory(user__username="bob", user__first_name="Bob").user
        self.lea = AgentProfileFactory(user__username="lea", user__first_name="Lea", role="lead").user
        self.care.members.add(self.anna, self.carl)
        self.baggage.members.add(self.bob)
        ingest_batch(source=SourceFactory(name="care-src", default_queue=self.care), messages=[inbound("c1")])
        ingest_batch(source=SourceFactory(name="bag-src", default_queue=self.baggage), messages=[inbound("b1")])
        self.care_ticket = Ticket.objects.get(queue=self.care)
        self.bag_ticket = Ticket.objects.get(queue=self.baggage)


@pytest.fixture
def team(db, redis_client) -> Team:
    return Team()


socket_test = pytest.mark.django_db(transaction=True)


# --- Watching -----------------------------------------------------------------------------------


@socket_test
def test_watch_of_an_invisible_ticket_is_refused_and_joins_nothing(team, redis_client):
    async def scenario():
        comm = communicator_for(team.anna)
        assert (await comm.connect())[0]
        await comm.send_json_to({"type": "watch", "ticket_id": team.bag_ticket.pk})
        refused = await comm.receive_json_from(timeout=5)
        await comm.send_json_to({"type": "watch", "ticket_id": 987654})
        unknown = await comm.receive_json_from(timeout=5)
        size = group_size(redis_client, groups.ticket(team.bag_ticket.pk))
        # Something happens on that ticket: Anna's connection must not hear it.
        await database_sync_to_async(ticket_change_status)(ticket=team.bag_ticket, status="pending", actor=team.lea)
        assert await comm.receive_nothing(timeout=0.5)
        await comm.disconnect(timeout=10)
        return refused, unknown, size

    refused, unknown, size = async_to_sync(scenario)()
    assert refused == {"type": "error", "code": "forbidden", "message": "you may not see this ticket",
                       "ticket_id": team.bag_ticket.pk}  # fmt: skip
    # An id that does not exist looks the same (existence is not disclosed).
    assert unknown == {"type": "error", "code": "forbidden", "message": "you may not see this ticket",
                       "ticket_id": 987654}  # fmt: skip
    assert size == 0
    assert viewers_for([team.bag_ticket.pk]) == {team.bag_ticket.pk: []}


@socket_test
def test_watch_is_announced_to_the_queue_the_leads_and_the_viewer(team, redis_client):
    ticket_id = team.care_ticket.pk

    async def scenario():
        carl, bob, anna, lea = (communicator_for(u) for u in (team.carl, team.bob, team.anna, team.lea))
        # The lead last: agents coming online are presence events for the leads.
        for comm in (carl, bob, anna, lea):
            assert (await comm.connect())[0]
        await anna.send_json_to({"type": "watch", "ticket_id": ticket_id})
        frames = {
            "anna": await anna.receive_json_from(timeout=5),
            "carl": await carl.receive_json_from(timeout=5),
            "lea": await lea.receive_json_from(timeout=5),
        }
        assert await bob.receive_nothing(timeout=0.5)  # another queue
        size = group_size(redis_client, groups.ticket(ticket_id))
        for comm in (carl, bob, lea, anna):
            await comm.disconnect(timeout=10)
        return frames, size

    frames, size = async_to_sync(scenario)()
    assert size == 1
    for name, frame in frames.items():
        assert frame["ticket_id"] == ticket_id, name
        assert frame["viewers"] == [{"user_id": team.anna.pk, "name": "Anna Smit", "typing": False}], name
    assert frames["anna"]["version"] == frames["carl"]["version"] == frames["lea"]["version"]


@socket_test
def test_typing_true_and_false_are_announced_with_growing_versions(team):
    ticket_id = team.care_ticket.pk

    async def scenario():
        carl, anna = communicator_for(team.carl), communicator_for(team.anna)
        assert (await carl.connect())[0] and (await anna.connect())[0]
        await anna.send_json_to({"type": "watch", "ticket_id": ticket_id})
        seen = [await carl.receive_json_from(timeout=5)]
        await anna.send_json_to({"type": "typing", "ticket_id": ticket_id, "typing": True})
        seen.append(await carl.receive_json_from(timeout=5))
        # Renewing while still typing changes nothing anyone sees: no announcement.
        await anna.send_json_to({"type": "typing", "ticket_id": ticket_id, "typing": True})
        assert await carl.receive_nothing(timeout=0.3)
        await anna.send_json_to({"type": "typing", "ticket_id": ticket_id, "typing": False})
        seen.append(await carl.receive_json_from(timeout=5))
        await carl.disconnect(timeout=10)
        await anna.disconnect(timeout=10)
        return seen

    seen = async_to_sync(scenario)()
    assert [viewers_of(f) for f in seen] == [
        [("Anna Smit", False)],
        [("Anna Smit", True)],
        [("Anna Smit", False)],
    ]
    versions = [f["version"] for f in seen]
    assert versions == sorted(set(versions))


@socket_test
def test_typing_runs_out_by_itself(team, settings):
    settings.WEBCARE = {**settings.WEBCARE, "COLLISION_TYPING_SECONDS": 0.3}
    ticket_id = team.care_ticket.pk

    async def scenario():
        carl, anna = communicator_for(team.carl), communicator_for(team.anna)
        assert (await carl.connect())[0] and (await anna.connect())[0]
        await anna.send_json_to({"type": "watch", "ticket_id": ticket_id})
        await carl.receive_json_from(timeout=5)
        await anna.send_json_to({"type": "typing", "ticket_id": ticket_id, "typing": True})
        typing = await carl.receive_json_from(timeout=5)
        stopped = await carl.receive_json_from(timeout=5)  # nobody sent "false"
        await carl.disconnect(timeout=10)
        await anna.disconnect(timeout=10)
        return typing, stopped

    typing, stopped = async_to_sync(scenario)()
    assert viewers_of(typing) == [("Anna Smit", True)]
    assert viewers_of(stopped) == [("Anna Smit", False)]
    assert stopped["version"] > typing["version"]
    assert viewers_for([ticket_id]) == {ticket_id: []}  # Anna's tab is closed by now


@socket_test
def test_unwatch_and_disconnect_remove_the_viewer_and_announce_it(team, redis_client):
    ticket_id = team.care_ticket.pk

    async def scenario():
        carl, anna = communicator_for(team.carl), communicator_for(team.anna)
        assert (await carl.connect())[0] and (await anna.connect())[0]
        await anna.send_json_to({"type": "watch", "ticket_id": ticket_id})
        await carl.receive_json_from(timeout=5)
        await anna.send_json_to({"type": "unwatch", "ticket_id": ticket_id})
        after_unwatch = await carl.receive_json_from(timeout=5)
        size_after_unwatch = group_size(redis_client, groups.ticket(ticket_id))
        await anna.send_json_to({"type": "watch", "ticket_id": ticket_id})
        await carl.receive_json_from(timeout=5)
        viewing = await database_sync_to_async(viewers_for)([ticket_id])
        await anna.disconnect(timeout=10)
        after_disconnect = await carl.receive_json_from(timeout=5)
        await carl.disconnect(timeout=10)
        return after_unwatch, size_after_unwatch, viewing, after_disconnect

    after_unwatch, size_after_unwatch, viewing, after_disconnect = async_to_sync(scenario)()
    assert viewers_of(after_unwatch) == []
    assert size_after_unwatch == 0
    assert viewing == {ticket_id: [Viewer(user_id=team.anna.pk, name="Anna Smit", typing=False)]}
    assert viewers_of(after_disconnect) == []
    assert viewers_for([ticket_id]) == {ticket_id: []}
    assert redis_client.exists(viewers_key(ticket_id)) == 0
    assert redis_client.zrange(collision.ACTIVE_KEY, 0, -1) == []


@socket_test
def test_two_tabs_of_one_agent_count_once(team):
    ticket_id = team.care_ticket.pk

    async def scenario():
        carl = communicator_for(team.carl)
        tab1, tab2 = communicator_for(team.anna), communicator_for(team.anna)
        for comm in (carl, tab1, tab2):
            assert (await comm.connect())[0]
        await tab1.send_json_to({"type": "watch", "ticket_id": ticket_id})
        first = await carl.receive_json_from(timeout=5)
        await tab2.send_json_to({"type": "watch", "ticket_id": ticket_id})
        assert await carl.receive_nothing(timeout=0.3)  # still just Anna
        # tab2 got the current viewers as its answer (nothing changed, so nothing was announced).
        answer = await tab2.receive_json_from(timeout=5)
        await tab2.send_json_to({"type": "typing", "ticket_id": ticket_id, "typing": True})
        typing = await carl.receive_json_from(timeout=5)
        await tab2.disconnect(timeout=10)  # the typing tab closes; Anna still views in tab1
        left = await carl.receive_json_from(timeout=5)
        await tab1.disconnect(timeout=10)
        gone = await carl.receive_json_from(timeout=5)
        await carl.disconnect(timeout=10)
        return first, answer, typing, left, gone

    first, answer, typing, left, gone = async_to_sync(scenario)()
    assert viewers_of(first) == viewers_of(answer) == [("Anna Smit", False)]
    assert answer["version"] == first["version"]
    assert viewers_of(typing) == [("Anna Smit", True)]
    assert viewers_of(left) == [("Anna Smit", False)]
    assert viewers_of(gone) == []


@socket_test
def test_a_viewer_sees_the_others_as_they_come(team):
    ticket_id = team.care_ticket.pk

    async def scenario():
        anna, carl = communicator_for(team.anna), communicator_for(team.carl)
        assert (await anna.connect())[0] and (await carl.connect())[0]
        await anna.send_json_to({"type": "watch", "ticket_id": ticket_id})
        await anna.receive_json_from(timeout=5)
        await carl.receive_json_from(timeout=5)
        await carl.send_json_to({"type": "watch", "ticket_id": ticket_id})
        # Anna is in the ticket's group and the queue's: she still gets the announcement once.
        to_anna = await anna.receive_json_from(timeout=5)
        assert await anna.receive_nothing(timeout=0.3)
        await anna.disconnect(timeout=10)
        await carl.disconnect(timeout=10)
        return to_anna

    to_anna = async_to_sync(scenario)()
    assert viewers_of(to_anna) == [("Anna Smit", False), ("Carl", False)]


@socket_test
@pytest.mark.parametrize(
    ("frame", "code", "message"),
    [
        ({"type": "typing", "ticket_id": "CARE", "typing": True}, "not_watching",
         "watch the ticket before typing on it"),
        ({"type": "typing", "ticket_id": "CARE", "typing": "yes"}, "bad_request", "typing must be true or false"),
        ({"type": "watch", "ticket_id": "7"}, "bad_request", "ticket_id must be a positive integer"),
        ({"type": "watch", "ticket_id": True}, "bad_request", "ticket_id must be a positive integer"),
        ({"type": "watch"}, "bad_request", "ticket_id must be a positive integer"),
        ({"type": "unwatch", "ticket_id": -3}, "bad_request", "ticket_id must be a positive integer"),
    ],
)  # fmt: skip
def test_bad_collision_frames_are_refused_and_change_nothing(team, frame, code, message):
    ticket_id = team.care_ticket.pk
    frame = {k: (ticket_id if v == "CARE" else v) for k, v in frame.items()}

    async def scenario():
        comm = communicator_for(team.anna)
        assert (await comm.connect())[0]
        await comm.send_json_to(frame)
        reply = await comm.receive_json_from(timeout=5)
        await comm.disconnect(timeout=10)
        return reply

    reply = async_to_sync(scenario)()
    assert reply["type"] == "error"
    assert (reply["code"], reply["message"]) == (code, message)
    assert viewers_for([ticket_id]) == {ticket_id: []}


@socket_test
def test_a_connection_watches_a_bounded_number_of_tickets(team, monkeypatch):
    from inbox.realtime import consumers

    monkeypatch.setattr(consumers, "MAX_WATCHED", 1)
    ingest_batch(source=team.care_ticket.source, messages=[inbound("c2", author="someone-else")])
    other = Ticket.objects.filter(queue=team.care).exclude(pk=team.care_ticket.pk).get()

    async def scenario():
        comm = communicator_for(team.anna)
        assert (await comm.connect())[0]
        await comm.send_json_to({"type": "watch", "ticket_id": team.care_ticket.pk})
        await comm.receive_json_from(timeout=5)
        await comm.send_json_to({"type": "watch", "ticket_id": other.pk})
        refused = await comm.receive_json_from(timeout=5)
        await comm.disconnect(timeout=10)
        return refused

    assert async_to_sync(scenario)() == {
        "type": "error", "code": "too_many", "message": "a connection watches at most 1 tickets",
        "ticket_id": other.pk,
    }  # fmt: skip


# --- The Redis state, with an injected clock ---------------------------------------------------


def entry(user, *, queue_id=None, assignee_id=None, typing_until=0.0) -> ViewerEntry:
    return ViewerEntry(
        user_id=user.pk, name=user.get_full_name() or user.username,
        queue_id=queue_id, assignee_id=assignee_id, typing_until=typing_until,
    )  # fmt: skip


@pytest.mark.django_db
def test_viewers_for_many_tickets_in_one_round_trip(team, monkeypatch):
    care, bag = team.care_ticket.pk, team.bag_ticket.pk
    now = time.time()
    collision_set(ticket_id=care, connection_id="tab-a", entry=entry(team.anna), now=now)
    collision_set(ticket_id=care, connection_id="tab-c", entry=entry(team.carl, typing_until=now + 60), now=now)
    collision_set(ticket_id=bag, connection_id="tab-b", entry=entry(team.bob), now=now)
    # A ghost: a connection that stopped sending heartbeats long ago.
    collision_set(ticket_id=bag, connection_id="tab-ghost", entry=entry(team.lea), now=now - 3600)

    real = collision_selectors.redis_client()
    calls: list[str] = []

    class CountingClient:
        def pipeline(self, *args, **kwargs):
            calls.append("pipeline")
            pipe = real.pipeline(*args, **kwargs)
            original = pipe.execute

            def execute(*a, **k):
                calls.append("execute")
                return original(*a, **k)

            pipe.execute = execute
            return pipe

    monkeypatch.setattr(collision_selectors, "redis_client", lambda: CountingClient())
    many = [care, bag, 424242, *range(900_000, 900_050)]
    got = viewers_for(many)

    assert calls == ["pipeline", "execute"]
    assert set(got) == set(many)
    assert got[care] == [
        Viewer(user_id=team.anna.pk, name="Anna Smit", typing=False),
        Viewer(user_id=team.carl.pk, name="Carl", typing=True),
    ]
    assert got[bag] == [Viewer(user_id=team.bob.pk, name="Bob", typing=False)]
    assert all(got[tid] == [] for tid in many[2:])
    assert viewers_for([]) == {}


@pytest.mark.django_db
def test_writes_announce_only_changes_and_agree_with_viewers_for(team, redis_client):
    tid = team.care_ticket.pk
    anna = entry(team.anna, queue_id=team.care.pk, assignee_id=team.carl.pk)

    first = collision_set(ticket_id=tid, connection_id="a1", entry=anna, now=T0)
    assert (first.changed, first.viewers) == (True, (Viewer(team.anna.pk, "Anna Smit", False),))
    assert (first.queue_id, first.assignee_id) == (team.care.pk, team.carl.pk)
    assert first.audience() == [groups.ticket(tid), groups.LEADS, groups.queue(team.care.pk),
                                groups.agent(team.carl.pk)]  # fmt: skip
    assert first.message() == {
        "type": "desk.collision", "ticket_id": tid, "version": first.version,
        "viewers": [{"user_id": team.anna.pk, "name": "Anna Smit", "typing": False}],
    }  # fmt: skip
    heartbeat = collision_set(ticket_id=tid, connection_id="a1", entry=anna, now=T0 + 20)
    assert (heartbeat.changed, heartbeat.version) == (False, first.version)

    typing = collision_set(ticket_id=tid, connection_id="a2", entry=replace(anna, typing_until=T0 + 26), now=T0 + 20)
    assert typing.changed and typing.version > first.version
    assert typing.viewers == (Viewer(team.anna.pk, "Anna Smit", True),)
    assert tuple(viewers_for([tid], now=T0 + 20)[tid]) == typing.viewers  # the reader agrees with the writer

    # The keystroke runs out: the recomputation announces it.
    ran_out = collision_refresh(ticket_id=tid, now=T0 + 27)
    assert ran_out.changed and ran_out.viewers == (Viewer(team.anna.pk, "Anna Smit", False),)
    left = collision_leave(ticket_id=tid, connection_id="a2", now=T0 + 28)
    assert not left.changed
    gone = collision_leave(ticket_id=tid, connection_id="a1", now=T0 + 29)
    assert gone.changed and gone.viewers == ()
    assert gone.version > ran_out.version > typing.version
    assert redis_client.exists(viewers_key(tid)) == 0


@pytest.mark.django_db
def test_sweep_announces_ghosts_leaving_and_typing_running_out(team, redis_client, settings):
    settings.WEBCARE = {**settings.WEBCARE, "COLLISION_STALE_SECONDS": 60}
    care, bag = team.care_ticket.pk, team.bag_ticket.pk
    collision_set(ticket_id=care, connection_id="alive", entry=entry(team.anna, queue_id=team.care.pk), now=T0)
    collision_set(ticket_id=care, connection_id="crashed", entry=entry(team.carl, queue_id=team.care.pk), now=T0 - 50)
    collision_set(ticket_id=bag, connection_id="typing", entry=entry(team.bob, queue_id=team.baggage.pk,
                  typing_until=T0 + 6), now=T0)  # fmt: skip

    assert collision_sweep(now=T0 + 1) == []  # nothing changed yet
    changed = collision_sweep(now=T0 + 15)  # Carl's entry is 65 s old, Bob's typing ran out
    assert {(s.ticket_id, s.viewers, s.queue_id) for s in changed} == {
        (care, (Viewer(team.anna.pk, "Anna Smit", False),), team.care.pk),
        (bag, (Viewer(team.bob.pk, "Bob", False),), team.baggage.pk),
    }
    assert set(redis_client.hkeys(viewers_key(care))) == {b"alive"}
    # Later nobody heartbeats any more (the server died): everyone leaves, the index empties.
    changed = collision_sweep(now=T0 + 200)
    assert {(s.ticket_id, s.viewers, s.queue_id) for s in changed} == {
        (care, (), team.care.pk), (bag, (), team.baggage.pk),
    }  # fmt: skip
    assert redis_client.zrange(collision.ACTIVE_KEY, 0, -1) == []


@pytest.mark.django_db
def test_an_expired_viewers_hash_is_still_announced_to_the_queue(team, redis_client):
    # All servers were down longer than the hash's TTL: Redis dropped the viewers, but
    # browsers that lived through it still show them, queue lists included.
    tid = team.care_ticket.pk
    collision_set(ticket_id=tid, connection_id="c", entry=entry(team.anna, queue_id=team.care.pk), now=T0)
    redis_client.delete(viewers_key(tid))
    changed = collision_sweep(now=T0 + 1)
    assert [(s.ticket_id, s.viewers, s.queue_id, s.changed) for s in changed] == [(tid, (), team.care.pk, True)]


@pytest.mark.django_db
def test_sweep_runs_once_per_interval_across_servers(team, redis_client):
    collision_set(ticket_id=team.care_ticket.pk, connection_id="c", entry=entry(team.anna), now=T0)
    assert collision_sweep(now=T0 + 500, interval_seconds=20) != []
    collision_set(ticket_id=team.care_ticket.pk, connection_id="c", entry=entry(team.anna), now=T0 + 500)
    assert collision_sweep(now=T0 + 1000, interval_seconds=20) == []  # another server's turn: skipped
    assert collision_sweep(now=T0 + 1000) != []  # without the interval it always runs


@socket_test
def test_a_watched_tickets_events_arrive_once(team):
    # Anna is in the ticket's group and its queue's: the push reaches her connection twice.
    async def scenario():
        anna = communicator_for(team.anna)
        assert (await anna.connect())[0]
        await anna.send_json_to({"type": "watch", "ticket_id": team.care_ticket.pk})
        await anna.receive_json_from(timeout=5)
        await database_sync_to_async(ticket_change_status)(ticket=team.care_ticket, status="pending", actor=team.lea)
        frame = await anna.receive_json_from(timeout=5)
        quiet = await anna.receive_nothing(timeout=0.5)
        await anna.disconnect(timeout=10)
        return frame, quiet

    frame, quiet = async_to_sync(scenario)()
    assert [(e["type"], e["ticket_id"]) for e in frame["events"]] == [("ticket.status_changed", team.care_ticket.pk)]
    assert frame["catchup"] is False
    assert quiet is True
