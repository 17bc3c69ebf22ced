"""REST API for internal teams and escalations: who may do what, what they see, precise errors."""

from __future__ import annotations

from datetime import timedelta

import pytest
from rest_framework.test import APIClient

from inbox.models import AgentProfile, Escalation, InternalTeam, Message, Ticket
from inbox.services.escalations import escalation_answer, escalation_create
from inbox.services.ingest import ingest_batch
from tests.escalations.test_services import BAG_NOTE, InternalTeamFactory
from tests.factories import AgentProfileFactory, inbound

pytestmark = pytest.mark.django_db






@pytest.fixture
def lead(db):
    return AgentProfileFactory(user__username="lea", user__first_name="Lea", role=AgentProfile.Role.LEAD).user


@pytest.fixture
def desk_team(experts_queue):
    return InternalTeamFactory(name="Baggage experts", queue=experts_queue, target_minutes=30)


@pytest.fixture
def email_team(db):
    return InternalTeamFactory(name="Lost luggage", email="lostluggage@klm.example", target_minutes=45)


@pytest.fixture
def ticket(source, anna):
    ingest_batch(source=source, messages=[inbound("c1", author="cust1", text="Where is my bag?", minutes=0)])
    ticket = Ticket.objects.get()
    Ticket.objects.filter(pk=ticket.pk).update(assignee=anna)
    ticket.refresh_from_db()
    return ticket


def as_user(user) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_login(user)
    return client


# --- Internal teams ---------------------------------------------------------------------------


def test_everyone_in_the_desk_lists_teams_only_leads_write_them(
    anna, lead, desk_team, email_team, experts_queue
):
    listed = as_user(anna).get("/api/v1/internal-teams/")
    refused = as_user(anna).post(
        "/api/v1/internal-teams/", {"name": "Press office", "email": "press@klm.example"}
    )
    anonymous = as_user(None).get("/api/v1/internal-teams/")
    created = as_user(lead).post(
        "/api/v1/internal-teams/",
        {"name": "Press office", "email": "press@klm.example", "target_minutes": 240},
        format="json",
    )

    assert (listed.status_code, listed.json()["results"]) == (
        200,
        [
            {
                "id": desk_team.pk,
                "name": "Baggage experts",
                "queue": experts_queue.pk,
                "email": "",
                "target_minutes": 30,
                "active": True,
            },
            {
                "id": email_team.pk,
                "name": "Lost luggage",
                "queue": None,
                "email": "lostluggage@klm.example",
                "target_minutes": 45,
                "active": True,
            },
        ],
    )
    assert (refused.status_code, refused.json()) == (
        403,
        {"detail": "Only team leads and admins may do this."},
    )
    assert (anonymous.status_code, anonymous.json()) == (
        403,
        {"detail": "Authentication credentials were not provided."},
    )
    press = InternalTeam.objects.get(name="Press office")
    assert (created.status_code, created.json()) == (
        201,
        {
            "id": press.pk,
            "name": "Press office",
            "queue": None,
            "email": "press@klm.example",
            "target_minutes": 240,
            "active": True,
        },
    )


def test_team_writes_are_checked_precisely(lead, email_team):
    client = as_user(lead)
    no_channel = client.post("/api/v1/internal-teams/", {"name": "Press office"}, format="json")
    unknown_queue = client.post(
        "/api/v1/internal-teams/", {"name": "Press office", "queue": 999_999}, format="json"
    )
    duplicate = client.post(
        "/api/v1/internal-teams/", {"name": "Lost Luggage", "email": "x@klm.example"}, format="json"
    )
    deactivated = client.patch(f"/api/v1/internal-teams/{email_team.pk}/", {"active": False}, format="json")
    missing = client.patch("/api/v1/internal-teams/999999/", {"active": False}, format="json")
    deleted = client.delete(f"/api/v1/internal-teams/{email_team.pk}/")

    assert (no_channel.status_code, no_channel.json()) == (
        400,
        {"detail": "team 'Press office' needs a desk queue or an e-mail address"},
    )
    assert (unknown_queue.status_code, unknown_queue.json()) == (
        400,
        {"queue": ['Invalid pk "999999" - object does not exist.']},
    )
    assert (duplicate.status_code, duplicate.json()) == (
        400,
        {"detail": "there is already a team called 'Lost Luggage'"},
    )
    assert (deactivated.status_code, deactivated.json()["active"]) == (200, False)
    assert (missing.status_code, missing.json()) == (
        404,
        {"detail": "No InternalTeam matches the given query."},
    )
    assert deleted.status_code == 405
    assert InternalTeam.objects.count() == 1


# --- Escalating ---------------------------------------------------------------------------------


def test_agent_escalates_a_ticket_they_work(ticket, anna, desk_team):
    response = as_user(anna).post(
        "/api/v1/escalations/", {"ticket": ticket.pk, "team": desk_team.pk, "note": BAG_NOTE}, format="json"
    )

    escalation = Escalation.objects.get()
    assert response.status_code == 201
    assert response.json() == {
        "id": escalation.pk,
        "ticket": ticket.pk,
        "team": {"id": desk_team.pk, "name": "Baggage experts"},
        "note": BAG_NOTE,
        "status": "waiting",
        "created_by": anna.pk,
        "created_at": response.json()["created_at"],
        "due_at": response.json()["due_at"],
        "waited_seconds": 0,
        "due_state": "on_time",
        "email_state": "",
        "answer": "",
        "answered_by": "",
        "answered_at": None,
    }
    assert "reply_token" not in response.json()  # the secret of the e-mail reply never leaves the desk
    assert Message.objects.filter(ticket=ticket, direction=Message.Direction.NOTE).count() == 1


def test_escalating_unknown_or_invisible_things_is_refused_precisely(
    ticket, anna, outsider, desk_team, email_team
):
    invisible = as_user(outsider).post(
        "/api/v1/escalations/", {"ticket": ticket.pk, "team": desk_team.pk, "note": BAG_NOTE}, format="json"
    )
    unknown_team = as_user(anna).post(
        "/api/v1/escalations/", {"ticket": ticket.pk, "team": 999_999, "note": BAG_NOTE}, format="json"
    )
    empty = as_user(anna).post(
        "/api/v1/escalations/", {"ticket": ticket.pk, "team": desk_team.pk, "note": "  "}, format="json"
    )
    InternalTeam.objects.filter(pk=email_team.pk).update(active=False)
    inactive = as_user(anna).post(
        "/api/v1/escalations/", {"ticket": ticket.pk, "team": email_team.pk, "note": BAG_NOTE}, format="json"
    )

    assert (invisible.status_code, invisible.json()) == (
        400,
        {"ticket": [f'Invalid pk "{ticket.pk}" - object does not exist.']},
    )
    assert (unknown_team.status_code, unknown_team.json()) == (
        400,
        {"team": ['Invalid pk "999999" - object does not exist.']},
    )
    assert (empty.status_code, empty.json()) == (400, {"note": ["This field may not be blank."]})
    assert (inactive.status_code, inactive.json()) == (400, {"detail": "team 'Lost luggage' is not active"})
    assert Escalation.objects.count() == 0


# --- Reading: scoping -----------------------------------------------------------------------------


def test_list_and_retrieve_are_scoped(ticket, anna, expert, outsider, lead, desk_team, email_team):
    to_experts = escalation_create(ticket=ticket, team=desk_team, note=BAG_NOTE, actor=anna)
    to_mail = escalation_create(ticket=ticket, team=email_team, note=BAG_NOTE, actor=anna)

    def ids(user, query: str = "") -> list[int]:
        response = as_user(user).get(f"/api/v1/escalations/{query}")
        assert response.status_code == 200
        return [row["id"] for row in response.json()["results"]]

    assert ids(anna) == [to_mail.pk, to_experts.pk]  # newest first
    assert ids(expert) == [to_experts.pk]
    assert ids(outsider) == []
    assert ids(lead) == [to_mail.pk, to_experts.pk]
    assert ids(anna, f"?team={email_team.pk}&status=waiting&ticket={ticket.pk}") == [to_mail.pk]
    assert ids(anna, "?status=answered") == []

    hidden = as_user(outsider).get(f"/api/v1/escalations/{to_experts.pk}/")
    unknown = as_user(lead).get("/api/v1/escalations/999999/")
    assert (hidden.status_code, hidden.json()) == (404, {"detail": "No Escalation matches the given query."})
    assert (unknown.status_code, unknown.json()) == (
        404,
        {"detail": "No Escalation matches the given query."},
    )
    mail_row = as_user(anna).get(f"/api/v1/escalations/{to_mail.pk}/").json()
    assert (mail_row["email_state"], mail_row["team"]) == (
        "queued",
        {"id": email_team.pk, "name": "Lost luggage"},
    )


# --- Answering and cancelling -----------------------------------------------------------------------


def test_desk_expert_answers_once_and_others_may_not(ticket, anna, expert, outsider, desk_team):
    escalation = escalation_create(ticket=ticket, team=desk_team, note=BAG_NOTE, actor=anna)
    url = f"/api/v1/escalations/{escalation.pk}/answer/"

    by_agent = as_user(anna).post(url, {"text": "I know it"}, format="json")
    by_outsider = as_user(outsider).post(url, {"text": "I know it"}, format="json")
    empty = as_user(expert).post(url, {"text": ""}, format="json")
    answered = as_user(expert).post(url, {"text": "Found in AMS, on KL641 tomorrow."}, format="json")
    again = as_user(expert).post(url, {"text": "Found in AMS, on KL641 tomorrow."}, format="json")
    unknown = as_user(expert).post("/api/v1/escalations/999999/answer/", {"text": "x"}, format="json")

    assert (by_agent.status_code, by_agent.json()) == (
        403,
        {
            "detail": f"Only members of the team's desk queue and team leads may answer escalation {escalation.pk}."
        },
    )
    assert (by_outsider.status_code, by_outsider.json()) == (
        404,
        {"detail": "No Escalation matches the given query."},
    )
    assert (empty.status_code, empty.json()) == (400, {"text": ["This field may not be blank."]})
    assert answered.status_code == 200
    body = answered.json()
    assert (body["status"], body["answer"], body["answered_by"]) == (
        "answered",
        "Found in AMS, on KL641 tomorrow.",
        "Piet Smit",
    )
    escalation.refresh_from_db()
    assert (again.status_code, again.json()) == (
        409,
        {
            "detail": f"escalation {escalation.pk} was already answered by Piet Smit at "
            f"{escalation.answered_at.isoformat()}"
        },
    )
    assert (unknown.status_code, unknown.json()) == (
        404,
        {"detail": "No Escalation matches the given query."},
    )
    assert Message.objects.filter(direction=Message.Direction.NOTE).count() == 2
    ticket.refresh_from_db()
    assert ticket.status == "open"


def test_lead_may_answer_for_an_email_team(ticket, anna, lead, email_team):
    escalation = escalation_create(ticket=ticket, team=email_team, note=BAG_NOTE, actor=anna)
    response = as_user(lead).post(
        f"/api/v1/escalations/{escalation.pk}/answer/",
        {"text": "Lost & Found phoned: bag found."},
        format="json",
    )
    assert (response.status_code, response.json()["answered_by"], response.json()["status"]) == (
        200,
        "Lea",
        "answered",
    )


def test_agent_cancels_the_expert_may_not_and_cancelled_cannot_be_answered(ticket, anna, expert, desk_team):
    escalation = escalation_create(ticket=ticket, team=desk_team, note=BAG_NOTE, actor=anna)
    url = f"/api/v1/escalations/{escalation.pk}/cancel/"

    by_expert = as_user(expert).post(url, {}, format="json")
    cancelled = as_user(anna).post(url, {"reason": "Customer found it"}, format="json")
    twice = as_user(anna).post(url, {}, format="json")
    answer = as_user(expert).post(
        f"/api/v1/escalations/{escalation.pk}/answer/", {"text": "x"}, format="json"
    )

    assert (by_expert.status_code, by_expert.json()) == (
        403,
        {"detail": f"Only agents who may work ticket #{ticket.pk} may cancel its escalation."},
    )
    assert (cancelled.status_code, cancelled.json()["status"], cancelled.json()["waited_seconds"]) == (
        200,
        "cancelled",
        None,
    )
    assert (twice.status_code, twice.json()) == (409, {"detail": f"escalation {escalation.pk} was cancelled"})
    assert (answer.status_code, answer.json()) == (
        409,
        {"detail": f"escalation {escalation.pk} was cancelled"},
    )


def test_answered_escalation_shows_its_stopped_clock(ticket, anna, expert, desk_team):
    escalation = escalation_create(ticket=ticket, team=desk_team, note=BAG_NOTE, actor=anna)
    escalation_answer(escalation=escalation, text="On its way", answered_by="Piet Smit", actor=expert)
    escalation.refresh_from_db()
    # Answered an hour and a minute after escalating, against a 30-minute target.
    Escalation.objects.filter(pk=escalation.pk).update(
        answered_at=escalation.created_at + timedelta(minutes=61)
    )

    row = as_user(anna).get(f"/api/v1/escalations/{escalation.pk}/").json()

    assert (row["status"], row["waited_seconds"], row["due_state"]) == ("answered", 3660, "overdue")


def test_listing_costs_the_same_queries_for_one_or_many_escalations(source, anna, desk_team, email_team):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def escalate(n: int) -> None:
        ingest_batch(source=source, messages=[inbound(f"m{n}", author=f"cust{n}", text="Bag?", minutes=n)])
        ticket = Ticket.objects.order_by("-pk").first()
        Ticket.objects.filter(pk=ticket.pk).update(assignee=anna)
        escalation_create(ticket=ticket, team=email_team if n % 2 else desk_team, note=BAG_NOTE, actor=anna)

    client = as_user(anna)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/api/v1/escalations/").status_code == 200
        return len(captured)

    escalate(1)
    one = queries()
    for n in range(2, 7):
        escalate(n)
    assert queries() == one
