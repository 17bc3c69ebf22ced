"""REST API of the floor: tickets, agents, queues. Who may do what, what they see, precise errors."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from inbox.models import AgentProfile, Queue, Tag, Ticket, TicketEvent
from inbox.services.presence import presence_connect
from inbox.tasks import assignment as tasks
from tests.assignment import TicketFactory, make_agent
from tests.factories import QueueFactory, SourceFactory, UserFactory

pytestmark = pytest.mark.django_db

API = "/api/v1"


class Recorder:
    def __init__(self, calls: list) -> None:
        self.calls = calls

    def delay(self, *args) -> None:
        self.calls.append(args)


@pytest.fixture(autouse=True)
def no_task_queue(monkeypatch) -> list:
    calls: list = []
    monkeypatch.setattr(tasks, "sweep_queue", Recorder(calls))
    return calls


@pytest.fixture
def care(db) -> Queue:
    return QueueFactory(name="Care", slug="care")


@pytest.fixture
def baggage(db) -> Queue:
    return QueueFactory(name="Baggage", slug="baggage")


@pytest.fixture
def anna(care) -> AgentProfile:
    return make_agent(queues=[care], languages=["nl", "en"], username="anna")


@pytest.fixture
def bram(care) -> AgentProfile:
    return make_agent(queues=[care], languages=["en"], username="bram", presence="offline")


@pytest.fixture
def olaf(baggage) -> AgentProfile:
    return make_agent(queues=[baggage], username="olaf")


@pytest.fixture
def lead(db, redis_client) -> AgentProfile:
    return make_agent(role=AgentProfile.Role.LEAD, username="lea", presence="offline")


def as_user(profile_or_user) -> APIClient:
    client = APIClient()
    if profile_or_user is not None:
        client.force_login(getattr(profile_or_user, "user", profile_or_user))
    return client


# --- Permissions: every action, lead / agent / anonymous ---------------------------------------


def lead_actions(ticket: Ticket, agent: AgentProfile, care: Queue, baggage: Queue) -> list[tuple[str, dict]]:
    return [
        (f"{API}/tickets/{ticket.pk}/assign/", {"assignee": agent.user_id}),
        (f"{API}/tickets/bulk-reassign/", {"filters": {"queue": care.pk}, "assignee": agent.user_id}),
        (f"{API}/agents/{agent.user_id}/capacity/", {"capacity": 3}),
        (f"{API}/agents/{agent.user_id}/away/", {"presence": "away"}),
        (f"{API}/queues/{care.pk}/pause/", {}),
        (f"{API}/queues/{care.pk}/resume/", {}),
        (f"{API}/queues/{care.pk}/move-backlog/", {"target_queue": baggage.pk}),
        (f"{API}/queues/{care.pk}/sweep/", {}),
    ]


def test_agents_and_anonymous_cannot_run_lead_actions(care, baggage, anna, bram, redis_client):
    ticket = TicketFactory(queue=care)
    for url, body in lead_actions(ticket, bram, care, baggage):
        for client in (as_user(anna), as_user(None)):
            response = client.post(url, body, format="json")
            assert response.status_code == 403, (url, response.content)
    assert TicketEvent.objects.count() == 0
    assert Ticket.objects.get(pk=ticket.pk).assignee_id is None
    assert AgentProfile.objects.get(pk=bram.pk).capacity == 8


def test_leads_run_every_lead_action(care, baggage, anna, bram, lead):
    ticket = TicketFactory(queue=care)
    expected = [200] * 8
    got = [
        as_user(lead).post(url, body, format="json").status_code
        for url, body in lead_actions(ticket, bram, care, baggage)
    ]
    assert got == expected


def test_anonymous_reads_nothing(care):
    for url in (f"{API}/tickets/", f"{API}/agents/", f"{API}/queues/", f"{API}/tickets/take-next/"):
        assert as_user(None).get(url).status_code == 403
    assert as_user(None).post(f"{API}/tickets/take-next/").status_code == 403


# --- Tickets: scoping and filters --------------------------------------------------------------


def test_agents_see_their_queues_and_own_tickets_leads_see_all(care, baggage, anna, olaf, lead):
    in_care = TicketFactory(queue=care)
    in_baggage = TicketFactory(queue=baggage)
    mine_elsewhere = TicketFactory(queue=baggage, assignee=anna.user, status="open")

    def ids(profile) -> list[int]:
        return sorted(row["id"] for row in as_user(profile).get(f"{API}/tickets/").json()["results"])

    assert ids(anna) == sorted([in_care.pk, mine_elsewhere.pk])
    assert ids(olaf) == sorted([in_baggage.pk, mine_elsewhere.pk])
    assert ids(lead) == sorted([in_care.pk, in_baggage.pk, mine_elsewhere.pk])
    assert as_user(olaf).get(f"{API}/tickets/{in_care.pk}/").status_code == 404


def test_ticket_list_filters(care, baggage, anna, lead):
    mastodon = SourceFactory(name="masto", platform="mastodon")
    refund = Tag.objects.get_or_create(name="refund")[0]
    a = TicketFactory(queue=care, language="nl", priority=3, status="open", assignee=anna.user)
    a.tags.add(refund)
    b = TicketFactory(queue=care, language="en", priority=1, source=mastodon)
    c = TicketFactory(queue=baggage, language="nl", priority=0, status="pending")
    client = as_user(lead)

    def ids(query: str) -> list[int]:
        response = client.get(f"{API}/tickets/?{query}")
        assert response.status_code == 200, response.content
        return sorted(row["id"] for row in response.json()["results"])

    assert ids(f"queue={care.pk}") == sorted([a.pk, b.pk])
    assert ids("status=open&status=pending") == sorted([a.pk, c.pk])
    assert ids("language=nl") == sorted([a.pk, c.pk])
    assert ids("priority=3&priority=0") == sorted([a.pk, c.pk])
    assert ids(f"assignee={anna.user_id}") == [a.pk]
    assert ids("unassigned=true") == sorted([b.pk, c.pk])
    assert ids("platform=mastodon") == [b.pk]
    assert ids("tag=refund") == [a.pk]
    assert ids(f"queue={care.pk}&language=nl") == [a.pk]


def test_ticket_list_refuses_unknown_ids_precisely(lead):
    response = as_user(lead).get(f"{API}/tickets/?queue=424242&assignee=515151&status=lost")
    assert response.status_code == 400
    assert response.json() == {
        "queue": ["No queue with id 424242."],
        "assignee": ["No agent with id 515151."],
        "status": ["Select a valid choice. lost is not one of the available choices."],
    }


def test_ticket_row_shape(care, anna, lead):
    ticket = TicketFactory(
        queue=care, language="nl", status="open", assignee=anna.user, subject="Where is my bag?"
    )
    ticket.tags.add(
        Tag.objects.get_or_create(name="baggage")[0], Tag.objects.get_or_create(name="amsterdam")[0]
    )
    row = as_user(lead).get(f"{API}/tickets/{ticket.pk}/").json()
    assert row == {
        "id": ticket.pk, "subject": "Where is my bag?", "status": "open", "priority": 1, "language": "nl",
        "queue": care.pk, "queue_name": "Care", "assignee": anna.user_id, "assignee_name": "anna",
        "assigned_at": None, "platform": "simulated", "tags": ["amsterdam", "baggage"], "is_private": False,
        "opened_at": row["opened_at"], "last_message_at": row["last_message_at"],
    }  # fmt: skip


def test_ticket_list_has_no_n_plus_one(care, anna, lead, django_assert_max_num_queries):
    tag = Tag.objects.get_or_create(name="delay")[0]
    for ticket in TicketFactory.create_batch(30, queue=care, assignee=anna.user, status="open"):
        ticket.tags.add(tag)
    client = as_user(lead)
    with django_assert_max_num_queries(6):  # session, user, profile (lead?), count, rows, tags
        response = client.get(f"{API}/tickets/?limit=50")
    assert len(response.json()["results"]) == 30


# --- Ticket actions ----------------------------------------------------------------------------


def test_lead_assigns_one_ticket(care, anna, lead):
    ticket = TicketFactory(queue=care)
    response = as_user(lead).post(
        f"{API}/tickets/{ticket.pk}/assign/",
        {"assignee": anna.user_id, "reason": "knows the case"},
        format="json",
    )
    assert response.status_code == 200
    assert (response.json()["assignee"], response.json()["assignee_name"]) == (anna.user_id, "anna")
    event = TicketEvent.objects.get(type="ticket.assigned")
    assert (event.actor_id, event.payload["reason"], event.payload["rule"]) == (
        lead.user_id,
        "knows the case",
        "manual",
    )


def test_assign_errors_are_precise(care, lead):
    ticket = TicketFactory(queue=care)
    client = as_user(lead)
    unknown = client.post(f"{API}/tickets/{ticket.pk}/assign/", {"assignee": 999999}, format="json")
    assert (unknown.status_code, unknown.json()) == (400, {"assignee": ["No agent with id 999999."]})
    not_agent = UserFactory(username="visitor")
    refused = client.post(f"{API}/tickets/{ticket.pk}/assign/", {"assignee": not_agent.pk}, format="json")
    assert (refused.status_code, refused.json()) == (400, {"assignee": [f"No agent with id {not_agent.pk}."]})
    wrong_type = client.post(f"{API}/tickets/{ticket.pk}/assign/", {"assignee": "anna"}, format="json")
    assert wrong_type.json() == {"assignee": ["An agent id is a number, not str."]}
    missing = client.post(f"{API}/tickets/424242/assign/", {"assignee": None}, format="json")
    assert missing.status_code == 404
    solved = TicketFactory(queue=care, status="solved")
    conflict = client.post(f"{API}/tickets/{solved.pk}/assign/", {"assignee": None}, format="json")
    assert (conflict.status_code, conflict.json()) == (
        409,
        {"detail": "Only new, open or pending tickets can be reassigned."},
    )


def test_lead_bulk_reassigns_by_filter(care, anna, bram, lead):
    dutch = TicketFactory.create_batch(2, queue=care, language="nl", assignee=bram.user, status="open")
    english = TicketFactory(queue=care, language="en", assignee=bram.user, status="open")
    response = as_user(lead).post(
        f"{API}/tickets/bulk-reassign/",
        {"filters": {"assignee": bram.user_id, "language": "nl"}, "assignee": anna.user_id},
        format="json",
    )
    assert (response.status_code, response.json()) == (200, {"reassigned": 2})
    assert [Ticket.objects.get(pk=t.pk).assignee_id for t in (*dutch, english)] == [anna.user_id] * 2 + [
        bram.user_id
    ]


def test_bulk_reassign_errors_are_precise(lead):
    client = as_user(lead)
    unknown = client.post(
        f"{API}/tickets/bulk-reassign/", {"filters": {"queue": 424242}, "assignee": None}, format="json"
    )
    assert (unknown.status_code, unknown.json()) == (
        400,
        {"filters": {"queue": ["No queue with id 424242."]}},
    )
    empty = client.post(f"{API}/tickets/bulk-reassign/", {"filters": {}, "assignee": None}, format="json")
    assert empty.json() == {
        "filters": {
            "non_field_errors": ["Give at least one filter: bulk reassign never applies to every ticket."]
        }
    }
    solved = client.post(
        f"{API}/tickets/bulk-reassign/", {"filters": {"status": ["solved"]}, "assignee": None}, format="json"
    )
    assert solved.json() == {"filters": {"status": {"0": ['"solved" is not a valid choice.']}}}


def test_agent_takes_next_and_gets_no_content_when_nothing_waits(care, anna):
    ticket = TicketFactory(queue=care, language="nl")
    client = as_user(anna)
    taken = client.post(f"{API}/tickets/take-next/")
    assert (taken.status_code, taken.json()["id"], taken.json()["assignee"]) == (200, ticket.pk, anna.user_id)
    assert client.post(f"{API}/tickets/take-next/").status_code == 204


def test_take_next_refusals(care, bram):
    TicketFactory(queue=care)
    offline = as_user(bram).post(f"{API}/tickets/take-next/")
    assert (offline.status_code, offline.json()) == (409, {"detail": "Set yourself online to take tickets."})
    admin = UserFactory(username="root", is_superuser=True)
    assert as_user(admin).post(f"{API}/tickets/take-next/").status_code == 403


# --- Agents ------------------------------------------------------------------------------------


def test_agents_list_shape_and_scope(care, baggage, anna, bram, olaf, lead):
    TicketFactory.create_batch(2, queue=care, assignee=anna.user, status="open")
    TicketFactory(queue=care, assignee=anna.user, status="pending")
    rows = as_user(anna).get(f"{API}/agents/").json()["results"]
    assert [r["username"] for r in rows] == ["anna", "bram"]
    assert rows[0] == {
        "id": anna.user_id, "username": "anna", "name": rows[0]["name"], "role": "agent", "languages": ["nl", "en"],
        "capacity": 8, "load": 2, "presence": "online", "presence_changed_at": None, "last_assigned_at": None,
        "queues": [care.pk],
    }  # fmt: skip
    assert [r["username"] for r in as_user(lead).get(f"{API}/agents/").json()["results"]] == [
        "anna",
        "bram",
        "lea",
        "olaf",
    ]
    assert as_user(olaf).get(f"{API}/agents/{anna.user_id}/").status_code == 404


def test_agents_list_has_no_n_plus_one(care, baggage, lead, django_assert_max_num_queries):
    for n in range(20):
        agent = make_agent(queues=[care, baggage])
        TicketFactory.create_batch(n % 3, queue=care, assignee=agent.user, status="open")
    client = as_user(lead)
    with django_assert_max_num_queries(6):  # session, user, profile (lead?), count, rows, queues
        response = client.get(f"{API}/agents/")
    assert len(response.json()["results"]) == 21


def test_presence_by_the_agent_or_a_lead_only(care, anna, bram, lead, redis_client):
    presence_connect(user_id=anna.user_id, connection_id="tab1")
    away = as_user(anna).post(f"{API}/agents/{anna.user_id}/presence/", {"presence": "away"}, format="json")
    assert (away.status_code, away.json()["presence"]) == (200, "away")
    colleague = as_user(bram).post(
        f"{API}/agents/{anna.user_id}/presence/", {"presence": "online"}, format="json"
    )
    assert (colleague.status_code, colleague.json()) == (
        403,
        {"detail": "Only the agent or a team lead may do this."},
    )
    back = as_user(lead).post(f"{API}/agents/{anna.user_id}/presence/", {"presence": "online"}, format="json")
    assert (back.status_code, back.json()["presence"]) == (200, "online")
    wrong = as_user(lead).post(f"{API}/agents/{anna.user_id}/presence/", {"presence": "busy"}, format="json")
    assert wrong.json() == {"presence": ['"busy" is not a valid choice.']}
    assert (
        as_user(None)
        .post(f"{API}/agents/{anna.user_id}/presence/", {"presence": "away"}, format="json")
        .status_code
        == 403
    )


def test_lead_sets_capacity_with_bounds(anna, lead):
    ok = as_user(lead).post(f"{API}/agents/{anna.user_id}/capacity/", {"capacity": 12}, format="json")
    assert (ok.status_code, ok.json()["capacity"]) == (200, 12)
    too_big = as_user(lead).post(f"{API}/agents/{anna.user_id}/capacity/", {"capacity": 101}, format="json")
    assert too_big.json() == {"capacity": ["Ensure this value is less than or equal to 100."]}
    assert (
        as_user(lead).post(f"{API}/agents/424242/capacity/", {"capacity": 1}, format="json").status_code
        == 404
    )


def test_lead_sets_an_agent_away_and_redistributes(care, anna, bram, lead, redis_client):
    AgentProfile.objects.filter(pk=bram.pk).update(presence="online")
    presence_connect(user_id=anna.user_id, connection_id="tab1")
    open_ = TicketFactory(queue=care, assignee=anna.user, status="open")
    pending = TicketFactory(queue=care, assignee=anna.user, status="pending")
    response = as_user(lead).post(
        f"{API}/agents/{anna.user_id}/away/", {"presence": "away", "keep_pending": False}, format="json"
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["agent"]["presence"], body["reassigned"], body["released"], body["kept_pending"]) == (
        "away",
        1,
        1,
        0,
    )
    assert [Ticket.objects.get(pk=t.pk).assignee_id for t in (open_, pending)] == [bram.user_id, None]
    online = as_user(lead).post(f"{API}/agents/{anna.user_id}/away/", {"presence": "online"}, format="json")
    assert online.json() == {"presence": ["Choose away or offline."]}


# --- Queues ------------------------------------------------------------------------------------


def test_queues_list_with_backlog_for_leads_and_members(
    care, baggage, anna, bram, lead, django_assert_max_num_queries
):
    TicketFactory.create_batch(3, queue=care)
    TicketFactory(queue=care, assignee=anna.user, status="open")
    TicketFactory(queue=care, is_noise=True)
    client = as_user(lead)
    with django_assert_max_num_queries(5):  # session, user, profile, count, rows
        rows = client.get(f"{API}/queues/").json()["results"]
    assert [(r["name"], r["waiting"], r["member_count"], r["online_count"]) for r in rows] == [
        ("Baggage", 0, 0, 0),
        ("Care", 3, 2, 1),
    ]
    assert [r["name"] for r in as_user(anna).get(f"{API}/queues/").json()["results"]] == ["Care"]


def test_lead_pauses_resumes_and_sweeps_a_queue(care, anna, lead, no_task_queue):
    TicketFactory.create_batch(2, queue=care)
    client = as_user(lead)
    paused = client.post(f"{API}/queues/{care.pk}/pause/")
    assert (paused.status_code, paused.json()["auto_assign_paused"]) == (200, True)
    assert client.post(f"{API}/queues/{care.pk}/sweep/").json() == {"assigned": 0, "waiting": 2}
    resumed = client.post(f"{API}/queues/{care.pk}/resume/")
    assert (resumed.status_code, resumed.json()["auto_assign_paused"]) == (200, False)
    assert client.post(f"{API}/queues/{care.pk}/sweep/").json() == {"assigned": 2, "waiting": 0}


def test_lead_moves_a_backlog_with_precise_errors(care, baggage, lead):
    TicketFactory.create_batch(2, queue=care)
    client = as_user(lead)
    moved = client.post(f"{API}/queues/{care.pk}/move-backlog/", {"target_queue": baggage.pk}, format="json")
    assert (moved.status_code, moved.json()) == (200, {"moved": 2})
    unknown = client.post(f"{API}/queues/{care.pk}/move-backlog/", {"target_queue": 777}, format="json")
    assert (unknown.status_code, unknown.json()) == (400, {"target_queue": ["No queue with id 777."]})
    same = client.post(f"{API}/queues/{care.pk}/move-backlog/", {"target_queue": care.pk}, format="json")
    assert same.json() == {"target_queue": ["The target is this queue itself."]}
