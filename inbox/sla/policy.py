"""SLA rules for tickets: which policy applies, when each target is due, and how a ticket stands.

Pure: functions take plain values (a ``TicketClocks`` snapshot, an ``AppliedPolicy``) and
return an ``SlaChange``, the ticket fields to set, so ingest can run them on thousands of
in-memory tickets and write them in bulk. See docs/sla.md for the definitions.

Targets and their clocks:

* first response: from ``opened_at`` until the first agent reply (``first_response_at``);
* next response: from a customer message written after the last agent reply until the next
  reply (cleared when met; a second unanswered message keeps the first one's clock);
* resolution: from ``opened_at`` until the ticket is solved.

Every clock stops while the ticket is pending (waiting on the customer) and while it is
solved or closed: on resume each open due time moves forward by the business time that
passed meanwhile, so the business minutes left (or overdue) are exactly what they were.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from inbox.sla.clock import (
    ALWAYS_OPEN,
    CalendarNeverOpen,
    CalendarSpec,
    business_add,
    business_horizon,
    business_minutes_between,
    business_subtract,
)

# Ticket status values (``Ticket.Status``), kept here as plain strings so this stays pure.
NEW, OPEN, PENDING, SOLVED, CLOSED = "new", "open", "pending", "solved", "closed"
RUNNING = frozenset({NEW, OPEN})
FINAL = frozenset({SOLVED, CLOSED})


class Target(StrEnum):
    FIRST_RESPONSE = "first_response"
    NEXT_RESPONSE = "next_response"
    RESOLUTION = "resolution"


class SlaState(StrEnum):
    """Values of ``Ticket.sla_state``."""

    NONE = ""
    OK = "ok"
    AT_RISK = "at_risk"
    BREACHED = "breached"


_RANK = {SlaState.NONE: 0, SlaState.OK: 1, SlaState.AT_RISK: 2, SlaState.BREACHED: 3}
_DUE_FIELD = {
    Target.FIRST_RESPONSE: "first_response_due_at",
    Target.NEXT_RESPONSE: "next_response_due_at",
    Target.RESOLUTION: "resolution_due_at",
}


@dataclass(frozen=True, slots=True)
class PolicySpec:
    """An ``SlaPolicy`` as plain values. Minutes are business minutes; None means no target."""

    id: int
    name: str = ""
    queue_id: int | None = None
    priority: int | None = None
    calendar_id: int | None = None
    first_response_minutes: int | None = None
    next_response_minutes: int | None = None
    resolution_minutes: int | None = None
    at_risk_ratio: float = 0.8
    notify_leads: bool = True
    raise_priority: bool = False

    @property
    def has_targets(self) -> bool:
        return any(
            m is not None
            for m in (self.first_response_minutes, self.next_response_minutes, self.resolution_minutes)
        )

    def minutes(self, target: Target) -> int | None:
        if target is Target.FIRST_RESPONSE:
            return self.first_response_minutes
        if target is Target.NEXT_RESPONSE:
            return self.next_response_minutes
        return self.resolution_minutes


@dataclass(frozen=True, slots=True)
class AppliedPolicy:
    """A policy with the calendar it runs on for one ticket: the policy's own calendar, else
    the ticket queue's calendar, else around the clock."""

    policy: PolicySpec
    calendar: CalendarSpec = ALWAYS_OPEN


class PolicyTable:
    """Policies by id and by (queue, priority), for selection in O(1)."""

    def __init__(self, policies: Iterable[PolicySpec]) -> None:
        self.by_id: dict[int, PolicySpec] = {}
        self._by_key: dict[tuple[int | None, int | None], PolicySpec] = {}
        # Lowest id first, so of two policies for the same queue and priority the older wins.
        for policy in sorted(policies, key=lambda p: p.id):
            self.by_id[policy.id] = policy
            self._by_key.setdefault((policy.queue_id, policy.priority), policy)

    def __len__(self) -> int:
        return len(self.by_id)

    def select(
        self, *, queue_id: int | None, priority: int | None, explicit_policy_id: int | None = None
    ) -> PolicySpec | None:
        """The policy for a ticket: one set explicitly (by a routing rule or a lead) wins; else the
        most specific match: this queue and priority, this queue and any priority, any queue and
        this priority, any queue and any priority."""
        if explicit_policy_id is not None and explicit_policy_id in self.by_id:
            return self.by_id[explicit_policy_id]
        for key in ((queue_id, priority), (queue_id, None), (None, priority), (None, None)):
            found = self._by_key.get(key)
            if found is not None:
                return found
        return None


@dataclass(frozen=True, slots=True)
class SlaConfig:
    """Everything the SLA rules need from the database, as plain values (see the selector)."""

    policies: PolicyTable
    calendars: Mapping[int, CalendarSpec]
    queue_calendars: Mapping[int, int | None]
    _applied: dict[tuple[int, int | None], AppliedPolicy] = field(default_factory=dict, repr=False)

    def calendar_for(self, policy: PolicySpec, queue_id: int | None) -> CalendarSpec:
        if policy.calendar_id is not None and policy.calendar_id in self.calendars:
            return self.calendars[policy.calendar_id]
        queue_calendar = self.queue_calendars.get(queue_id) if queue_id is not None else None
        if queue_calendar is not None and queue_calendar in self.calendars:
            return self.calendars[queue_calendar]
        return ALWAYS_OPEN

    def applied(self, policy_id: int | None, queue_id: int | None) -> AppliedPolicy | None:
        """The policy ``policy_id`` on a ticket of ``queue_id``; None without (or for a deleted) policy."""
        if policy_id is None:
            return None
        key = (policy_id, queue_id)
        found = self._applied.get(key)
        if found is None:
            policy = self.policies.by_id.get(policy_id)
            if policy is None:
                return None
            found = AppliedPolicy(policy, self.calendar_for(policy, queue_id))
            self._applied[key] = found
        return found

    def select(
        self, *, queue_id: int | None, priority: int | None, explicit_policy_id: int | None = None
    ) -> AppliedPolicy | None:
        policy = self.policies.select(
            queue_id=queue_id, priority=priority, explicit_policy_id=explicit_policy_id
        )
        return self.applied(policy.id, queue_id) if policy is not None else None

    def for_ticket(self, clocks: TicketClocks) -> AppliedPolicy | None:
        return self.applied(clocks.sla_policy_id, clocks.queue_id)


@dataclass(frozen=True, slots=True)
class TicketClocks:
    """What the SLA rules read from a ticket."""

    status: str
    opened_at: datetime
    queue_id: int | None = None
    priority: int | None = None
    sla_policy_id: int | None = None
    first_response_at: datetime | None = None
    last_agent_reply_at: datetime | None = None
    last_customer_message_at: datetime | None = None
    first_response_due_at: datetime | None = None
    next_response_due_at: datetime | None = None
    resolution_due_at: datetime | None = None
    sla_state: str = SlaState.NONE
    pending_since: datetime | None = None
    solved_at: datetime | None = None

    @classmethod
    def of(cls, ticket: Any) -> TicketClocks:
        """A snapshot of a ``Ticket`` (or anything with its attributes)."""
        return cls(**{f.name: getattr(ticket, f.name) for f in dataclasses.fields(cls)})

    def with_changes(self, change: SlaChange) -> TicketClocks:
        names = {f.name for f in dataclasses.fields(self)}
        return dataclasses.replace(self, **{k: v for k, v in change.fields.items() if k in names})

    @property
    def answered_at(self) -> datetime | None:
        """When an agent last answered: the later of the first response and the last reply."""
        known = [t for t in (self.first_response_at, self.last_agent_reply_at) if t is not None]
        return max(known) if known else None

    def open_targets(self) -> list[tuple[Target, datetime]]:
        """Targets whose clock is running or stopped but not met, with their due time."""
        targets = []
        if self.first_response_at is None and self.first_response_due_at is not None:
            targets.append((Target.FIRST_RESPONSE, self.first_response_due_at))
        if self.next_response_due_at is not None:
            targets.append((Target.NEXT_RESPONSE, self.next_response_due_at))
        if self.resolution_due_at is not None:
            targets.append((Target.RESOLUTION, self.resolution_due_at))
        return targets


@dataclass(frozen=True, slots=True)
class StateChange:
    """``sla_state`` moved: the payload of a ``sla.state_changed`` event."""

    old: str
    new: str
    target: str | None
    due_at: datetime | None


@dataclass(frozen=True, slots=True)
class SlaChange:
    """Ticket fields to set, and the state change among them (for the event), if any."""

    fields: dict[str, Any] = field(default_factory=dict)
    state_change: StateChange | None = None

    def apply(self, ticket: Any) -> list[str]:
        """Set the fields on ``ticket``; the names of those whose value changed."""
        changed = []
        for name, value in self.fields.items():
            if getattr(ticket, name) != value:
                setattr(ticket, name, value)
                changed.append(name)
        return changed


@dataclass(frozen=True, slots=True)
class Evaluation:
    """How a ticket stands: the worst state among its open targets and which target that is
    (of several in the worst state, the one due first)."""

    state: str
    target: str | None = None
    due_at: datetime | None = None


# --- Transitions -------------------------------------------------------------------------------


def sla_for_new_ticket(applied: AppliedPolicy | None, *, opened_at: datetime) -> SlaChange:
    """A ticket was opened: first response and resolution are due from ``opened_at``.

    The state starts ``ok`` (or none without targets). If the ticket is already late (history
    imported hours after the fact) the periodic evaluation raises it, with its events and
    escalation, like any other."""
    if applied is None:
        return SlaChange(dict(_cleared_fields(None), sla_state=SlaState.NONE.value))
    policy, calendar = applied.policy, applied.calendar
    first = _due(calendar, opened_at, policy.first_response_minutes)
    resolution = _due(calendar, opened_at, policy.resolution_minutes)
    state = SlaState.OK if policy.has_targets else SlaState.NONE
    return SlaChange(
        {
            "sla_policy_id": policy.id,
            "first_response_due_at": first,
            "next_response_due_at": None,
            "resolution_due_at": resolution,
            "sla_state": state.value,
            "sla_state_changed_at": opened_at,
        }
    )


def sla_for_customer_message(
    clocks: TicketClocks, applied: AppliedPolicy | None, *, at: datetime
) -> SlaChange:
    """A customer wrote at ``at`` on an existing ticket. ``clocks`` is the ticket as it was
    before this message: a pending ticket resumes, a solved one being reopened resumes from
    where it stood, and a message after the last agent reply starts the next-response clock
    (unless an earlier unanswered message already did).

    The state is left alone: a message only adds a target, so it can only get worse, and the
    periodic evaluation does that (with events and escalation)."""
    fields: dict[str, Any] = {}
    if clocks.status == PENDING:
        fields.update(_resume(clocks, applied, since=clocks.pending_since, at=at))
    elif clocks.status in FINAL:
        fields.update(_resume(clocks, applied, since=clocks.solved_at, at=at))
    answered = clocks.answered_at
    minutes = applied.policy.next_response_minutes if applied is not None else None
    if clocks.next_response_due_at is None and answered is not None and at > answered and minutes is not None:
        fields["next_response_due_at"] = _due(applied.calendar, at, minutes)
    return SlaChange(fields)


def sla_for_agent_reply(
    clocks: TicketClocks, applied: AppliedPolicy | None, *, at: datetime, now: datetime
) -> SlaChange:
    """An agent answered at ``at`` (a desk reply, or a brand post seen on the platform).

    Meets the first response (if the reply is not older than the ticket) and the next
    response (if no customer message came after the reply). The state is re-evaluated at
    ``now`` but only ever lowered here: a target met can make a ticket better, and getting
    worse is the periodic evaluation's job."""
    fields: dict[str, Any] = {}
    if clocks.last_agent_reply_at is None or at > clocks.last_agent_reply_at:
        fields["last_agent_reply_at"] = at
    if at >= clocks.opened_at and (clocks.first_response_at is None or at < clocks.first_response_at):
        fields["first_response_at"] = at
    if clocks.next_response_due_at is not None and (
        clocks.last_customer_message_at is None or at >= clocks.last_customer_message_at
    ):
        fields["next_response_due_at"] = None
    change = SlaChange(fields)
    return _with_state(change, clocks, applied, now=now, only_better=True)


def sla_for_status_change(
    clocks: TicketClocks, applied: AppliedPolicy | None, *, new_status: str, at: datetime
) -> SlaChange:
    """The status moves from ``clocks.status`` to ``new_status`` at ``at``.

    * to pending: the clocks stop (``pending_since``);
    * out of pending: every open due time moves forward by the business time spent pending;
    * to solved or closed: the clocks stop for good; the next response is no longer owed and
      the state becomes final: breached if a target was past due at ``at``, else ok;
    * out of solved or closed (reopen): the clocks resume where they stood at the solve.
    """
    old = clocks.status
    fields: dict[str, Any] = {}
    if old == new_status:
        return SlaChange()
    if old == PENDING:
        fields.update(_resume(clocks, applied, since=clocks.pending_since, at=at))
    elif old in FINAL and new_status not in FINAL:
        fields.update(_resume(clocks, applied, since=clocks.solved_at, at=at))
    if new_status == PENDING:
        fields["pending_since"] = at
    change = SlaChange(fields)
    if new_status in FINAL and old not in FINAL:
        after = clocks.with_changes(change)
        evaluation = _final_evaluation(after, applied, at=at)
        fields["next_response_due_at"] = None
        change = _state_fields(SlaChange(fields), clocks, evaluation, at=at)
    return change


def sla_for_policy_change(
    clocks: TicketClocks, old: AppliedPolicy | None, new: AppliedPolicy | None
) -> SlaChange:
    """Due times under policy ``new`` instead of ``old``.

    Each target keeps its clock start and the business time it was paused: that start is read
    back from the old due time (the earliest instant the old policy's minutes before it, in
    the old calendar, not before the real start), and the new minutes are added in the new
    calendar. With one calendar (the usual case: a priority change within a queue) this is
    exact; across calendars the paused time is carried over as measured by the old one. A
    target the old policy did not have starts at its real start (next response: the last
    customer message). The state is not touched: the caller evaluates it."""
    if new is None:
        return SlaChange(_cleared_fields(None))
    fields: dict[str, Any] = {"sla_policy_id": new.policy.id}
    answered = clocks.answered_at
    for target in Target:
        due_field = _DUE_FIELD[target]
        old_due = getattr(clocks, due_field)
        if target is Target.NEXT_RESPONSE:
            floor = answered
            if old_due is None:
                unanswered = (
                    answered is not None
                    and clocks.last_customer_message_at is not None
                    and clocks.last_customer_message_at > answered
                )
                start = clocks.last_customer_message_at if unanswered else None
            else:
                start = floor
        else:
            floor = start = clocks.opened_at
        if old_due is not None and old is not None and floor is not None:
            old_minutes = old.policy.minutes(target)
            if old_minutes is not None:
                start = max(floor, _back(old.calendar, old_due, old_minutes))
        fields[due_field] = (
            _due(new.calendar, start, new.policy.minutes(target)) if start is not None else None
        )
    return SlaChange(fields)


# --- Evaluation --------------------------------------------------------------------------------


def sla_evaluate_ticket(clocks: TicketClocks, applied: AppliedPolicy | None, *, now: datetime) -> Evaluation:
    """How the ticket stands at ``now``. A stopped clock is judged where it stopped (pending:
    at ``pending_since``; solved or closed: at ``solved_at``, and there at risk counts as ok).

    A target is breached once its due time has come, at risk once ``at_risk_ratio`` of its
    business minutes have passed (at most the rest remains), else ok."""
    if applied is None:
        return Evaluation(SlaState.NONE)
    if clocks.status in FINAL:
        return _final_evaluation(clocks, applied, at=clocks.solved_at or now)
    at = clocks.pending_since if clocks.status == PENDING and clocks.pending_since is not None else now
    return _evaluate(clocks, applied, at=at)


def at_risk_horizon(applied: AppliedPolicy, target: Target, *, now: datetime) -> datetime | None:
    """A due time of ``target`` at or before this instant means at risk at ``now``: the
    periodic evaluation queries due times against it. None: the policy has no such target."""
    minutes = applied.policy.minutes(target)
    if minutes is None:
        return None
    allowed = max(0.0, (1.0 - applied.policy.at_risk_ratio) * minutes)
    try:
        return business_horizon(applied.calendar, now, allowed)
    except CalendarNeverOpen:
        # No business minute passes any more, so nothing comes closer to its due time.
        return None


def _evaluate(clocks: TicketClocks, applied: AppliedPolicy, *, at: datetime) -> Evaluation:
    judged: list[Evaluation] = []
    for target, due in clocks.open_targets():
        if at >= due:
            state = SlaState.BREACHED
        else:
            horizon = at_risk_horizon(applied, target, now=at)
            state = SlaState.AT_RISK if horizon is not None and due <= horizon else SlaState.OK
        judged.append(Evaluation(state.value, target.value, due))
    if not judged:
        return Evaluation(SlaState.OK if applied.policy.has_targets else SlaState.NONE)
    # The worst state; of several in it, the target due first.
    return min(judged, key=lambda e: (-_RANK[SlaState(e.state)], e.due_at))


def _final_evaluation(clocks: TicketClocks, applied: AppliedPolicy | None, *, at: datetime) -> Evaluation:
    if applied is None:
        return Evaluation(SlaState.NONE)
    evaluation = _evaluate(clocks, applied, at=at)
    if evaluation.state == SlaState.AT_RISK:
        return Evaluation(SlaState.OK, evaluation.target, evaluation.due_at)
    return evaluation


def sla_state_update(
    clocks: TicketClocks, evaluation: Evaluation, *, now: datetime, only_better: bool = False
) -> SlaChange:
    """The fields (and state change) that bring ``clocks.sla_state`` to ``evaluation``.
    ``only_better`` keeps a better stored state (leaving worsening to the evaluation task)."""
    return _state_fields(SlaChange(), clocks, evaluation, at=now, only_better=only_better)


def _with_state(
    change: SlaChange,
    clocks: TicketClocks,
    applied: AppliedPolicy | None,
    *,
    now: datetime,
    only_better: bool,
) -> SlaChange:
    after = clocks.with_changes(change)
    return _state_fields(
        change, clocks, sla_evaluate_ticket(after, applied, now=now), at=now, only_better=only_better
    )


def _state_fields(
    change: SlaChange,
    clocks: TicketClocks,
    evaluation: Evaluation,
    *,
    at: datetime,
    only_better: bool = False,
) -> SlaChange:
    old = SlaState(clocks.sla_state)
    new = SlaState(evaluation.state)
    if new == old or (only_better and _RANK[new] > _RANK[old]):
        return change
    fields = dict(change.fields, sla_state=new.value, sla_state_changed_at=at)
    return SlaChange(fields, StateChange(old.value, new.value, evaluation.target, evaluation.due_at))


# --- Helpers -----------------------------------------------------------------------------------


def _resume(
    clocks: TicketClocks, applied: AppliedPolicy | None, *, since: datetime | None, at: datetime
) -> dict[str, Any]:
    """Move every open due time forward by the business time from ``since`` to ``at``."""
    fields: dict[str, Any] = {}
    if clocks.status == PENDING:
        fields["pending_since"] = None
    if since is None or applied is None:
        return fields
    paused = business_minutes_between(applied.calendar, since, at)
    if paused <= 0:
        return fields
    for target, due in clocks.open_targets():
        fields[_DUE_FIELD[target]] = business_add(applied.calendar, due, paused)
    return fields


def _due(calendar: CalendarSpec, start: datetime, minutes: int | None) -> datetime | None:
    """Due time of a target of ``minutes`` started at ``start``; None without a target, or when
    the calendar is never open (the clock never runs, so nothing ever becomes due)."""
    if minutes is None:
        return None
    try:
        return business_add(calendar, start, minutes)
    except CalendarNeverOpen:
        return None


def _back(calendar: CalendarSpec, due: datetime, minutes: int) -> datetime:
    try:
        return business_subtract(calendar, due, minutes)
    except CalendarNeverOpen:
        return due


def _cleared_fields(policy_id: int | None) -> dict[str, Any]:
    return {
        "sla_policy_id": policy_id,
        "first_response_due_at": None,
        "next_response_due_at": None,
        "resolution_due_at": None,
    }
