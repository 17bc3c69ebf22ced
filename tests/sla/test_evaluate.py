"""The periodic SLA evaluation on the database: at risk at 80%, breached at 100%, each event
exactly once, escalation (leads notified, priority raised), and a lead changing the policy."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from inbox.models import Ticket, TicketEvent
from inbox.realtime import groups
from inbox.realtime.publish import route_events
from inbox.selectors.sla import VERSION_KEY, forget_sla_config, sla_config
from inbox.services.sla import sla_apply_policy, sla_evaluate, sla_policy_create
from inbox.sla.policy import sla_for_new_ticket
from tests.factories import AgentProfileFactory, QueueFactory
from tests.sla import SlaPolicyFactory, TicketFactory, ams, office_calendar

pytestmark = pytest.mark.django_db

MON_9 = ams(2026, 11, 2, 9, 0)
FIRST_DUE = ams(2026, 11, 2, 11, 0)


@pytest.fixture(autouse=True)
def _fresh_sla_config():
    forget_sla_config()
    yield
    forget_sla_config()


@pytest.fixture
def queue(db):
    # The policy has no calendar of its own: it runs on the queue's office hours.
    return QueueFactory(name="Care", slug="care", calendar=office_calendar("Office NL", holiday_country="NL"))


@pytest.fixture
def policy(queue):
    return SlaPolicyFactory(
        name="Care", queue=queue, first_response_minutes=120, next_response_minutes=60,
        resolution_minutes=960, notify_leads=True, raise_priority=True,
    )  # fmt: skip


def sla_ticket(queue, *, opened_at=MON_9, **fields) -> Ticket:
    """A ticket as ingest will create it: the policy selected and due times applied."""
    ticket = TicketFactory(queue=queue, opened_at=opened_at, **fields)
    applied = sla_config().select(queue_id=queue.pk, priority=ticket.priority)
    sla_for_new_ticket(applied, opened_at=opened_at).apply(ticket)
    ticket.save()
    return Ticket.objects.get(pk=ticket.pk)


def sla_events(ticket: Ticket) -> list[tuple[str, dict]]:
    return [(e.type, e.payload) for e in TicketEvent.objects.filter(ticket=ticket).order_by("id")]


def test_a_new_ticket_is_ok_with_due_times_on_the_queue_calendar(policy, queue):
    ticket = sla_ticket(queue)
    assert (ticket.sla_policy_id, ticket.sla_state) == (policy.pk, "ok")
    assert (ticket.first_response_due_at, ticket.resolution_due_at) == (FIRST_DUE, ams(2026, 11, 3, 17, 0))


def test_before_80_percent_nothing_happens(policy, queue):
    ticket = sla_ticket(queue)
    assert sla_evaluate(now=ams(2026, 11, 2, 10, 35, 59)) == 0
    ticket.refresh_from_db()
    assert ticket.sla_state == "ok"
    assert sla_events(ticket) == []


def test_at_80_percent_the_ticket_is_at_risk_once(policy, queue):
    ticket = sla_ticket(queue)
    now = ams(2026, 11, 2, 10, 36)
    assert sla_evaluate(now=now) == 1
    ticket.refresh_from_db()
    assert (ticket.sla_state, ticket.sla_state_changed_at, ticket.priority) == ("at_risk", now, 1)
    expected = [
        (
            "sla.state_changed",
            {"target": "first_response", "old": "ok", "new": "at_risk", "due_at": "2026-11-02T10:00:00+00:00",
             "assignee_id": None, "status": "new"},
        )
    ]  # fmt: skip
    assert sla_events(ticket) == expected
    # Running again, now or a little later, writes nothing new.
    assert sla_evaluate(now=now) == 0
    assert sla_evaluate(now=ams(2026, 11, 2, 10, 50)) == 0
    assert sla_events(ticket) == expected


def test_at_100_percent_the_breach_escalates_once(policy, queue, django_capture_on_commit_callbacks):
    ticket = sla_ticket(queue)
    sla_evaluate(now=ams(2026, 11, 2, 10, 36))
    with django_capture_on_commit_callbacks() as published:
        assert sla_evaluate(now=FIRST_DUE) == 1
    assert len(published) == 1
    ticket.refresh_from_db()
    assert (ticket.sla_state, ticket.sla_state_changed_at, ticket.priority) == ("breached", FIRST_DUE, 2)
    breach_events = sla_events(ticket)[1:]
    assert breach_events == [
        (
            "sla.state_changed",
            {"target": "first_response", "old": "at_risk", "new": "breached", "due_at": "2026-11-02T10:00:00+00:00",
             "assignee_id": None, "status": "new"},
        ),
        (
            "sla.breached",
            {"target": "first_response", "due_at": "2026-11-02T10:00:00+00:00", "policy_id": policy.pk,
             "assignee_id": None, "status": "new"},
        ),
        ("ticket.priority_changed", {"old": 1, "new": 2, "reason": "sla breached", "assignee_id": None,
                                     "status": "new"}),
    ]  # fmt: skip
    # The leads hear of it.
    breached = TicketEvent.objects.get(type="sla.breached")
    assert [e["id"] for e in route_events([breached])[groups.LEADS]] == [breached.pk]

    assert sla_evaluate(now=ams(2026, 11, 2, 12, 0)) == 0
    assert sla_evaluate(now=ams(2026, 11, 9, 12, 0)) == 0
    ticket.refresh_from_db()
    assert ticket.priority == 2
    assert len(sla_events(ticket)) == 4


def test_a_ticket_can_go_from_ok_straight_to_breached(queue):
    SlaPolicyFactory(queue=queue, first_response_minutes=120, notify_leads=False, raise_priority=False)
    ticket = sla_ticket(queue)
    assert sla_evaluate(now=ams(2026, 11, 2, 11, 30)) == 1
    assert [(t, p["old"], p["new"]) for t, p in sla_events(ticket)] == [
        ("sla.state_changed", "ok", "breached")
    ]
    ticket.refresh_from_db()
    assert (ticket.sla_state, ticket.priority) == ("breached", 1)


def test_an_urgent_ticket_is_not_raised_further(policy, queue):
    ticket = sla_ticket(queue, priority=Ticket.Priority.URGENT)
    assert ticket.sla_policy_id == policy.pk
    sla_evaluate(now=FIRST_DUE)
    ticket.refresh_from_db()
    assert ticket.priority == 3
    assert [t for t, _ in sla_events(ticket)] == ["sla.state_changed", "sla.breached"]


def test_pending_and_solved_tickets_are_left_alone(policy, queue):
    pending = sla_ticket(queue, status=Ticket.Status.PENDING)
    Ticket.objects.filter(pk=pending.pk).update(pending_since=ams(2026, 11, 2, 10, 0))
    solved = sla_ticket(queue, status=Ticket.Status.SOLVED, solved_at=ams(2026, 11, 2, 9, 30))
    assert sla_evaluate(now=ams(2026, 11, 9, 12, 0)) == 0
    assert list(Ticket.objects.order_by("pk").values_list("sla_state", flat=True)) == ["ok", "ok"]
    assert TicketEvent.objects.filter(ticket__in=[pending, solved]).count() == 0


def test_the_resolution_and_next_response_targets_are_watched_too(policy, queue):
    ticket = sla_ticket(queue)
    Ticket.objects.filter(pk=ticket.pk).update(
        first_response_at=ams(2026, 11, 2, 9, 30), next_response_due_at=ams(2026, 11, 3, 16, 0)
    )
    sla_evaluate(now=ams(2026, 11, 3, 15, 48))  # 48 of 60 minutes: at risk
    sla_evaluate(now=ams(2026, 11, 3, 16, 0))
    assert [(p["target"], p["new"]) for t, p in sla_events(ticket) if t == "sla.state_changed"] == [
        ("next_response", "at_risk"),
        ("next_response", "breached"),
    ]


def test_only_tickets_whose_time_has_come_are_loaded(policy, queue, django_assert_num_queries):
    for _ in range(30):
        sla_ticket(queue, opened_at=ams(2026, 11, 2, 10, 0))
    sla_config()  # warm, as in a running worker
    with django_assert_num_queries(1):
        assert sla_evaluate(now=ams(2026, 11, 2, 11, 0)) == 0


def test_many_tickets_are_handled_in_batches(policy, queue):
    tickets = [sla_ticket(queue) for _ in range(5)]
    assert sla_evaluate(now=FIRST_DUE, batch_size=2) == 5
    assert set(Ticket.objects.values_list("sla_state", flat=True)) == {"breached"}
    assert TicketEvent.objects.filter(ticket__in=tickets, type="sla.state_changed").count() == 5


# --- A lead changes the policy -------------------------------------------------------------------


def test_a_lead_moves_a_ticket_to_a_faster_policy(policy, queue):
    fast = SlaPolicyFactory(name="Press", first_response_minutes=30, resolution_minutes=480)
    lead = AgentProfileFactory(role="lead").user
    ticket = sla_ticket(queue)
    ticket = sla_apply_policy(ticket=ticket, policy=fast, actor=lead, now=ams(2026, 11, 2, 9, 40))
    ticket.refresh_from_db()
    # No calendar on either policy: both run on the queue's office hours.
    assert (ticket.sla_policy_id, ticket.first_response_due_at, ticket.resolution_due_at) == (
        fast.pk, ams(2026, 11, 2, 9, 30), ams(2026, 11, 2, 17, 0),
    )  # fmt: skip
    assert ticket.sla_state == "breached"
    events = TicketEvent.objects.filter(ticket=ticket).order_by("id")
    assert [(e.type, e.actor_id) for e in events] == [
        ("sla.policy_changed", lead.pk),
        ("sla.state_changed", None),
        ("sla.breached", None),
    ]
    assert events[0].payload == {
        "old_policy_id": policy.pk, "new_policy_id": fast.pk,
        "first_response_due_at": "2026-11-02T08:30:00+00:00", "next_response_due_at": None,
        "resolution_due_at": "2026-11-02T16:00:00+00:00", "assignee_id": None, "status": "new",
    }  # fmt: skip
    # The same policy again changes nothing.
    sla_apply_policy(ticket=ticket, policy=fast, actor=lead)
    assert TicketEvent.objects.filter(ticket=ticket).count() == 3


def test_removing_the_policy_clears_the_sla(policy, queue):
    ticket = sla_apply_policy(ticket=sla_ticket(queue), policy=None, now=ams(2026, 11, 2, 9, 40))
    ticket.refresh_from_db()
    assert (ticket.sla_policy_id, ticket.first_response_due_at, ticket.resolution_due_at, ticket.sla_state) == (
        None, None, None, "",
    )  # fmt: skip
    assert [e.type for e in TicketEvent.objects.filter(ticket=ticket)] == [
        "sla.policy_changed",
        "sla.state_changed",
    ]


# --- Configuration cache -------------------------------------------------------------------------


def test_a_new_policy_reaches_the_cached_configuration_after_commit(
    queue, redis_client, django_capture_on_commit_callbacks
):
    assert len(sla_config().policies) == 0
    with django_capture_on_commit_callbacks(execute=True):
        created = sla_policy_create(name="Any", first_response_minutes=60)
    assert list(sla_config().policies.by_id) == [created.pk]
    assert redis_client.get(f"webcare:1:{VERSION_KEY}") == b"1"


# --- Two runs at once ----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_runs_at_once_write_each_event_once(policy, queue):
    tickets = [sla_ticket(queue) for _ in range(40)]
    barrier = threading.Barrier(2)
    counts, errors = [], []

    def run():
        try:
            barrier.wait()
            counts.append(sla_evaluate(now=FIRST_DUE, batch_size=7))
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert sum(counts) == 40
    assert set(Ticket.objects.values_list("sla_state", "priority")) == {("breached", 2)}
    assert set(TicketEvent.objects.filter(ticket__in=tickets).values_list("type", flat=True)) == {
        "sla.breached", "sla.state_changed", "ticket.priority_changed",
    }  # fmt: skip
    assert TicketEvent.objects.filter(ticket__in=tickets).count() == 3 * 40
