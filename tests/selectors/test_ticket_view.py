"""Reads of the ticket view: scoping, conversation order, composer choices, customer panel."""

from __future__ import annotations

from datetime import datetime, timedelta

import factory
import pytest
from django.utils import timezone

from inbox.models import Contact, Message, ReplyTemplate, Ticket
from inbox.selectors.ticket_view import (
    composer_options,
    customers_matching,
    customers_visible_to,
    reply_template_for,
    ticket_for_view,
    ticket_messages,
    ticket_panel,
)
from inbox.services.ingest import ingest_batch
from inbox.services.replies import note_create, reply_create
from inbox.services.tickets import ticket_change_status
from tests.factories import AgentProfileFactory, QueueFactory, SourceFactory, inbound

pytestmark = pytest.mark.django_db

BASE = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.get_fixed_timezone(0))


class ReplyTemplateFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ReplyTemplate

    name = factory.Sequence(lambda n: f"Template {n}")
    shortcut = factory.Sequence(lambda n: f"template-{n}")


@pytest.fixture
def lead(db):
    return AgentProfileFactory(user__username="lea", role="lead").user


@pytest.fixture
def other_queue_source(db):
    """A source whose tickets go to a queue only the outsider-like agents work."""
    return SourceFactory(name="elsewhere", default_queue=QueueFactory(name="Elsewhere", slug="elsewhere"))


def ticket_of(source, external_id: str, **kwargs) -> Ticket:
    ingest_batch(source=source, messages=[inbound(external_id, **kwargs)])
    return Message.objects.get(external_id=external_id).ticket


def test_ticket_for_view_is_scoped(source, other_queue_source, anna, lead, outsider):
    mine = ticket_of(source, "c1", author="kim")
    theirs = ticket_of(other_queue_source, "e1", author="lou")

    assert ticket_for_view(user=anna, ticket_id=mine.pk) == mine
    assert ticket_for_view(user=anna, ticket_id=theirs.pk) is None
    assert ticket_for_view(user=outsider, ticket_id=mine.pk) is None
    assert ticket_for_view(user=lead, ticket_id=theirs.pk) == theirs


def test_messages_in_platform_time_order_with_after_and_ids(source, anna):
    ticket = ticket_of(source, "c2", author="kim", reply_to="c1", at=BASE + timedelta(minutes=10))
    # The parent arrives after its reply (order-independent ingest): it sorts first by platform time.
    ingest_batch(source=source, messages=[inbound("c1", author="kim", at=BASE)])
    ingest_batch(
        source=source, messages=[inbound("c3", author="kim", reply_to="c2", at=BASE + timedelta(minutes=20))]
    )
    c1, c2, c3 = (Message.objects.get(external_id=x) for x in ("c1", "c2", "c3"))
    assert {c1.ticket_id, c3.ticket_id} == {ticket.pk}
    assert c1.pk > c2.pk

    every = ticket_messages(ticket=ticket)
    assert [m.external_id for m in every] == ["c1", "c2", "c3"]
    assert [m.sort_key for m in every] == sorted(m.sort_key for m in every)

    assert [m.external_id for m in ticket_messages(ticket=ticket, after_id=c1.pk)] == ["c3"]
    assert [m.external_id for m in ticket_messages(ticket=ticket, ids=[c2.pk])] == ["c2"]
    assert [m.external_id for m in ticket_messages(ticket=ticket, after_id=c3.pk, ids=[c1.pk])] == ["c1"]


def test_messages_ignore_ids_of_other_tickets(source, anna):
    ticket = ticket_of(source, "c1", author="kim")
    other = ticket_of(source, "d1", author="lou")
    foreign = Message.objects.get(ticket=other)

    assert ticket_messages(ticket=ticket, ids=[foreign.pk]) == []


def test_messages_carry_the_escalation_team_of_notes(source, anna):
    ticket = ticket_of(source, "c1", author="kim")
    note = note_create(ticket=ticket, author=anna, text="Plain note")
    Message.objects.filter(pk=note.pk).update(
        raw={"escalation": {"team": "Baggage", "kind": "escalation.answered"}}
    )

    (_, loaded) = ticket_messages(ticket=ticket)
    assert loaded.escalation_team == "Baggage"


@pytest.mark.parametrize(
    ("platform", "public", "expected"),
    [
        # X and Bluesky connectors post publicly only: no private reply is offered.
        ("x", True, [("public", 280, "x")]),
        ("x", False, []),
        ("bluesky", True, [("public", 300, "graphemes")]),
        ("mastodon", True, [("public", 500, "code_points"), ("private", 500, "code_points")]),
        ("messenger", False, [("private", 2_000, "code_points")]),
        ("generic", True, [("public", None, "code_points"), ("private", None, "code_points")]),
    ],
)
def test_composer_offers_what_platform_and_conversation_allow(default_queue, platform, public, expected):
    brand = SourceFactory(name=platform, platform=platform, default_queue=default_queue)
    ticket = ticket_of(brand, "m1", public=public, conversation="" if public else "dm-1")

    options = composer_options(ticket=Ticket.objects.select_related("source").get(pk=ticket.pk))

    assert [(c.value, c.limit.max_length, c.limit.counting) for c in options.choices] == expected


def test_composer_default_follows_the_customers_last_message(default_queue):
    brand = SourceFactory(name="mastodon", platform="mastodon", default_queue=default_queue)
    ticket = ticket_of(brand, "m1", author="kim", conversation="", minutes=1)
    ingest_batch(source=brand, messages=[inbound("m2", author="kim", public=False, reply_to="m1", minutes=2)])
    assert Message.objects.get(external_id="m2").ticket_id == ticket.pk

    loaded = Ticket.objects.select_related("source").get(pk=ticket.pk)
    options = composer_options(ticket=loaded)
    from_list = composer_options(ticket=loaded, messages=ticket_messages(ticket=loaded))

    assert [c.value for c in options.choices] == ["private", "public"]
    assert [c.value for c in from_list.choices] == ["private", "public"]


def test_panel_lists_identities_and_only_visible_other_tickets(source, other_queue_source, anna, lead):
    ticket = ticket_of(source, "c1", author="kim", minutes=30)
    ticket_change_status(ticket=ticket, status="solved", actor=anna)
    later = ticket_of(source, "c2", author="kim", minutes=60 * 24 * 40)  # a new ticket, not a reopen
    elsewhere = ticket_of(other_queue_source, "e1", author="kim_on_x", minutes=5)
    Contact.objects.filter(external_id="kim_on_x").update(customer=ticket.customer)
    Ticket.objects.filter(pk=elsewhere.pk).update(customer=ticket.customer)
    assert later.pk != ticket.pk

    panel = ticket_panel(user=anna, ticket=ticket_for_view(user=anna, ticket_id=later.pk))
    assert [t.pk for t in panel.earlier_tickets] == [ticket.pk]
    assert [(c.platform_label, c.handle) for c in panel.contacts] == [
        ("Simulated (demo)", "kim"),
        ("Simulated (demo)", "kim_on_x"),
    ]
    assert panel.is_lead is False and panel.assignable == []

    lead_panel = ticket_panel(user=lead, ticket=ticket_for_view(user=lead, ticket_id=later.pk))
    assert sorted(t.pk for t in lead_panel.earlier_tickets) == sorted([ticket.pk, elsewhere.pk])
    assert [p.user_id for p in lead_panel.assignable] == [anna.pk]


def test_panel_status_choices_follow_the_allowed_changes(source, anna):
    ticket = ticket_of(source, "c1", author="kim")
    ticket_change_status(ticket=ticket, status="solved", actor=anna)

    panel = ticket_panel(user=anna, ticket=ticket_for_view(user=anna, ticket_id=ticket.pk))

    assert [(value, allowed) for value, _label, allowed in panel.status_choices] == [
        ("open", True),
        ("pending", False),
        ("solved", True),
    ]


def test_previous_ticket_is_linked_only_when_visible(source, anna):
    first = ticket_of(source, "c1", author="kim", minutes=0)
    ticket_change_status(ticket=first, status="solved", actor=anna)
    follow_up = ticket_of(source, "c2", author="kim", minutes=60 * 24 * 40)
    Ticket.objects.filter(pk=follow_up.pk).update(previous_ticket=first)

    panel = ticket_panel(user=anna, ticket=ticket_for_view(user=anna, ticket_id=follow_up.pk))
    assert panel.previous_ticket_visible is True

    Ticket.objects.filter(pk=first.pk).update(queue=QueueFactory(name="Hidden", slug="hidden"))
    panel = ticket_panel(user=anna, ticket=ticket_for_view(user=anna, ticket_id=follow_up.pk))
    assert panel.previous_ticket_visible is False


def test_customers_matching_is_scoped_and_searches_handles_and_names(source, other_queue_source, anna, lead):
    ticket = ticket_of(source, "c1", author="kim")
    ticket_of(source, "c2", author="kimberly_nl")
    ticket_of(other_queue_source, "e1", author="kimchi_fan")
    Contact.objects.filter(external_id="kimberly_nl").update(display_name="Kimberly de Boer")

    def handles(customers):
        return sorted(c.handle for customer in customers for c in customer.contacts.all())

    assert handles(customers_matching(user=anna, query="@KIM", exclude_id=ticket.customer_id)) == [
        "kimberly_nl"
    ]
    assert handles(customers_matching(user=anna, query="de boer")) == ["kimberly_nl"]
    assert handles(customers_matching(user=lead, query="kim", exclude_id=ticket.customer_id)) == [
        "kimberly_nl",
        "kimchi_fan",
    ]
    assert customers_matching(user=anna, query="  @ ") == []
    assert set(customers_visible_to(anna)) == {
        ticket.customer,
        Contact.objects.get(external_id="kimberly_nl").customer,
    }


def test_reply_template_for_allows_global_and_own_queue_templates_only(source, anna):
    ticket = ticket_of(source, "c1", author="kim")
    global_one = ReplyTemplateFactory()
    own = ReplyTemplateFactory(queue=ticket.queue)
    foreign = ReplyTemplateFactory(queue=QueueFactory(name="Other", slug="other-q"))

    assert reply_template_for(ticket=ticket, template_id=global_one.pk) == global_one
    assert reply_template_for(ticket=ticket, template_id=own.pk) == own
    assert reply_template_for(ticket=ticket, template_id=foreign.pk) is None


def test_reply_messages_show_their_template(source, anna):
    ticket = ticket_of(source, "c1", author="kim")
    template = ReplyTemplateFactory(shortcut="delay")
    reply_create(ticket=ticket, author=anna, text="Sorry!", reply_template=template)

    (_, reply) = ticket_messages(ticket=ticket)
    assert (reply.reply_template.shortcut, reply.delivery.state) == ("delay", "queued")
