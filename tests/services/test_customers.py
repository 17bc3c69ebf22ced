"""customer_merge and customer_set_vip."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied

from inbox.models import Contact, Customer, Ticket, TicketEvent
from inbox.services.customers import CustomerError, customer_merge, customer_set_vip
from inbox.services.ingest import ingest_batch
from inbox.services.tickets import ticket_change_status
from tests.factories import AgentProfileFactory, inbound

pytestmark = pytest.mark.django_db


@pytest.fixture
def lead(db):
    return AgentProfileFactory(user__username="lea", role="lead").user


def customer_of(source, author: str, *, external_id: str, minutes: int) -> Customer:
    ingest_batch(source=source, messages=[inbound(external_id, author=author, minutes=minutes)])
    return Contact.objects.get(external_id=author).customer


def test_merge_moves_contacts_and_tickets_and_deletes_the_source(
    source, anna, django_capture_on_commit_callbacks
):
    target = customer_of(source, "sam_on_x", external_id="a1", minutes=0)
    source_customer = customer_of(source, "sam_on_mastodon", external_id="b1", minutes=1)
    Customer.objects.filter(pk=target.pk).update(notes="Prefers Dutch.")
    Customer.objects.filter(pk=source_customer.pk).update(vip=True, notes="Frequent flyer gold.")
    target.refresh_from_db()
    source_customer.refresh_from_db()
    target_ticket = Ticket.objects.get(customer=target)
    moved_ticket = Ticket.objects.get(customer=source_customer)
    source_id = source_customer.pk

    with django_capture_on_commit_callbacks() as callbacks:
        merged = customer_merge(source=source_customer, target=target, actor=anna)

    assert merged.pk == target.pk
    assert not Customer.objects.filter(pk=source_id).exists()
    assert sorted(Contact.objects.filter(customer=target).values_list("external_id", flat=True)) == [
        "sam_on_mastodon",
        "sam_on_x",
    ]
    assert sorted(Ticket.objects.filter(customer=target).values_list("pk", flat=True)) == sorted(
        [target_ticket.pk, moved_ticket.pk]
    )
    target.refresh_from_db()
    assert (target.vip, target.notes, target.display_name) == (
        True,
        "Prefers Dutch.\n\nFrequent flyer gold.",
        "Sam_On_X",
    )
    events = list(TicketEvent.objects.filter(type="customer.merged").order_by("ticket_id"))
    assert [e.ticket_id for e in events] == sorted([target_ticket.pk, moved_ticket.pk])
    assert {e.actor_id for e in events} == {anna.pk}
    assert events[0].payload == {
        "source_customer_id": source_id,
        "target_customer_id": target.pk,
        "contacts_moved": 1,
        "tickets_moved": 1,
        "assignee_id": None,
        "status": "new",
    }
    assert len(callbacks) == 1  # one push after commit


def test_merge_writes_events_for_active_tickets_only(source, anna):
    target = customer_of(source, "kim", external_id="a1", minutes=0)
    other = customer_of(source, "kim2", external_id="b1", minutes=1)
    solved = Ticket.objects.get(customer=other)
    ticket_change_status(ticket=solved, status="solved", actor=anna)

    customer_merge(source=other, target=target, actor=anna)

    assert list(TicketEvent.objects.filter(type="customer.merged").values_list("ticket_id", flat=True)) == [
        Ticket.objects.get(contact__external_id="kim").pk
    ]
    assert Ticket.objects.get(pk=solved.pk).customer_id == target.pk


def test_merge_keeps_the_target_name_or_takes_the_source_name(source, anna):
    target = customer_of(source, "nameless", external_id="a1", minutes=0)
    other = customer_of(source, "named", external_id="b1", minutes=1)
    Customer.objects.filter(pk=target.pk).update(display_name="")
    target.refresh_from_db()

    customer_merge(source=other, target=target, actor=anna)

    target.refresh_from_db()
    assert target.display_name == "Named"


def test_merging_a_customer_into_itself_is_refused(source, anna):
    customer = customer_of(source, "kim", external_id="a1", minutes=0)

    with pytest.raises(CustomerError, match="A customer cannot be merged into itself."):
        customer_merge(source=customer, target=customer, actor=anna)

    assert Customer.objects.filter(pk=customer.pk).exists()
    assert not TicketEvent.objects.filter(type="customer.merged").exists()


def test_merging_a_customer_that_is_gone_is_refused(source, anna):
    target = customer_of(source, "kim", external_id="a1", minutes=0)
    other = customer_of(source, "kim2", external_id="b1", minutes=1)
    customer_merge(source=other, target=target, actor=anna)

    with pytest.raises(CustomerError, match="no longer exists"):
        customer_merge(source=other, target=target, actor=anna)


def test_lead_sets_vip_with_events_for_active_tickets(source, lead):
    customer = customer_of(source, "kim", external_id="a1", minutes=0)
    ticket = Ticket.objects.get(customer=customer)

    customer_set_vip(customer=customer, vip=True, actor=lead)
    customer_set_vip(customer=customer, vip=True, actor=lead)  # no change, no event

    customer.refresh_from_db()
    assert customer.vip is True
    event = TicketEvent.objects.get(type="customer.vip_changed")
    assert (event.ticket_id, event.actor_id, event.payload["vip"], event.payload["customer_id"]) == (
        ticket.pk,
        lead.pk,
        True,
        customer.pk,
    )


def test_only_leads_set_vip(source, anna):
    customer = customer_of(source, "kim", external_id="a1", minutes=0)

    with pytest.raises(PermissionDenied):
        customer_set_vip(customer=customer, vip=True, actor=anna)

    customer.refresh_from_db()
    assert customer.vip is False
