"""The inbox lists: which tickets each list shows, filtered, searched, in SLA order, a page at a time.

Every list is a subset of ``inbox.selectors.tickets.tickets_visible_to(user)`` (a test holds
each list to that). The scoping is written here with subqueries on the queue membership table
instead of starting from ``tickets_visible_to``: its join on the members and the ``DISTINCT``
it needs would make the database sort and de-duplicate the whole backlog before it can take
one page.

Costs are fixed per page, whatever the rows: the page's ticket ids with the list's size (one
pass, a window count), those 50 tickets with source, contact, customer, queue and assignee
joined, their tags, their unread state, and one bounded count per list for the tab labels.
Viewers come from Redis (``viewers_for``). ``bench/inbox_list.py`` measures it on 100,000
tickets.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import (
    Case,
    Count,
    DateTimeField,
    F,
    IntegerField,
    Max,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    TextChoices,
    Value,
    When,
    Window,
)
from django.utils.translation import gettext_lazy as _
from redis.exceptions import RedisError

from inbox.models import Contact, Customer, Message, Queue, Tag, Ticket, TicketSeen
from inbox.selectors.collision import Viewer, viewers_for
from inbox.selectors.tickets import TicketFilters, tickets_filter, user_is_lead

logger = logging.getLogger(__name__)

PAGE_SIZE = 50
#: Tab counts stop here ("999+"): a count never reads more than this many rows.
COUNT_CAP = 1000
#: Most ticket ids one live-update request may ask about.
MAX_ROW_IDS = 200
#: Longest search text accepted.
MAX_SEARCH_LENGTH = 200

_RUNNING = (Ticket.Status.NEW, Ticket.Status.OPEN)
_TICKET_NUMBER = re.compile(r"#?(\d{1,18})")


class InboxView(TextChoices):
    """The lists of the inbox, in tab order."""

    MINE = "mine", _("Mine")
    QUEUES = "queues", _("My queues")
    UNASSIGNED = "unassigned", _("Unassigned")
    PENDING = "pending", _("Pending")
    ALL = "all", _("All")


class SlaFilter(TextChoices):
    OK = "ok", _("On track")
    AT_RISK = "at_risk", _("At risk")
    BREACHED = "breached", _("Breached")
    NONE = "none", _("No SLA")


#: The assignee filter value that means "nobody".
UNASSIGNED = "none"


class InboxNotAllowed(PermissionError):
    """The user may not see this list (``all`` is for team leads)."""


@dataclass(frozen=True, slots=True)
class InboxFilters:
    """What narrows a list. Empty fields do not constrain."""

    statuses: tuple[str, ...] = ()
    priorities: tuple[int, ...] = ()
    language: str = ""
    platform: str = ""
    tag: str = ""
    sla_state: str = ""
    assignee_id: int | None = None
    unassigned: bool = False
    q: str = ""

    def is_empty(self) -> bool:
        return self == InboxFilters()


@dataclass(frozen=True, slots=True)
class InboxRow:
    """One ticket as a list shows it."""

    ticket: Ticket
    unread: bool
    viewers: list[Viewer]
    sort_key: str


@dataclass(frozen=True, slots=True)
class InboxPage:
    rows: list[InboxRow]
    number: int
    num_pages: int
    count: int
    page_size: int = PAGE_SIZE
    past_end: bool = False
    viewers_known: bool = True

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def has_next(self) -> bool:
        return self.number < self.num_pages


@dataclass(frozen=True, slots=True)
class InboxRows:
    """The answer to "how do these tickets stand in this list now" (live updates)."""

    rows: list[InboxRow]
    gone: list[int] = field(default_factory=list)
    viewers_known: bool = True


# --- Which lists ---------------------------------------------------------------------------------


def inbox_views_for(user: AbstractBaseUser | AnonymousUser) -> list[InboxView]:
    """The lists ``user`` may open, in tab order."""
    views = [InboxView.MINE, InboxView.QUEUES, InboxView.UNASSIGNED, InboxView.PENDING]
    if user_is_lead(user):
        views.append(InboxView.ALL)
    return views


def inbox_default_view(user: AbstractBaseUser | AnonymousUser, counts: dict[str, int]) -> InboxView:
    """The list the inbox opens on: "mine" when the user has active tickets; otherwise
    "my queues" for an agent and "unassigned" (the work nobody has yet) for a lead."""
    if counts.get(InboxView.MINE, 0) > 0:
        return InboxView.MINE
    return InboxView.UNASSIGNED if user_is_lead(user) else InboxView.QUEUES


def _my_queue_ids(user: AbstractBaseUser) -> QuerySet:
    return Queue.members.through.objects.filter(user_id=user.pk).values("queue_id")


def inbox_tickets(*, user: AbstractBaseUser | AnonymousUser, view: str) -> QuerySet[Ticket]:
    """The tickets of one list for ``user`` (unfiltered, unordered).

    * ``mine``: assigned to the user, active (new, open, pending).
    * ``queues``: active tickets of the queues the user is a member of.
    * ``unassigned``: active, nobody has them, not noise; in the user's queues (leads: every queue).
    * ``pending``: waiting on the customer, the user's own and their queues'.
    * ``all``: every ticket, solved, closed and noise included (leads only).
    """
    if not user.is_authenticated:
        return Ticket.objects.none()
    active = Q(status__in=Ticket.ACTIVE_STATUSES)
    if view == InboxView.MINE:
        condition = active & Q(assignee_id=user.pk)
    elif view == InboxView.QUEUES:
        condition = active & Q(queue_id__in=_my_queue_ids(user))
    elif view == InboxView.UNASSIGNED:
        condition = active & Q(assignee__isnull=True, is_noise=False)
        if not user_is_lead(user):
            condition &= Q(queue_id__in=_my_queue_ids(user))
    elif view == InboxView.PENDING:
        condition = Q(status=Ticket.Status.PENDING) & (
            Q(assignee_id=user.pk) | Q(queue_id__in=_my_queue_ids(user))
        )
    elif view == InboxView.ALL:
        if not user_is_lead(user):
            raise InboxNotAllowed(_("Only team leads can see all tickets."))
        condition = Q()
    else:
        raise ValueError(f"unknown inbox list {view!r}")
    return Ticket.objects.filter(condition)


def inbox_counts(*, user: AbstractBaseUser | AnonymousUser, cap: int = COUNT_CAP) -> dict[str, int]:
    """Tickets per list for the tab labels, each counted up to ``cap`` (one query per list)."""
    counts = {}
    for view in inbox_views_for(user):
        counts[str(view)] = inbox_tickets(user=user, view=view).order_by()[:cap].count()
    return counts


# --- Filters and search --------------------------------------------------------------------------


def inbox_filter(tickets: QuerySet[Ticket], filters: InboxFilters) -> QuerySet[Ticket]:
    """``tickets`` narrowed by ``filters`` (the caller scoped them already)."""
    tickets = tickets_filter(tickets, TicketFilters(
        statuses=filters.statuses, priorities=filters.priorities, language=filters.language,
        platform=filters.platform, tag=filters.tag, assignee_id=filters.assignee_id,
        unassigned=filters.unassigned,
    ))  # fmt: skip
    if filters.sla_state:
        state = "" if filters.sla_state == SlaFilter.NONE else filters.sla_state
        tickets = tickets.filter(sla_state=state)
    if filters.q.strip():
        tickets = inbox_search(tickets, filters.q)
    return tickets


def inbox_search(tickets: QuerySet[Ticket], text: str, *, scan_messages: bool = False) -> QuerySet[Ticket]:
    """Tickets with ``text`` (case-insensitive) in any of their messages, in the customer's
    handle (a leading ``@`` may be typed), the contact's or the customer's name; ``#123`` or
    ``123`` also finds ticket 123.

    Only the messages of ``tickets`` are read (through the message's ticket index), unless
    ``scan_messages``: then every message in one pass, which is cheaper when ``tickets`` are
    most of the desk (a lead's "all" without other filters). Both databases are told which
    rows to read rather than left to guess: their cost estimates for a substring match are
    far too low (a correlated EXISTS turned into a scan of every message on PostgreSQL).
    """
    text = text.strip()
    handle = text.removeprefix("@") or text
    messages = Message.objects.filter(text__icontains=text)
    people = Q(contact__handle__icontains=handle) | Q(contact__display_name__icontains=text)
    if scan_messages:
        # Most of the desk: find the matching people and messages once each, so the tickets
        # are filtered by id before they are sorted (not joined and tested one by one).
        messages = messages.filter(ticket__isnull=False)
        contacts = Contact.objects.filter(Q(handle__icontains=handle) | Q(display_name__icontains=text))
        customers = Customer.objects.filter(display_name__icontains=text)
        people = Q(contact_id__in=contacts.values("pk")) | Q(customer_id__in=customers.values("pk"))
    else:
        messages = messages.filter(ticket_id__in=tickets.order_by().values("pk"))
        people |= Q(customer__display_name__icontains=text)
    found = people | Q(pk__in=messages.values("ticket_id"))
    number = _TICKET_NUMBER.fullmatch(text)
    if number:
        found |= Q(pk=int(number.group(1)))
    return tickets.filter(found)


# --- Order ---------------------------------------------------------------------------------------


def sla_due_expression() -> Case:
    """The nearest open SLA target of a running (new or open) ticket: the first response due
    while there is no first response, else the next response due, else the resolution due.
    Null when the clock is stopped (pending, solved, closed) or there is no SLA; the same
    target the row's SLA clock shows. Plain CASE: SQLite and PostgreSQL alike."""
    return Case(
        When(
            status__in=_RUNNING,
            first_response_at__isnull=True,
            first_response_due_at__isnull=False,
            then=F("first_response_due_at"),
        ),
        When(status__in=_RUNNING, next_response_due_at__isnull=False, then=F("next_response_due_at")),
        When(status__in=_RUNNING, then=F("resolution_due_at")),
        default=Value(None, output_field=DateTimeField()),
        output_field=DateTimeField(),
    )


def inbox_ordered(tickets: QuerySet[Ticket]) -> QuerySet[Ticket]:
    """In list order: SLA due first (tickets without after those with), then priority
    (urgent first), then the oldest, then the ticket number."""
    return tickets.annotate(sla_due=sla_due_expression()).order_by(
        F("sla_due").asc(nulls_last=True), F("priority").desc(), F("opened_at").asc(), F("id").asc()
    )


def _stamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y%m%d%H%M%S%f")


def sort_key(ticket: Ticket) -> str:
    """A string that sorts like the list: the browser places live rows by it.

    ``ticket`` must carry the ``sla_due`` annotation of ``inbox_ordered``.
    """
    due = getattr(ticket, "sla_due", None)
    due_part = f"0{_stamp(due)}" if due is not None else "1" + "0" * 20
    return f"{due_part}.{3 - ticket.priority}.{_stamp(ticket.opened_at)}.{ticket.pk:018d}"


# --- Rows ----------------------------------------------------------------------------------------


#: What a row shows (and its SLA clock reads); loading every column of six tables for 50 rows
#: costs more in Python than the query itself.
ROW_FIELDS = (
    "status", "priority", "language", "subject", "is_private", "is_noise", "opened_at",
    "sla_state", "first_response_at", "first_response_due_at", "next_response_due_at", "resolution_due_at",
    "source__platform", "contact__handle", "contact__display_name", "customer__display_name", "customer__vip",
    "queue__name", "assignee__username", "assignee__first_name", "assignee__last_name",
)  # fmt: skip


def _with_row_data(tickets: QuerySet[Ticket]) -> QuerySet[Ticket]:
    return (
        tickets.select_related("source", "contact", "customer", "queue", "assignee")
        .only(*ROW_FIELDS)
        .prefetch_related(Prefetch("tags", queryset=Tag.objects.only("name").order_by("name")))
    )


def unread_ticket_ids(*, user: AbstractBaseUser, ticket_ids: Sequence[int]) -> set[int]:
    """The tickets among ``ticket_ids`` with an inbound message ``user`` has not seen: one
    newer than their ``TicketSeen.last_message_id``, or any when they never opened it."""
    if not ticket_ids:
        return set()
    newest_inbound = (
        Message.objects.filter(ticket_id=OuterRef("pk"), direction=Message.Direction.INBOUND)
        .order_by()
        .values("ticket_id")
        .annotate(newest=Max("id"))
        .values("newest")
    )
    seen = TicketSeen.objects.filter(ticket_id=OuterRef("pk"), user_id=user.pk).values("last_message_id")[:1]
    rows = (
        Ticket.objects.filter(pk__in=list(ticket_ids))
        .annotate(
            newest_inbound=Subquery(newest_inbound, output_field=IntegerField()),
            seen_up_to=Subquery(seen, output_field=IntegerField()),
        )
        .values_list("pk", "newest_inbound", "seen_up_to")
    )
    return {pk for pk, newest, seen_up_to in rows if newest is not None and newest > (seen_up_to or 0)}


def _rows(user: AbstractBaseUser, tickets: Iterable[Ticket]) -> tuple[list[InboxRow], bool]:
    """The rows, and whether the viewers are known (Redis answered)."""
    tickets = list(tickets)
    ids = [ticket.pk for ticket in tickets]
    unread = unread_ticket_ids(user=user, ticket_ids=ids)
    try:
        viewers = viewers_for(ids) if ids else {}
        viewers_known = True
    except (RedisError, OSError):
        # The list still works without Redis; the page says the viewers are unknown.
        logger.warning("inbox: viewers of %d tickets unavailable", len(ids), exc_info=True)
        viewers, viewers_known = {}, False
    rows = [
        InboxRow(
            ticket=ticket,
            unread=ticket.pk in unread,
            viewers=[v for v in viewers.get(ticket.pk, []) if v.user_id != user.pk],
            sort_key=sort_key(ticket),
        )
        for ticket in tickets
    ]
    return rows, viewers_known


def inbox_list(
    *,
    user: AbstractBaseUser | AnonymousUser,
    view: str,
    filters: InboxFilters,
    ticket_ids: Sequence[int] | None = None,
) -> QuerySet[Ticket]:
    """One list, filtered, in list order (without the row data); only ``ticket_ids`` if given."""
    tickets = inbox_tickets(user=user, view=view)
    if ticket_ids is not None:
        tickets = tickets.filter(pk__in=list(ticket_ids))
    narrowing = dataclasses.replace(filters, q="")
    tickets = inbox_filter(tickets, narrowing)
    if filters.q.strip():
        broad = view == InboxView.ALL and ticket_ids is None and narrowing.is_empty()
        tickets = inbox_search(tickets, filters.q, scan_messages=broad)
    return inbox_ordered(tickets)


def inbox_page(
    *, user: AbstractBaseUser, view: str, filters: InboxFilters, page: int = 1, page_size: int = PAGE_SIZE
) -> InboxPage:
    """Page ``page`` (from 1) of a list. A page past the end comes back empty, marked ``past_end``."""
    if page < 1:
        raise ValueError("page numbers start at 1")
    tickets = inbox_list(user=user, view=view, filters=filters)
    start = (page - 1) * page_size
    # One pass over the list gives the page's ids and the list's size (a window count), and
    # only those ids are then loaded with their rows: sorting narrow rows, scanning once.
    found = list(
        tickets.annotate(total=Window(Count("pk"))).values_list("pk", "total")[start : start + page_size]
    )
    if found:
        count = found[0][1]
    else:
        count = tickets.count() if page > 1 else 0
    num_pages = max(1, -(-count // page_size))
    if not found:
        return InboxPage(rows=[], number=page, num_pages=num_pages, count=count, page_size=page_size,
                         past_end=page > num_pages)  # fmt: skip
    ids = [pk for pk, _total in found]
    loaded = {
        ticket.pk: ticket for ticket in _with_row_data(inbox_ordered(Ticket.objects.filter(pk__in=ids)))
    }
    rows, viewers_known = _rows(user, [loaded[pk] for pk in ids if pk in loaded])
    return InboxPage(rows=rows, number=page, num_pages=num_pages, count=count, page_size=page_size,
                     viewers_known=viewers_known)  # fmt: skip


def inbox_rows(
    *, user: AbstractBaseUser, view: str, filters: InboxFilters, ticket_ids: Sequence[int]
) -> InboxRows:
    """How ``ticket_ids`` stand in a list now: the rows of those still in it, in list order,
    and the ids that are not (moved out, filtered out, not visible, unknown)."""
    wanted = list(dict.fromkeys(ticket_ids))
    if len(wanted) > MAX_ROW_IDS:
        raise ValueError(f"at most {MAX_ROW_IDS} tickets at a time")
    tickets = list(_with_row_data(inbox_list(user=user, view=view, filters=filters, ticket_ids=wanted)))
    present = {ticket.pk for ticket in tickets}
    rows, viewers_known = _rows(user, tickets)
    return InboxRows(rows=rows, gone=[pk for pk in wanted if pk not in present], viewers_known=viewers_known)


def inbox_next_ticket(*, user: AbstractBaseUser, after: int | None = None) -> Ticket | None:
    """The user's next ticket: the first of "mine" in list order, other than ``after``."""
    tickets = inbox_ordered(inbox_tickets(user=user, view=InboxView.MINE))
    if after is not None:
        tickets = tickets.exclude(pk=after)
    return tickets.first()


def user_in_pull_queue(user: AbstractBaseUser) -> bool:
    """Whether ``user`` is a member of a queue where agents take the next ticket themselves."""
    return Queue.objects.filter(members=user.pk, assignment_mode=Queue.AssignmentMode.PULL).exists()
