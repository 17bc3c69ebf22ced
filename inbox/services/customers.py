"""Customers: one person across platforms. Merging two records of the same person, VIP."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from inbox.models import Contact, Customer, Ticket, TicketEvent
from inbox.realtime.publish import publish_on_commit
from inbox.selectors.tickets import user_is_lead
from inbox.services.events import event_for

_TICKET_FIELDS = ("id", "queue_id", "assignee_id", "status", "customer_id")


class CustomerError(ValueError):
    """The customer change cannot be made as asked; the message says why."""


def customer_merge(*, source: Customer, target: Customer, actor: AbstractBaseUser | None) -> Customer:
    """Fold ``source`` into ``target``: the same person, known twice.

    In one transaction: ``source``'s contacts (platform identities) and tickets move to
    ``target``, VIP is kept if either was VIP, notes are joined (target's first), the
    target keeps its name (or takes the source's when it has none), and ``source`` is
    deleted. Writes ``customer.merged`` for every active ticket of the merged customer
    (``source_customer_id``, ``target_customer_id``, ``contacts_moved``, ``tickets_moved``).
    Returns the target as stored.
    """
    if source.pk == target.pk:
        raise CustomerError(_("A customer cannot be merged into itself."))
    with transaction.atomic():
        # Both rows locked in id order, the order every merge takes them in.
        locked = {
            customer.pk: customer
            for customer in Customer.objects.select_for_update()
            .filter(pk__in=(source.pk, target.pk))
            .order_by("pk")
        }
        if source.pk not in locked or target.pk not in locked:
            raise CustomerError(_("This customer no longer exists (merged meanwhile?). Reload the page."))
        source, target = locked[source.pk], locked[target.pk]
        # Ingest upserts contacts; holding their rows keeps it from adding a ticket to the
        # source while it is being merged away.
        contact_ids = list(
            Contact.objects.select_for_update()
            .filter(customer=source)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        moved_ticket_ids = list(
            Ticket.objects.filter(customer=source).order_by("pk").values_list("pk", flat=True)
        )
        Contact.objects.filter(pk__in=contact_ids).update(customer=target)
        Ticket.objects.filter(pk__in=moved_ticket_ids).update(customer=target, updated_at=timezone.now())
        fields = []
        if source.vip and not target.vip:
            target.vip = True
            fields.append("vip")
        if source.notes.strip():
            target.notes = "\n\n".join(part for part in (target.notes.strip(), source.notes.strip()) if part)
            fields.append("notes")
        if not target.display_name and source.display_name:
            target.display_name = source.display_name
            fields.append("display_name")
        if fields:
            target.save(update_fields=fields)
        source_id = source.pk
        source.delete()
        active = (
            Ticket.objects.filter(customer=target, status__in=Ticket.ACTIVE_STATUSES)
            .order_by("pk")
            .only(*_TICKET_FIELDS)
        )
        events = [
            event_for(
                ticket,
                "customer.merged",
                actor_id=actor.pk if actor is not None else None,
                source_customer_id=source_id,
                target_customer_id=target.pk,
                contacts_moved=len(contact_ids),
                tickets_moved=len(moved_ticket_ids),
            )
            for ticket in active
        ]
        TicketEvent.objects.bulk_create(events)
        publish_on_commit(events)
    return target


def customer_set_vip(*, customer: Customer, vip: bool, actor: AbstractBaseUser) -> Customer:
    """A lead marks a customer VIP (or not). Routing reads it for new tickets; the
    customer's active tickets get a ``customer.vip_changed`` event so open views update."""
    if not user_is_lead(actor):
        raise PermissionDenied(_("Only team leads and admins may do this."))
    with transaction.atomic():
        customer = Customer.objects.select_for_update().get(pk=customer.pk)
        if customer.vip == vip:
            return customer
        customer.vip = vip
        customer.save(update_fields=["vip"])
        active = (
            Ticket.objects.filter(customer=customer, status__in=Ticket.ACTIVE_STATUSES)
            .order_by("pk")
            .only(*_TICKET_FIELDS)
        )
        events = [
            event_for(ticket, "customer.vip_changed", actor_id=actor.pk, customer_id=customer.pk, vip=vip)
            for ticket in active
        ]
        TicketEvent.objects.bulk_create(events)
        publish_on_commit(events)
    return customer
