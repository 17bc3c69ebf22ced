"""Presence from desk connections: heartbeats, expiry (injected clock), manual away."""

from __future__ import annotations

from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.core.exceptions import PermissionDenied
from django.db import transaction

from inbox.models import AgentProfile, TicketEvent
from inbox.realtime.routing import websocket_urlpatterns
from inbox.services import presence
from inbox.tasks import assignment as tasks
from tests.assignment import T0, make_agent
from tests.factories import QueueFactory, UserFactory

NOW = T0


class Recorder:
    def __init__(self, calls: list) -> None:
        self.calls = calls

    def delay(self, *args) -> None:
        self.calls.append(args)


@pytest.fixture
def sweeps(monkeypatch) -> list:
    calls: list = []
    monkeypatch.setattr(tasks, "sweep_queue", Recorder(calls))
    return calls


def presence_events() -> list[tuple]:
    return list(
        TicketEvent.objects.filter(type="presence.changed")
        .order_by("id")
        .values_list("ticket_id", "queue_id", "actor_id", "payload")
    )


def presence_of(agent: AgentProfile) -> str:
    return AgentProfile.objects.get(pk=agent.pk).presence


@pytest.mark.django_db
def test_first_connection_brings_the_agent_online_and_the_last_one_takes_them_offline(redis_client):
    agent = make_agent(presence="offline")
    uid = agent.user_id

    assert presence.presence_connect(user_id=uid, connection_id="tab1", now=NOW) == "online"
    assert presence.presence_connect(user_id=uid, connection_id="tab2", now=NOW) == "online"
    assert presence.presence_disconnect(user_id=uid, connection_id="tab1", now=NOW) == "online"
    assert (
        presence.presence_disconnect(user_id=uid, connection_id="tab2", now=NOW + timedelta(seconds=5))
        == "offline"
    )

    agent.refresh_from_db()
    assert (agent.presence, agent.presence_changed_at) == ("offline", NOW + timedelta(seconds=5))
    assert presence_events() == [
        (
            None,
            None,
            None,
            {"agent_id": uid, "presence": "online", "previous": "offline", "reason": "connected"},
        ),
        (
            None,
            None,
            None,
            {"agent_id": uid, "presence": "offline", "previous": "online", "reason": "disconnected"},
        ),
    ]
    assert sorted(k.decode() for k in redis_client.keys("*presence*")) == ["webcare:presence:users"]


@pytest.mark.django_db
def test_connection_without_heartbeat_for_the_ttl_expires(redis_client, settings):
    settings.WEBCARE = {**settings.WEBCARE, "PRESENCE_TTL_SECONDS": 60}
    agent = make_agent(presence="offline")
    uid = agent.user_id
    presence.presence_connect(user_id=uid, connection_id="tab1", now=NOW)
    presence.presence_heartbeat(user_id=uid, connection_id="tab1", now=NOW + timedelta(seconds=30))

    assert presence.presence_expire(now=NOW + timedelta(seconds=89)) == []
    assert presence_of(agent) == "online"
    assert presence.presence_expire(now=NOW + timedelta(seconds=91)) == [uid]
    assert presence_of(agent) == "offline"
    assert presence_events()[-1][3] == {
        "agent_id": uid,
        "presence": "offline",
        "previous": "online",
        "reason": "heartbeat expired",
    }
    assert redis_client.zcard(f"webcare:presence:conns:{uid}") == 0
    assert not redis_client.sismember("webcare:presence:users", uid)

    # The tab was only asleep: its next heartbeat brings the agent back.
    presence.presence_heartbeat(user_id=uid, connection_id="tab1", now=NOW + timedelta(seconds=95))
    assert presence_of(agent) == "online"


@pytest.mark.django_db
def test_heartbeat_of_a_live_connection_does_not_touch_the_database(redis_client, django_assert_num_queries):
    agent = make_agent(presence="offline")
    presence.presence_connect(user_id=agent.user_id, connection_id="tab1", now=NOW)
    with django_assert_num_queries(0):
        presence.presence_heartbeat(
            user_id=agent.user_id, connection_id="tab1", now=NOW + timedelta(seconds=20)
        )


@pytest.mark.django_db
def test_agent_left_online_without_any_connection_goes_offline_on_expiry(redis_client):
    stale = make_agent(presence="online")  # e.g. Redis was flushed
    away = make_agent(presence="away")
    assert presence.presence_expire(now=NOW) == [stale.user_id, away.user_id]
    assert (presence_of(stale), presence_of(away)) == ("offline", "offline")


@pytest.mark.django_db
def test_expire_task_reports_how_many_agents_changed(redis_client):
    make_agent(presence="online")
    assert tasks.expire_presence.run() == 1


@pytest.mark.django_db
def test_manual_away_sticks_through_heartbeats_and_reconnects_until_set_online(redis_client):
    agent = make_agent(presence="offline")
    uid = agent.user_id
    presence.presence_connect(user_id=uid, connection_id="tab1", now=NOW)

    presence.agent_set_presence(
        agent=agent, presence="away", actor=agent.user, now=NOW + timedelta(minutes=1)
    )
    assert agent.presence == "away"
    presence.presence_heartbeat(user_id=uid, connection_id="tab1", now=NOW + timedelta(minutes=2))
    presence.presence_disconnect(user_id=uid, connection_id="tab1", now=NOW + timedelta(minutes=3))
    presence.presence_connect(user_id=uid, connection_id="tab2", now=NOW + timedelta(minutes=3))
    assert presence_of(agent) == "away"
    assert presence.presence_manual(user_id=uid) == "away"

    presence.agent_set_presence(
        agent=agent, presence="online", actor=agent.user, now=NOW + timedelta(minutes=4)
    )
    assert agent.presence == "online"
    assert presence.presence_manual(user_id=uid) is None
    assert [(e[2], e[3]["presence"], e[3]["reason"]) for e in presence_events()] == [
        (None, "online", "connected"),
        (uid, "away", "set away by the agent"),
        (None, "offline", "disconnected"),
        (None, "away", "connected"),
        (uid, "online", "set online by the agent"),
    ]


@pytest.mark.django_db
def test_online_needs_an_open_desk(redis_client):
    agent = make_agent(presence="offline")
    presence.agent_set_presence(agent=agent, presence="online", actor=agent.user, now=NOW)
    assert agent.presence == "offline"
    assert presence_events() == []


@pytest.mark.django_db
def test_a_lead_may_set_anyones_presence_an_agent_only_their_own(redis_client):
    agent = make_agent(presence="offline")
    colleague = make_agent()
    lead = make_agent(role="lead")
    presence.presence_connect(user_id=agent.user_id, connection_id="tab1", now=NOW)

    with pytest.raises(PermissionDenied):
        presence.agent_set_presence(agent=agent, presence="away", actor=colleague.user)
    assert presence_of(agent) == "online"
    presence.agent_set_presence(agent=agent, presence="offline", actor=lead.user, now=NOW)
    assert presence_of(agent) == "offline"
    assert presence_events()[-1][2:] == (
        lead.user_id,
        {
            "agent_id": agent.user_id,
            "presence": "offline",
            "previous": "online",
            "reason": "set offline by a lead",
        },
    )


@pytest.mark.django_db
def test_coming_online_sweeps_the_agents_push_queues_after_commit(
    redis_client, sweeps, django_capture_on_commit_callbacks
):
    care = QueueFactory(name="Care")
    pull = QueueFactory(name="Pull", assignment_mode="pull")
    agent = make_agent(queues=[care, pull], presence="offline")

    with django_capture_on_commit_callbacks(execute=True):
        with transaction.atomic():
            presence.presence_connect(user_id=agent.user_id, connection_id="tab1", now=NOW)
            assert sweeps == []
    assert sweeps == [(care.pk,)]


@pytest.mark.django_db
def test_users_without_an_agent_profile_have_no_presence(redis_client):
    admin = UserFactory(username="root")
    assert presence.presence_connect(user_id=admin.pk, connection_id="tab1", now=NOW) is None
    assert presence.presence_expire(now=NOW + timedelta(hours=1)) == []
    assert presence_events() == []


# --- Through the desk socket -------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_desk_socket_reports_connect_heartbeat_and_disconnect(redis_client, sweeps):
    agent = make_agent(presence="offline")
    app = URLRouter(websocket_urlpatterns)

    async def scenario() -> list[str]:
        seen = []
        comm = WebsocketCommunicator(app, "/ws/desk/")
        comm.scope["user"] = agent.user
        assert (await comm.connect())[0]
        seen.append(await database_sync_to_async(presence_of)(agent))
        key = f"webcare:presence:conns:{agent.user_id}"
        before = redis_client.zrange(key, 0, -1, withscores=True)
        await comm.send_json_to({"type": "heartbeat"})
        assert await comm.receive_nothing(timeout=0.3)
        after = redis_client.zrange(key, 0, -1, withscores=True)
        assert len(before) == len(after) == 1 and after[0][1] >= before[0][1]
        await comm.disconnect()
        seen.append(await database_sync_to_async(presence_of)(agent))
        return seen

    assert async_to_sync(scenario)() == ["online", "offline"]
