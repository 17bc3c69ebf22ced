"""Assignment services on the database: push, pull, sticky follow-ups, sweep, lead operations."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inbox.models import AgentProfile, Queue, Ticket, TicketEvent
from inbox.routing.assign import choose_agent, required_language
from inbox.selectors.agents import queue_agent_states
from inbox.selectors.tickets import TicketFilters
from inbox.services import presence as presence_service
from inbox.services.assignment import (
    AssignmentError,
    agent_set_away_and_redistribute,
    agent_set_capacity,
    assignment_assign,
    assignment_capacity_freed,
    assignment_sweep,
    assignment_take_next,
    queue_move_backlog,
    queue_set_auto_assign,
    ticket_reassign,
    tickets_bulk_reassign,
)
from inbox.tasks import assignment as tasks
from tests.assignment import T0, TicketFactory, make_agent
from tests.factories import QueueFactory

pytestmark = pytest.mark.django_db

NOW = T0 + timedelta(hours=3)


class Recorder:
    """Stands in for a Celery task: records what would have been queued."""

    def __init__(self, name: str, calls: list) -> None:
        self.name = name
        self.calls = calls

    def delay(self, *args) -> None:
        self.calls.append((self.name, args))


@pytest.fixture
def queued(monkeypatch) -> list:
    calls: list = []
    monkeypatch.setattr(tasks, "sweep_queue", Recorder("sweep_queue", calls))
    monkeypatch.setattr(tasks, "assign_tickets", Recorder("assign_tickets", calls))
    return calls


@pytest.fixture
def care(db) -> Queue:
    return QueueFactory(name="Care", slug="care")


@pytest.fixture
def lead(db, redis_client) -> AgentProfile:
    return make_agent(role=AgentProfile.Role.LEAD, username="lead", presence="offline")


def assigned_events(**filters) -> list[tuple]:
    return list(
        TicketEvent.objects.filter(type="ticket.assigned", **filters)
        .order_by("id")
        .values_list("ticket_id", "actor_id", "payload")
    )


def owners(*tickets: Ticket) -> list[int | None]:
    return [Ticket.objects.get(pk=t.pk).assignee_id for t in tickets]


# --- Push --------------------------------------------------------------------------------------


def test_new_ticket_goes_to_the_least_loaded_speaker_with_one_event(care, queued):
    busy = make_agent(queues=[care], languages=["nl"], last_assigned_at=NOW - timedelta(minutes=30))
    TicketFactory.create_batch(2, queue=care, assignee=busy.user, status="open")
    free = make_agent(queues=[care], languages=["nl", "en"], last_assigned_at=NOW - timedelta(minutes=14))
    make_agent(queues=[care], languages=["en"])
    ticket = TicketFactory(queue=care, language="nl")

    result = assignment_assign(ticket_ids=[ticket.pk], now=NOW)

    assert (result.assigned, result.waiting, result.released, result.contended) == (1, 0, 0, False)
    ticket.refresh_from_db()
    assert (ticket.assignee_id, ticket.assigned_at) == (free.user_id, NOW)
    assert assigned_events() == [
        (ticket.pk, None, {
            "assignee_id": free.user_id, "previous_assignee_id": None, "rule": "language",
            "reason": "language nl, load 0/8, idle 14m", "status": "new",
        })
    ]  # fmt: skip
    free.refresh_from_db()
    busy.refresh_from_db()
    assert (free.last_assigned_at, busy.last_assigned_at) == (NOW, NOW - timedelta(minutes=30))
    assert queued == []


def test_ticket_waits_when_no_speaker_has_room_and_nothing_is_written(care):
    make_agent(queues=[care], languages=["nl"], capacity=0)
    make_agent(queues=[care], languages=["en"])
    ticket = TicketFactory(queue=care, language="nl")

    result = assignment_assign(ticket_ids=[ticket.pk], now=NOW)

    assert (result.assigned, result.waiting) == (0, 1)
    assert owners(ticket) == [None]
    assert TicketEvent.objects.count() == 0


def test_noise_pending_solved_and_queueless_tickets_are_left_alone(care):
    make_agent(queues=[care])
    tickets = [
        TicketFactory(queue=care, is_noise=True),
        TicketFactory(queue=care, status="pending"),
        TicketFactory(queue=care, status="solved"),
        TicketFactory(queue=None),
    ]
    result = assignment_assign(ticket_ids=[t.pk for t in tickets], now=NOW)
    assert (result.assigned, result.waiting) == (0, 0)
    assert owners(*tickets) == [None, None, None, None]


def test_paused_queue_is_not_auto_assigned(care):
    care.auto_assign_paused = True
    care.save(update_fields=["auto_assign_paused"])
    make_agent(queues=[care])
    ticket = TicketFactory(queue=care)

    assert assignment_assign(ticket_ids=[ticket.pk], now=NOW).assigned == 0
    assert assignment_sweep(queue_id=care.pk, now=NOW).assigned == 0
    assert owners(ticket) == [None]


def test_pull_queue_keeps_tickets_for_agents_to_take(care):
    care.assignment_mode = Queue.AssignmentMode.PULL
    care.save(update_fields=["assignment_mode"])
    make_agent(queues=[care])
    ticket = TicketFactory(queue=care)

    assert assignment_assign(ticket_ids=[ticket.pk], now=NOW).assigned == 0
    assert assignment_sweep(queue_id=care.pk, now=NOW).assigned == 0
    assert owners(ticket) == [None]


def test_assigning_twice_changes_nothing_the_second_time(care):
    make_agent(queues=[care])
    ticket = TicketFactory(queue=care)
    assert assignment_assign(ticket_ids=[ticket.pk, ticket.pk], now=NOW).assigned == 1
    assert assignment_assign(ticket_ids=[ticket.pk], now=NOW).assigned == 0
    assert TicketEvent.objects.filter(type="ticket.assigned").count() == 1


# --- Follow-ups and reopened tickets -----------------------------------------------------------


def test_follow_up_goes_back_to_the_customers_last_agent(care):
    last = make_agent(queues=[care], username="last")
    TicketFactory.create_batch(3, queue=care, assignee=last.user, status="open")
    make_agent(queues=[care], username="idle")
    earlier = TicketFactory(
        queue=care, assignee=last.user, status="solved", last_message_at=NOW - timedelta(days=2)
    )
    follow_up = TicketFactory(queue=care, contact=earlier.contact, customer=earlier.customer)

    assignment_assign(ticket_ids=[follow_up.pk], now=NOW)

    assert owners(follow_up) == [last.user_id]
    assert assigned_events(ticket=follow_up)[0][2]["reason"] == "sticky: customer's last agent, load 3/8"


def test_follow_up_goes_to_the_best_agent_when_the_last_one_is_offline_or_stickiness_is_off(care):
    last = make_agent(queues=[care], presence="offline", username="last")
    idle = make_agent(queues=[care], username="idle")
    earlier = TicketFactory(
        queue=care, assignee=last.user, status="solved", last_message_at=NOW - timedelta(days=1)
    )
    first = TicketFactory(queue=care, contact=earlier.contact, customer=earlier.customer)
    assignment_assign(ticket_ids=[first.pk], now=NOW)
    assert owners(first) == [idle.user_id]

    care.sticky_follow_ups = False
    care.save(update_fields=["sticky_follow_ups"])
    AgentProfile.objects.filter(pk=last.pk).update(presence="online")
    TicketFactory(queue=care, assignee=idle.user, status="open")
    second = TicketFactory(queue=care, contact=earlier.contact, customer=earlier.customer)
    assignment_assign(ticket_ids=[second.pk], now=NOW)
    assert owners(second) == [last.user_id]  # least loaded, not sticky


def test_reopened_ticket_stays_with_its_online_agent_even_at_capacity(care):
    owner = make_agent(queues=[care], capacity=1)
    make_agent(queues=[care])
    ticket = TicketFactory(queue=care, assignee=owner.user, status="open")

    assert assignment_assign(ticket_ids=[ticket.pk], now=NOW).assigned == 0
    assert owners(ticket) == [owner.user_id]
    assert TicketEvent.objects.count() == 0


def test_reopened_ticket_of_an_offline_agent_moves_to_an_online_one(care):
    gone = make_agent(queues=[care], presence="offline")
    here = make_agent(queues=[care])
    ticket = TicketFactory(queue=care, assignee=gone.user, status="open")

    assert assignment_assign(ticket_ids=[ticket.pk], now=NOW).assigned == 1
    assert owners(ticket) == [here.user_id]
    payload = assigned_events(ticket=ticket)[0][2]
    assert (payload["assignee_id"], payload["previous_assignee_id"]) == (here.user_id, gone.user_id)


def test_reopened_ticket_of_an_offline_agent_goes_back_to_the_queue_when_nobody_has_room(care):
    gone = make_agent(queues=[care], presence="away")
    ticket = TicketFactory(queue=care, assignee=gone.user, status="open")

    result = assignment_assign(ticket_ids=[ticket.pk], now=NOW)

    assert (result.assigned, result.released, result.waiting) == (0, 1, 1)
    assert owners(ticket) == [None]
    assert assigned_events() == [
        (ticket.pk, None, {
            "assignee_id": None, "previous_assignee_id": gone.user_id, "rule": "released",
            "reason": "agent not online: back to the queue", "status": "open",
        })
    ]  # fmt: skip


# --- Sweep -------------------------------------------------------------------------------------


def test_sweep_assigns_highest_priority_then_oldest_until_nobody_has_room(care):
    make_agent(queues=[care], capacity=2, username="a")
    make_agent(queues=[care], capacity=1, username="b")
    old_low = TicketFactory(queue=care, priority=0, opened_at=T0)
    new_urgent = TicketFactory(queue=care, priority=3, opened_at=T0 + timedelta(hours=2))
    old_normal = TicketFactory(queue=care, priority=1, opened_at=T0 + timedelta(minutes=1))
    new_normal = TicketFactory(queue=care, priority=1, opened_at=T0 + timedelta(hours=1))
    newest_normal = TicketFactory(queue=care, priority=1, opened_at=T0 + timedelta(hours=5))

    result = assignment_sweep(queue_id=care.pk, now=NOW, batch_size=2)

    assert (result.assigned, result.waiting) == (3, 2)
    assigned = [e[0] for e in assigned_events()]
    assert assigned == [new_urgent.pk, old_normal.pk, new_normal.pk]
    assert owners(old_low, newest_normal) == [None, None]


def test_sweep_passes_over_tickets_whose_speakers_are_full(care):
    make_agent(queues=[care], languages=["ja"], capacity=0)
    english = make_agent(queues=[care], languages=["en"], capacity=2)
    japanese = TicketFactory(queue=care, language="ja", priority=3)
    first = TicketFactory(queue=care, language="en")
    anyone = TicketFactory(queue=care, language="")

    result = assignment_sweep(queue_id=care.pk, now=NOW)

    assert (result.assigned, result.waiting) == (2, 1)
    assert owners(japanese, first, anyone) == [None, english.user_id, english.user_id]


def test_sweep_spreads_a_backlog_evenly(care):
    agents = [make_agent(queues=[care], capacity=10) for _ in range(3)]
    TicketFactory.create_batch(12, queue=care)
    assert assignment_sweep(queue_id=care.pk, now=NOW, batch_size=5).assigned == 12
    loads = {s.user_id: s.load for s in queue_agent_states(queue_id=care.pk)}
    assert loads == {a.user_id: 4 for a in agents}


# --- Pull --------------------------------------------------------------------------------------


def test_take_next_gives_the_agent_the_most_urgent_oldest_ticket_they_may_take(care):
    other = QueueFactory(name="Other")
    paused = QueueFactory(name="Paused", auto_assign_paused=True)
    me = make_agent(queues=[care, paused], languages=["nl"], capacity=3)
    make_agent(queues=[care], languages=["de"])
    TicketFactory(queue=other, priority=3)  # not my queue
    TicketFactory(queue=paused, priority=3)  # paused
    TicketFactory(queue=care, priority=3, language="de")  # a colleague's language
    TicketFactory(queue=care, priority=2, is_noise=True)
    mine = TicketFactory(queue=care, priority=2, language="nl-be")
    TicketFactory(queue=care, priority=2, language="ko", opened_at=T0 + timedelta(days=1))

    taken = assignment_take_next(agent=me, now=NOW)

    assert (taken.pk, taken.assignee_id, taken.assigned_at) == (mine.pk, me.user_id, NOW)
    assert assigned_events() == [
        (mine.pk, me.user_id, {
            "assignee_id": me.user_id, "previous_assignee_id": None, "rule": "pull",
            "reason": "taken by the agent, load 0/3", "status": "new",
        })
    ]  # fmt: skip
    unserved = assignment_take_next(agent=me, now=NOW)
    assert (unserved.language, unserved.assignee_id) == ("ko", me.user_id)
    assert assignment_take_next(agent=me, now=NOW) is None


def test_take_next_refuses_an_agent_who_is_not_online_or_at_capacity(care):
    TicketFactory(queue=care)
    away = make_agent(queues=[care], presence="away")
    with pytest.raises(AssignmentError, match="Set yourself online"):
        assignment_take_next(agent=away)
    full = make_agent(queues=[care], capacity=1)
    TicketFactory(queue=care, assignee=full.user, status="open")
    with pytest.raises(AssignmentError, match=r"at capacity \(1 of 1 active tickets\)"):
        assignment_take_next(agent=full)


def test_pending_tickets_do_not_count_toward_capacity(care):
    me = make_agent(queues=[care], capacity=1)
    TicketFactory(queue=care, assignee=me.user, status="pending")
    ticket = TicketFactory(queue=care)
    assert assignment_take_next(agent=me, now=NOW).pk == ticket.pk


# --- Capacity freed → sweep after commit -------------------------------------------------------


def test_freeing_capacity_queues_a_sweep_of_the_agents_push_queues_only_after_commit(
    care, queued, django_capture_on_commit_callbacks
):
    pull = QueueFactory(name="Pull", assignment_mode=Queue.AssignmentMode.PULL)
    paused = QueueFactory(name="Paused", auto_assign_paused=True)
    agent = make_agent(queues=[care, pull, paused])

    with django_capture_on_commit_callbacks() as callbacks:
        with transaction.atomic():
            assignment_capacity_freed(user_ids=[agent.user_id])
        assert queued == []  # nothing before the outer transaction commits
    assert len(callbacks) == 1
    callbacks[0]()
    assert queued == [("sweep_queue", (care.pk,))]


def test_lead_taking_a_ticket_away_queues_a_sweep_for_the_freed_agent(
    care, lead, queued, django_capture_on_commit_callbacks
):
    agent = make_agent(queues=[care])
    other = make_agent(queues=[care])
    ticket = TicketFactory(queue=care, assignee=agent.user, status="open")

    with django_capture_on_commit_callbacks(execute=True):
        ticket_reassign(ticket=ticket, assignee=other.user, actor=lead.user, reason="VIP", now=NOW)

    assert queued == [("sweep_queue", (care.pk,))]
    assert owners(ticket) == [other.user_id]


def test_sweep_task_sweeps_and_clears_its_mark(care, redis_client):
    agent = make_agent(queues=[care], capacity=1)
    done = TicketFactory(queue=care, assignee=agent.user, status="open")
    waiting = TicketFactory(queue=care)
    Ticket.objects.filter(pk=done.pk).update(status="solved")

    assert tasks.sweep_queue.run(care.pk) == 1
    assert owners(waiting) == [agent.user_id]
    assert not redis_client.exists(f"webcare:sweep:dirty:{care.pk}")


def test_periodic_safety_net_queues_a_sweep_for_each_push_queue_with_waiting_tickets(care, queued):
    pull = QueueFactory(name="Pull", assignment_mode=Queue.AssignmentMode.PULL)
    paused = QueueFactory(name="Paused", auto_assign_paused=True)
    quiet = QueueFactory(name="Quiet")
    busy = QueueFactory(name="Busy")
    TicketFactory.create_batch(3, queue=care)
    TicketFactory(queue=busy)
    TicketFactory(queue=pull)
    TicketFactory(queue=paused)
    TicketFactory(queue=quiet, status="solved")
    TicketFactory(queue=quiet, is_noise=True)

    assert tasks.sweep_all_queues.run() == 2
    assert queued == [("sweep_queue", (care.pk,)), ("sweep_queue", (busy.pk,))]


def test_assign_task_takes_ids(care):
    agent = make_agent(queues=[care])
    ticket = TicketFactory(queue=care)
    assert tasks.assign_tickets.run([ticket.pk, 424242]) == 1
    assert owners(ticket) == [agent.user_id]


def test_agent_without_languages_takes_tickets_in_a_queue_where_nobody_has_any(care):
    me = make_agent(queues=[care], languages=[])
    ticket = TicketFactory(queue=care, language="fr")
    assert assignment_take_next(agent=me, now=NOW).pk == ticket.pk


# --- Team-lead operations ----------------------------------------------------------------------


def test_lead_reassigns_one_ticket_with_an_audited_event(care, lead):
    agent = make_agent(queues=[care])
    other = make_agent(queues=[care], capacity=0, presence="offline")  # a lead may override
    ticket = TicketFactory(queue=care, assignee=agent.user, status="open")

    returned = ticket_reassign(
        ticket=ticket, assignee=other.user, actor=lead.user, reason="speaks Papiamento", now=NOW
    )

    assert (returned.assignee_id, returned.assigned_at) == (other.user_id, NOW)
    assert assigned_events() == [
        (ticket.pk, lead.user_id, {
            "assignee_id": other.user_id, "previous_assignee_id": agent.user_id, "rule": "manual",
            "reason": "speaks Papiamento", "status": "open",
        })
    ]  # fmt: skip
    other.refresh_from_db()
    assert other.last_assigned_at == NOW


def test_lead_unassigns_a_ticket_back_to_its_queue(care, lead, queued, django_capture_on_commit_callbacks):
    agent = make_agent(queues=[care])
    ticket = TicketFactory(queue=care, assignee=agent.user, status="pending")
    with django_capture_on_commit_callbacks(execute=True):
        ticket_reassign(ticket=ticket, assignee=None, actor=lead.user, now=NOW)
    assert owners(ticket) == [None]
    assert assigned_events()[0][2]["reason"] == "unassigned by a lead"
    assert queued == [("sweep_queue", (care.pk,))]


def test_agents_cannot_run_lead_operations(care):
    agent = make_agent(queues=[care])
    ticket = TicketFactory(queue=care)
    other_queue = QueueFactory()
    calls = [
        lambda: ticket_reassign(ticket=ticket, assignee=agent.user, actor=agent.user),
        lambda: tickets_bulk_reassign(
            filters=TicketFilters(queue_id=care.pk), assignee=None, actor=agent.user
        ),
        lambda: queue_move_backlog(source_queue=care, target_queue=other_queue, actor=agent.user),
        lambda: agent_set_capacity(agent=agent, capacity=20, actor=agent.user),
        lambda: queue_set_auto_assign(queue=care, paused=True, actor=agent.user),
        lambda: agent_set_away_and_redistribute(
            agent=agent, presence="away", keep_pending=True, actor=agent.user
        ),
    ]
    for call in calls:
        with pytest.raises(PermissionDenied):
            call()
    assert TicketEvent.objects.count() == 0
    assert owners(ticket) == [None]


def test_reassigning_a_solved_ticket_or_to_a_non_agent_is_refused(care, lead):
    from tests.factories import UserFactory

    solved = TicketFactory(queue=care, status="solved")
    with pytest.raises(AssignmentError, match="Only new, open or pending"):
        ticket_reassign(ticket=solved, assignee=lead.user, actor=lead.user)
    with pytest.raises(AssignmentError, match="is not an agent"):
        ticket_reassign(
            ticket=TicketFactory(queue=care), assignee=UserFactory(username="nobody"), actor=lead.user
        )


def test_bulk_reassign_by_filter_moves_only_matching_active_tickets(care, lead, queued):
    nl = make_agent(queues=[care], languages=["nl"])
    de = make_agent(queues=[care], languages=["de"])
    dutch = TicketFactory.create_batch(3, queue=care, language="nl", assignee=de.user, status="open")
    solved = TicketFactory(queue=care, language="nl", assignee=de.user, status="solved")
    german = TicketFactory(queue=care, language="de", assignee=de.user, status="open")

    count = tickets_bulk_reassign(
        filters=TicketFilters(language="nl", assignee_id=de.user_id),
        assignee=nl.user,
        actor=lead.user,
        now=NOW,
    )

    assert count == 3
    assert owners(*dutch, solved, german) == [nl.user_id] * 3 + [de.user_id, de.user_id]
    assert {e[0] for e in assigned_events(actor=lead.user)} == {t.pk for t in dutch}


def test_bulk_reassign_without_a_filter_is_refused(lead):
    with pytest.raises(AssignmentError, match="at least one filter"):
        tickets_bulk_reassign(filters=TicketFilters(), assignee=None, actor=lead.user)


def test_lead_moves_a_queues_unassigned_backlog(care, lead, queued, django_capture_on_commit_callbacks):
    target = QueueFactory(name="Overflow")
    agent = make_agent(queues=[care])
    waiting = TicketFactory.create_batch(2, queue=care)
    owned = TicketFactory(queue=care, assignee=agent.user, status="open")
    solved = TicketFactory(queue=care, status="solved")

    with django_capture_on_commit_callbacks(execute=True):
        moved = queue_move_backlog(source_queue=care, target_queue=target, actor=lead.user, now=NOW)

    assert moved == 2
    assert sorted(Ticket.objects.filter(queue=target).values_list("pk", flat=True)) == sorted(
        t.pk for t in waiting
    )
    assert [Ticket.objects.get(pk=t.pk).queue_id for t in (owned, solved)] == [care.pk, care.pk]
    events = list(
        TicketEvent.objects.filter(type="ticket.queue_changed").values_list(
            "ticket_id", "queue_id", "actor_id", "payload"
        )
    )
    assert sorted(events) == sorted(
        (t.pk, target.pk, lead.user_id, {
            "from_queue_id": care.pk, "to_queue_id": target.pk, "reason": "backlog moved by a lead",
            "assignee_id": None, "status": "new",
        })
        for t in waiting
    )  # fmt: skip
    assert queued == [("sweep_queue", (target.pk,))]


def test_lead_changes_capacity_and_more_room_sweeps(care, lead, queued, django_capture_on_commit_callbacks):
    agent = make_agent(queues=[care], capacity=4)
    with django_capture_on_commit_callbacks(execute=True):
        agent_set_capacity(agent=agent, capacity=2, actor=lead.user)
    assert queued == []
    with django_capture_on_commit_callbacks(execute=True):
        agent_set_capacity(agent=agent, capacity=6, actor=lead.user)
    assert queued == [("sweep_queue", (care.pk,))]
    agent.refresh_from_db()
    assert agent.capacity == 6
    assert list(
        TicketEvent.objects.filter(type="agent.capacity_changed").values_list(
            "ticket_id", "actor_id", "payload"
        )
    ) == [
        (None, lead.user_id, {"agent_id": agent.user_id, "old": 4, "new": 2}),
        (None, lead.user_id, {"agent_id": agent.user_id, "old": 2, "new": 6}),
    ]
    with pytest.raises(AssignmentError, match="between 0 and 100"):
        agent_set_capacity(agent=agent, capacity=101, actor=lead.user)


def test_lead_pauses_and_resumes_a_queue(care, lead, queued, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        queue_set_auto_assign(queue=care, paused=True, actor=lead.user)
        queue_set_auto_assign(queue=care, paused=True, actor=lead.user)  # no change, no event
    assert queued == []
    with django_capture_on_commit_callbacks(execute=True):
        queue_set_auto_assign(queue=care, paused=False, actor=lead.user)
    assert queued == [("sweep_queue", (care.pk,))]
    assert list(
        TicketEvent.objects.filter(type="queue.auto_assign_changed").values_list(
            "queue_id", "actor_id", "payload"
        )
    ) == [(care.pk, lead.user_id, {"paused": True}), (care.pk, lead.user_id, {"paused": False})]


def test_lead_sets_an_agent_away_and_their_tickets_go_to_the_others(care, lead, queued, redis_client):
    leaving = make_agent(queues=[care], username="leaving")
    presence_service.presence_connect(user_id=leaving.user_id, connection_id="tab1", now=NOW)
    staying = make_agent(queues=[care], capacity=1, username="staying")
    open_ = TicketFactory(queue=care, assignee=leaving.user, status="open", priority=2)
    overflow = TicketFactory(queue=care, assignee=leaving.user, status="new")
    pending = TicketFactory(queue=care, assignee=leaving.user, status="pending")

    result = agent_set_away_and_redistribute(
        agent=leaving, presence="away", keep_pending=True, actor=lead.user, now=NOW
    )

    assert (result.presence, result.reassigned, result.released, result.kept_pending) == ("away", 1, 1, 1)
    assert owners(open_, overflow, pending) == [staying.user_id, None, leaving.user_id]
    leaving.refresh_from_db()
    assert leaving.presence == "away"
    assert [e[2]["reason"] for e in assigned_events()] == [
        "leaving set away by a lead; no language, load 0/1, never assigned",
        "leaving set away by a lead; back to the queue",
    ]
    presence_service.presence_heartbeat(user_id=leaving.user_id, connection_id="tab1", now=NOW)
    leaving.refresh_from_db()
    assert leaving.presence == "away"  # heartbeats do not override a lead's choice


def test_redistribution_releases_pending_tickets_unless_kept(care, lead, redis_client):
    leaving = make_agent(queues=[care])
    make_agent(queues=[care])
    pending = TicketFactory(queue=care, assignee=leaving.user, status="pending")

    result = agent_set_away_and_redistribute(
        agent=leaving, presence="offline", keep_pending=False, actor=lead.user, now=NOW
    )

    assert (result.presence, result.reassigned, result.released, result.kept_pending) == ("offline", 0, 1, 0)
    assert owners(pending) == [None]


# --- Invariants over random desks, on the database ---------------------------------------------

LANGUAGES = ("nl", "en", "ja")


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    agents=st.lists(
        st.tuples(
            st.frozensets(st.sampled_from(LANGUAGES), max_size=2),
            st.integers(0, 3),
            st.sampled_from(("online", "online", "away", "offline")),
        ),
        max_size=5,
    ),
    tickets=st.lists(st.tuples(st.sampled_from(("", *LANGUAGES, "ko")), st.integers(0, 3)), max_size=15),
    batch_size=st.integers(1, 6),
)
def test_sweep_invariants_on_the_database(care, agents, tickets, batch_size):
    with transaction.atomic():
        made = [
            make_agent(queues=[care], languages=langs, capacity=cap, presence=pres)
            for langs, cap, pres in agents
        ]
        rows = [TicketFactory(queue=care, language=lang, priority=prio) for lang, prio in tickets]

        assignment_sweep(queue_id=care.pk, now=NOW, batch_size=batch_size)

        states = {s.user_id: s for s in queue_agent_states(queue_id=care.pk)}
        served = {lang for s in states.values() for lang in s.languages}
        owned = dict(Ticket.objects.filter(pk__in=[t.pk for t in rows]).values_list("pk", "assignee_id"))
        for state in states.values():
            assert state.load <= state.capacity  # never over capacity
        for ticket in rows:
            owner = owned[ticket.pk]
            if owner is None:
                # Nobody who may take it has room.
                assert choose_agent(_facts(ticket, care), list(states.values())) is None
                continue
            assert states[owner].presence == "online"  # never to an offline or away agent
            needed = required_language(ticket.language, served)
            if needed is not None:
                assert needed in states[owner].languages  # never without the language
        assert TicketEvent.objects.filter(type="ticket.assigned").count() == sum(
            1 for o in owned.values() if o
        )
        assert len(made) == len(states)
        transaction.set_rollback(True)


def _facts(ticket: Ticket, queue: Queue):
    from inbox.routing.assign import TicketFacts

    return TicketFacts(ticket.pk, queue.pk, ticket.language, ticket.priority, ticket.opened_at)
