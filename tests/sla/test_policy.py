"""The SLA rules, pure: policy selection, due times through a ticket's life (pending pauses,
next response, solve and reopen, policy change) and how a ticket stands."""

from __future__ import annotations

import dataclasses
from datetime import time, timedelta

import pytest

from inbox.models import Ticket
from inbox.sla.clock import ALWAYS_OPEN, CalendarSpec, Shift
from inbox.sla.policy import (
    AppliedPolicy,
    Evaluation,
    PolicySpec,
    PolicyTable,
    SlaChange,
    SlaConfig,
    SlaState,
    StateChange,
    Target,
    TicketClocks,
    at_risk_horizon,
    sla_evaluate_ticket,
    sla_for_agent_reply,
    sla_for_customer_message,
    sla_for_new_ticket,
    sla_for_policy_change,
    sla_for_status_change,
)
from tests.sla import ams

OFFICE = CalendarSpec(
    time_zone="Europe/Amsterdam", shifts=tuple(Shift(d, time(9), time(17)) for d in range(5))
)
POLICY = PolicySpec(id=1, first_response_minutes=120, next_response_minutes=60, resolution_minutes=960)
CARE = AppliedPolicy(POLICY, OFFICE)
MON_9 = ams(2026, 11, 2, 9, 0)  # Monday 2 November 2026


def opened(at=MON_9, applied: AppliedPolicy | None = CARE, **fields) -> TicketClocks:
    """A ticket opened at ``at`` with the due times ``applied`` gives it."""
    clocks = TicketClocks(status="new", opened_at=at, last_customer_message_at=at)
    clocks = clocks.with_changes(sla_for_new_ticket(applied, opened_at=at))
    return dataclasses.replace(clocks, **fields)


def then(clocks: TicketClocks, change: SlaChange, **fields) -> TicketClocks:
    return dataclasses.replace(clocks.with_changes(change), **fields)


def test_states_and_statuses_match_the_model():
    assert {s.value for s in SlaState} == set(Ticket.SlaState.values)
    assert set(Ticket.Status.values) == {"new", "open", "pending", "solved", "closed"}


# --- Selection -----------------------------------------------------------------------------------


def test_the_most_specific_policy_wins():
    table = PolicyTable(
        [
            PolicySpec(id=1, queue_id=None, priority=None),
            PolicySpec(id=2, queue_id=None, priority=3),
            PolicySpec(id=3, queue_id=7, priority=None),
            PolicySpec(id=4, queue_id=7, priority=3),
        ]
    )

    def chosen(queue_id, priority, explicit=None):
        policy = table.select(queue_id=queue_id, priority=priority, explicit_policy_id=explicit)
        return policy.id if policy else None

    assert chosen(7, 3) == 4
    assert chosen(7, 1) == 3
    assert chosen(8, 3) == 2
    assert chosen(8, 1) == 1
    assert chosen(None, 3) == 2
    assert chosen(7, 3, explicit=1) == 1  # a routing rule's (or a lead's) choice
    assert chosen(7, 3, explicit=99) == 4  # a deleted policy: back to the match


def test_no_match_without_a_catch_all_and_the_older_of_two_duplicates_wins():
    table = PolicyTable([PolicySpec(id=5, queue_id=7, priority=1), PolicySpec(id=2, queue_id=7, priority=1)])
    assert table.select(queue_id=7, priority=1).id == 2
    assert table.select(queue_id=8, priority=1) is None


def test_the_calendar_is_the_policys_else_the_queues_else_around_the_clock():
    queue_hours = CalendarSpec(time_zone="Asia/Tokyo", always_open=True)
    config = SlaConfig(
        policies=PolicyTable([PolicySpec(id=1, calendar_id=10), PolicySpec(id=2)]),
        calendars={10: OFFICE, 20: queue_hours},
        queue_calendars={7: 20, 8: None},
    )
    assert config.applied(1, 7).calendar is OFFICE
    assert config.applied(2, 7).calendar is queue_hours
    assert config.applied(2, 8).calendar is ALWAYS_OPEN
    assert config.applied(2, None).calendar is ALWAYS_OPEN
    assert config.applied(3, 7) is None
    assert config.applied(None, 7) is None
    assert config.select(queue_id=8, priority=1).policy.id == 1


# --- A new ticket --------------------------------------------------------------------------------


def test_a_new_ticket_gets_first_response_and_resolution_due_in_business_time():
    change = sla_for_new_ticket(CARE, opened_at=ams(2026, 11, 6, 16, 0))  # Friday 16:00
    assert change == SlaChange(
        {
            "sla_policy_id": 1,
            "first_response_due_at": ams(2026, 11, 9, 10, 0),  # 1 h Friday, 1 h Monday
            "next_response_due_at": None,
            "resolution_due_at": ams(2026, 11, 10, 16, 0),  # 16 h: 1 + 8 + 7
            "sla_state": "ok",
            "sla_state_changed_at": ams(2026, 11, 6, 16, 0),
        }
    )


def test_without_a_policy_or_targets_there_is_no_sla():
    assert sla_for_new_ticket(None, opened_at=MON_9).fields == {
        "sla_policy_id": None,
        "first_response_due_at": None,
        "next_response_due_at": None,
        "resolution_due_at": None,
        "sla_state": "",
    }
    empty = sla_for_new_ticket(AppliedPolicy(PolicySpec(id=2), OFFICE), opened_at=MON_9)
    assert empty.fields["sla_state"] == "" and empty.fields["first_response_due_at"] is None


def test_a_calendar_that_is_never_open_sets_no_due_time():
    never = AppliedPolicy(POLICY, CalendarSpec(time_zone="Europe/Amsterdam"))
    fields = sla_for_new_ticket(never, opened_at=MON_9).fields
    assert (fields["first_response_due_at"], fields["resolution_due_at"], fields["sla_state"]) == (
        None,
        None,
        "ok",
    )


# --- Pending pauses ------------------------------------------------------------------------------


def test_pending_stops_the_clocks_and_the_customers_answer_resumes_them_exactly():
    ticket = opened()
    assert (ticket.first_response_due_at, ticket.resolution_due_at) == (
        ams(2026, 11, 2, 11, 0),
        ams(2026, 11, 3, 17, 0),
    )

    to_pending = sla_for_status_change(ticket, CARE, new_status="pending", at=ams(2026, 11, 2, 10, 0))
    assert to_pending == SlaChange({"pending_since": ams(2026, 11, 2, 10, 0)})
    ticket = then(ticket, to_pending, status="pending")

    # The customer answers the next day at 10:00: 7 + 1 business hours passed while pending.
    resumed = sla_for_customer_message(ticket, CARE, at=ams(2026, 11, 3, 10, 0))
    assert resumed == SlaChange(
        {
            "pending_since": None,
            "first_response_due_at": ams(2026, 11, 3, 11, 0),
            "resolution_due_at": ams(2026, 11, 4, 17, 0),
        }
    )
    # Still one hour of first response left, as when the ticket went pending.


def test_a_pending_weekend_costs_no_business_time():
    ticket = then(opened(), SlaChange({"pending_since": ams(2026, 11, 6, 16, 0)}), status="pending")
    ticket = dataclasses.replace(ticket, first_response_due_at=ams(2026, 11, 6, 16, 30))
    change = sla_for_status_change(ticket, CARE, new_status="open", at=ams(2026, 11, 9, 9, 0))
    # Friday 16:00-17:00 is the only business hour in the pause.
    assert change.fields["first_response_due_at"] == ams(2026, 11, 9, 9, 30)
    assert change.state_change is None


def test_a_pending_ticket_is_judged_where_its_clock_stopped():
    ticket = then(opened(), SlaChange({"pending_since": ams(2026, 11, 2, 10, 0)}), status="pending")
    # Days later: still half of the first response time left, as at 10:00 on Monday.
    assert sla_evaluate_ticket(ticket, CARE, now=ams(2026, 11, 9, 12, 0)) == Evaluation(
        "ok", "first_response", ams(2026, 11, 2, 11, 0)
    )


def test_solving_a_pending_ticket_counts_the_pause_before_the_solve():
    ticket = then(opened(first_response_at=ams(2026, 11, 2, 9, 30)), SlaChange(), status="pending",
                  pending_since=ams(2026, 11, 2, 10, 0))  # fmt: skip
    change = sla_for_status_change(ticket, CARE, new_status="solved", at=ams(2026, 11, 4, 10, 0))
    # 15 business hours were left at 10:00 on Monday; from Wednesday 10:00 that is Thursday 17:00.
    assert change.fields == {
        "pending_since": None,
        "resolution_due_at": ams(2026, 11, 5, 17, 0),
        "next_response_due_at": None,
    }
    assert change.state_change is None  # ok, and final


# --- Next response -------------------------------------------------------------------------------


def test_a_customer_message_after_the_reply_starts_the_next_response_clock():
    ticket = opened(first_response_at=ams(2026, 11, 2, 9, 30), last_agent_reply_at=ams(2026, 11, 2, 9, 30))
    change = sla_for_customer_message(ticket, CARE, at=ams(2026, 11, 2, 16, 30))
    assert change == SlaChange({"next_response_due_at": ams(2026, 11, 3, 9, 30)})  # over the night

    ticket = then(ticket, change, last_customer_message_at=ams(2026, 11, 2, 16, 30))
    # A second message before anyone answers keeps the first one's clock.
    assert sla_for_customer_message(ticket, CARE, at=ams(2026, 11, 2, 16, 45)) == SlaChange()


def test_no_next_response_before_the_first_response_or_for_an_old_message():
    assert sla_for_customer_message(opened(), CARE, at=ams(2026, 11, 2, 9, 10)) == SlaChange()
    answered = opened(first_response_at=ams(2026, 11, 2, 9, 30))
    assert sla_for_customer_message(answered, CARE, at=ams(2026, 11, 2, 9, 20)) == SlaChange()


def test_an_agent_reply_meets_first_and_next_response_and_can_lower_the_state():
    ticket = opened(sla_state="at_risk", next_response_due_at=ams(2026, 11, 2, 11, 30))
    change = sla_for_agent_reply(ticket, CARE, at=ams(2026, 11, 2, 10, 50), now=ams(2026, 11, 2, 10, 50))
    assert change == SlaChange(
        {
            "last_agent_reply_at": ams(2026, 11, 2, 10, 50),
            "first_response_at": ams(2026, 11, 2, 10, 50),
            "next_response_due_at": None,
            "sla_state": "ok",
            "sla_state_changed_at": ams(2026, 11, 2, 10, 50),
        },
        StateChange("at_risk", "ok", "resolution", ams(2026, 11, 3, 17, 0)),
    )


def test_an_agent_reply_never_raises_the_state_itself():
    # At 10:40 the first response is at risk, but raising the state (with its event and
    # escalation) is the periodic evaluation's job.
    ticket = opened()
    change = sla_for_agent_reply(
        ticket, CARE, at=ams(2026, 11, 2, 9, 20), now=ams(2026, 11, 3, 16, 0)
    )  # resolution at risk at `now`
    assert change.state_change is None and "sla_state" not in change.fields


def test_a_reply_older_than_the_last_customer_message_leaves_the_next_response_open():
    ticket = opened(
        first_response_at=ams(2026, 11, 2, 9, 30),
        last_agent_reply_at=ams(2026, 11, 2, 9, 30),
        last_customer_message_at=ams(2026, 11, 2, 14, 30),
        next_response_due_at=ams(2026, 11, 2, 15, 0),
    )
    change = sla_for_agent_reply(ticket, CARE, at=ams(2026, 11, 2, 14, 10), now=ams(2026, 11, 2, 14, 31))
    assert change.fields == {"last_agent_reply_at": ams(2026, 11, 2, 14, 10)}


def test_a_brand_post_from_before_the_ticket_is_no_first_response():
    change = sla_for_agent_reply(opened(), CARE, at=ams(2026, 11, 2, 8, 0), now=MON_9)
    assert change.fields == {"last_agent_reply_at": ams(2026, 11, 2, 8, 0)}


# --- Solve and reopen ----------------------------------------------------------------------------


def test_solving_stops_the_clocks_with_a_final_state():
    late = sla_for_status_change(opened(), CARE, new_status="solved", at=ams(2026, 11, 2, 12, 0))
    assert late == SlaChange(
        {
            "next_response_due_at": None,
            "sla_state": "breached",
            "sla_state_changed_at": ams(2026, 11, 2, 12, 0),
        },
        StateChange("ok", "breached", "first_response", ams(2026, 11, 2, 11, 0)),
    )
    # Solved while at risk (after 80% of the first response time) is solved in time.
    in_time = sla_for_status_change(
        opened(sla_state="at_risk"), CARE, new_status="solved", at=ams(2026, 11, 2, 10, 45)
    )
    assert in_time.fields["sla_state"] == "ok"
    assert in_time.state_change == StateChange("at_risk", "ok", "first_response", ams(2026, 11, 2, 11, 0))


def test_a_solved_ticket_keeps_its_final_state():
    ticket = then(opened(first_response_at=ams(2026, 11, 2, 9, 30)), SlaChange(), status="solved",
                  solved_at=ams(2026, 11, 2, 13, 0))  # fmt: skip
    assert sla_evaluate_ticket(ticket, CARE, now=ams(2026, 12, 1)) == Evaluation(
        "ok", "resolution", ams(2026, 11, 3, 17, 0)
    )
    assert sla_for_status_change(ticket, CARE, new_status="closed", at=ams(2026, 11, 9)) == SlaChange()


def test_reopening_continues_the_resolution_from_where_it_stood():
    ticket = then(opened(first_response_at=ams(2026, 11, 2, 9, 30)), SlaChange(), status="solved",
                  solved_at=ams(2026, 11, 2, 13, 0))  # fmt: skip
    # At the solve 12 business hours of resolution were left (Monday 13-17, Tuesday).
    reopened = sla_for_status_change(ticket, CARE, new_status="open", at=ams(2026, 11, 5, 10, 0))
    assert reopened == SlaChange({"resolution_due_at": ams(2026, 11, 6, 14, 0)})  # Thursday 7 h + Friday 5 h
    # The customer writing again reopens the same way and starts a next response.
    by_customer = sla_for_customer_message(ticket, CARE, at=ams(2026, 11, 5, 10, 0))
    assert by_customer == SlaChange(
        {"resolution_due_at": ams(2026, 11, 6, 14, 0), "next_response_due_at": ams(2026, 11, 5, 11, 0)}
    )


def test_same_status_changes_nothing():
    assert sla_for_status_change(opened(), CARE, new_status="new", at=MON_9) == SlaChange()


# --- How a ticket stands -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "state"),
    [
        (ams(2026, 11, 2, 10, 35, 59), "ok"),
        (ams(2026, 11, 2, 10, 36), "at_risk"),  # 96 of 120 minutes: 80%
        (ams(2026, 11, 2, 10, 59, 59), "at_risk"),
        (ams(2026, 11, 2, 11, 0), "breached"),
    ],
)
def test_at_risk_at_80_percent_and_breached_at_100(now, state):
    assert sla_evaluate_ticket(opened(), CARE, now=now) == Evaluation(
        state, "first_response", ams(2026, 11, 2, 11)
    )


def test_at_risk_counts_business_time_across_the_weekend():
    ticket = opened(ams(2026, 11, 6, 16, 0))  # first response due Monday 10:00
    assert sla_evaluate_ticket(ticket, CARE, now=ams(2026, 11, 8, 23, 0)).state == "ok"
    assert sla_evaluate_ticket(ticket, CARE, now=ams(2026, 11, 9, 9, 35)).state == "ok"
    assert sla_evaluate_ticket(ticket, CARE, now=ams(2026, 11, 9, 9, 36)).state == "at_risk"
    assert at_risk_horizon(CARE, Target.FIRST_RESPONSE, now=ams(2026, 11, 6, 17, 0)) == ams(
        2026, 11, 9, 9, 24
    )


def test_the_worst_target_decides_and_of_equals_the_one_due_first():
    ticket = opened(first_response_at=ams(2026, 11, 2, 9, 30), next_response_due_at=ams(2026, 11, 3, 16, 0))
    # Tuesday 16:10: next response breached, resolution at risk.
    assert sla_evaluate_ticket(ticket, CARE, now=ams(2026, 11, 3, 16, 10)) == Evaluation(
        "breached", "next_response", ams(2026, 11, 3, 16, 0)
    )
    # Tuesday 15:55: both at risk; the next response is due first.
    assert sla_evaluate_ticket(ticket, CARE, now=ams(2026, 11, 3, 15, 55)) == Evaluation(
        "at_risk", "next_response", ams(2026, 11, 3, 16, 0)
    )


def test_met_targets_leave_the_state_ok_and_no_policy_means_no_state():
    ticket = opened(first_response_at=ams(2026, 11, 2, 9, 30), resolution_due_at=None)
    assert sla_evaluate_ticket(ticket, CARE, now=ams(2026, 11, 9)) == Evaluation("ok")
    assert sla_evaluate_ticket(ticket, None, now=ams(2026, 11, 9)) == Evaluation("")


# --- Policy change -------------------------------------------------------------------------------

FAST = AppliedPolicy(
    PolicySpec(id=2, first_response_minutes=60, next_response_minutes=30, resolution_minutes=480), OFFICE
)


def test_a_new_policy_keeps_the_clock_start_and_the_time_paused():
    # First response pushed a whole business day by a pending pause: due Tuesday 11:00.
    ticket = opened(first_response_due_at=ams(2026, 11, 3, 11, 0), resolution_due_at=ams(2026, 11, 4, 17, 0))
    change = sla_for_policy_change(ticket, CARE, FAST)
    assert change == SlaChange(
        {
            "sla_policy_id": 2,
            "first_response_due_at": ams(2026, 11, 3, 10, 0),  # 9:00 + 8 h paused + 1 h
            "next_response_due_at": None,
            "resolution_due_at": ams(2026, 11, 3, 17, 0),  # 9:00 + 8 h paused + 8 h
        }
    )


def test_a_new_policy_on_another_calendar_starts_from_the_real_start():
    ticket = opened(ams(2026, 11, 6, 18, 0))  # Friday evening, closed; due Monday 11:00
    around_the_clock = AppliedPolicy(POLICY, ALWAYS_OPEN)
    change = sla_for_policy_change(ticket, CARE, around_the_clock)
    assert change.fields["first_response_due_at"] == ams(2026, 11, 6, 20, 0)
    assert change.fields["resolution_due_at"] == ams(2026, 11, 6, 18, 0) + timedelta(minutes=960)


def test_a_new_policy_with_a_next_response_target_starts_it_at_the_unanswered_message():
    no_next = AppliedPolicy(dataclasses.replace(POLICY, id=3, next_response_minutes=None), OFFICE)
    ticket = opened(
        applied=no_next,
        first_response_at=ams(2026, 11, 2, 9, 30),
        last_customer_message_at=ams(2026, 11, 2, 14, 0),
    )
    assert ticket.next_response_due_at is None
    assert sla_for_policy_change(ticket, no_next, CARE).fields["next_response_due_at"] == ams(
        2026, 11, 2, 15, 0
    )
    assert sla_for_policy_change(ticket, CARE, None) == SlaChange(
        {
            "sla_policy_id": None,
            "first_response_due_at": None,
            "next_response_due_at": None,
            "resolution_due_at": None,
        }
    )
