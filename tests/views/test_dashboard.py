"""The lead dashboard page: who may see it, what it shows, and every way a lead moves work."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from inbox.models import AgentProfile, Queue, Ticket, TicketEvent
from inbox.services import presence as presence_service
from inbox.services.assignment import ticket_reassign
from inbox.services.ingest import ingest_batch
from inbox.services.tickets import ticket_change_status
from tests.factories import AgentProfileFactory, QueueFactory, SourceFactory, inbound

pytestmark = pytest.mark.django_db

T = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.get_fixed_timezone(0))
FETCH = {"HTTP_X_REQUESTED_WITH": "fetch"}
DASHBOARD = "/desk/dashboard/"
REASSIGN = "/desk/dashboard/reassign"


def at(minutes: float) -> datetime:
    return T + timedelta(minutes=minutes)


def ticket_of(external_id: str) -> Ticket:
    return Ticket.objects.get(messages__external_id=external_id)


def events(*types: str, since: int = 0) -> list[tuple]:
    """(type, ticket id, queue id, actor id, payload) of the events after ``since``."""
    rows = TicketEvent.objects.filter(id__gt=since).order_by("id")
    if types:
        rows = rows.filter(type__in=types)
    return list(rows.values_list("type", "ticket_id", "queue_id", "actor_id", "payload"))


def last_event_id() -> int:
    last = TicketEvent.objects.order_by("-id").first()
    return last.pk if last else 0


@pytest.fixture
def lead(db):
    return AgentProfileFactory(
        role=AgentProfile.Role.LEAD, user__username="lea", user__first_name="Lea", user__last_name="Lead"
    ).user


@pytest.fixture
def nl(db):
    return QueueFactory(name="KLM NL", slug="klm-nl")


@pytest.fixture
def en(db):
    return QueueFactory(name="KLM EN", slug="klm-en")


@pytest.fixture
def anna(nl):
    profile = AgentProfileFactory(user__username="anna", user__first_name="Anna", user__last_name="de Vries")
    nl.members.add(profile.user)
    return profile


@pytest.fixture
def bob(nl):
    profile = AgentProfileFactory(user__username="bob", user__first_name="Bob", capacity=3)
    nl.members.add(profile.user)
    return profile


@pytest.fixture
def erik(en):
    """Works KLM EN only."""
    profile = AgentProfileFactory(user__username="erik", user__first_name="Erik")
    en.members.add(profile.user)
    return profile


@pytest.fixture
def tickets(nl, en):
    """Three waiting tickets in KLM NL (n1, n2, n3) and one in KLM EN (e1)."""
    ingest_batch(
        source=SourceFactory(name="klm-nl", default_queue=nl),
        messages=[
            inbound("n1", author="noor", at=at(0)),
            inbound("n2", author="nina", at=at(1)),
            inbound("n3", author="niels", at=at(2)),
        ],
    )
    ingest_batch(
        source=SourceFactory(name="klm-en", default_queue=en), messages=[inbound("e1", author="emma")]
    )
    return {name: ticket_of(name) for name in ("n1", "n2", "n3", "e1")}


@pytest.fixture
def lead_client(client, lead):
    client.force_login(lead)
    return client


def connect(profile: AgentProfile) -> None:
    """The agent has a desk tab open (presence online)."""
    presence_service.presence_connect(user_id=profile.user_id, connection_id=f"tab-{profile.user_id}")


# --- Who may see it ---------------------------------------------------------------------


def test_anonymous_is_sent_to_login(client):
    response = client.get(DASHBOARD)
    assert response.status_code == 302
    assert response["Location"] == f"/login/?next={DASHBOARD}"


@pytest.mark.parametrize(
    "url",
    [
        DASHBOARD, "/desk/dashboard/queues", "/desk/dashboard/agents", "/desk/dashboard/tickets",
    ],
)  # fmt: skip
def test_an_agent_gets_403(client, anna, url):
    client.force_login(anna.user)
    response = client.get(url)
    assert response.status_code == 403
    assert "The dashboard is for team leads." in response.content.decode()


@pytest.mark.parametrize(
    ("url", "data"),
    [
        (REASSIGN, {"action": "return", "ticket": "1"}),
        ("/desk/dashboard/queues/1/auto-assign", {"paused": "1"}),
        ("/desk/dashboard/queues/1/move-backlog", {"target": "2"}),
        ("/desk/dashboard/agents/1/presence", {"presence": "away"}),
        ("/desk/dashboard/agents/1/capacity", {"capacity": "3"}),
    ],
)
def test_an_agent_may_change_nothing(client, anna, tickets, url, data):
    client.force_login(anna.user)
    before = last_event_id()
    response = client.post(url, data, **FETCH)
    assert (response.status_code, response.json()) == (403, {"error": "The dashboard is for team leads."})
    assert events(since=before) == []


def test_anonymous_post_is_sent_to_login(client, tickets):
    response = client.post(REASSIGN, {"action": "return", "ticket": tickets["n1"].pk})
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_posts_need_the_csrf_token(lead, tickets, anna):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(lead)
    response = strict.post(
        REASSIGN, {"action": "assign", "assignee": anna.user_id, "ticket": tickets["n1"].pk}
    )
    assert response.status_code == 403
    assert Ticket.objects.get(pk=tickets["n1"].pk).assignee_id is None


def test_only_get_for_the_page(lead_client):
    assert lead_client.post(DASHBOARD).status_code == 405


# --- What it shows ----------------------------------------------------------------------


def test_lead_sees_queues_agents_and_the_selected_queue_tickets(
    lead_client, nl, en, anna, bob, erik, tickets
):
    response = lead_client.get(DASHBOARD, {"queue": nl.pk})
    assert response.status_code == 200
    html = response.content.decode()
    assert response.context["nav"] == "dashboard"
    cards = {c.metrics.name: (c.metrics.backlog, c.selected) for c in response.context["queue_cards"]}
    assert cards == {"KLM EN": (1, False), "KLM NL": (3, True)}
    assert [t.pk for t in response.context["page"].object_list] == [tickets[n].pk for n in ("n1", "n2", "n3")]
    assert [a.username for a in response.context["queue_members"]] == ["anna", "bob"]
    assert [a.username for a in response.context["agents"]] == ["anna", "bob", "erik", "lea"]
    assert f'data-drop-agent="{anna.user_id}"' in html
    assert f'name="ticket" value="{tickets["n1"].pk}"' in html
    assert f'data-viewers-for="{tickets["n1"].pk}"' in html
    assert "js/desk/dashboard.js" in html and "css/dashboard.css" in html
    assert "<script>" not in html.split("<body", 1)[1].replace('<script src="', "")
    assert 'aria-live="polite"' in html


def test_load_is_shown_as_text_and_meter(lead_client, nl, anna, tickets, lead):
    ticket_reassign(ticket=tickets["n1"], assignee=anna.user, actor=lead)
    ticket_reassign(ticket=tickets["n2"], assignee=anna.user, actor=lead)
    html = lead_client.get("/desk/dashboard/agents", {"queue": nl.pk}, **FETCH).content.decode()
    assert "2 / 8" in html
    assert '<meter min="0" max="8" value="2"' in html


def test_default_queue_is_the_default_then_the_first_by_name(lead_client, nl, en, tickets):
    assert lead_client.get(DASHBOARD).context["selected_queue"].name == "KLM EN"
    general = QueueFactory(name="General", slug="general", is_default=True)
    response = lead_client.get(DASHBOARD)
    assert response.context["selected_queue"].queue_id == general.pk
    assert response.context["dashboard_url"] == f"{DASHBOARD}?queue={general.pk}&show=all&page=1"


def test_breached_queue_is_red_and_at_risk_orange(lead_client, nl, en, tickets):
    Ticket.objects.filter(pk=tickets["n1"].pk).update(sla_state="breached")
    Ticket.objects.filter(pk=tickets["e1"].pk).update(sla_state="at_risk")
    html = " ".join(lead_client.get("/desk/dashboard/queues", **FETCH).content.decode().split())
    assert f'class="queue-card alarm-breached" data-queue-id="{nl.pk}"' in html
    assert f'class="queue-card alarm-at_risk selected" data-queue-id="{en.pk}"' in html
    assert 'data-announce-breached="Queue KLM NL: 1 breached"' in html
    assert 'data-announce-at-risk="Queue KLM EN: 1 at risk"' in html


def test_ticket_table_selection_and_pages(lead_client, nl, anna, tickets, lead):
    ticket_reassign(ticket=tickets["n2"], assignee=anna.user, actor=lead)
    backlog = lead_client.get("/desk/dashboard/tickets", {"queue": nl.pk, "show": "backlog"}, **FETCH)
    assert [t.pk for t in backlog.context["page"].object_list] == [tickets["n1"].pk, tickets["n3"].pk]
    assigned = lead_client.get("/desk/dashboard/tickets", {"queue": nl.pk, "show": "assigned"}, **FETCH)
    assert [t.pk for t in assigned.context["page"].object_list] == [tickets["n2"].pk]
    assert [(key, count) for key, _label, count in assigned.context["show_choices"]] == [
        ("all", 3), ("backlog", 2), ("assigned", 1), ("pending", 0), ("at_risk", 0), ("breached", 0),
    ]  # fmt: skip
    far = lead_client.get("/desk/dashboard/tickets", {"queue": nl.pk, "page": 99}, **FETCH)
    assert far.status_code == 200 and far.context["page"].number == 1


@pytest.mark.parametrize(
    ("params", "status", "text"),
    [
        ({"show": "mine"}, 400, "Unknown ticket selection “mine”."),
        ({"queue": "abc"}, 400, "The queue must be given by its number."),
        ({"page": "x"}, 400, "The page must be a number."),
        ({"queue": "99999"}, 404, "No queue with number 99999."),
    ],
)
def test_bad_fragment_parameters_are_refused(lead_client, tickets, params, status, text):
    response = lead_client.get("/desk/dashboard/tickets", params, **FETCH)
    assert (response.status_code, response.content.decode()) == (status, text)


def test_bad_page_parameter_without_js_shows_an_error_page(lead_client, tickets):
    response = lead_client.get(DASHBOARD, {"show": "mine"})
    assert response.status_code == 400
    assert "Unknown ticket selection “mine”." in response.content.decode()


# --- Reassigning ------------------------------------------------------------------------


def test_assign_selected_to_an_agent(lead_client, lead, nl, anna, tickets):
    before = last_event_id()
    response = lead_client.post(
        REASSIGN,
        {"action": "assign", "assignee": anna.user_id, "ticket": [tickets["n1"].pk, tickets["n3"].pk]},
        **FETCH,
    )
    assert (response.status_code, response.json()) == (
        200,
        {"message": "2 tickets assigned to Anna de Vries."},
    )
    assert [Ticket.objects.get(pk=tickets[n].pk).assignee_id for n in ("n1", "n2", "n3")] == [
        anna.user_id, None, anna.user_id,
    ]  # fmt: skip
    assert events(since=before) == [
        ("ticket.assigned", tickets[n].pk, nl.pk, lead.pk, {
            "assignee_id": anna.user_id, "previous_assignee_id": None, "rule": "manual",
            "reason": "reassigned by a lead", "status": "new",
        })
        for n in ("n1", "n3")
    ]  # fmt: skip


def test_assigning_to_the_agent_who_has_it_changes_nothing(lead_client, lead, anna, tickets):
    ticket_reassign(ticket=tickets["n1"], assignee=anna.user, actor=lead)
    before = last_event_id()
    response = lead_client.post(
        REASSIGN, {"action": "assign", "assignee": anna.user_id, "ticket": [tickets["n1"].pk, tickets["n2"].pk]},
        **FETCH,
    )  # fmt: skip
    assert response.json() == {"message": "1 ticket assigned to Anna de Vries. 1 already was theirs."}
    assert [e[1] for e in events(since=before)] == [tickets["n2"].pk]


def test_return_selected_to_the_queue(lead_client, lead, nl, anna, bob, tickets):
    ticket_reassign(ticket=tickets["n1"], assignee=anna.user, actor=lead)
    ticket_reassign(ticket=tickets["n2"], assignee=bob.user, actor=lead)
    before = last_event_id()
    response = lead_client.post(
        REASSIGN, {"action": "return", "ticket": [tickets["n1"].pk, tickets["n2"].pk]}, **FETCH
    )
    assert response.json() == {"message": "2 tickets returned to their queues."}
    assert [Ticket.objects.get(pk=tickets[n].pk).assignee_id for n in ("n1", "n2")] == [None, None]
    assert events(since=before) == [
        ("ticket.assigned", tickets["n1"].pk, nl.pk, lead.pk, {
            "assignee_id": None, "previous_assignee_id": anna.user_id, "rule": "manual",
            "reason": "unassigned by a lead", "status": "new",
        }),
        ("ticket.assigned", tickets["n2"].pk, nl.pk, lead.pk, {
            "assignee_id": None, "previous_assignee_id": bob.user_id, "rule": "manual",
            "reason": "unassigned by a lead", "status": "new",
        }),
    ]  # fmt: skip


def test_without_javascript_a_form_redirects_back_with_a_message(lead_client, nl, anna, tickets):
    back = f"{DASHBOARD}?queue={nl.pk}&show=backlog&page=1"
    response = lead_client.post(
        REASSIGN, {"action": "assign", "assignee": anna.user_id, "ticket": tickets["n1"].pk, "next": back}
    )
    assert (response.status_code, response["Location"]) == (302, back)
    assert Ticket.objects.get(pk=tickets["n1"].pk).assignee_id == anna.user_id
    page = lead_client.get(back).content.decode()
    assert '<li class="success">1 ticket assigned to Anna de Vries.</li>' in page
    assert "1 ticket assigned" not in lead_client.get(back).content.decode()  # shown once


def test_a_foreign_next_url_is_not_followed(lead_client, anna, tickets):
    response = lead_client.post(
        REASSIGN,
        {
            "action": "assign",
            "assignee": anna.user_id,
            "ticket": tickets["n1"].pk,
            "next": "https://evil.example/",
        },
    )
    assert response["Location"] == DASHBOARD


@pytest.mark.parametrize(
    ("data", "status", "error"),
    [
        ({"action": "assign", "assignee": "99999"}, 400, "No agent with number 99999."),
        ({"action": "assign", "assignee": "x"}, 400, "An agent is given by their number."),
        ({"action": "assign"}, 400, "Choose the agent to assign the tickets to."),
        ({"action": "steal"}, 400, "Choose “Assign” or “Return to queue”."),
    ],
)
def test_invalid_reassign_input_is_refused_and_changes_nothing(lead_client, tickets, data, status, error):
    before = last_event_id()
    response = lead_client.post(REASSIGN, {**data, "ticket": tickets["n1"].pk}, **FETCH)
    assert (response.status_code, response.json()) == (status, {"error": error})
    assert events(since=before) == []


def test_agent_not_in_the_queue_is_refused_for_every_ticket(lead_client, nl, erik, tickets):
    before = last_event_id()
    response = lead_client.post(
        REASSIGN,
        {"action": "assign", "assignee": erik.user_id, "ticket": [tickets["e1"].pk, tickets["n2"].pk]},
        **FETCH,
    )
    assert response.status_code == 409
    assert response.json() == {
        "error": f"Erik is not a member of queue KLM NL (ticket #{tickets['n2'].pk}). Choose a member of the queue."
    }
    assert [Ticket.objects.get(pk=tickets[n].pk).assignee_id for n in ("e1", "n2")] == [None, None]
    assert events(since=before) == []


def test_no_ticket_selected(lead_client, anna, tickets):
    response = lead_client.post(REASSIGN, {"action": "assign", "assignee": anna.user_id}, **FETCH)
    assert (response.status_code, response.json()) == (400, {"error": "Select at least one ticket."})


def test_unknown_and_malformed_tickets(lead_client, anna, tickets):
    data = {"action": "assign", "assignee": anna.user_id}
    missing = lead_client.post(REASSIGN, {**data, "ticket": [tickets["n1"].pk, 99998, 99999]}, **FETCH)
    assert (missing.status_code, missing.json()) == (404, {"error": "Tickets #99998, #99999 do not exist."})
    bad = lead_client.post(REASSIGN, {**data, "ticket": "n1"}, **FETCH)
    assert (bad.status_code, bad.json()) == (400, {"error": "A ticket is given by its number."})
    assert Ticket.objects.get(pk=tickets["n1"].pk).assignee_id is None


def test_a_solved_ticket_is_refused_and_nothing_changes(lead_client, lead, anna, tickets):
    ticket_change_status(ticket=tickets["n2"], status="solved", actor=lead)
    before = last_event_id()
    response = lead_client.post(
        REASSIGN, {"action": "assign", "assignee": anna.user_id, "ticket": [tickets["n1"].pk, tickets["n2"].pk]},
        **FETCH,
    )  # fmt: skip
    assert response.status_code == 409
    assert response.json() == {
        "error": f"Ticket #{tickets['n2'].pk} is solved: only new, open or pending tickets can be reassigned."
    }
    assert Ticket.objects.get(pk=tickets["n1"].pk).assignee_id is None
    assert events(since=before) == []


def test_an_error_without_javascript_is_a_page_with_the_status(lead_client, erik, tickets):
    response = lead_client.post(
        REASSIGN,
        {"action": "assign", "assignee": erik.user_id, "ticket": tickets["n1"].pk, "next": DASHBOARD},
    )
    assert response.status_code == 409
    html = response.content.decode()
    assert "Erik is not a member of queue KLM NL" in html
    assert f'<a href="{DASHBOARD}">' in html


# --- Queues -----------------------------------------------------------------------------


def test_move_backlog_to_another_queue(lead_client, lead, nl, en, anna, tickets):
    ticket_reassign(ticket=tickets["n3"], assignee=anna.user, actor=lead)
    before = last_event_id()
    response = lead_client.post(f"/desk/dashboard/queues/{nl.pk}/move-backlog", {"target": en.pk}, **FETCH)
    assert response.json() == {"message": "2 tickets moved from KLM NL to KLM EN."}
    assert [Ticket.objects.get(pk=tickets[n].pk).queue_id for n in ("n1", "n2", "n3")] == [
        en.pk,
        en.pk,
        nl.pk,
    ]
    assert events(since=before) == [
        ("ticket.queue_changed", tickets[n].pk, en.pk, lead.pk, {
            "from_queue_id": nl.pk, "to_queue_id": en.pk, "reason": "backlog moved by a lead",
            "assignee_id": None, "status": "new",
        })
        for n in ("n1", "n2")
    ]  # fmt: skip


def test_move_backlog_refusals(lead_client, nl, en, tickets):
    url = f"/desk/dashboard/queues/{nl.pk}/move-backlog"
    same = lead_client.post(url, {"target": nl.pk}, **FETCH)
    assert (same.status_code, same.json()) == (400, {"error": "Choose another queue than KLM NL."})
    unknown = lead_client.post(url, {"target": 99999}, **FETCH)
    assert (unknown.status_code, unknown.json()) == (400, {"error": "No queue with number 99999."})
    missing = lead_client.post(url, {}, **FETCH)
    assert (missing.status_code, missing.json()) == (
        400,
        {"error": "Choose the queue to move the backlog to."},
    )
    no_source = lead_client.post("/desk/dashboard/queues/99999/move-backlog", {"target": en.pk}, **FETCH)
    assert (no_source.status_code, no_source.json()) == (404, {"error": "No queue with number 99999."})
    assert Ticket.objects.filter(queue=nl).count() == 3


def test_move_an_empty_backlog(lead_client, nl, en):
    response = lead_client.post(f"/desk/dashboard/queues/{en.pk}/move-backlog", {"target": nl.pk}, **FETCH)
    assert response.json() == {"message": "Nothing to move: KLM EN has no backlog."}


def test_pause_and_resume_auto_assign(lead_client, lead, nl):
    url = f"/desk/dashboard/queues/{nl.pk}/auto-assign"
    before = last_event_id()
    paused = lead_client.post(url, {"paused": "1"}, **FETCH)
    assert paused.json() == {
        "message": "Auto-assign paused in KLM NL: tickets wait for you to hand them out."
    }
    assert Queue.objects.get(pk=nl.pk).auto_assign_paused is True
    resumed = lead_client.post(url, {"paused": "0"}, **FETCH)
    assert resumed.json() == {"message": "Auto-assign resumed in KLM NL: its backlog is being assigned."}
    assert Queue.objects.get(pk=nl.pk).auto_assign_paused is False
    assert events(since=before) == [
        ("queue.auto_assign_changed", None, nl.pk, lead.pk, {"paused": True}),
        ("queue.auto_assign_changed", None, nl.pk, lead.pk, {"paused": False}),
    ]
    bad = lead_client.post(url, {"paused": "yes"}, **FETCH)
    assert (bad.status_code, bad.json()) == (
        400,
        {"error": "Say whether to pause (1) or resume (0) auto-assign."},
    )


def test_paused_queue_shows_resume(lead_client, lead, nl):
    lead_client.post(f"/desk/dashboard/queues/{nl.pk}/auto-assign", {"paused": "1"}, **FETCH)
    html = lead_client.get("/desk/dashboard/queues", **FETCH).content.decode()
    assert "Auto-assign paused" in html and "Resume auto-assign" in html


# --- Agents -----------------------------------------------------------------------------


def test_set_away_and_redistribute(lead_client, lead, nl, anna, bob, tickets, redis_client):
    connect(anna)
    connect(bob)
    ticket_reassign(ticket=tickets["n1"], assignee=anna.user, actor=lead)
    ticket_reassign(ticket=tickets["n2"], assignee=anna.user, actor=lead)
    ticket_change_status(ticket=tickets["n2"], status="pending", actor=lead)
    before = last_event_id()
    response = lead_client.post(
        f"/desk/dashboard/agents/{anna.user_id}/presence",
        {"presence": "away", "redistribute": "1", "keep_pending": "1"},
        **FETCH,
    )
    assert response.json() == {
        "message": "Anna de Vries is now away. 1 ticket went to another agent. 0 went back to their queues. "
        "1 pending ticket stays with them."
    }
    assert AgentProfile.objects.get(pk=anna.pk).presence == "away"
    assert [Ticket.objects.get(pk=tickets[n].pk).assignee_id for n in ("n1", "n2")] == [
        bob.user_id,
        anna.user_id,
    ]
    changes = events(since=before)
    assert [(e[0], e[1], e[3]) for e in changes] == [
        ("presence.changed", None, lead.pk),
        ("ticket.assigned", tickets["n1"].pk, lead.pk),
    ]
    assert changes[0][4] == {
        "agent_id": anna.user_id,
        "presence": "away",
        "previous": "online",
        "reason": "set away by a lead",
    }
    assert (changes[1][4]["assignee_id"], changes[1][4]["previous_assignee_id"]) == (
        bob.user_id,
        anna.user_id,
    )


def test_set_away_and_redistribute_pending_too(lead_client, lead, anna, bob, tickets, redis_client):
    connect(anna)
    ticket_reassign(ticket=tickets["n2"], assignee=anna.user, actor=lead)
    ticket_change_status(ticket=tickets["n2"], status="pending", actor=lead)
    response = lead_client.post(
        f"/desk/dashboard/agents/{anna.user_id}/presence",
        {"presence": "offline", "redistribute": "1"},
        **FETCH,
    )
    assert response.json() == {
        "message": "Anna de Vries is now offline. 0 tickets went to other agents. 1 went back to its queue."
    }
    assert Ticket.objects.get(pk=tickets["n2"].pk).assignee_id is None


def test_set_away_keeping_the_tickets(lead_client, lead, anna, tickets, redis_client):
    connect(anna)
    ticket_reassign(ticket=tickets["n1"], assignee=anna.user, actor=lead)
    before = last_event_id()
    response = lead_client.post(
        f"/desk/dashboard/agents/{anna.user_id}/presence", {"presence": "away"}, **FETCH
    )
    assert response.json() == {"message": "Anna de Vries is now away; their tickets stay with them."}
    assert Ticket.objects.get(pk=tickets["n1"].pk).assignee_id == anna.user_id
    assert [e[0] for e in events(since=before)] == ["presence.changed"]


def test_back_online(lead_client, lead, anna, redis_client):
    connect(anna)
    lead_client.post(f"/desk/dashboard/agents/{anna.user_id}/presence", {"presence": "away"}, **FETCH)
    before = last_event_id()
    response = lead_client.post(
        f"/desk/dashboard/agents/{anna.user_id}/presence", {"presence": "online"}, **FETCH
    )
    assert response.json() == {"message": "Anna de Vries is online."}
    assert events("presence.changed", since=before) == [
        ("presence.changed", None, None, lead.pk, {
            "agent_id": anna.user_id, "presence": "online", "previous": "away", "reason": "set online by a lead",
        })
    ]  # fmt: skip


def test_back_online_without_a_desk_open(lead_client, anna, redis_client):
    response = lead_client.post(
        f"/desk/dashboard/agents/{anna.user_id}/presence", {"presence": "online"}, **FETCH
    )
    assert response.json() == {
        "message": "Anna de Vries is set online and shows as online as soon as they have the desk open."
    }
    assert AgentProfile.objects.get(pk=anna.pk).presence == "offline"


def test_presence_without_redis_is_a_clear_503(lead_client, anna, tickets, lead, monkeypatch):
    from redis import Redis

    from webcare.devtools.redis_server import free_port

    ticket_reassign(ticket=tickets["n1"], assignee=anna.user, actor=lead)
    dead = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
    monkeypatch.setattr(presence_service, "redis_client", lambda: dead)
    before = last_event_id()
    response = lead_client.post(
        f"/desk/dashboard/agents/{anna.user_id}/presence", {"presence": "away", "redistribute": "1"}, **FETCH
    )
    assert (response.status_code, response.json()) == (
        503, {"error": "Presence cannot be changed now: the presence store is unreachable. Try again."}
    )  # fmt: skip
    assert Ticket.objects.get(pk=tickets["n1"].pk).assignee_id == anna.user_id
    assert events(since=before) == []


def test_presence_refusals(lead_client, anna, redis_client):
    url = f"/desk/dashboard/agents/{anna.user_id}/presence"
    bad = lead_client.post(url, {"presence": "asleep"}, **FETCH)
    assert (bad.status_code, bad.json()) == (400, {"error": "Choose online, away or offline."})
    odd = lead_client.post(url, {"presence": "online", "redistribute": "1"}, **FETCH)
    assert (odd.status_code, odd.json()) == (
        400, {"error": "Tickets are redistributed only when an agent goes away or offline."}
    )  # fmt: skip
    unknown = lead_client.post("/desk/dashboard/agents/99999/presence", {"presence": "away"}, **FETCH)
    assert (unknown.status_code, unknown.json()) == (404, {"error": "No agent with number 99999."})


def test_change_capacity(lead_client, lead, anna):
    before = last_event_id()
    url = f"/desk/dashboard/agents/{anna.user_id}/capacity"
    response = lead_client.post(url, {"capacity": "5"}, **FETCH)
    assert response.json() == {"message": "Anna de Vries's capacity is now 5 (was 8)."}
    assert AgentProfile.objects.get(pk=anna.pk).capacity == 5
    assert events(since=before) == [
        ("agent.capacity_changed", None, None, lead.pk, {"agent_id": anna.user_id, "old": 8, "new": 5})
    ]
    same = lead_client.post(url, {"capacity": "5"}, **FETCH)
    assert same.json() == {"message": "Anna de Vries's capacity stays 5."}


@pytest.mark.parametrize("value", ["", "abc", "-1", "101", "2.5"])
def test_invalid_capacity(lead_client, anna, value):
    response = lead_client.post(
        f"/desk/dashboard/agents/{anna.user_id}/capacity", {"capacity": value}, **FETCH
    )
    assert (response.status_code, response.json()) == (
        400,
        {"error": "Capacity is a whole number from 0 to 100."},
    )
    assert AgentProfile.objects.get(pk=anna.pk).capacity == 8


# --- Hostile names, query count ---------------------------------------------------------


def test_hostile_agent_customer_and_queue_names_are_escaped(lead_client, lead):
    evil_queue = QueueFactory(name="<script>alert('q')</script>", slug="evil")
    profile = AgentProfileFactory(user__username="mallory", user__first_name="<img src=x onerror=alert(1)>")
    evil_queue.members.add(profile.user)
    ingest_batch(
        source=SourceFactory(name="evil", default_queue=evil_queue),
        messages=[
            inbound(
                "x1",
                author="evil",
                handle='"><svg onload=alert(2)>',
                text="<script>alert(3)</script> see javascript:alert(4) https://example.com/x",
            )
        ],
    )
    html = lead_client.get(DASHBOARD, {"queue": evil_queue.pk}).content.decode()
    for raw in ("<script>alert", "<img src=x", "<svg onload", 'href="javascript:'):
        assert raw not in html
    assert "&lt;script&gt;alert(&#x27;q&#x27;)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "@<bdi>&quot;&gt;&lt;svg onload=alert(2)&gt;</bdi>" in html
    assert (
        '<a href="https://example.com/x" target="_blank" rel="noopener noreferrer nofollow ugc">'
        "https://example.com/x</a>"
    ) in html
    assert "&lt;script&gt;alert(3)&lt;/script&gt; see javascript:alert(4) " in html


def test_page_query_count_is_constant(lead_client, lead, nl, en, anna, bob, erik, tickets):
    def count() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert lead_client.get(DASHBOARD, {"queue": nl.pk}).status_code == 200
        return len(ctx.captured_queries)

    before = count()
    for n in range(4):
        queue = QueueFactory(name=f"Extra {n}", slug=f"extra-{n}")
        queue.members.add(AgentProfileFactory().user, AgentProfileFactory().user)
        nl.members.add(AgentProfileFactory().user)
        ingest_batch(
            source=SourceFactory(name=f"extra-{n}", default_queue=queue),
            messages=[inbound(f"x{n}", author=f"x{n}")],
        )
    ingest_batch(
        source=SourceFactory(name="more-nl", default_queue=nl),
        messages=[inbound(f"m{n}", author=f"m{n}") for n in range(6)],
    )
    for n in range(3):
        ticket_reassign(ticket=ticket_of(f"m{n}"), assignee=anna.user, actor=lead)
    assert count() == before
