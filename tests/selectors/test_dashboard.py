"""The lead dashboard's reads: per-queue floor metrics, agents' load, a queue's ticket table."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from inbox.models import AgentProfile, Ticket
from inbox.selectors.dashboard import (
    METRIC_FILTERS,
    SHOW_CHOICES,
    QueueMetrics,
    dashboard_agents,
    dashboard_queues,
    dashboard_tickets,
)
from inbox.services.assignment import ticket_reassign
from inbox.services.ingest import ingest_batch
from inbox.services.sla import sla_evaluate, sla_policy_create
from inbox.services.tickets import ticket_change_status
from tests.factories import AgentProfileFactory, QueueFactory, SourceFactory, inbound

pytestmark = pytest.mark.django_db

T = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.get_fixed_timezone(0))


def at(minutes: float) -> datetime:
    return T + timedelta(minutes=minutes)


def ticket_of(external_id: str) -> Ticket:
    return Ticket.objects.get(messages__external_id=external_id)


@pytest.fixture
def lead(db):
    return AgentProfileFactory(
        role=AgentProfile.Role.LEAD, user__username="lea", user__first_name="Lea", user__last_name="Lead"
    ).user


@pytest.fixture
def floor(db, lead):
    """Three queues. KLM NL has an SLA (first response in 60 minutes) and, at T+70:

    * a: customer at T+0, nobody answered: breached, waiting since T+0;
    * b: customer at T+20: 50 of 60 minutes used, at risk;
    * c: customer at T+65, assigned to Anna: ok;
    * d: customer at T-30, assigned to Bob, pending (clock stopped; not waiting on us).

    KLM EN has no SLA:

    * f: customer at T+5, brand answered at T+15, customer again at T+30 and T+40:
      waiting since T+30;
    * g: customer at T+50, brand answered at T+55: nobody waits;
    * h: customer at T-60, solved: not on the floor.

    Empty has nothing.
    """
    nl = QueueFactory(name="KLM NL", slug="klm-nl")
    en = QueueFactory(name="KLM EN", slug="klm-en")
    empty = QueueFactory(name="Empty", slug="empty")
    sla_policy_create(name="NL care", queue=nl, first_response_minutes=60, notify_leads=False)
    anna = AgentProfileFactory(user__username="anna", user__first_name="Anna", capacity=8, languages=["nl"])
    bob = AgentProfileFactory(
        user__username="bob", user__first_name="Bob", capacity=3, languages=["nl", "en"]
    )
    nl.members.add(anna.user, bob.user)
    en.members.add(bob.user)

    nl_source = SourceFactory(name="klm-nl", default_queue=nl)
    en_source = SourceFactory(name="klm-en", default_queue=en)
    ingest_batch(
        source=nl_source,
        messages=[
            inbound("d1", author="dora", at=at(-30)),
            inbound("a1", author="ann", at=at(0)),
            inbound("b1", author="ben", at=at(20)),
            inbound("c1", author="cas", at=at(65)),
        ],
    )
    ingest_batch(
        source=en_source,
        messages=[
            inbound("h1", author="hal", at=at(-60)),
            inbound("f1", author="fay", at=at(5)),
            inbound("f2", author="brand", brand=True, reply_to="f1", at=at(15)),
            inbound("f3", author="fay", reply_to="f2", at=at(30)),
            inbound("f4", author="fay", reply_to="f3", at=at(40)),
            inbound("g1", author="gus", at=at(50)),
            inbound("g2", author="brand", brand=True, reply_to="g1", at=at(55)),
        ],
    )
    ticket_reassign(ticket=ticket_of("c1"), assignee=anna.user, actor=lead)
    ticket_reassign(ticket=ticket_of("d1"), assignee=bob.user, actor=lead)
    ticket_change_status(ticket=ticket_of("d1"), status="pending", actor=lead, now=at(1))
    ticket_change_status(ticket=ticket_of("h1"), status="solved", actor=lead, now=at(1))
    sla_evaluate(now=at(70))
    return {"nl": nl, "en": en, "empty": empty, "anna": anna, "bob": bob}


def test_every_queue_with_its_exact_metrics(floor, lead):
    nl, en, empty = floor["nl"], floor["en"], floor["empty"]
    states = {ext: ticket_of(ext).sla_state for ext in ("a1", "b1", "c1", "d1")}
    assert states == {"a1": "breached", "b1": "at_risk", "c1": "ok", "d1": "ok"}

    queues = dashboard_queues(user=lead)

    assert queues == [
        QueueMetrics(
            queue_id=empty.pk, name="Empty", assignment_mode="push",
            assignment_mode_label="Push: auto-assign to the best agent", auto_assign_paused=False,
            is_default=False, member_count=0, online_count=0, active=0, backlog=0, assigned=0,
            pending=0, at_risk=0, breached=0, oldest_waiting_since=None,
        ),
        QueueMetrics(
            queue_id=en.pk, name="KLM EN", assignment_mode="push",
            assignment_mode_label="Push: auto-assign to the best agent", auto_assign_paused=False,
            is_default=False, member_count=1, online_count=0, active=2, backlog=2, assigned=0,
            pending=0, at_risk=0, breached=0, oldest_waiting_since=at(30),
        ),
        QueueMetrics(
            queue_id=nl.pk, name="KLM NL", assignment_mode="push",
            assignment_mode_label="Push: auto-assign to the best agent", auto_assign_paused=False,
            is_default=False, member_count=2, online_count=0, active=4, backlog=2, assigned=1,
            pending=1, at_risk=1, breached=1, oldest_waiting_since=at(0),
        ),
    ]  # fmt: skip
    assert [q.alarm for q in queues] == ["", "", "breached"]


def test_alarm_is_orange_for_at_risk_only():
    base = dict(
        queue_id=1, name="q", assignment_mode="push", assignment_mode_label="", auto_assign_paused=False,
        is_default=False, member_count=0, online_count=0, active=1, backlog=1, assigned=0, pending=0,
        oldest_waiting_since=None,
    )  # fmt: skip
    assert QueueMetrics(**base, at_risk=2, breached=0).alarm == "at_risk"
    assert QueueMetrics(**base, at_risk=2, breached=1).alarm == "breached"
    assert QueueMetrics(**base, at_risk=0, breached=0).alarm == ""


def test_an_agent_sees_only_their_queues(floor):
    bob = floor["bob"].user
    assert [q.name for q in dashboard_queues(user=bob)] == ["KLM EN", "KLM NL"]
    anna = floor["anna"].user
    assert [q.name for q in dashboard_queues(user=anna)] == ["KLM NL"]


def test_agents_with_load_capacity_presence_languages_and_queue_names(floor, lead):
    floor["nl"].members.add(lead)
    AgentProfile.objects.filter(pk=floor["anna"].pk).update(presence="online")

    agents = dashboard_agents(user=lead, queues=dashboard_queues(user=lead))

    assert [
        (a.username, a.name, a.role, a.presence, a.load, a.capacity, a.languages, a.queue_names)
        for a in agents
    ] == [
        ("anna", "Anna", "agent", "online", 1, 8, ("nl",), ("KLM NL",)),
        ("bob", "Bob", "agent", "offline", 0, 3, ("nl", "en"), ("KLM EN", "KLM NL")),  # pending: no load
        ("lea", "Lea Lead", "lead", "offline", 0, 8, ("en",), ("KLM NL",)),
    ]
    anna = agents[0]
    assert (anna.at_capacity, anna.over_capacity) == (False, False)


def test_over_capacity_is_flagged(floor, lead):
    AgentProfile.objects.filter(pk=floor["anna"].pk).update(capacity=0)
    anna = dashboard_agents(user=lead, queues=[])[0]
    assert (anna.load, anna.capacity, anna.at_capacity, anna.over_capacity) == (1, 0, True, True)
    assert anna.queue_names == ()


def test_ticket_table_of_a_queue_nearest_sla_due_first(floor, lead):
    rows = list(dashboard_tickets(user=lead, queue_id=floor["nl"].pk))
    # a due T+60, b due T+80, c due T+125; d is pending (clock stopped) and comes last.
    assert [t.pk for t in rows] == [ticket_of(e).pk for e in ("a1", "b1", "c1", "d1")]
    assert [t.sla_due for t in rows] == [at(60), at(80), at(125), None]


@pytest.mark.parametrize("show", SHOW_CHOICES)
def test_each_ticket_selection_matches_its_metric(floor, lead, show):
    queues = {q.queue_id: q for q in dashboard_queues(user=lead)}
    for queue in (floor["nl"], floor["en"], floor["empty"]):
        shown = dashboard_tickets(user=lead, queue_id=queue.pk, show=show).count()
        expected = queues[queue.pk].active if show == "all" else getattr(queues[queue.pk], show)
        assert shown == expected, (queue.name, show)


def test_ticket_selections_hold_the_right_tickets(floor, lead):
    nl = floor["nl"].pk
    ids = {
        show: sorted(t.pk for t in dashboard_tickets(user=lead, queue_id=nl, show=show))
        for show in METRIC_FILTERS
    }
    assert ids == {
        "backlog": sorted([ticket_of("a1").pk, ticket_of("b1").pk]),
        "assigned": [ticket_of("c1").pk],
        "pending": [ticket_of("d1").pk],
        "at_risk": [ticket_of("b1").pk],
        "breached": [ticket_of("a1").pk],
    }


def test_unknown_selection_is_refused(lead):
    with pytest.raises(ValueError, match="unknown ticket selection 'mine'"):
        dashboard_tickets(user=lead, queue_id=1, show="mine")


def test_agent_sees_no_tickets_of_another_queue(floor):
    anna = floor["anna"].user
    assert list(dashboard_tickets(user=anna, queue_id=floor["en"].pk)) == []


def test_query_count_does_not_grow_with_queues_and_agents(floor, lead):
    def count() -> int:
        with CaptureQueriesContext(connection) as ctx:
            queues = dashboard_queues(user=lead)
            dashboard_agents(user=lead, queues=queues)
        return len(ctx.captured_queries)

    before = count()
    for n in range(5):
        queue = QueueFactory(name=f"Extra {n}", slug=f"extra-{n}")
        queue.members.add(AgentProfileFactory().user, AgentProfileFactory().user)
        source = SourceFactory(name=f"extra-{n}", default_queue=queue)
        ingest_batch(source=source, messages=[inbound(f"x{n}", author=f"x{n}", at=at(n))])
    assert count() == before == 5
