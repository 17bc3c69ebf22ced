"""The inbox lists: scoping per list and role, filters, search, SLA order, pages, unread,
live rows and "next ticket".

``make_desk`` and ``ticket_from`` are shared with ``tests/views/test_inbox.py``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import TestCase
from django.test.utils import CaptureQueriesContext

from inbox.connectors.base import AuthorIdentity
from inbox.models import AgentProfile, Message, Queue, Source, Ticket
from inbox.selectors.inbox import (
    MAX_ROW_IDS,
    InboxFilters,
    InboxNotAllowed,
    InboxView,
    inbox_counts,
    inbox_default_view,
    inbox_list,
    inbox_next_ticket,
    inbox_page,
    inbox_rows,
    inbox_tickets,
    sort_key,
    unread_ticket_ids,
)
from inbox.selectors.tickets import tickets_visible_to
from inbox.services.assignment import ticket_reassign
from inbox.services.desk import ticket_mark_seen
from inbox.services.ingest import ingest_batch
from inbox.services.replies import reply_create
from inbox.services.routing_rules import routing_rule_create
from inbox.services.tickets import ticket_change_priority, ticket_change_status
from tests.factories import AgentProfileFactory, QueueFactory, SourceFactory, inbound
from tests.sla import SlaPolicyFactory

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
User = get_user_model()


@dataclass
class Desk:
    """Two queues with one agent each, and a lead who is in neither."""

    general: Queue
    billing: Queue
    web: Source  # simulated platform, routes to General
    x: Source  # X, routes to Billing
    anna: User  # agent of General
    bob: User  # agent of Billing
    lena: User  # team lead


def make_desk(source: Source, default_queue: Queue) -> Desk:
    billing = QueueFactory(name="Billing", slug="billing")
    anna = AgentProfileFactory(
        user__username="anna", user__first_name="Anna", user__last_name="de Vries"
    ).user
    default_queue.members.add(anna)
    bob = AgentProfileFactory(user__username="bob", user__first_name="Bob").user
    billing.members.add(bob)
    lena = AgentProfileFactory(
        user__username="lena", user__first_name="Lena", role=AgentProfile.Role.LEAD
    ).user
    x = SourceFactory(name="x", platform="x", default_queue=billing)
    return Desk(general=default_queue, billing=billing, web=source, x=x, anna=anna, bob=bob, lena=lena)


_authors = iter(range(1, 1_000_000))


def ticket_from(
    source: Source,
    text: str = "Where is my bag?",
    *,
    author: str | None = None,
    handle: str | None = None,
    name: str | None = None,
    at: datetime | None = None,
    reply_to: str = "",
    external_id: str | None = None,
) -> Ticket:
    """Ingest one customer message (a new post unless ``reply_to``) and return its ticket."""
    author = author or f"customer{next(_authors)}"
    item = inbound(external_id, author=author, text=text, at=at, reply_to=reply_to, handle=handle)
    if name is not None:
        item = dataclasses.replace(
            item, author=AuthorIdentity(external_id=author, handle=item.author.handle, display_name=name)
        )
    result = ingest_batch(source=source, messages=[item])
    assert result.created == 1, result
    return Message.objects.get(pk=result.message_ids[0]).ticket


def add_rule(**fields) -> None:
    """A routing rule, in force at once (the rule cache is dropped when the change commits)."""
    with TestCase.captureOnCommitCallbacks(execute=True):
        routing_rule_create(fields=fields)


def ids(tickets) -> list[int]:
    return [ticket.pk for ticket in tickets]


@pytest.fixture
def desk(source, default_queue) -> Desk:
    return make_desk(source, default_queue)


@pytest.fixture
def floor(desk):
    """Tickets of both queues in every state that matters for the lists."""
    t = {
        "general_new": ticket_from(desk.web, "Where is my bag?"),
        "general_anna": ticket_from(desk.web, "My flight was cancelled"),
        "general_pending": ticket_from(desk.web, "Lost my boarding pass"),
        "general_solved": ticket_from(desk.web, "Thanks, all good"),
        "billing_new": ticket_from(desk.x, "Invoice is wrong"),
        "billing_bob": ticket_from(desk.x, "Refund please"),
        "billing_anna": ticket_from(desk.x, "Anna promised me a refund"),
    }
    ticket_reassign(ticket=t["general_anna"], assignee=desk.anna, actor=desk.lena)
    ticket_reassign(ticket=t["general_pending"], assignee=desk.anna, actor=desk.lena)
    ticket_change_status(ticket=t["general_pending"], status="pending", actor=desk.anna)
    ticket_change_status(ticket=t["general_solved"], status="solved", actor=desk.lena)
    ticket_reassign(ticket=t["billing_bob"], assignee=desk.bob, actor=desk.lena)
    # A lead gave Anna a ticket of a queue she is not in: hers all the same.
    ticket_reassign(ticket=t["billing_anna"], assignee=desk.anna, actor=desk.lena)
    return t


def listed(user, view: str, **filters) -> set[int]:
    return set(ids(inbox_list(user=user, view=view, filters=InboxFilters(**filters))))


# --- Scoping ---------------------------------------------------------------------------------------


def test_mine_is_what_is_assigned_to_me_and_active(desk, floor):
    t = floor
    assert listed(desk.anna, "mine") == {t["general_anna"].pk, t["general_pending"].pk, t["billing_anna"].pk}
    assert listed(desk.bob, "mine") == {t["billing_bob"].pk}
    assert listed(desk.lena, "mine") == set()


def test_my_queues_holds_the_active_tickets_of_my_queues_only(desk, floor):
    t = floor
    assert listed(desk.anna, "queues") == {t["general_new"].pk, t["general_anna"].pk, t["general_pending"].pk}
    assert listed(desk.bob, "queues") == {t["billing_new"].pk, t["billing_bob"].pk, t["billing_anna"].pk}
    assert listed(desk.lena, "queues") == set()  # a member of no queue


def test_unassigned_is_my_queues_for_agents_and_every_queue_for_leads(desk, floor):
    t = floor
    assert listed(desk.anna, "unassigned") == {t["general_new"].pk}
    assert listed(desk.bob, "unassigned") == {t["billing_new"].pk}
    assert listed(desk.lena, "unassigned") == {t["general_new"].pk, t["billing_new"].pk}


def test_unassigned_leaves_out_noise_that_all_still_shows(desk, floor):
    add_rule(name="Spam", keywords="free bitcoin", mark_noise=True)
    spam = ticket_from(desk.web, "free bitcoin for everyone")
    assert spam.is_noise is True and spam.queue_id is None
    assert spam.pk not in listed(desk.lena, "unassigned")
    assert spam.pk in listed(desk.lena, "all")


def test_pending_is_mine_and_my_queues_waiting_on_the_customer(desk, floor):
    t = floor
    ticket_change_status(ticket=t["billing_anna"], status="pending", actor=desk.anna)
    ticket_change_status(ticket=t["billing_new"], status="pending", actor=desk.bob)
    assert listed(desk.anna, "pending") == {t["general_pending"].pk, t["billing_anna"].pk}
    assert listed(desk.bob, "pending") == {t["billing_anna"].pk, t["billing_new"].pk}


def test_all_is_every_ticket_for_leads_and_refused_to_agents(desk, floor):
    assert listed(desk.lena, "all") == set(Ticket.objects.values_list("pk", flat=True))
    assert floor["general_solved"].pk in listed(desk.lena, "all")
    with pytest.raises(InboxNotAllowed):
        inbox_tickets(user=desk.anna, view="all")


def test_an_agent_never_sees_another_queues_ticket_in_any_list(desk, floor):
    for user in (desk.anna, desk.bob):
        visible = set(tickets_visible_to(user).values_list("pk", flat=True))
        for view in ("mine", "queues", "unassigned", "pending"):
            assert listed(user, view) <= visible, (user.username, view)
    billing_only = {floor["billing_new"].pk, floor["billing_bob"].pk}
    assert not any(
        listed(desk.anna, view) & billing_only for view in ("mine", "queues", "unassigned", "pending")
    )


def test_unknown_list_is_an_error(desk):
    with pytest.raises(ValueError, match="unknown inbox list 'everything'"):
        inbox_tickets(user=desk.anna, view="everything")


def test_counts_per_list_and_their_cap(desk, floor):
    assert inbox_counts(user=desk.anna) == {"mine": 3, "queues": 3, "unassigned": 1, "pending": 1}
    assert inbox_counts(user=desk.lena) == {"mine": 0, "queues": 0, "unassigned": 2, "pending": 0, "all": 7}
    assert inbox_counts(user=desk.lena, cap=5)["all"] == 5


def test_default_list(desk, floor):
    assert inbox_default_view(desk.anna, inbox_counts(user=desk.anna)) == InboxView.MINE
    loner = AgentProfileFactory(user__username="new").user
    assert inbox_default_view(loner, inbox_counts(user=loner)) == InboxView.QUEUES
    assert inbox_default_view(desk.lena, inbox_counts(user=desk.lena)) == InboxView.UNASSIGNED


# --- Filters and search ----------------------------------------------------------------------------


def test_filter_by_status_priority_and_assignee(desk, floor):
    t = floor
    ticket_change_status(ticket=t["general_anna"], status="open", actor=desk.anna)
    ticket_change_priority(ticket=t["billing_new"], priority=3, actor=desk.lena)
    assert listed(desk.lena, "all", statuses=("open",)) == {t["general_anna"].pk}
    assert listed(desk.lena, "all", statuses=("solved",)) == {t["general_solved"].pk}
    assert listed(desk.lena, "all", priorities=(3,)) == {t["billing_new"].pk}
    assert listed(desk.lena, "all", assignee_id=desk.bob.pk) == {t["billing_bob"].pk}
    assert listed(desk.anna, "queues", unassigned=True) == {t["general_new"].pk}


def test_filter_by_language_platform_tag_and_sla_state(desk, floor):
    t = floor
    dutch = ticket_from(desk.web, "Waar is mijn koffer? Ik wacht al drie dagen op een antwoord van jullie.")
    assert (dutch.language, t["general_new"].language) == ("nl", "en")
    assert listed(desk.anna, "queues", language="nl") == {dutch.pk}
    assert listed(desk.lena, "all", platform="x") == {
        t["billing_new"].pk,
        t["billing_bob"].pk,
        t["billing_anna"].pk,
    }

    add_rule(name="Wheelchairs", keywords="wheelchair", add_tags=["assistance"])
    tagged = ticket_from(desk.web, "I need a wheelchair at the gate")
    assert listed(desk.anna, "queues", tag="assistance") == {tagged.pk}
    assert listed(desk.anna, "queues", tag="nothing-like-it") == set()

    Ticket.objects.filter(pk=t["general_new"].pk).update(sla_state="breached")
    Ticket.objects.filter(pk=dutch.pk).update(sla_state="at_risk")
    assert listed(desk.anna, "queues", sla_state="breached") == {t["general_new"].pk}
    assert listed(desk.anna, "queues", sla_state="at_risk") == {dutch.pk}
    assert listed(desk.anna, "queues", sla_state="none") == {
        t["general_anna"].pk, t["general_pending"].pk, tagged.pk
    }  # fmt: skip


def test_search_finds_text_of_any_message_case_insensitively(desk):
    first = ticket_from(desk.web, "Where is my bag?", external_id="post-1")
    ticket_from(
        desk.web, "Also the PIR reference is ABC123", author=first.contact.external_id, reply_to="post-1"
    )
    other = ticket_from(desk.web, "Flight KL1234 delayed")
    assert listed(desk.anna, "queues", q="pir REFERENCE") == {first.pk}
    assert listed(desk.anna, "queues", q="kl1234") == {other.pk}
    assert listed(desk.anna, "queues", q="nothing like this") == set()
    # A lead's "all" scans every message at once; with another filter it searches per ticket.
    assert listed(desk.lena, "all", q="pir REFERENCE") == {first.pk}
    assert listed(desk.lena, "all", q="pir REFERENCE", platform="simulated") == {first.pk}
    assert listed(desk.lena, "all", q="pir REFERENCE", platform="x") == set()


def test_search_finds_handle_and_names(desk):
    by_handle = ticket_from(desk.web, "Hello there", handle="JanDeBoer")
    by_name = ticket_from(desk.web, "Hello there", name="Marieke van Dam")
    assert listed(desk.anna, "queues", q="@jandeboer") == {by_handle.pk}
    assert listed(desk.anna, "queues", q="deboer") == {by_handle.pk}
    assert listed(desk.anna, "queues", q="MARIEKE") == {by_name.pk}
    assert listed(desk.anna, "queues", q=f"#{by_name.pk}") == {by_name.pk}
    # The same through a lead's "all", which looks people up first.
    assert listed(desk.lena, "all", q="@jandeboer") == {by_handle.pk}
    assert listed(desk.lena, "all", q="MARIEKE") == {by_name.pk}
    assert listed(desk.lena, "all", q=f"#{by_handle.pk}") == {by_handle.pk}


def test_search_stays_inside_the_list(desk):
    ticket_from(desk.x, "Invoice for my lost bag")
    mine = ticket_from(desk.web, "Where is my lost bag")
    assert listed(desk.anna, "queues", q="lost bag") == {mine.pk}


# --- Order -----------------------------------------------------------------------------------------


def _due(ticket: Ticket, **fields) -> None:
    Ticket.objects.filter(pk=ticket.pk).update(**fields)


def test_sorted_by_the_nearest_open_sla_target_then_priority_then_age(desk):
    a, b, c, d, e, f = (
        ticket_from(desk.web, f"Question {n}", at=T0 + timedelta(minutes=n)) for n in range(6)
    )
    # a: first response due in 50 min. b: answered, next response due in 20 min (its old
    # first-response due time does not count). c: answered, only a resolution due in 40 min.
    _due(a, first_response_due_at=T0 + timedelta(minutes=50), resolution_due_at=T0 + timedelta(minutes=10))
    _due(b, first_response_at=T0, first_response_due_at=T0 + timedelta(minutes=1),
         next_response_due_at=T0 + timedelta(minutes=20))  # fmt: skip
    _due(c, first_response_at=T0, resolution_due_at=T0 + timedelta(minutes=40))
    # d, e, f have no SLA: after those with one; urgent first, then the oldest.
    ticket_change_priority(ticket=f, priority=3, actor=desk.lena)
    assert ids(inbox_list(user=desk.anna, view="queues", filters=InboxFilters())) == [
        b.pk, c.pk, a.pk, f.pk, d.pk, e.pk
    ]  # fmt: skip


def test_pending_tickets_clocks_are_stopped_and_sort_after_running_ones(desk):
    waiting = ticket_from(desk.web, "Question", at=T0)
    running = ticket_from(desk.web, "Question", at=T0 + timedelta(minutes=5))
    _due(waiting, first_response_due_at=T0 + timedelta(minutes=1))
    _due(running, first_response_due_at=T0 + timedelta(minutes=30))
    ticket_change_status(ticket=waiting, status="pending", actor=desk.anna)
    assert ids(inbox_list(user=desk.anna, view="queues", filters=InboxFilters())) == [running.pk, waiting.pk]


def test_sla_policy_due_times_order_the_list(desk):
    SlaPolicyFactory(name="General", queue=desk.general, first_response_minutes=120)
    SlaPolicyFactory(name="Billing", queue=desk.billing, first_response_minutes=30)
    early_general = ticket_from(desk.web, "Question", at=T0)  # due 11:00
    late_billing = ticket_from(desk.x, "Invoice", at=T0 + timedelta(minutes=60))  # due 10:30
    early_billing = ticket_from(desk.x, "Invoice", at=T0 + timedelta(minutes=10))  # due 9:40
    assert ids(inbox_list(user=desk.lena, view="all", filters=InboxFilters())) == [
        early_billing.pk, late_billing.pk, early_general.pk
    ]  # fmt: skip


def test_sort_keys_sort_like_the_list(desk):
    tickets = [ticket_from(desk.web, "Question", at=T0 + timedelta(minutes=n)) for n in range(8)]
    _due(tickets[3], first_response_due_at=T0 + timedelta(hours=2))
    _due(tickets[5], first_response_due_at=T0 + timedelta(hours=1))
    _due(tickets[6], first_response_at=T0, resolution_due_at=T0 + timedelta(days=3))
    ticket_change_priority(ticket=tickets[1], priority=0, actor=desk.lena)
    ticket_change_priority(ticket=tickets[7], priority=2, actor=desk.lena)
    ordered = list(inbox_list(user=desk.anna, view="queues", filters=InboxFilters()))
    assert ids(ordered) == [tickets[n].pk for n in (5, 3, 6, 7, 0, 2, 4, 1)]
    keys = [sort_key(ticket) for ticket in ordered]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)


# --- Pages -----------------------------------------------------------------------------------------


def test_pages_of_fifty(desk):
    tickets = [ticket_from(desk.web, "Question", at=T0 + timedelta(minutes=n)) for n in range(53)]
    first = inbox_page(user=desk.anna, view="queues", filters=InboxFilters(), page=1)
    second = inbox_page(user=desk.anna, view="queues", filters=InboxFilters(), page=2)
    assert (first.count, first.num_pages, first.has_previous, first.has_next) == (53, 2, False, True)
    assert [row.ticket.pk for row in first.rows] == ids(tickets[:50])
    assert [row.ticket.pk for row in second.rows] == ids(tickets[50:])
    assert (second.has_previous, second.has_next, second.past_end) == (True, False, False)
    beyond = inbox_page(user=desk.anna, view="queues", filters=InboxFilters(), page=3)
    assert (beyond.rows, beyond.past_end, beyond.num_pages) == ([], True, 2)


def test_an_empty_list_has_one_empty_page(desk):
    page = inbox_page(user=desk.anna, view="mine", filters=InboxFilters(), page=1)
    assert (page.rows, page.count, page.num_pages, page.past_end) == ([], 0, 1, False)


def test_a_page_costs_the_same_queries_for_five_and_fifty_rows(desk):
    def queries_for_page() -> int:
        with CaptureQueriesContext(connection) as captured:
            page = inbox_page(user=desk.anna, view="queues", filters=InboxFilters(q="question"), page=1)
            for row in page.rows:  # what the row template reads
                ticket = row.ticket
                read = (ticket.source.platform, ticket.contact.handle, ticket.customer.vip, ticket.queue.name)
                assert read[0] == "simulated"
                assert ticket.assignee is None or ticket.assignee.get_full_name() == "Anna de Vries"
                assert list(ticket.tags.all()) == []
        return len(captured), len(page.rows)

    for n in range(5):
        ticket_reassign(ticket=ticket_from(desk.web, f"Question {n}"), assignee=desk.anna, actor=desk.lena)
    few, rows = queries_for_page()
    assert rows == 5
    for n in range(50):
        ticket_from(desk.web, f"Question {n}")
    many, rows = queries_for_page()
    assert rows == 50
    assert few == many == 4  # count, page, tags, unread


# --- Unread ----------------------------------------------------------------------------------------


def test_unread_until_seen_and_again_after_a_new_customer_message(desk):
    ticket = ticket_from(desk.web, "Where is my bag?", external_id="bag-1")
    assert unread_ticket_ids(user=desk.anna, ticket_ids=[ticket.pk]) == {ticket.pk}
    ticket_mark_seen(ticket=ticket, user=desk.anna)
    assert unread_ticket_ids(user=desk.anna, ticket_ids=[ticket.pk]) == set()
    assert unread_ticket_ids(user=desk.bob, ticket_ids=[ticket.pk]) == {ticket.pk}  # per agent

    reply_create(ticket=ticket, author=desk.anna, text="We are looking into it")
    assert unread_ticket_ids(user=desk.anna, ticket_ids=[ticket.pk]) == set()  # our own reply
    ticket_from(desk.web, "Any news?", author=ticket.contact.external_id, reply_to="bag-1")
    assert unread_ticket_ids(user=desk.anna, ticket_ids=[ticket.pk]) == {ticket.pk}
    page = inbox_page(user=desk.anna, view="queues", filters=InboxFilters())
    assert [(row.ticket.pk, row.unread) for row in page.rows] == [(ticket.pk, True)]


# --- Live rows -------------------------------------------------------------------------------------


def test_rows_answers_the_matching_ids_in_order_and_the_gone_ones(desk, floor):
    t = floor
    asked = [t["general_pending"].pk, t["billing_new"].pk, t["general_new"].pk, 999_999, t["general_anna"].pk]
    result = inbox_rows(
        user=desk.anna, view="queues", filters=InboxFilters(statuses=("new",)), ticket_ids=asked
    )
    expected = ids(inbox_list(user=desk.anna, view="queues", filters=InboxFilters(statuses=("new",))))
    assert [row.ticket.pk for row in result.rows] == expected == [t["general_new"].pk, t["general_anna"].pk]
    # Pending (filtered out), Billing (not visible), 999999 (unknown): gone, in the order asked.
    assert result.gone == [t["general_pending"].pk, t["billing_new"].pk, 999_999]
    assert [row.sort_key for row in result.rows] == [sort_key(ticket) for ticket in inbox_list(
        user=desk.anna, view="queues", filters=InboxFilters(statuses=("new",)))]  # fmt: skip


def test_rows_refuses_too_many_ids(desk):
    with pytest.raises(ValueError, match=f"at most {MAX_ROW_IDS} tickets"):
        inbox_rows(
            user=desk.anna, view="queues", filters=InboxFilters(), ticket_ids=range(1, MAX_ROW_IDS + 2)
        )


# --- Next ticket -----------------------------------------------------------------------------------


def test_next_ticket_is_the_first_of_mine_in_list_order(desk):
    later = ticket_from(desk.web, "Question", at=T0 + timedelta(minutes=5))
    sooner = ticket_from(desk.web, "Question", at=T0)
    for ticket in (later, sooner):
        ticket_reassign(ticket=ticket, assignee=desk.anna, actor=desk.lena)
    assert inbox_next_ticket(user=desk.anna) == sooner
    assert inbox_next_ticket(user=desk.anna, after=sooner.pk) == later
    assert inbox_next_ticket(user=desk.bob) is None
