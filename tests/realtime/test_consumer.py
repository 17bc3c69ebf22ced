"""The desk socket against the real channel layer (Redis)."""

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser

from inbox.models import Ticket
from inbox.realtime.routing import websocket_urlpatterns
from inbox.services.ingest import ingest_batch
from tests.factories import AgentProfileFactory, QueueFactory, SourceFactory, inbound

pytestmark = pytest.mark.django_db(transaction=True)

app = URLRouter(websocket_urlpatterns)


def communicator_for(user) -> WebsocketCommunicator:
    comm = WebsocketCommunicator(app, "/ws/desk/")
    comm.scope["user"] = user
    return comm


def test_anonymous_connection_is_refused():
    async def scenario():
        comm = communicator_for(AnonymousUser())
        connected, code = await comm.connect()
        assert (connected, code) == (False, 4401)

    async_to_sync(scenario)()


def test_agent_hears_ingest_events_of_own_queue_only(redis_client):
    # Pull queues: connecting makes the agent present, and a push queue would hand them the
    # ticket (one more frame) whenever a worker happens to run.
    care = QueueFactory(name="Care", slug="care", is_default=True, assignment_mode="pull")
    baggage = QueueFactory(name="Baggage", slug="baggage", assignment_mode="pull")
    agent = AgentProfileFactory().user
    care.members.add(agent)
    care_source = SourceFactory(name="care-src", default_queue=care)
    baggage_source = SourceFactory(name="bag-src", default_queue=baggage)

    async def scenario():
        comm = communicator_for(agent)
        connected, _ = await comm.connect()
        assert connected
        await database_sync_to_async(ingest_batch)(
            source=baggage_source, messages=[inbound("b1", text="lost suitcase")]
        )
        await database_sync_to_async(ingest_batch)(
            source=care_source, messages=[inbound("c1", text="delayed <b>again</b>")]
        )
        frame = await comm.receive_json_from(timeout=5)
        assert await comm.receive_nothing(timeout=0.5)
        await comm.disconnect(timeout=10)
        return frame

    frame = async_to_sync(scenario)()
    ticket = Ticket.objects.get(queue=care)
    assert frame["type"] == "events"
    assert [(e["type"], e["ticket_id"], e["queue_id"]) for e in frame["events"]] == [
        ("ticket.created", ticket.pk, care.pk),
        ("message.created", ticket.pk, care.pk),
    ]
    assert frame["events"][0]["id"] < frame["events"][1]["id"]


def test_lead_hears_every_queue(redis_client):
    lead = AgentProfileFactory(role="lead").user
    source = SourceFactory(name="any", default_queue=QueueFactory())

    async def scenario():
        comm = communicator_for(lead)
        assert (await comm.connect())[0]
        await database_sync_to_async(ingest_batch)(source=source, messages=[inbound("x1")])
        frame = await comm.receive_json_from(timeout=5)
        await comm.disconnect(timeout=10)
        return frame

    frame = async_to_sync(scenario)()
    assert [e["type"] for e in frame["events"]] == ["ticket.created", "message.created"]
