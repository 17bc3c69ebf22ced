"""The desk socket's front door and housekeeping: origin, session, frames, heartbeats, permissions
that change while a connection is open."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.test import Client

from inbox.models import Ticket, TicketEvent
from inbox.realtime.routing import websocket_urlpatterns
from inbox.selectors.realtime import last_event_id
from inbox.services.ingest import ingest_batch
from tests.factories import AgentProfileFactory, QueueFactory, SourceFactory, inbound
from webcare.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

app = URLRouter(websocket_urlpatterns)


def communicator_for(user) -> WebsocketCommunicator:
    comm = WebsocketCommunicator(app, "/ws/desk/")
    comm.scope["user"] = user
    return comm


@pytest.fixture
def care(db):
    return QueueFactory(name="Care", slug="care", assignment_mode="pull")


@pytest.fixture
def baggage(db):
    return QueueFactory(name="Baggage", slug="baggage", assignment_mode="pull")


@pytest.fixture
def anna(care, redis_client):
    user = AgentProfileFactory(user__username="anna", user__first_name="Anna").user
    care.members.add(user)
    return user


def session_cookie(user) -> bytes:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


# --- The production stack of webcare/asgi.py: origin check and session authentication -----------


def connect_through_the_real_stack(headers: list[tuple[bytes, bytes]]):
    async def scenario():
        comm = WebsocketCommunicator(application, "/ws/desk/", headers=headers)
        result = await comm.connect()
        await comm.disconnect(timeout=10)
        return result

    return async_to_sync(scenario)()


def test_same_origin_with_a_session_is_accepted(anna):
    assert connect_through_the_real_stack(
        [(b"origin", b"http://localhost:8000"), (b"host", b"localhost:8000"), (b"cookie", session_cookie(anna))]
    ) == (True, None)


def test_foreign_origin_is_rejected_even_with_a_valid_session(anna):
    # Another site's page in the agent's browser would send the agent's cookie along.
    connected, _ = connect_through_the_real_stack(
        [(b"origin", b"https://evil.example"), (b"host", b"localhost:8000"), (b"cookie", session_cookie(anna))]
    )
    assert connected is False


def test_missing_origin_is_rejected(anna):
    connected, _ = connect_through_the_real_stack(
        [(b"host", b"localhost:8000"), (b"cookie", session_cookie(anna))]
    )
    assert connected is False


def test_same_origin_without_a_session_is_refused_as_unauthenticated(anna):
    assert connect_through_the_real_stack(
        [(b"origin", b"http://localhost:8000"), (b"host", b"localhost:8000")]
    ) == (False, 4401)


# --- Frames -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "code", "message"),
    [
        ("{not json", "bad_json", "the frame is not valid JSON"),
        ("[1, 2]", "bad_request", "a frame is a JSON object with a type"),
        ('{"type": "subscribe", "group": "leads"}', "unknown_type", "unknown frame type 'subscribe'"),
        ('{"no": "type"}', "unknown_type", "unknown frame type None"),
    ],
)
def test_bad_frames_get_a_precise_error_and_the_connection_stays(anna, raw, code, message):
    async def scenario():
        comm = communicator_for(anna)
        assert (await comm.connect())[0]
        await comm.send_to(text_data=raw)
        error = await comm.receive_json_from(timeout=5)
        await comm.send_json_to({"type": "heartbeat", "ack": True})
        pong = await comm.receive_json_from(timeout=5)
        await comm.disconnect(timeout=10)
        return error, pong

    error, pong = async_to_sync(scenario)()
    assert error == {"type": "error", "code": code, "message": message}
    assert pong == {"type": "pong"}


def test_binary_frames_are_refused(anna):
    async def scenario():
        comm = communicator_for(anna)
        assert (await comm.connect())[0]
        await comm.send_to(bytes_data=b"\x00\x01")
        error = await comm.receive_json_from(timeout=5)
        await comm.disconnect(timeout=10)
        return error

    assert async_to_sync(scenario)() == {"type": "error", "code": "bad_request", "message": "frames are JSON text"}


def test_heartbeat_is_answered_only_when_asked(anna):
    async def scenario():
        comm = communicator_for(anna)
        assert (await comm.connect())[0]
        await comm.send_json_to({"type": "heartbeat"})
        quiet = await comm.receive_nothing(timeout=0.3)
        await comm.send_json_to({"type": "heartbeat", "ack": True})
        pong = await comm.receive_json_from(timeout=5)
        await comm.disconnect(timeout=10)
        return quiet, pong

    assert async_to_sync(scenario)() == (True, {"type": "pong"})


# --- Permissions that change under an open connection -------------------------------------------


def test_heartbeat_follows_a_queue_change_and_resets_the_pages(anna, care, baggage):
    care_source = SourceFactory(name="care-src", default_queue=care)
    baggage_source = SourceFactory(name="bag-src", default_queue=baggage)

    async def scenario():
        comm = communicator_for(anna)
        assert (await comm.connect())[0]

        def lead_moves_anna():
            care.members.remove(anna)
            baggage.members.add(anna)

        await database_sync_to_async(lead_moves_anna)()
        await comm.send_json_to({"type": "heartbeat"})
        reset = await comm.receive_json_from(timeout=5)
        head = await database_sync_to_async(last_event_id)()
        await database_sync_to_async(ingest_batch)(source=care_source, messages=[inbound("c1")])
        await database_sync_to_async(ingest_batch)(source=baggage_source, messages=[inbound("b1")])
        live = await comm.receive_json_from(timeout=5)
        assert await comm.receive_nothing(timeout=0.5)  # nothing from care any more
        await comm.disconnect(timeout=10)
        return reset, head, live

    reset, head, live = async_to_sync(scenario)()
    assert reset == {"type": "reset", "last_event_id": head}
    ticket = Ticket.objects.get(queue=baggage)
    assert [(e["type"], e["ticket_id"]) for e in live["events"]] == [
        ("ticket.created", ticket.pk),
        ("message.created", ticket.pk),
    ]
    assert live["catchup"] is False


def test_unchanged_permissions_send_nothing_on_heartbeat(anna):
    async def scenario():
        comm = communicator_for(anna)
        assert (await comm.connect())[0]
        await comm.send_json_to({"type": "heartbeat"})
        quiet = await comm.receive_nothing(timeout=0.5)
        await comm.disconnect(timeout=10)
        return quiet

    assert async_to_sync(scenario)() is True


def test_a_watched_ticket_that_becomes_invisible_is_dropped(anna, care):
    ingest_batch(source=SourceFactory(name="care-src", default_queue=care), messages=[inbound("c1")])
    ticket = Ticket.objects.get(queue=care)

    async def scenario():
        comm = communicator_for(anna)
        assert (await comm.connect())[0]
        await comm.send_json_to({"type": "watch", "ticket_id": ticket.pk})
        watching = await comm.receive_json_from(timeout=5)
        await database_sync_to_async(care.members.remove)(anna)
        await comm.send_json_to({"type": "heartbeat"})
        frames = [await comm.receive_json_from(timeout=5) for _ in range(3)]
        assert await comm.receive_nothing(timeout=0.3)
        await comm.disconnect(timeout=10)
        return watching, frames

    watching, frames = async_to_sync(scenario)()
    assert [v["name"] for v in watching["viewers"]] == ["Anna"]
    by_type = {frame["type"]: frame for frame in frames}
    assert set(by_type) == {"error", "reset", "collision"}
    assert by_type["error"] == {"type": "error", "code": "forbidden",
                                "message": "you may not see this ticket any more", "ticket_id": ticket.pk}  # fmt: skip
    assert by_type["collision"]["viewers"] == []  # her own leaving, sent while she was still in the queue


def test_a_deactivated_user_is_disconnected_at_the_next_heartbeat(anna):
    async def scenario():
        comm = communicator_for(anna)
        assert (await comm.connect())[0]
        await database_sync_to_async(get_user_model().objects.filter(pk=anna.pk).update)(is_active=False)
        await comm.send_json_to({"type": "heartbeat"})
        closed = await comm.receive_output(timeout=5)
        await comm.disconnect(timeout=10)
        return closed

    assert async_to_sync(scenario)() == {"type": "websocket.close", "code": 4401}


def test_a_deactivated_user_gets_no_catch_up(anna, care):
    ingest_batch(source=SourceFactory(name="care-src", default_queue=care), messages=[inbound("c1")])
    assert TicketEvent.objects.count() == 2

    async def scenario():
        comm = communicator_for(anna)
        assert (await comm.connect())[0]
        await database_sync_to_async(get_user_model().objects.filter(pk=anna.pk).update)(is_active=False)
        await comm.send_json_to({"type": "resume", "last_event_id": 0})
        closed = await comm.receive_output(timeout=5)
        await comm.disconnect(timeout=10)
        return closed

    assert async_to_sync(scenario)() == {"type": "websocket.close", "code": 4401}
