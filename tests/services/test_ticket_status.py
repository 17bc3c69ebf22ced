"""Ticket status and priority changes: allowed transitions, timestamps, SLA pause and resume,
events published after commit."""

from __future__ import annotations

import factory
import pytest

from inbox.models import RoutingRule, Ticket, TicketEvent
from inbox.selectors.sla import forget_sla_config, sla_config
from inbox.services.tickets import TicketChangeError, ticket_change_priority, ticket_change_status
from inbox.sla.policy import sla_for_new_ticket
from tests.factories import AgentProfileFactory, QueueFactory
from tests.sla import SlaPolicyFactory, TicketFactory, ams, office_calendar

pytestmark = pytest.mark.django_db

MON_9 = ams(2026, 11, 2, 9, 0)


class RoutingRuleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = RoutingRule

    name = factory.Sequence(lambda n: f"Rule {n}")


@pytest.fixture(autouse=True)
def _fresh_sla_config():
    forget_sla_config()
    yield
    forget_sla_config()


@pytest.fixture
def agent(db):
    return AgentProfileFactory(user__username="anna").user


@pytest.fixture
def queue(db):
    return QueueFactory(name="Care", slug="care", calendar=office_calendar("Office"))


@pytest.fixture
def policy(queue):
    return SlaPolicyFactory(
        name="Care normal", queue=queue, first_response_minutes=120, next_response_minutes=60,
        resolution_minutes=960, raise_priority=True,
    )  # fmt: skip


@pytest.fixture
def ticket(policy, queue):
    ticket = TicketFactory(queue=queue, opened_at=MON_9)
    sla_for_new_ticket(
        sla_config().select(queue_id=queue.pk, priority=ticket.priority), opened_at=MON_9
    ).apply(ticket)
    ticket.save()
    return ticket


def events_of(ticket: Ticket) -> list[tuple[str, int | None, dict]]:
    return [(e.type, e.actor_id, e.payload) for e in TicketEvent.objects.filter(ticket=ticket).order_by("id")]


def test_going_pending_stops_the_clock_and_is_published_after_commit(
    ticket, agent, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as published:
        changed = ticket_change_status(
            ticket=ticket, status="pending", actor=agent, now=ams(2026, 11, 2, 10, 0)
        )
    assert len(published) == 1
    changed.refresh_from_db()
    assert (changed.status, changed.pending_since, changed.first_response_due_at) == (
        "pending", ams(2026, 11, 2, 10, 0), ams(2026, 11, 2, 11, 0),
    )  # fmt: skip
    assert events_of(ticket) == [
        (
            "ticket.status_changed",
            agent.pk,
            {"old": "new", "new": "pending", "assignee_id": None, "status": "pending"},
        )
    ]


def test_back_from_pending_every_open_due_time_moves_by_the_business_time_paused(ticket, agent):
    ticket_change_status(ticket=ticket, status="pending", actor=agent, now=ams(2026, 11, 2, 10, 0))
    changed = ticket_change_status(ticket=ticket, status="open", actor=agent, now=ams(2026, 11, 3, 10, 0))
    changed.refresh_from_db()
    # 8 business hours pending: one hour of first response left, as when it went pending.
    assert (changed.status, changed.pending_since, changed.first_response_due_at, changed.resolution_due_at) == (
        "open", None, ams(2026, 11, 3, 11, 0), ams(2026, 11, 4, 17, 0),
    )  # fmt: skip
    assert [(t, p["old"], p["new"]) for t, _, p in events_of(ticket)] == [
        ("ticket.status_changed", "new", "pending"),
        ("ticket.status_changed", "pending", "open"),
    ]


def test_solving_stamps_the_time_and_fixes_the_sla_state(ticket, agent):
    changed = ticket_change_status(ticket=ticket, status="solved", actor=agent, now=ams(2026, 11, 2, 11, 30))
    changed.refresh_from_db()
    assert (changed.status, changed.solved_at, changed.sla_state, changed.priority) == (
        "solved", ams(2026, 11, 2, 11, 30), "breached", 1,
    )  # fmt: skip
    assert events_of(ticket) == [
        ("ticket.status_changed", agent.pk, {"old": "new", "new": "solved", "assignee_id": None, "status": "solved"}),
        (
            "sla.state_changed",
            None,
            {"target": "first_response", "old": "ok", "new": "breached", "due_at": "2026-11-02T10:00:00+00:00",
             "assignee_id": None, "status": "solved"},
        ),
    ]  # fmt: skip


def test_reopening_counts_and_continues_the_resolution_clock(ticket, agent):
    Ticket.objects.filter(pk=ticket.pk).update(first_response_at=ams(2026, 11, 2, 9, 30))
    ticket_change_status(ticket=ticket, status="solved", actor=agent, now=ams(2026, 11, 2, 13, 0))
    changed = ticket_change_status(ticket=ticket, status="open", actor=agent, now=ams(2026, 11, 5, 10, 0))
    changed.refresh_from_db()
    assert (changed.status, changed.solved_at, changed.reopened_count, changed.resolution_due_at) == (
        "open", None, 1, ams(2026, 11, 6, 14, 0),
    )  # fmt: skip


def test_a_breach_found_on_resume_escalates(ticket, agent):
    ticket_change_status(ticket=ticket, status="open", actor=agent, now=ams(2026, 11, 2, 9, 5))
    # Nobody ran the periodic evaluation; going pending at 11:10 finds the first response late.
    ticket_change_status(ticket=ticket, status="pending", actor=agent, now=ams(2026, 11, 2, 11, 10))
    ticket.refresh_from_db()
    assert (ticket.sla_state, ticket.priority) == ("breached", 2)
    assert [t for t, _, _ in events_of(ticket)] == [
        "ticket.status_changed",
        "ticket.status_changed",
        "sla.state_changed",
        "sla.breached",
        "ticket.priority_changed",
    ]


@pytest.mark.parametrize(
    ("start", "target"),
    [("new", "new"), ("closed", "open"), ("closed", "solved"), ("solved", "pending"), ("open", "new")],
)
def test_transitions_that_are_not_allowed(ticket, agent, start, target):
    Ticket.objects.filter(pk=ticket.pk).update(status=start)
    if start == target:
        assert ticket_change_status(ticket=ticket, status=target, actor=agent).status == start
    else:
        with pytest.raises(TicketChangeError, match=f"a ticket cannot go from {start} to {target}"):
            ticket_change_status(ticket=ticket, status=target, actor=agent)
    assert Ticket.objects.get(pk=ticket.pk).status == start
    assert TicketEvent.objects.count() == 0


def test_an_unknown_status_is_refused(ticket, agent):
    with pytest.raises(TicketChangeError, match="unknown status 'archived'"):
        ticket_change_status(ticket=ticket, status="archived", actor=agent)


def test_closing_needs_no_actor(ticket):
    ticket_change_status(ticket=ticket, status="closed", actor=None, now=ams(2026, 11, 2, 10, 0))
    assert events_of(ticket)[0][:2] == ("ticket.status_changed", None)


# --- Priority --------------------------------------------------------------------------------------


def test_raising_the_priority_moves_the_ticket_to_the_urgent_policy(ticket, agent, queue):
    urgent = SlaPolicyFactory(name="Care urgent", queue=queue, priority=3, first_response_minutes=30)
    forget_sla_config()  # the services that save policies do this after commit
    changed = ticket_change_priority(ticket=ticket, priority=3, actor=agent, now=ams(2026, 11, 2, 9, 10))
    changed.refresh_from_db()
    assert (changed.priority, changed.sla_policy_id, changed.first_response_due_at, changed.resolution_due_at) == (
        3, urgent.pk, ams(2026, 11, 2, 9, 30), None,
    )  # fmt: skip
    assert [(t, a) for t, a, _ in events_of(ticket)] == [
        ("ticket.priority_changed", agent.pk),
        ("sla.policy_changed", agent.pk),
    ]
    assert events_of(ticket)[0][2] == {"old": 1, "new": 3, "assignee_id": None, "status": "new"}


def test_a_policy_chosen_by_a_routing_rule_stays(ticket, agent, queue, policy):
    SlaPolicyFactory(name="Care urgent", queue=queue, priority=3, first_response_minutes=30)
    forget_sla_config()
    rule = RoutingRuleFactory(name="Press", sla_policy=policy)
    Ticket.objects.filter(pk=ticket.pk).update(routing_rule=rule)
    changed = ticket_change_priority(ticket=ticket, priority=3, actor=agent, now=ams(2026, 11, 2, 9, 10))
    assert (changed.priority, changed.sla_policy_id) == (3, policy.pk)
    assert [t for t, _, _ in events_of(ticket)] == ["ticket.priority_changed"]


def test_same_or_unknown_priority(ticket, agent):
    assert ticket_change_priority(ticket=ticket, priority=1, actor=agent).priority == 1
    with pytest.raises(TicketChangeError, match="unknown priority 7"):
        ticket_change_priority(ticket=ticket, priority=7, actor=agent)
    assert TicketEvent.objects.count() == 0
