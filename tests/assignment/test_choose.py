"""Who gets a ticket: the pure rules, and their invariants over random desks (Hypothesis)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from inbox.routing.assign import (
    LOAD_STATUSES,
    AgentState,
    AssignmentPool,
    Choice,
    TicketFacts,
    can_take,
    choose_agent,
    normalize_language,
    required_language,
)

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
Q = 1


def agent(
    user_id: int,
    *,
    languages: tuple[str, ...] = ("en",),
    capacity: int = 8,
    load: int = 0,
    presence: str = "online",
    idle_minutes: float | None = None,
    queues: tuple[int, ...] = (Q,),
) -> AgentState:
    return AgentState(
        user_id=user_id,
        presence=presence,
        languages=frozenset(languages),
        capacity=capacity,
        load=load,
        last_assigned_at=None if idle_minutes is None else NOW - timedelta(minutes=idle_minutes),
        queue_ids=frozenset(queues),
    )


def ticket(language: str = "", *, ticket_id: int = 1, queue_id: int = Q, priority: int = 1) -> TicketFacts:
    return TicketFacts(
        ticket_id=ticket_id, queue_id=queue_id, language=language, priority=priority, opened_at=NOW
    )


# --- The rules, example by example -----------------------------------------------------------


def test_least_loaded_speaker_of_the_language_wins_with_the_reason():
    agents = [
        agent(1, languages=("nl",), load=3, idle_minutes=50),
        agent(2, languages=("nl", "en"), load=2, idle_minutes=14),
        agent(3, languages=("en",), load=0, idle_minutes=90),
    ]
    assert choose_agent(ticket("nl"), agents, now=NOW) == Choice(
        agent_id=2, rule="language", reason="language nl, load 2/8, idle 14m", load=2, capacity=8
    )


def test_equal_load_goes_to_the_agent_idle_longest_and_never_assigned_counts_as_longest():
    agents = [agent(1, load=1, idle_minutes=5), agent(2, load=1, idle_minutes=125), agent(3, load=1)]
    assert choose_agent(ticket("en"), agents, now=NOW).reason == "language en, load 1/8, never assigned"
    assert choose_agent(ticket("en"), agents[:2], now=NOW) == Choice(
        agent_id=2, rule="language", reason="language en, load 1/8, idle 2h05m", load=1, capacity=8
    )


def test_full_tie_goes_to_the_lowest_id():
    assert choose_agent(ticket("en"), [agent(7), agent(4), agent(9)]).agent_id == 4


def test_offline_away_full_and_non_member_agents_never_get_a_ticket():
    agents = [
        agent(1, presence="offline"),
        agent(2, presence="away"),
        agent(3, load=8, capacity=8),
        agent(4, queues=(2,)),
        agent(5, capacity=0),
    ]
    assert choose_agent(ticket("en"), agents) is None
    assert choose_agent(ticket("en"), [*agents, agent(6, load=7)]).agent_id == 6


def test_ticket_waits_for_a_speaker_while_others_have_room():
    agents = [agent(1, languages=("nl",), load=8), agent(2, languages=("en",), load=0)]
    assert choose_agent(ticket("nl"), agents) is None


def test_offline_speaker_still_makes_the_ticket_wait_for_them():
    agents = [agent(1, languages=("ja",), presence="offline"), agent(2, languages=("en",))]
    assert choose_agent(ticket("ja"), agents) is None


def test_language_nobody_in_the_queue_speaks_goes_to_anyone_with_room():
    agents = [
        agent(1, languages=("en",), load=4),
        agent(2, languages=("nl",), load=1),
        agent(3, languages=("ko",), queues=(2,)),
    ]
    assert choose_agent(ticket("ko"), agents, now=NOW) == Choice(
        agent_id=2, rule="unserved_language", reason="nobody in the queue speaks ko, load 1/8, never assigned",
        load=1, capacity=8,
    )  # fmt: skip


def test_ticket_without_language_goes_to_anyone_with_room():
    agents = [agent(1, languages=("nl",), load=2, idle_minutes=0.5), agent(2, languages=(), load=3)]
    assert choose_agent(ticket(""), agents, now=NOW) == Choice(
        agent_id=1, rule="no_language", reason="no language, load 2/8, idle 30s", load=2, capacity=8
    )


def test_region_subtags_count_as_the_language():
    agents = [agent(1, languages=("en",), load=0), agent(2, languages=("nl",), load=5)]
    assert choose_agent(ticket("nl-BE"), agents).agent_id == 2
    assert normalize_language(" PT_br ") == "pt"
    assert normalize_language(None) == ""
    assert required_language("nl-be", ["nl", "en"]) == "nl"
    assert required_language("ko", ["nl", "en"]) is None


def test_sticky_agent_wins_over_a_less_loaded_one_when_they_can_take_it():
    agents = [agent(1, load=6), agent(2, load=0)]
    assert choose_agent(ticket("en"), agents, sticky_agent_id=1) == Choice(
        agent_id=1, rule="sticky", reason="sticky: customer's last agent, load 6/8", load=6, capacity=8
    )


def test_sticky_agent_who_cannot_take_it_is_passed_over():
    for sticky in (
        agent(1, load=8),
        agent(1, presence="away"),
        agent(1, languages=("de",)),
        agent(1, queues=(2,)),
    ):
        assert choose_agent(ticket("en"), [sticky, agent(2, load=3)], sticky_agent_id=1).agent_id == 2


def test_ticket_of_another_queue_is_no_business_of_the_pool():
    pool = AssignmentPool([agent(1)], queue_id=Q)
    assert pool.choose(ticket("en", queue_id=2)) is None


def test_pool_release_gives_room_back():
    pool = AssignmentPool([agent(1, capacity=1, load=1)], queue_id=Q, now=NOW)
    assert not pool.has_room()
    pool.release(1)
    assert pool.has_room()
    assert pool.assign(ticket("en")).agent_id == 1
    assert pool.agent(1).load == 1
    assert pool.languages_with_room() == frozenset()


def test_pending_does_not_count_toward_load():
    assert LOAD_STATUSES == ("new", "open")


# --- Invariants over random desks ------------------------------------------------------------

LANGUAGES = ("nl", "en", "fr", "de", "ja")

agents_strategy = st.lists(
    st.builds(
        lambda languages, capacity, load, presence, idle, queues: (
            languages,
            capacity,
            load,
            presence,
            idle,
            queues,
        ),
        st.frozensets(st.sampled_from(LANGUAGES), max_size=3),
        st.integers(0, 4),
        st.integers(0, 4),
        st.sampled_from(("online", "online", "online", "away", "offline")),
        st.one_of(st.none(), st.integers(0, 600)),
        st.frozensets(st.sampled_from((1, 2)), min_size=1),
    ),
    max_size=8,
)
tickets_strategy = st.lists(
    st.tuples(st.sampled_from(("", *LANGUAGES, "ko", "nl-be")), st.integers(0, 3), st.sampled_from((1, 2))),
    max_size=40,
)


def build_agents(specs) -> list[AgentState]:
    return [
        AgentState(
            user_id=index + 1, presence=presence, languages=languages, capacity=capacity,
            load=min(load, capacity), queue_ids=queues,
            last_assigned_at=None if idle is None else NOW - timedelta(minutes=idle),
        )
        for index, (languages, capacity, load, presence, idle, queues) in enumerate(specs)
    ]  # fmt: skip


def check_choice(
    facts: TicketFacts, agents: list[AgentState], choice: Choice | None, *, sticky: int | None
) -> None:
    """Every rule the choice must respect, checked against the agents' states before it."""
    members = [a for a in agents if facts.queue_id in a.queue_ids]
    needed = required_language(facts.language, [lang for a in members for lang in a.languages])
    candidates = [a for a in members if can_take(a, queue_id=facts.queue_id, language=needed)]
    if choice is None:
        # Waiting is only right when nobody may take it.
        assert candidates == []
        return
    chosen = next(a for a in agents if a.user_id == choice.agent_id)
    assert chosen.presence == "online"
    assert facts.queue_id in chosen.queue_ids
    assert chosen.load < chosen.capacity
    if needed is not None:
        assert needed in chosen.languages
    if choice.rule == "sticky":
        assert chosen.user_id == sticky
    else:
        assert chosen.load == min(a.load for a in candidates)


@settings(max_examples=300, deadline=None)
@given(
    agents_strategy,
    st.tuples(st.sampled_from(("", *LANGUAGES, "ko")), st.sampled_from((1, 2))),
    st.integers(0, 9),
)
def test_choice_respects_every_rule(specs, ticket_spec, sticky):
    agents = build_agents(specs)
    facts = ticket(ticket_spec[0], queue_id=ticket_spec[1])
    sticky_id = sticky or None
    check_choice(
        facts, agents, choose_agent(facts, agents, sticky_agent_id=sticky_id, now=NOW), sticky=sticky_id
    )


@settings(max_examples=300, deadline=None)
@given(agents_strategy, tickets_strategy, st.lists(st.integers(0, 9), max_size=40))
def test_pool_decides_exactly_as_choose_agent_one_after_another(specs, ticket_specs, stickies):
    agents = build_agents(specs)
    for queue_id in (1, 2):
        pool = AssignmentPool(agents, queue_id=queue_id, now=NOW)
        states = {a.user_id: a for a in agents}
        for index, (language, priority, _) in enumerate(ticket_specs):
            facts = ticket(language, ticket_id=index, queue_id=queue_id, priority=priority)
            sticky = stickies[index] if index < len(stickies) and stickies[index] else None
            expected = choose_agent(facts, list(states.values()), sticky_agent_id=sticky, now=NOW)
            assert pool.assign(facts, sticky_agent_id=sticky) == expected
            if expected is not None:
                current = states[expected.agent_id]
                states[expected.agent_id] = replace(current, load=current.load + 1, last_assigned_at=NOW)


@dataclass
class Desk:
    """A model of the desk: tickets arrive (push), agents finish tickets and come online, and
    every change that frees room sweeps the backlog, highest priority and oldest first."""

    agents: dict[int, AgentState]
    waiting: list[TicketFacts] = field(default_factory=list)
    owner: dict[int, int] = field(default_factory=dict)
    seq: int = 0

    def state(self) -> list[AgentState]:
        return list(self.agents.values())

    def give(self, facts: TicketFacts, choice: Choice) -> None:
        check_choice(facts, self.state(), choice, sticky=None)
        assert facts.ticket_id not in self.owner  # one owner, once
        current = self.agents[choice.agent_id]
        self.agents[choice.agent_id] = replace(current, load=current.load + 1, last_assigned_at=NOW)
        self.owner[facts.ticket_id] = choice.agent_id

    def arrive(self, language: str, priority: int, queue_id: int) -> None:
        self.seq += 1
        facts = TicketFacts(self.seq, queue_id, language, priority, NOW + timedelta(seconds=self.seq))
        choice = choose_agent(facts, self.state(), now=NOW)
        if choice is None:
            check_choice(facts, self.state(), None, sticky=None)
            self.waiting.append(facts)
        else:
            self.give(facts, choice)

    def sweep(self) -> None:
        for queue_id in (1, 2):
            pool = AssignmentPool(self.state(), queue_id=queue_id, now=NOW)
            order = sorted(
                (t for t in self.waiting if t.queue_id == queue_id), key=lambda t: (-t.priority, t.opened_at)
            )
            for facts in order:
                before = self.state()
                choice = pool.assign(facts)
                if choice is not None:
                    check_choice(facts, before, choice, sticky=None)
                    self.give(facts, choice)
                    self.waiting.remove(facts)

    def finish_one(self, user_id: int) -> None:
        current = self.agents.get(user_id)
        if current is not None and current.load > 0:
            self.agents[user_id] = replace(current, load=current.load - 1)
            self.sweep()

    def come_online(self, user_id: int) -> None:
        current = self.agents.get(user_id)
        if current is not None:
            self.agents[user_id] = replace(current, presence="online")
            self.sweep()

    def check(self) -> None:
        for a in self.state():
            assert a.load <= a.capacity
        # No assignable ticket left waiting while someone could take it.
        for facts in self.waiting:
            assert choose_agent(facts, self.state()) is None


steps_strategy = st.lists(
    st.one_of(
        st.tuples(
            st.just("arrive"),
            st.sampled_from(("", *LANGUAGES, "ko")),
            st.integers(0, 3),
            st.sampled_from((1, 2)),
        ),
        st.tuples(st.just("finish"), st.integers(1, 8)),
        st.tuples(st.just("online"), st.integers(1, 8)),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(agents_strategy, steps_strategy)
def test_desk_invariants_hold_over_random_arrival_orders(specs, steps):
    desk = Desk(agents={a.user_id: replace(a, load=0) for a in build_agents(specs)})
    for step in steps:
        if step[0] == "arrive":
            desk.arrive(step[1], step[2], step[3])
        elif step[0] == "finish":
            desk.finish_one(step[1])
        else:
            desk.come_online(step[1])
        desk.check()
