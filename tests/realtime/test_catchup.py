"""Catch-up after a (re)connect: the resume frame, its scope, overlap and reset.

The scope of a catch-up must be exactly what the live push would have delivered to the
connection, so these tests compare it with ``publish.route_events`` itself.
"""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from inbox.models import Ticket, TicketEvent
from inbox.realtime import consumers, groups
from inbox.realtime.publish import route_events
from inbox.realtime.routing import websocket_urlpatterns
from inbox.selectors.realtime import events_visible_after, groups_for_user, last_event_id
from inbox.services.assignment import agent_set_capacity, queue_move_backlog, ticket_reassign
from inbox.services.ingest import ingest_batch
from inbox.services.tickets import ticket_change_status
from tests.factories import AgentProfileFactory, QueueFactory, SourceFactory, inbound

app = URLRouter(websocket_urlpatterns)


def communicator_for(user) -> WebsocketCommunicator:
    comm = WebsocketCommunicator(app, "/ws/desk/")
    comm.scope["user"] = user
    return comm


async def receive_until_done(comm: WebsocketCommunicator) -> list[dict]:
    """Frames up to and including the ``resumed`` or ``reset`` that ends a catch-up."""
    frames = []
    while True:
        frame = await comm.receive_json_from(timeout=5)
        frames.append(frame)
        if frame["type"] in ("resumed", "reset"):
            return frames


def caught_up_ids(frames: list[dict]) -> list[int]:
    ids = []
    for frame in frames:
        if frame["type"] == "events":
            assert frame["catchup"] is True
            ids.extend(event["id"] for event in frame["events"])
    return ids


def pushed_ids(events, group_names) -> list[int]:
    """The ids of ``events`` that the live push routes to any of ``group_names``."""
    routed = route_events(events)
    return sorted({data["id"] for name in group_names for data in routed.get(name, [])})


class Floor:
    """Two pull queues (nothing is assigned behind the test's back), their people and sources."""

    def __init__(self) -> None:
        self.care = QueueFactory(name="Care", slug="care", assignment_mode="pull")
        self.baggage = QueueFactory(name="Baggage", slug="baggage", assignment_mode="pull")
        self.anna = AgentProfileFactory(user__username="anna", user__first_name="Anna").user
        self.bob = AgentProfileFactory(user__username="bob", user__first_name="Bob").user
        self.lea = AgentProfileFactory(user__username="lea", user__first_name="Lea", role="lead").user
        self.care.members.add(self.anna)
        self.baggage.members.add(self.bob)
        self.care_source = SourceFactory(name="care-src", default_queue=self.care)
        self.baggage_source = SourceFactory(name="bag-src", default_queue=self.baggage)

    def ingest(self, queue: str, external_id: str, author: str) -> Ticket:
        source = self.care_source if queue == "care" else self.baggage_source
        ingest_batch(source=source, messages=[inbound(external_id, author=author)])
        return Ticket.objects.get(messages__external_id=external_id)


@pytest.fixture
def floor(db, redis_client) -> Floor:
    return Floor()


# --- The selector -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_catch_up_scope_is_exactly_what_the_push_routes_to_each_user(floor):
    care_ticket = floor.ingest("care", "c1", "carla")
    bag_ticket = floor.ingest("baggage", "b1", "bert")
    other_bag = floor.ingest("baggage", "b2", "berta")
    ticket_reassign(ticket=bag_ticket, assignee=floor.anna, actor=floor.lea)
    ticket_change_status(ticket=care_ticket, status="pending", actor=floor.anna)
    ticket_change_status(ticket=other_bag, status="pending", actor=floor.bob)
    agent_set_capacity(agent=floor.bob.agent_profile, capacity=7, actor=floor.lea)
    events = list(TicketEvent.objects.order_by("id"))
    types = {event.type for event in events}
    assert {"ticket.created", "message.created", "ticket.assigned", "ticket.status_changed",
            "agent.capacity_changed"} <= types  # fmt: skip

    for user in (floor.anna, floor.bob, floor.lea):
        got = [e.id for e in events_visible_after(user=user, after_id=0, limit=10_000)]
        assert got == pushed_ids(events, groups_for_user(user)), user.username

    # Anna's view, spelled out: her queue's events and the baggage ticket she was given.
    anna = events_visible_after(user=floor.anna, after_id=0, limit=10_000)
    assert {(e.ticket_id, e.type) for e in anna} == {
        (care_ticket.pk, "ticket.created"),
        (care_ticket.pk, "message.created"),
        (care_ticket.pk, "ticket.status_changed"),
        (bag_ticket.pk, "ticket.assigned"),
    }
    # The lead gets everything, the leads-only capacity event included.
    assert [e.id for e in events_visible_after(user=floor.lea, after_id=0, limit=10_000)] == [
        e.id for e in events
    ]


@pytest.mark.django_db
def test_watched_tickets_add_the_ticket_group_like_the_push(floor):
    # A baggage ticket moves to care: its baggage-era events reached only its viewers.
    bag_ticket = floor.ingest("baggage", "b1", "bert")
    queue_move_backlog(source_queue=floor.baggage, target_queue=floor.care, actor=floor.lea)
    events = list(TicketEvent.objects.order_by("id"))

    watching = events_visible_after(user=floor.anna, after_id=0, limit=100, watched_ticket_ids=[bag_ticket.pk])
    assert [e.id for e in watching] == pushed_ids(
        events, [*groups_for_user(floor.anna), groups.ticket(bag_ticket.pk)]
    )
    assert [e.type for e in watching] == ["ticket.created", "message.created", "ticket.queue_changed"]
    not_watching = events_visible_after(user=floor.anna, after_id=0, limit=100)
    assert [e.type for e in not_watching] == ["ticket.queue_changed"]


@pytest.mark.django_db
def test_selector_starts_after_the_id_and_stops_at_the_limit(floor):
    floor.ingest("care", "c1", "carla")
    floor.ingest("care", "c2", "chris")
    ids = list(TicketEvent.objects.order_by("id").values_list("id", flat=True))
    assert len(ids) == 4

    assert [e.id for e in events_visible_after(user=floor.anna, after_id=ids[0], limit=2)] == ids[1:3]
    assert events_visible_after(user=floor.anna, after_id=ids[-1], limit=10) == []
    assert events_visible_after(user=floor.anna, after_id=0, limit=0) == []


@pytest.mark.django_db
def test_selector_rereads_queue_membership(floor):
    floor.ingest("care", "c1", "carla")
    floor.ingest("baggage", "b1", "bert")
    care_ids = list(TicketEvent.objects.filter(queue=floor.care).values_list("id", flat=True))
    baggage_ids = list(TicketEvent.objects.filter(queue=floor.baggage).values_list("id", flat=True))
    assert [e.id for e in events_visible_after(user=floor.anna, after_id=0, limit=100)] == care_ids

    # The same user object (as a long-lived connection holds it) after a lead moved her.
    floor.care.members.remove(floor.anna)
    floor.baggage.members.add(floor.anna)
    assert [e.id for e in events_visible_after(user=floor.anna, after_id=0, limit=100)] == baggage_ids


# --- Through the socket -------------------------------------------------------------------------


socket_test = pytest.mark.django_db(transaction=True)


def visible_ids_after(user, after_id: int) -> list[int]:
    return [e.id for e in events_visible_after(user=user, after_id=after_id, limit=10_000)]


@socket_test
def test_resume_sends_exactly_the_missed_events_of_an_agent_in_order(floor, monkeypatch):
    monkeypatch.setattr(consumers, "OVERLAP", 0)
    floor.ingest("care", "c1", "carla")
    seen_up_to = last_event_id()
    care_ticket = floor.ingest("care", "c2", "chris")
    floor.ingest("baggage", "b1", "bert")  # another queue: not Anna's business
    ticket_change_status(ticket=care_ticket, status="pending", actor=floor.bob)

    async def scenario():
        comm = communicator_for(floor.anna)
        assert (await comm.connect())[0]
        head = await database_sync_to_async(last_event_id)()  # connecting wrote a presence event
        await comm.send_json_to({"type": "resume", "last_event_id": seen_up_to})
        frames = await receive_until_done(comm)
        assert await comm.receive_nothing(timeout=0.3)
        await comm.disconnect(timeout=10)
        return head, frames

    head, frames = async_to_sync(scenario)()
    missed = list(
        TicketEvent.objects.filter(id__gt=seen_up_to, queue=floor.care).order_by("id").values_list("id", "type")
    )
    assert [t for _, t in missed] == ["ticket.created", "message.created", "ticket.status_changed"]
    assert caught_up_ids(frames) == [i for i, _ in missed]
    assert frames[-1] == {"type": "resumed", "last_event_id": head}
    first = frames[0]["events"][0]
    assert set(first) == {"id", "type", "ticket_id", "queue_id", "actor_id", "payload", "created_at"}
    assert (first["ticket_id"], first["queue_id"]) == (care_ticket.pk, floor.care.pk)


@socket_test
def test_resume_of_a_lead_sends_every_event(floor, monkeypatch):
    monkeypatch.setattr(consumers, "OVERLAP", 0)
    floor.ingest("care", "c1", "carla")
    floor.ingest("baggage", "b1", "bert")

    def every_event() -> list[tuple[int, str]]:
        return list(TicketEvent.objects.order_by("id").values_list("id", "type"))

    async def scenario():
        comm = communicator_for(floor.lea)
        assert (await comm.connect())[0]
        expected = await database_sync_to_async(every_event)()
        await comm.send_json_to({"type": "resume", "last_event_id": 0})
        frames = await receive_until_done(comm)
        await comm.disconnect(timeout=10)
        return expected, frames

    expected, frames = async_to_sync(scenario)()
    # Everything, including the lead's own presence.changed from connecting.
    assert [t for _, t in expected] == [
        "ticket.created", "message.created", "ticket.created", "message.created", "presence.changed",
    ]  # fmt: skip
    assert caught_up_ids(frames) == [i for i, _ in expected]


@socket_test
def test_resume_overlaps_the_last_ids_in_order_without_duplicates(floor):
    for n in range(30):
        floor.ingest("care", f"c{n}", f"cust{n}")  # 60 events
    ids = list(TicketEvent.objects.order_by("id").values_list("id", flat=True))
    seen_up_to = ids[54]  # the client saw up to here; 5 came later

    async def scenario():
        comm = communicator_for(floor.anna)
        assert (await comm.connect())[0]
        await comm.send_json_to({"type": "resume", "last_event_id": seen_up_to})
        frames = await receive_until_done(comm)
        await comm.disconnect(timeout=10)
        return frames

    got = caught_up_ids(async_to_sync(scenario)())
    # OVERLAP ids before the client's last one are sent again (commits come out of id order);
    # the client drops the ones it has by id.
    assert got == [i for i in ids if i > seen_up_to - consumers.OVERLAP]
    assert got == sorted(set(got))
    assert got[-5:] == ids[-5:]


@socket_test
def test_resume_comes_in_frames(floor, monkeypatch):
    monkeypatch.setattr(consumers, "FRAME_SIZE", 2)
    monkeypatch.setattr(consumers, "OVERLAP", 0)
    floor.ingest("care", "c1", "carla")
    floor.ingest("care", "c2", "chris")
    floor.ingest("care", "c3", "chloe")

    async def scenario():
        comm = communicator_for(floor.anna)
        assert (await comm.connect())[0]
        await comm.send_json_to({"type": "resume", "last_event_id": 0})
        frames = await receive_until_done(comm)
        await comm.disconnect(timeout=10)
        return frames

    frames = async_to_sync(scenario)()
    assert [(f["type"], len(f.get("events", []))) for f in frames] == [
        ("events", 2), ("events", 2), ("events", 2), ("resumed", 0),
    ]  # fmt: skip


@socket_test
def test_too_far_behind_gets_a_reset(floor, monkeypatch):
    monkeypatch.setattr(consumers, "CATCHUP_LIMIT", 3)
    floor.ingest("care", "c1", "carla")
    floor.ingest("care", "c2", "chris")  # 4 events for Anna

    async def scenario():
        comm = communicator_for(floor.anna)
        assert (await comm.connect())[0]
        head = await database_sync_to_async(last_event_id)()
        await comm.send_json_to({"type": "resume", "last_event_id": 0})
        frames = await receive_until_done(comm)
        assert await comm.receive_nothing(timeout=0.3)
        await comm.disconnect(timeout=10)
        return head, frames

    head, frames = async_to_sync(scenario)()
    assert frames == [{"type": "reset", "last_event_id": head}]


@socket_test
def test_a_position_ahead_of_the_log_or_beyond_the_scan_limit_gets_a_reset(floor, monkeypatch):
    floor.ingest("care", "c1", "carla")
    floor.ingest("care", "c2", "chris")

    async def scenario(distance: int):
        comm = communicator_for(floor.anna)
        assert (await comm.connect())[0]
        head = await database_sync_to_async(last_event_id)()
        await comm.send_json_to({"type": "resume", "last_event_id": head + distance})
        frames = await receive_until_done(comm)
        await comm.disconnect(timeout=10)
        return head, frames

    # A page rendered against another database (a restored backup, a dev reset).
    head, frames = async_to_sync(scenario)(1000)
    assert frames == [{"type": "reset", "last_event_id": head}]
    monkeypatch.setattr(consumers, "OVERLAP", 0)
    monkeypatch.setattr(consumers, "MAX_SCAN", 2)
    head, frames = async_to_sync(scenario)(-3)
    assert frames == [{"type": "reset", "last_event_id": head}]
    monkeypatch.setattr(consumers, "MAX_SCAN", 3)
    head, frames = async_to_sync(scenario)(-3)
    assert frames == [{"type": "resumed", "last_event_id": head}]  # within the limit: no events for Anna


@socket_test
def test_resume_rereads_membership_of_a_moved_agent(floor, monkeypatch):
    monkeypatch.setattr(consumers, "OVERLAP", 0)
    start = last_event_id()

    async def scenario():
        comm = communicator_for(floor.anna)
        assert (await comm.connect())[0]  # groups: care

        def lead_moves_anna_and_customers_write():
            floor.care.members.remove(floor.anna)
            floor.baggage.members.add(floor.anna)
            floor.ingest("care", "c1", "carla")
            floor.ingest("baggage", "b1", "bert")

        await database_sync_to_async(lead_moves_anna_and_customers_write)()
        # The care events came live (the connection joined care when it opened) ...
        live = await comm.receive_json_from(timeout=5)
        await comm.send_json_to({"type": "resume", "last_event_id": start})
        frames = await receive_until_done(comm)
        await comm.disconnect(timeout=10)
        return live, frames

    live, frames = async_to_sync(scenario)()
    assert [e["queue_id"] for e in live["events"]] == [floor.care.pk, floor.care.pk]
    # ... but the catch-up follows who she is now: a baggage agent.
    baggage = list(TicketEvent.objects.filter(queue=floor.baggage).order_by("id").values_list("id", flat=True))
    assert caught_up_ids(frames) == baggage


@socket_test
def test_an_event_published_while_disconnected_arrives_by_resume(floor, monkeypatch):
    """The no-missed-update guarantee: drop, miss a push, reconnect, catch up."""
    monkeypatch.setattr(consumers, "OVERLAP", 0)
    floor.ingest("care", "c1", "carla")

    async def scenario():
        comm = communicator_for(floor.anna)
        assert (await comm.connect())[0]
        await comm.send_json_to({"type": "resume", "last_event_id": await database_sync_to_async(last_event_id)()})
        (resumed,) = await receive_until_done(comm)
        await comm.disconnect(timeout=10)

        # While the tab is offline, a customer writes (pushed to nobody: no one listens).
        await database_sync_to_async(floor.ingest)("care", "c2", "chris")

        again = communicator_for(floor.anna)
        assert (await again.connect())[0]
        head = await database_sync_to_async(last_event_id)()
        await again.send_json_to({"type": "resume", "last_event_id": resumed["last_event_id"]})
        frames = await receive_until_done(again)
        await again.disconnect(timeout=10)
        return resumed, head, frames

    resumed, head, frames = async_to_sync(scenario)()
    ticket = Ticket.objects.get(messages__external_id="c2")
    events = [e for f in frames if f["type"] == "events" for e in f["events"]]
    assert [(e["type"], e["ticket_id"]) for e in events] == [
        ("ticket.created", ticket.pk),
        ("message.created", ticket.pk),
    ]
    assert all(e["id"] > resumed["last_event_id"] for e in events)
    assert frames[-1] == {"type": "resumed", "last_event_id": head}


@socket_test
def test_resume_includes_watched_tickets_when_watch_comes_first(floor, monkeypatch):
    monkeypatch.setattr(consumers, "OVERLAP", 0)
    bag_ticket = floor.ingest("baggage", "b1", "bert")
    queue_move_backlog(source_queue=floor.baggage, target_queue=floor.care, actor=floor.lea)

    async def scenario():
        comm = communicator_for(floor.anna)
        assert (await comm.connect())[0]
        # collision.js watches as soon as the socket opens, before socket.js resumes.
        await comm.send_json_to({"type": "watch", "ticket_id": bag_ticket.pk})
        collision = await comm.receive_json_from(timeout=5)
        await comm.send_json_to({"type": "resume", "last_event_id": 0})
        frames = await receive_until_done(comm)
        await comm.disconnect(timeout=10)
        return collision, frames

    collision, frames = async_to_sync(scenario)()
    assert collision["type"] == "collision"
    got = caught_up_ids(frames)
    assert got == list(TicketEvent.objects.filter(ticket=bag_ticket).order_by("id").values_list("id", flat=True))
    assert len(got) == 3


@socket_test
@pytest.mark.parametrize("position", [-1, "12", None, True, 1.5])
def test_resume_with_a_bad_position_is_an_error(floor, position):
    async def scenario():
        comm = communicator_for(floor.anna)
        assert (await comm.connect())[0]
        await comm.send_json_to({"type": "resume", "last_event_id": position})
        frame = await comm.receive_json_from(timeout=5)
        await comm.disconnect(timeout=10)
        return frame

    assert async_to_sync(scenario)() == {
        "type": "error",
        "code": "bad_request",
        "message": "last_event_id must be a non-negative integer",
    }
