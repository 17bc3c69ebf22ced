"""Reads of the ticket view: the ticket, its conversation, the customer panel, the composer.

Everything starts from ``tickets_visible_to(user)``; each read costs a fixed number of
queries whatever the number of messages, contacts or earlier tickets.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Prefetch, Q, QuerySet
from django.db.models.fields.json import KT
from django.utils import timezone

from inbox.connectors.limits import ReplyLimit, ReplyWindow, WindowState, mention_length, replies_for
from inbox.models import (
    AgentProfile,
    Contact,
    Customer,
    Message,
    OutboundDelivery,
    Platform,
    ReplyTemplate,
    Tag,
    Ticket,
)
from inbox.selectors.agents import agents_visible_to
from inbox.selectors.tickets import tickets_visible_to, user_is_lead
from inbox.selectors.windows import describe_window, window_for_reply
from inbox.services.tickets import STATUS_CHANGES

#: Statuses an agent sets from the ticket view (new is where a ticket starts, closing is
#: for automation and the API).
DESK_STATUSES: tuple[str, ...] = (Ticket.Status.OPEN, Ticket.Status.PENDING, Ticket.Status.SOLVED)
EARLIER_TICKETS_SHOWN = 20
CUSTOMER_MATCHES_SHOWN = 10

_MESSAGE_RELATED = ("author_contact", "author_user", "delivery", "reply_template")


def ticket_for_view(*, user: AbstractBaseUser | AnonymousUser, ticket_id: int) -> Ticket | None:
    """The ticket with everything its header shows, or None when ``user`` may not see it."""
    return (
        tickets_visible_to(user)
        .select_related("customer", "previous_ticket", "sla_policy")
        .prefetch_related(Prefetch("tags", queryset=Tag.objects.order_by("name")))
        .filter(pk=ticket_id)
        .first()
    )


def ticket_messages(*, ticket: Ticket, after_id: int | None = None, ids: Iterable[int] = ()) -> list[Message]:
    """The ticket's messages in conversation order (platform time, then arrival).

    With ``after_id`` and/or ``ids``: only messages newer than ``after_id`` or listed in
    ``ids`` (the live updates); ids of other tickets are ignored. Each message carries
    ``sort_key``, a string that sorts in conversation order (the browser inserts by it).
    """
    messages = Message.objects.filter(ticket=ticket)
    wanted = sorted(set(ids))
    if after_id is not None or wanted:
        narrow = Q(pk__in=wanted) if wanted else Q(pk__in=[])
        if after_id is not None:
            narrow |= Q(pk__gt=after_id)
        messages = messages.filter(narrow)
    rows = list(
        messages.select_related(*_MESSAGE_RELATED)
        # The raw platform payload can be large and the page needs one key of it.
        .defer("raw")
        .annotate(escalation_team=KT("raw__escalation__team"))
        .order_by("created_at", "pk")
    )
    for message in rows:
        message.sort_key = message_sort_key(message)
    return rows


def message_sort_key(message: Message) -> str:
    return f"{message.created_at.astimezone(UTC):%Y%m%d%H%M%S%f}-{message.pk:012d}"


@dataclass(frozen=True, slots=True)
class ReplyChoice:
    """One way to reply on this ticket (public or private), with its platform limit."""

    is_public: bool
    limit: ReplyLimit
    #: Meta's reply windows for private replies (``inbox.connectors.limits``).
    window: ReplyWindow = ReplyWindow(WindowState.NONE)
    #: The window in words for the agent ("" when none applies).
    window_notice: str = ""
    #: Characters the connector adds in front (Mastodon's ``@author ``), out of the limit.
    reserved: int = 0

    @property
    def max_length(self) -> int | None:
        """What the agent may type: the platform's limit less what the connector adds."""
        return None if self.limit.max_length is None else self.limit.max_length - self.reserved

    @property
    def value(self) -> str:
        return "public" if self.is_public else "private"


@dataclass(frozen=True, slots=True)
class ComposerOptions:
    platform: str
    platform_label: str
    #: The ways to reply here, the default first; empty: no reply possible (notes only).
    choices: tuple[ReplyChoice, ...]

    @property
    def default(self) -> ReplyChoice | None:
        return self.choices[0] if self.choices else None


def composer_options(*, ticket: Ticket, messages: list[Message] | None = None) -> ComposerOptions:
    """Public and/or private, as the platform allows and the conversation permits: a public
    reply needs a public customer message to answer. The default answers the way the
    customer last wrote, as ``reply_create`` does when given no choice."""
    platform = ticket.source.platform
    rules = replies_for(platform)
    if messages is None:
        inbound = list(
            Message.objects.filter(ticket=ticket, direction=Message.Direction.INBOUND)
            .exclude(external_id=None)
            .order_by("created_at", "pk")
            .select_related("author_contact")
            .only("id", "is_public", "created_at", "source_id", "ticket_id", "conversation_id",
                  "author_contact__handle")
        )
    else:
        inbound = [
            m for m in messages if m.direction == Message.Direction.INBOUND and m.external_id is not None
        ]
    newest = max(inbound, key=lambda m: (m.created_at, m.pk)) if inbound else None
    newest_of_kind = {
        kind: max((m for m in inbound if m.is_public == kind), key=lambda m: (m.created_at, m.pk), default=None)
        for kind in (True, False)
    }
    default_public = newest.is_public if newest is not None else not ticket.is_private
    public_possible = any(m.is_public for m in inbound) if inbound else not ticket.is_private
    choices = []
    for is_public in (default_public, not default_public):
        limit = rules.limit_for(is_public=is_public)
        if limit is None or (is_public and not public_possible):
            continue
        window, notice = ReplyWindow(WindowState.NONE), ""
        # As reply_create does: the newest message of this kind, else the newest one (a
        # private reply to a comment answers the comment).
        answering = newest_of_kind[is_public] or newest
        if not is_public and answering is not None:
            window = window_for_reply(platform=platform, is_public=False, answering=answering, now=timezone.now())
            notice = describe_window(platform, window, answering_is_public=answering.is_public)
        reserved = 0
        if rules.mentions_author and answering is not None and answering.author_contact_id:
            reserved = mention_length(platform, answering.author_contact.handle)
        choices.append(ReplyChoice(is_public=is_public, limit=limit, window=window, window_notice=notice,
                                   reserved=reserved))
    return ComposerOptions(platform=platform, platform_label=platform_label(platform), choices=tuple(choices))


@dataclass(slots=True)
class TicketPanel:
    """Header, controls and customer panel of the ticket view."""

    ticket: Ticket
    is_lead: bool
    status_choices: list[tuple[str, str, bool]]  # value, label, allowed from the current status
    priority_choices: list[tuple[int, str]]
    assignable: list[AgentProfile]
    customer: Customer
    contacts: list[Contact]
    earlier_tickets: list[Ticket]
    previous_ticket_visible: bool
    tags: list[str] = field(default_factory=list)


def ticket_panel(*, user: AbstractBaseUser, ticket: Ticket) -> TicketPanel:
    """What the header, the controls and the customer panel show (``ticket`` as loaded by
    ``ticket_for_view``)."""
    is_lead = user_is_lead(user)
    allowed = STATUS_CHANGES[ticket.status]
    status_choices = [
        (value, str(Ticket.Status(value).label), value == ticket.status or value in allowed)
        for value in DESK_STATUSES
    ]
    assignable: list[AgentProfile] = []
    if is_lead and ticket.is_active:
        assignable = list(ticket_panel_assignable(user=user, ticket=ticket))
    visible = tickets_visible_to(user)
    earlier = list(
        visible.filter(customer_id=ticket.customer_id)
        .exclude(pk=ticket.pk)
        .order_by("-opened_at", "-pk")[:EARLIER_TICKETS_SHOWN]
    )
    previous_visible = False
    if ticket.previous_ticket_id is not None:
        previous_visible = any(t.pk == ticket.previous_ticket_id for t in earlier) or (
            visible.filter(pk=ticket.previous_ticket_id).exists()
        )
    contacts = _with_platform_labels(
        Contact.objects.filter(customer_id=ticket.customer_id).order_by("platform", "handle", "pk")
    )
    return TicketPanel(
        ticket=ticket,
        is_lead=is_lead,
        status_choices=status_choices,
        priority_choices=[(value, str(label)) for value, label in Ticket.Priority.choices],
        assignable=assignable,
        customer=ticket.customer,
        contacts=contacts,
        earlier_tickets=earlier,
        previous_ticket_visible=previous_visible,
        tags=[tag.name for tag in ticket.tags.all()],
    )


def customers_visible_to(user: AbstractBaseUser | AnonymousUser) -> QuerySet[Customer]:
    """Customers with at least one ticket ``user`` may see."""
    ticket_customers = tickets_visible_to(user).order_by().values("customer_id")
    return Customer.objects.filter(pk__in=ticket_customers)


def customers_matching(
    *, user: AbstractBaseUser, query: str, exclude_id: int | None = None, limit: int = CUSTOMER_MATCHES_SHOWN
) -> list[Customer]:
    """Customers ``user`` may see whose name, or a handle or display name of one of their
    identities, contains ``query`` (case-insensitive; a leading ``@`` is ignored)."""
    query = query.strip().lstrip("@").strip()
    if not query:
        return []
    matching_contacts = Contact.objects.filter(
        Q(handle__icontains=query) | Q(display_name__icontains=query)
    ).values("customer_id")
    customers = customers_visible_to(user).filter(
        Q(display_name__icontains=query) | Q(pk__in=matching_contacts)
    )
    if exclude_id is not None:
        customers = customers.exclude(pk=exclude_id)
    found = list(
        customers.prefetch_related(
            Prefetch("contacts", queryset=Contact.objects.order_by("platform", "handle"))
        ).order_by("display_name", "pk")[:limit]
    )
    for customer in found:
        _with_platform_labels(customer.contacts.all())
    return found


def platform_label(platform: str) -> str:
    return str(Platform(platform).label) if platform in Platform.values else platform


def _with_platform_labels(contacts: Iterable[Contact]) -> list[Contact]:
    rows = list(contacts)
    for contact in rows:
        contact.platform_label = platform_label(contact.platform)
    return rows


def ticket_delivery(*, ticket: Ticket, delivery_id: int) -> OutboundDelivery | None:
    """The outbox row of one of ``ticket``'s replies (None: not a reply of this ticket)."""
    return (
        OutboundDelivery.objects.select_related("message__ticket")
        .filter(pk=delivery_id, message__ticket_id=ticket.pk)
        .first()
    )


def assignable_agent(*, user: AbstractBaseUser, ticket: Ticket, user_id: int) -> AbstractBaseUser | None:
    """The agent ``user`` (a lead) may give ``ticket`` to, by user id; None if not offered."""
    for profile in ticket_panel_assignable(user=user, ticket=ticket).filter(user_id=user_id):
        return profile.user
    return None


def ticket_panel_assignable(*, user: AbstractBaseUser, ticket: Ticket) -> QuerySet[AgentProfile]:
    """Agents a lead may give the ticket to: the members of its queue (every agent when it
    has none), and its current assignee."""
    agents = agents_visible_to(user)
    if ticket.queue_id is not None:
        agents = agents.filter(Q(user__desk_queues=ticket.queue_id) | Q(user_id=ticket.assignee_id))
    return agents.distinct()


def reply_template_for(*, ticket: Ticket, template_id: int) -> ReplyTemplate | None:
    """The template a reply on ``ticket`` may start from: a global one or one of its queue."""
    return (
        ReplyTemplate.objects.filter(pk=template_id)
        .filter(Q(queue__isnull=True) | Q(queue_id=ticket.queue_id))
        .first()
    )
