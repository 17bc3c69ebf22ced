"""Who gets a ticket: pure decisions, no database.

The rules (docs/assignment.md explains them for people):

* Only an agent who is **online**, a **member** of the ticket's queue and **under capacity**
  (load < capacity) can get a ticket.
* **Language.** When some member of the queue speaks the ticket's language (online or not),
  only agents who speak it may take the ticket; if none of them has room the ticket waits
  for one. When the ticket has no language, or nobody in the queue speaks it at all, any
  agent with room may take it.
* **Sticky.** A follow-up goes to the customer's last agent when that agent could take the
  ticket under the rules above (online, member, room, language).
* Otherwise the **least loaded** agent wins (fewest active tickets), then the one **idle
  longest** (never assigned counts as idle longest), then the lowest user id, so the
  choice is deterministic.
* **Load** is the number of the agent's tickets in ``LOAD_STATUSES`` (new and open).
  Pending tickets wait on the customer and do not count; when the customer answers the
  ticket is open again and counts.

``choose_agent`` decides one ticket. ``AssignmentPool`` decides many in a row (the backlog
sweep): it gives the same answers as calling ``choose_agent`` after each assignment, in
O(log agents) per ticket instead of O(agents).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Final

#: Ticket statuses that count toward an agent's load (and that the sweep assigns).
LOAD_STATUSES: Final = ("new", "open")
ONLINE: Final = "online"

#: How a choice was made, kept in the event payload next to the readable reason.
RULE_STICKY: Final = "sticky"
RULE_LANGUAGE: Final = "language"
RULE_NO_LANGUAGE: Final = "no_language"
RULE_UNSERVED_LANGUAGE: Final = "unserved_language"


def normalize_language(code: str | None) -> str:
    """The primary language subtag, lowercase: ``"nl-BE"`` and ``"NL"`` are both ``"nl"``."""
    if not code:
        return ""
    return code.strip().lower().replace("_", "-").split("-", 1)[0]


@dataclass(frozen=True, slots=True)
class TicketFacts:
    """What assignment needs to know about a ticket."""

    ticket_id: int
    queue_id: int
    language: str = ""
    priority: int = 1
    opened_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class AgentState:
    """An agent as assignment sees them right now. ``user_id`` is the agent's id everywhere."""

    user_id: int
    presence: str
    languages: frozenset[str]
    capacity: int
    load: int
    last_assigned_at: datetime | None
    queue_ids: frozenset[int]

    @property
    def has_room(self) -> bool:
        return self.load < self.capacity


@dataclass(frozen=True, slots=True)
class Choice:
    """The agent chosen for a ticket, and why."""

    agent_id: int
    rule: str
    reason: str
    # Load before this ticket, and capacity: "load 2/8".
    load: int
    capacity: int


def required_language(ticket_language: str, member_languages: Iterable[str]) -> str | None:
    """The language an agent must speak to take the ticket, or None when anyone may."""
    language = normalize_language(ticket_language)
    if not language:
        return None
    return language if language in set(member_languages) else None


def can_take(agent: AgentState, *, queue_id: int, language: str | None) -> bool:
    """Whether ``agent`` may get a ticket of ``queue_id`` needing ``language`` (None: any)."""
    return (
        agent.presence == ONLINE
        and queue_id in agent.queue_ids
        and agent.load < agent.capacity
        and (language is None or language in agent.languages)
    )


def _rank(agent: AgentState) -> tuple[int, int, float, int]:
    # Least loaded, then idle longest (never assigned first), then lowest id.
    if agent.last_assigned_at is None:
        return (agent.load, 0, 0.0, agent.user_id)
    return (agent.load, 1, agent.last_assigned_at.timestamp(), agent.user_id)


def _idle(agent: AgentState, now: datetime | None) -> str:
    if agent.last_assigned_at is None:
        return "never assigned"
    if now is None:
        return f"last assigned {agent.last_assigned_at:%H:%M}"
    seconds = max(0, int((now - agent.last_assigned_at).total_seconds()))
    if seconds < 60:
        return f"idle {seconds}s"
    if seconds < 3600:
        return f"idle {seconds // 60}m"
    return f"idle {seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _choice(
    agent: AgentState, *, ticket_language: str, required: str | None, sticky: bool, now: datetime | None
) -> Choice:
    load = f"load {agent.load}/{agent.capacity}"
    if sticky:
        return Choice(
            agent.user_id, RULE_STICKY, f"sticky: customer's last agent, {load}", agent.load, agent.capacity
        )
    if required is not None:
        rule, what = RULE_LANGUAGE, f"language {required}"
    elif normalize_language(ticket_language):
        rule, what = (
            RULE_UNSERVED_LANGUAGE,
            f"nobody in the queue speaks {normalize_language(ticket_language)}",
        )
    else:
        rule, what = RULE_NO_LANGUAGE, "no language"
    return Choice(agent.user_id, rule, f"{what}, {load}, {_idle(agent, now)}", agent.load, agent.capacity)


def choose_agent(
    ticket: TicketFacts,
    agents: Sequence[AgentState],
    *,
    sticky_agent_id: int | None = None,
    now: datetime | None = None,
) -> Choice | None:
    """The agent who should get ``ticket`` now, or None when it has to wait.

    ``agents`` are the agents to consider, at least every member of the ticket's queue
    (offline ones too: they decide whether the queue serves the ticket's language).
    ``sticky_agent_id`` is the customer's last agent, preferred when they can take it.
    ``now`` only makes the reason say how long the agent was idle.
    """
    members = [a for a in agents if ticket.queue_id in a.queue_ids]
    required = required_language(ticket.language, (lang for a in members for lang in a.languages))
    candidates = [a for a in members if can_take(a, queue_id=ticket.queue_id, language=required)]
    if not candidates:
        return None
    if sticky_agent_id is not None:
        for agent in candidates:
            if agent.user_id == sticky_agent_id:
                return _choice(
                    agent, ticket_language=ticket.language, required=required, sticky=True, now=now
                )
    best = min(candidates, key=_rank)
    return _choice(best, ticket_language=ticket.language, required=required, sticky=False, now=now)


_ANY: Final = ""  # heap of every agent with room, whatever they speak


class AssignmentPool:
    """Many assignments in a row for one queue, each as ``choose_agent`` would decide it.

    Holds a heap of agents with room per language the queue serves, plus one of all
    agents with room; an assignment pushes the agent back with its new rank (stale
    entries are skipped when they surface).
    """

    def __init__(self, agents: Iterable[AgentState], *, queue_id: int, now: datetime | None = None) -> None:
        self.queue_id = queue_id
        self.now = now
        self._agents: dict[int, AgentState] = {a.user_id: a for a in agents if queue_id in a.queue_ids}
        #: Languages at least one member speaks (online or not).
        self.served: frozenset[str] = frozenset(lang for a in self._agents.values() for lang in a.languages)
        self._version: dict[int, int] = dict.fromkeys(self._agents, 0)
        self._heaps: dict[str, list[tuple[tuple[int, int, float, int], int]]] = {
            lang: [] for lang in (*self.served, _ANY)
        }
        for agent in self._agents.values():
            self._push(agent)

    # --- Reading ---------------------------------------------------------------------------

    def agent(self, user_id: int) -> AgentState | None:
        return self._agents.get(user_id)

    def agents(self) -> list[AgentState]:
        return list(self._agents.values())

    def has_room(self) -> bool:
        return self._top(_ANY) is not None

    def languages_with_room(self) -> frozenset[str]:
        """Served languages some online agent with room speaks."""
        return frozenset(lang for lang in self.served if self._top(lang) is not None)

    def choose(self, ticket: TicketFacts, *, sticky_agent_id: int | None = None) -> Choice | None:
        """What ``choose_agent`` would answer for ``ticket`` with the pool's current states."""
        if ticket.queue_id != self.queue_id:
            return None
        required = required_language(ticket.language, self.served)
        if sticky_agent_id is not None:
            sticky = self._agents.get(sticky_agent_id)
            if sticky is not None and can_take(sticky, queue_id=self.queue_id, language=required):
                return _choice(
                    sticky, ticket_language=ticket.language, required=required, sticky=True, now=self.now
                )
        best = self._top(_ANY if required is None else required)
        if best is None:
            return None
        return _choice(best, ticket_language=ticket.language, required=required, sticky=False, now=self.now)

    # --- Changing --------------------------------------------------------------------------

    def assign(self, ticket: TicketFacts, *, sticky_agent_id: int | None = None) -> Choice | None:
        """Choose an agent for ``ticket`` and count the ticket in their load."""
        choice = self.choose(ticket, sticky_agent_id=sticky_agent_id)
        if choice is not None:
            current = self._agents[choice.agent_id]
            last = self.now if self.now is not None else current.last_assigned_at
            self._update(replace(current, load=current.load + 1, last_assigned_at=last))
        return choice

    def release(self, user_id: int) -> None:
        """One ticket less in ``user_id``'s load (a ticket taken away to be assigned again)."""
        current = self._agents.get(user_id)
        if current is not None and current.load > 0:
            self._update(replace(current, load=current.load - 1))

    def _update(self, agent: AgentState) -> None:
        self._agents[agent.user_id] = agent
        self._version[agent.user_id] += 1
        self._push(agent)

    def _push(self, agent: AgentState) -> None:
        if agent.presence != ONLINE or agent.load >= agent.capacity:
            return
        entry = (_rank(agent), self._version[agent.user_id])
        for lang in (*agent.languages, _ANY):
            heap = self._heaps.get(lang)
            if heap is not None:
                heapq.heappush(heap, entry)

    def _top(self, language: str) -> AgentState | None:
        heap = self._heaps.get(language)
        if heap is None:
            return None
        while heap:
            rank, version = heap[0]
            agent = self._agents[rank[3]]
            if version == self._version[agent.user_id] and agent.has_room:
                return agent
            heapq.heappop(heap)
        return None
