"""Assignment under concurrency: sweeps, push and pull racing on the same agents and tickets.

Real threads, each with its own database connection. On PostgreSQL the row locks
(``SKIP LOCKED``) keep owners single and loads under capacity; on SQLite the database's
write lock serialises the same code, and the same assertions hold.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inbox.models import AgentProfile, Queue, Ticket, TicketEvent
from inbox.routing.assign import TicketFacts, choose_agent
from inbox.selectors.agents import queue_agent_states
from inbox.services.assignment import (
    AssignmentError,
    assignment_assign,
    assignment_sweep,
    assignment_take_next,
)
from inbox.tasks import assignment as tasks
from tests.assignment import TicketFactory, make_agent
from tests.factories import QueueFactory

pytestmark = pytest.mark.django_db(transaction=True)


class Recorder:
    def __init__(self, calls: list) -> None:
        self.calls = calls

    def delay(self, *args) -> None:
        self.calls.append(args)


@pytest.fixture(autouse=True)
def no_task_queue(monkeypatch) -> list:
    # Contention queues a follow-up sweep; the tests run it themselves.
    calls: list = []
    monkeypatch.setattr(tasks, "sweep_queue", Recorder(calls))
    return calls


def run_at_once(jobs: list[Callable[[], object]]) -> list[object]:
    barrier = threading.Barrier(len(jobs))
    results: list[object] = [None] * len(jobs)
    errors: list[BaseException] = []

    def work(index: int, job: Callable[[], object]) -> None:
        try:
            barrier.wait()
            results[index] = job()
        except BaseException as exc:  # noqa: BLE001 - collected and asserted by the test
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(i, job)) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    return results


def take_next_times(agent: AgentProfile, times: int) -> list[object]:
    """What ``times`` presses of "take next" give: tickets, None, or the refusal's name."""
    taken: list[object] = []
    for _ in range(times):
        try:
            taken.append(assignment_take_next(agent=agent))
        except AssignmentError as exc:  # at capacity: the expected refusal
            taken.append(type(exc).__name__)
    return taken


def assert_single_owners_and_capacity(queue_ids: list[int]) -> dict[int, int]:
    """Every assigned ticket has exactly one assignment event, naming its owner; no agent is over
    capacity. Returns owner → tickets."""
    owners = dict(Ticket.objects.filter(assignee__isnull=False).values_list("pk", "assignee_id"))
    events = list(TicketEvent.objects.filter(type="ticket.assigned").values_list("ticket_id", "payload"))
    per_ticket = Counter(ticket_id for ticket_id, _ in events)
    assert {t: n for t, n in per_ticket.items() if n > 1} == {}
    assert {ticket_id: payload["assignee_id"] for ticket_id, payload in events} == owners
    for queue_id in queue_ids:
        for state in queue_agent_states(queue_id=queue_id):
            assert state.load <= state.capacity, state
    return Counter(owners.values())


def test_concurrent_sweeps_of_one_queue_never_double_assign_or_overfill(no_task_queue):
    queue = QueueFactory(name="Crisis")
    agents = [make_agent(queues=[queue], capacity=5, languages=["en", "nl"][: 1 + i % 2]) for i in range(6)]
    TicketFactory.create_batch(80, queue=queue, language="en")

    results = run_at_once([lambda: assignment_sweep(queue_id=queue.pk, batch_size=7) for _ in range(4)])

    loads = assert_single_owners_and_capacity([queue.pk])
    assert sum(r.assigned for r in results) == sum(loads.values())
    # Whatever contention left out, one more sweep finishes: every agent full, the rest waits.
    assignment_sweep(queue_id=queue.pk)
    loads = assert_single_owners_and_capacity([queue.pk])
    assert loads == {a.user_id: 5 for a in agents}
    assert Ticket.objects.filter(assignee__isnull=True).count() == 80 - 30


def test_sweeps_push_and_pull_racing_over_shared_agents(no_task_queue):
    first = QueueFactory(name="First")
    second = QueueFactory(name="Second")
    shared = [make_agent(queues=[first, second], capacity=4) for _ in range(3)]
    solo = make_agent(queues=[second], capacity=3)
    TicketFactory.create_batch(25, queue=first)
    pushed = TicketFactory.create_batch(25, queue=second)

    jobs: list[Callable[[], object]] = [
        lambda: assignment_sweep(queue_id=first.pk, batch_size=3),
        lambda: assignment_sweep(queue_id=second.pk, batch_size=3),
        lambda: assignment_assign(ticket_ids=[t.pk for t in pushed]),
        lambda: assignment_sweep(queue_id=first.pk, batch_size=5),
    ]
    jobs += [lambda agent=a: take_next_times(agent, 3) for a in (*shared, solo)]
    run_at_once(jobs)

    assert_single_owners_and_capacity([first.pk, second.pk])
    for queue in (first, second):
        assignment_sweep(queue_id=queue.pk)
    loads = assert_single_owners_and_capacity([first.pk, second.pk])
    assert loads == {**{a.user_id: 4 for a in shared}, solo.user_id: 3}


def test_one_agent_taking_next_from_many_tabs_stays_within_capacity():
    queue = QueueFactory(name="Pull", assignment_mode="pull")
    agent = make_agent(queues=[queue], capacity=3)
    TicketFactory.create_batch(10, queue=queue)

    results = run_at_once([lambda: take_next_times(agent, 3) for _ in range(4)])

    loads = assert_single_owners_and_capacity([queue.pk])
    assert loads == {agent.user_id: 3}
    refusals = [r for batch in results for r in batch if isinstance(r, str)]
    assert refusals == ["AssignmentError"] * 9


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    agents=st.lists(
        st.tuples(st.frozensets(st.sampled_from(("nl", "en", "ja")), max_size=2), st.integers(0, 6)),
        min_size=1,
        max_size=6,
    ),
    languages=st.lists(st.sampled_from(("", "nl", "en", "ja", "ko")), min_size=1, max_size=40),
    sweeps=st.integers(2, 4),
)
def test_random_desks_under_concurrent_sweeps_keep_single_owners_and_capacity(
    no_task_queue, agents, languages, sweeps
):
    queue = QueueFactory(name="Random")
    try:
        made = [make_agent(queues=[queue], languages=langs, capacity=cap) for langs, cap in agents]
        tickets = [TicketFactory(queue=queue, language=lang) for lang in languages]
        jobs: list[Callable[[], object]] = [
            lambda: assignment_sweep(queue_id=queue.pk, batch_size=3) for _ in range(sweeps)
        ]
        jobs.append(lambda: assignment_assign(ticket_ids=[t.pk for t in tickets]))
        run_at_once(jobs)
        assert_single_owners_and_capacity([queue.pk])
        # Once the dust settles, one sweep leaves nothing assignable waiting.
        assignment_sweep(queue_id=queue.pk)
        assert_single_owners_and_capacity([queue.pk])
        states = queue_agent_states(queue_id=queue.pk)
        assert len(states) == len(made)
        for ticket in Ticket.objects.filter(queue=queue, assignee__isnull=True):
            facts = TicketFacts(ticket.pk, queue.pk, ticket.language, ticket.priority, ticket.opened_at)
            assert choose_agent(facts, states) is None
    finally:
        # Each example starts from an empty desk (the database is shared between examples).
        TicketEvent.objects.all().delete()
        Ticket.objects.all().delete()
        AgentProfile.objects.all().delete()
        get_user_model().objects.all().delete()
        Queue.objects.all().delete()
