"""The one way messages enter the desk.

``ingest_batch`` takes a batch of normalised messages from one source and, in one
transaction, upserts contacts, inserts messages, threads them into tickets (new,
joined, reopened or follow-up), asks routing where new tickets go and writes the
TicketEvents; the realtime push happens after commit.

Guarantees:

* Idempotent: (source, external_id) is unique. A re-delivered or overlapping item
  is counted as a duplicate and never raises. Batches of one source are serialised
  by a row lock on the source, so concurrent workers see each other's rows.
* Order-independent: a reply before its parent still ends in the right ticket; a
  parent that arrives after its replies joins their ticket and is linked to them.
* Nothing is lost: an item that fails validation or cannot be stored goes to the
  dead-letter table with the reason; the rest of the batch lands.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from operator import attrgetter

from django.conf import settings
from django.db import DatabaseError, IntegrityError, models, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.constants import OnConflict
from django.utils import timezone

from inbox.connectors.base import InboundMessage, RejectedItem
from inbox.models import Contact, Customer, DeadLetter, Message, Queue, Source, Tag, Ticket, TicketEvent
from inbox.realtime.publish import publish_on_commit
from inbox.routing import RoutingFacts, decide
from inbox.routing.engine import local_clock
from inbox.routing.language import detect_language, score_sentiment
from inbox.selectors.routing import (
    customers_vip,
    customers_with_open_tickets,
    desk_time_zone,
    routing_rules_compiled,
)
from inbox.selectors.sla import sla_config
from inbox.services.events import event_for
from inbox.services.normalize import CleanItem, InvalidItem, clean_item, dump_for_operator
from inbox.services.sla import sla_state_event
from inbox.sla.policy import (
    TicketClocks,
    sla_for_agent_reply,
    sla_for_customer_message,
    sla_for_new_ticket,
)

logger = logging.getLogger(__name__)

# Keeps IN (...) lists under every backend's parameter limit.
_CHUNK = 900
_PREVIEW = 200


@dataclass(slots=True)
class Rejection:
    index: int | None
    external_id: str
    reason: str


@dataclass(slots=True)
class IngestResult:
    created: int = 0
    duplicates: int = 0
    echoes: int = 0
    tickets_created: int = 0
    tickets_reopened: int = 0
    message_ids: list[int] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    newest_created_at: datetime | None = None

    def merge(self, other: IngestResult) -> None:
        self.created += other.created
        self.duplicates += other.duplicates
        self.echoes += other.echoes
        self.tickets_created += other.tickets_created
        self.tickets_reopened += other.tickets_reopened
        self.message_ids.extend(other.message_ids)
        self.rejected.extend(other.rejected)
        if other.newest_created_at and (
            self.newest_created_at is None or other.newest_created_at > self.newest_created_at
        ):
            self.newest_created_at = other.newest_created_at


def ingest_batch(
    *,
    source: Source,
    messages: Sequence[InboundMessage],
    rejected: Sequence[RejectedItem] = (),
    origin: str = DeadLetter.Origin.POLL,
    assign: bool = True,
) -> IngestResult:
    """Store a batch from ``source``. Returns counts; raises only if the database is down.

    ``assign=False`` leaves new and reopened tickets for the backlog sweep instead of
    pushing them to agents after commit (a history import does this)."""
    result = IngestResult()
    max_len = settings.WEBCARE["MAX_TEXT_LENGTH"]
    dead: list[DeadLetter] = [
        DeadLetter(
            source=source,
            origin=origin,
            external_id=str(r.external_id)[:200],
            reason=r.reason,
            payload=dump_for_operator(r.raw),
        )
        for r in rejected
    ]
    result.rejected.extend(Rejection(None, str(r.external_id)[:200], r.reason) for r in rejected)

    clean: list[tuple[int, CleanItem]] = []
    for index, item in enumerate(messages):
        try:
            clean.append((index, clean_item(item, max_text_length=max_len)))
        except InvalidItem as exc:
            external_id = str(getattr(item, "external_id", "") or "")[:200]
            result.rejected.append(Rejection(index, external_id, str(exc)))
            dead.append(
                DeadLetter(
                    source=source,
                    origin=origin,
                    external_id=external_id,
                    reason=str(exc),
                    payload=dump_for_operator(_as_dict(item)),
                )
            )
    if dead:
        DeadLetter.objects.bulk_create(dead)
        logger.warning("ingest: %d item(s) from %s dead-lettered", len(dead), source)

    if clean:
        result.merge(_store_with_fallback(source, clean, origin, assign))
    return result


def _store_with_fallback(
    source: Source, items: list[tuple[int, CleanItem]], origin: str, assign: bool
) -> IngestResult:
    # A concurrent writer on another source can win a contact insert race; one
    # retry sees its rows. Any other database error isolates the bad item by
    # storing one at a time, so the rest of the batch still lands.
    for attempt in range(2):
        try:
            with transaction.atomic():
                return _store(source, items, assign)
        except IntegrityError:
            if attempt == 0:
                logger.info("ingest: integrity conflict for %s, retrying batch", source)
                continue
            break
        except DatabaseError:
            logger.exception("ingest: batch from %s failed, storing items one by one", source)
            break
    if len(items) == 1:
        return _dead_letter_items(source, items, origin)
    result = IngestResult()
    for pair in items:
        try:
            with transaction.atomic():
                result.merge(_store(source, [pair], assign))
        except DatabaseError as exc:
            result.merge(_dead_letter_items(source, [pair], origin, error=exc))
    return result


def _dead_letter_items(
    source: Source, items: list[tuple[int, CleanItem]], origin: str, error: Exception | None = None
) -> IngestResult:
    result = IngestResult()
    reason = f"database refused the item: {error}" if error else "database refused the item"
    for index, item in items:
        result.rejected.append(Rejection(index, item.external_id, reason))
        DeadLetter.objects.create(
            source=source,
            origin=origin,
            external_id=item.external_id,
            reason=reason,
            payload=dump_for_operator(item.raw),
        )
    return result


def _as_dict(item: object) -> object:
    if isinstance(item, InboundMessage):
        return {
            "external_id": item.external_id,
            "author": repr(item.author),
            "text": item.text,
            "created_at": repr(item.created_at),
            "in_reply_to_external_id": item.in_reply_to_external_id,
            "conversation_id": item.conversation_id,
            "raw": item.raw,
        }
    return repr(item)


def _chunks(values: Sequence, size: int = _CHUNK) -> Iterable[Sequence]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


@dataclass(slots=True)
class _Known:
    """A message already stored (or stored earlier in this batch)."""

    id: int | None
    ticket: Ticket | None
    direction: str
    obj: Message | None = None


class _Batch:
    """State of one batch while it is threaded; everything is written in bulk at the end."""

    def __init__(self, source: Source, desk_default_queue_id: int | None) -> None:
        self.source = source
        self.now = timezone.now()
        self.reopen_window = settings.WEBCARE["REOPEN_WINDOW"]
        self.tickets: dict[int, Ticket] = {}
        self.new_tickets: list[Ticket] = []
        self.changed_tickets: dict[int, Ticket] = {}
        self.messages: list[Message] = []
        # (message, parent message object stored in this batch)
        self.link_to_new_parent: list[tuple[Message, Message]] = []
        # (stored child id, new parent message object)
        self.orphans_to_link: list[tuple[int, Message]] = []
        # (event built before its ticket has a pk) in creation order
        self.events: list[TicketEvent] = []
        self.result = IngestResult()
        self.desk_default_queue_id = desk_default_queue_id
        # Routing and SLA configuration, read once per batch (cached per process).
        self.rules = routing_rules_compiled()
        self.sla = sla_config()
        self.zone = desk_time_zone()
        self.vip_customers: set[int] = set()
        self.customers_with_open_tickets: set[int] = set()
        # name -> tickets routing tagged in this batch
        self.tags: dict[str, list[Ticket]] = defaultdict(list)
        # Tickets the assignment service should look at after commit.
        self.to_assign: list[Ticket] = []
        self.assign = True


def _store(source: Source, items: list[tuple[int, CleanItem]], assign: bool) -> IngestResult:
    db = transaction.get_connection()
    # Serialise batches of one source (PostgreSQL row lock; SQLite takes its write
    # lock at BEGIN IMMEDIATE), so dedupe and threading see every committed row.
    batch = _Batch(source, _lock_source(db, source))
    batch.assign = assign
    result = batch.result

    # 1. Duplicates, in the database and inside the batch. The same query brings every
    # stored message threading may need in step 3 (by id, conversation or parent id).
    ids = [item.external_id for _, item in items]
    related = _stored_messages(
        db,
        source,
        external_ids=set(ids).union(i.in_reply_to_external_id for _, i in items if i.in_reply_to_external_id),
        conversation_ids={i.conversation_id for _, i in items if i.conversation_id},
        parent_ids=set(ids),
    )
    stored = {row.external_id: row for row in related}
    existing = {ext: _Known(stored[ext].id, None, stored[ext].direction) for ext in ids if ext in stored}
    fresh: dict[str, CleanItem] = {}
    for _, item in items:
        known = existing.get(item.external_id)
        if known is not None:
            if item.author_is_brand and known.direction == Message.Direction.OUTBOUND:
                result.echoes += 1
            else:
                result.duplicates += 1
        elif item.external_id in fresh:
            result.duplicates += 1
        else:
            fresh[item.external_id] = item
    if not fresh:
        return result

    # 2. Contacts of the customers who wrote.
    contacts = _upsert_contacts(
        source.platform, [i for i in fresh.values() if not i.author_is_brand], batch.now
    )

    customer_ids = {contact.customer_id for contact in contacts.values()}
    batch.vip_customers = customers_vip(customer_ids)
    batch.customers_with_open_tickets = customers_with_open_tickets(customer_ids)

    # 3. What the batch refers to: parents, conversations, replies waiting for a parent.
    parent_ids = {
        i.in_reply_to_external_id for i in fresh.values() if i.in_reply_to_external_id
    } - fresh.keys()
    parent_rows = [
        (ext, stored[ext].id, stored[ext].ticket_id, stored[ext].direction)
        for ext in sorted(parent_ids)
        if ext in stored
    ]
    ticket_ids: set[int] = {row[2] for row in parent_rows if row[2]}
    conversations: dict[str, int] = {}
    conv_ids = {i.conversation_id for i in fresh.values() if i.conversation_id}
    orphans: dict[str, list[tuple[int, int | None]]] = defaultdict(list)
    for row in related:  # in id order
        if row.conversation_id in conv_ids and row.ticket_id is not None:
            conversations[row.conversation_id] = row.ticket_id  # latest ticket of the conversation wins
            ticket_ids.add(row.ticket_id)
        if row.in_reply_to_external_id in fresh and row.in_reply_to_id is None:
            orphans[row.in_reply_to_external_id].append((row.id, row.ticket_id))
            if row.ticket_id:
                ticket_ids.add(row.ticket_id)
    for chunk in _chunks(sorted(ticket_ids)):
        for ticket in Ticket.objects.filter(pk__in=chunk):
            batch.tickets[ticket.pk] = ticket
    known: dict[str, _Known] = {
        ext: _Known(mid, batch.tickets.get(ticket_id) if ticket_id else None, direction)
        for ext, mid, ticket_id, direction in parent_rows
    }

    # 4. Thread in causal order: parents before replies, then by time.
    conv_tickets: dict[str, Ticket] = {
        c: batch.tickets[t] for c, t in conversations.items() if t in batch.tickets
    }
    for item in _causal_order(fresh):
        if not item.author_is_brand:
            # The platform's language tag is only a hint (many send the account's setting);
            # when detection is unsure, or the language is not a desk language, it stays.
            item.language = detect_language(item.text, hint=item.language) or item.language
            item.sentiment = score_sentiment(item.text, item.language)
        parent = known.get(item.in_reply_to_external_id) if item.in_reply_to_external_id else None
        ticket = _thread_ticket(batch, item, parent, conv_tickets, orphans)
        message = Message(
            source_id=source.pk,
            direction=Message.Direction.OUTBOUND if item.author_is_brand else Message.Direction.INBOUND,
            is_public=item.is_public,
            external_id=item.external_id,
            in_reply_to_external_id=item.in_reply_to_external_id,
            conversation_id=item.conversation_id,
            text=item.text,
            language=item.language,
            sentiment=item.sentiment,
            created_at=item.created_at,
            raw=item.raw,
        )
        if parent is not None:
            if parent.id is not None:
                message.in_reply_to_id = parent.id
            elif parent.obj is not None:
                batch.link_to_new_parent.append((message, parent.obj))
        if item.author_is_brand:
            message.delivery_state = Message.Delivery.SENT
            ticket = _attach_brand_message(batch, item, ticket)
        else:
            contact = contacts[item.author.external_id]
            message.author_contact_id = contact.pk
            ticket = _attach_customer_message(batch, item, ticket, contact)
        message.ticket = ticket
        batch.messages.append(message)
        if item.conversation_id and ticket is not None:
            conv_tickets[item.conversation_id] = ticket
        known[item.external_id] = _Known(None, ticket, message.direction, obj=message)
        for child_id, _ in orphans.get(item.external_id, ()):
            batch.orphans_to_link.append((child_id, message))
        if result.newest_created_at is None or item.created_at > result.newest_created_at:
            result.newest_created_at = item.created_at

    # 5. Write everything in bulk.
    _write(batch)
    return result


def _lock_source(db: BaseDatabaseWrapper, source: Source) -> int | None:
    """Lock the source's row (where the backend has row locks) and read the desk's default queue."""
    lock = " FOR UPDATE" if db.features.has_select_for_update else ""
    with db.cursor() as cursor:
        cursor.execute(
            f"SELECT (SELECT id FROM {Queue._meta.db_table} WHERE is_default = %s ORDER BY name LIMIT 1) "
            f"FROM {Source._meta.db_table} WHERE id = %s{lock}",
            [True, source.pk],
        )
        row = cursor.fetchone()
    return row[0] if row else None


@dataclass(frozen=True, slots=True)
class _StoredMessage:
    id: int
    external_id: str | None
    ticket_id: int | None
    direction: str
    conversation_id: str
    in_reply_to_external_id: str
    in_reply_to_id: int | None


def _stored_messages(
    db: BaseDatabaseWrapper,
    source: Source,
    *,
    external_ids: set[str],
    conversation_ids: set[str],
    parent_ids: set[str],
) -> list[_StoredMessage]:
    """Stored messages of ``source`` with one of ``external_ids``, in one of ``conversation_ids``,
    or answering one of ``parent_ids`` and still without their parent; in id order.

    One round trip where the ORM needed three: a UNION ALL of the three lookups, each on
    its own (source, column) index whatever the statistics say. PostgreSQL takes each set
    as one array; elsewhere IN lists are chunked and statements kept under the parameter limit.
    """
    select = (
        "SELECT id, external_id, ticket_id, direction, conversation_id, in_reply_to_external_id, "
        f"in_reply_to_id FROM {Message._meta.db_table} WHERE source_id = %s AND "
    )
    lookups = [
        ("external_id {}", sorted(external_ids)),
        ("conversation_id {}", sorted(conversation_ids)),
        ("in_reply_to_external_id {} AND in_reply_to_id IS NULL", sorted(parent_ids)),
    ]
    # (SQL, params) of every lookup, then grouped into statements.
    parts: list[tuple[str, list[object]]] = []
    for condition, values in lookups:
        if not values:
            continue
        if db.vendor == "postgresql":
            parts.append((select + condition.format("= ANY(%s)"), [source.pk, values]))
            continue
        for chunk in _chunks(values):
            parts.append(
                (select + condition.format(f"IN ({', '.join(['%s'] * len(chunk))})"), [source.pk, *chunk])
            )
    groups: list[list[tuple[str, list[object]]]] = []
    for part in parts:
        if not groups or sum(len(p) for _, p in groups[-1]) + len(part[1]) > _CHUNK + 1:
            groups.append([])
        groups[-1].append(part)
    found: dict[int, _StoredMessage] = {}
    with db.cursor() as cursor:
        for group in groups:
            cursor.execute(" UNION ALL ".join(sql for sql, _ in group), [v for _, p in group for v in p])
            found.update((row[0], _StoredMessage(*row)) for row in cursor.fetchall())
    return [found[key] for key in sorted(found)]


def _causal_order(fresh: dict[str, CleanItem]) -> list[CleanItem]:
    ordered: list[CleanItem] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(item: CleanItem) -> None:
        # Iterative over the parent chain: threads can be thousands deep.
        chain: list[CleanItem] = []
        current: CleanItem | None = item
        while current is not None and state.get(current.external_id) is None:
            state[current.external_id] = 1
            chain.append(current)
            parent_ext = current.in_reply_to_external_id
            current = fresh.get(parent_ext) if parent_ext else None
        for member in reversed(chain):
            state[member.external_id] = 2
            ordered.append(member)

    for item in sorted(fresh.values(), key=lambda i: i.created_at):
        visit(item)
    return ordered


def _thread_ticket(
    batch: _Batch,
    item: CleanItem,
    parent: _Known | None,
    conv_tickets: dict[str, Ticket],
    orphans: dict[str, list[tuple[int, int | None]]],
) -> Ticket | None:
    """The ticket the conversation is on, before reopen rules apply."""
    if parent is not None and parent.ticket is not None:
        return parent.ticket
    if item.conversation_id and item.conversation_id in conv_tickets:
        return conv_tickets[item.conversation_id]
    for _, ticket_id in orphans.get(item.external_id, ()):
        if ticket_id and ticket_id in batch.tickets:
            return batch.tickets[ticket_id]
    return None


def _attach_brand_message(batch: _Batch, item: CleanItem, ticket: Ticket | None) -> Ticket | None:
    """A brand post seen on the platform: history or a post made outside the desk. It
    answers the conversation it belongs to and never opens a ticket of its own."""
    if ticket is None:
        return None
    clocks = TicketClocks.of(ticket)
    change = sla_for_agent_reply(clocks, batch.sla.for_ticket(clocks), at=item.created_at, now=batch.now)
    change.apply(ticket)
    if change.state_change is not None:
        batch.events.append(sla_state_event(ticket=ticket, change=change.state_change))
    if item.created_at >= ticket.opened_at and (
        ticket.first_response_at is None or item.created_at < ticket.first_response_at
    ):
        ticket.first_response_at = item.created_at
    if item.created_at > ticket.last_message_at:
        ticket.last_message_at = item.created_at
    _mark_changed(batch, ticket)
    return ticket


def _attach_customer_message(
    batch: _Batch, item: CleanItem, ticket: Ticket | None, contact: Contact
) -> Ticket:
    previous: Ticket | None = None
    before = TicketClocks.of(ticket) if ticket is not None else None
    if ticket is not None and ticket.status in (Ticket.Status.SOLVED, Ticket.Status.CLOSED):
        within = (
            ticket.status == Ticket.Status.SOLVED
            and ticket.solved_at is not None
            and item.created_at - ticket.solved_at <= batch.reopen_window
        )
        if within:
            ticket.status = Ticket.Status.OPEN
            ticket.solved_at = None
            ticket.reopened_count += 1
            batch.result.tickets_reopened += 1
            batch.events.append(event_for(ticket, "ticket.reopened", reason="customer wrote again"))
            batch.to_assign.append(ticket)
        else:
            previous, ticket = ticket, None
    if ticket is None:
        ticket = _new_ticket(batch, item, contact, previous)
    else:
        if ticket.status == Ticket.Status.PENDING:
            ticket.status = Ticket.Status.OPEN
            batch.events.append(
                event_for(
                    ticket, "ticket.status_changed", old="pending", new="open", reason="customer replied"
                )
            )
            batch.to_assign.append(ticket)
        # Resumes clocks stopped while pending or solved, and starts the next-response clock.
        change = sla_for_customer_message(before, batch.sla.for_ticket(before), at=item.created_at)
        change.apply(ticket)
        if change.state_change is not None:
            batch.events.append(sla_state_event(ticket=ticket, change=change.state_change))
        if item.sentiment is not None:
            ticket.sentiment = item.sentiment
        if not ticket.language and item.language:
            ticket.language = item.language
        _mark_changed(batch, ticket)
    if item.created_at > ticket.last_message_at:
        ticket.last_message_at = item.created_at
    if ticket.last_customer_message_at is None or item.created_at > ticket.last_customer_message_at:
        ticket.last_customer_message_at = item.created_at
    return ticket


def _new_ticket(batch: _Batch, item: CleanItem, contact: Contact, previous: Ticket | None) -> Ticket:
    source = batch.source
    local_time, weekday = local_clock(item.created_at, batch.zone)
    decision = decide(
        RoutingFacts(
            source_id=source.pk,
            platform=source.platform,
            is_public=item.is_public,
            language=item.language,
            text=item.text,
            followers_count=item.author.followers_count,
            verified=item.author.verified,
            source_default_queue_id=source.default_queue_id,
            desk_default_queue_id=batch.desk_default_queue_id,
            sentiment=item.sentiment,
            vip=contact.customer_id in batch.vip_customers,
            has_open_ticket=contact.customer_id in batch.customers_with_open_tickets,
            local_time=local_time,
            weekday=weekday,
        ),
        batch.rules,
    )
    priority = decision.priority if decision.priority is not None else Ticket.Priority.NORMAL
    ticket = Ticket(
        source_id=source.pk,
        queue_id=decision.queue_id,
        customer_id=contact.customer_id,
        contact_id=contact.pk,
        status=Ticket.Status.NEW,
        priority=priority,
        is_private=not item.is_public,
        language=item.language,
        sentiment=item.sentiment,
        subject=item.text[:_PREVIEW],
        previous_ticket_id=previous.pk if previous is not None else None,
        opened_at=item.created_at,
        last_message_at=item.created_at,
        last_customer_message_at=item.created_at,
        routing_rule_id=decision.rule_id,
        is_noise=decision.is_noise,
        reply_approval_required=decision.requires_approval,
    )
    if not decision.is_noise:
        policy = batch.sla.select(
            queue_id=decision.queue_id, priority=priority, explicit_policy_id=decision.sla_policy_id
        )
        sla_for_new_ticket(policy, opened_at=item.created_at).apply(ticket)
        batch.to_assign.append(ticket)
    for name in decision.tags:
        batch.tags[name].append(ticket)
    batch.new_tickets.append(ticket)
    batch.result.tickets_created += 1
    batch.events.append(
        event_for(
            ticket,
            "ticket.created",
            queue_id=decision.queue_id,
            routing_reason=decision.reason,
            routing_rule_ids=list(decision.rule_ids),
            priority=priority,
            tags=list(decision.tags),
            is_noise=decision.is_noise,
            sla_policy_id=ticket.sla_policy_id,
            previous_ticket_id=previous.pk if previous else None,
            is_private=ticket.is_private,
            language=ticket.language,
        )
    )
    return ticket


def _mark_changed(batch: _Batch, ticket: Ticket) -> None:
    if ticket.pk is not None:
        batch.changed_tickets[ticket.pk] = ticket


def _upsert_contacts(platform: str, items: list[CleanItem], now: datetime) -> dict[str, Contact]:
    latest: dict[str, CleanItem] = {}
    for item in items:
        current = latest.get(item.author.external_id)
        if current is None or item.created_at >= current.created_at:
            latest[item.author.external_id] = item
    if not latest:
        return {}
    author_ids = sorted(latest)
    found: dict[str, Contact] = {}
    for chunk in _chunks(author_ids):
        for contact in Contact.objects.filter(platform=platform, external_id__in=chunk):
            found[contact.external_id] = contact
    missing = [a for a in author_ids if a not in found]
    if missing:
        db = transaction.get_connection()
        customers = [
            Customer(display_name=latest[a].author.display_name or latest[a].author.handle) for a in missing
        ]
        new_contacts = [
            Contact(
                platform=platform,
                external_id=a,
                handle=latest[a].author.handle,
                display_name=latest[a].author.display_name,
                followers_count=latest[a].author.followers_count,
                verified=latest[a].author.verified,
                language=latest[a].author.language,
                customer=customer,
                last_seen_at=latest[a].created_at,
            )
            for a, customer in zip(missing, customers, strict=True)
        ]
        customer_ids, contact_ids = _allocate_ids(db, [(Customer, len(missing)), (Contact, len(missing))])
        for customer, contact, customer_pk, contact_pk in zip(
            customers, new_contacts, customer_ids, contact_ids, strict=True
        ):
            customer.pk, contact.pk = customer_pk, contact_pk
        _insert_rows(db, Customer, customers)
        if _insert_ignoring_conflicts(db, Contact, new_contacts) == len(new_contacts):
            found.update((contact.external_id, contact) for contact in new_contacts)
        else:
            # A worker on another source stored some of these people first: read what won.
            for chunk in _chunks(missing):
                for contact in Contact.objects.filter(platform=platform, external_id__in=chunk):
                    found[contact.external_id] = contact
    changed: list[Contact] = []
    for author_id, contact in found.items():
        item = latest[author_id]
        if contact.last_seen_at is not None and item.created_at < contact.last_seen_at:
            continue  # older news about this person: keep what we know
        author = item.author
        update = {
            "handle": author.handle or contact.handle,
            "display_name": author.display_name or contact.display_name,
            "followers_count": author.followers_count
            if author.followers_count is not None
            else contact.followers_count,
            "verified": author.verified,
            "language": author.language or contact.language,
            "last_seen_at": item.created_at,
        }
        if any(getattr(contact, k) != v for k, v in update.items()):
            for key, value in update.items():
                setattr(contact, key, value)
            changed.append(contact)
    if changed:
        _update_rows(
            transaction.get_connection(),
            Contact,
            changed,
            ["handle", "display_name", "followers_count", "verified", "language", "last_seen_at"],
        )
    return found


def _write(batch: _Batch) -> None:
    result = batch.result
    db = transaction.get_connection()
    events = batch.events
    with_ticket = [m for m in batch.messages if m.ticket is not None]
    # Every new row gets its id first, so each is written complete in one pass: a reply
    # points at a parent from this very batch, an event at the ticket created with it.
    ticket_ids, message_ids, event_ids = _allocate_ids(
        db, [(Ticket, len(batch.new_tickets)), (Message, len(batch.messages)),
             (TicketEvent, len(events) + len(with_ticket))],
    )  # fmt: skip
    for ticket, pk in zip(batch.new_tickets, ticket_ids, strict=True):
        ticket.pk = pk
    for message, pk in zip(batch.messages, message_ids, strict=True):
        message.pk = pk
    # Replies whose parent arrived in this batch or later than them.
    for message, parent in batch.link_to_new_parent:
        message.in_reply_to_id = parent.pk
    for ticket_event in events:
        # Events built for tickets created in this batch: their ticket has its id now.
        if ticket_event.ticket is not None:
            ticket_event.ticket_id = ticket_event.ticket.pk
    events.extend(
        event_for(
            message.ticket, "message.created",
            message_id=message.pk, direction=message.direction, is_public=message.is_public,
        )
        for message in with_ticket
    )  # fmt: skip
    for ticket_event, pk in zip(events, event_ids, strict=True):
        ticket_event.pk = pk

    _insert_rows(db, Ticket, batch.new_tickets)
    _insert_rows(db, Message, batch.messages)
    result.created += len(batch.messages)
    result.message_ids.extend(m.pk for m in batch.messages)
    if batch.orphans_to_link:
        _update_rows(
            db,
            Message,
            [Message(pk=child_id, in_reply_to_id=parent.pk) for child_id, parent in batch.orphans_to_link],
            ["in_reply_to"],
        )
    if batch.changed_tickets:
        now = batch.now
        changed = list(batch.changed_tickets.values())
        for ticket in changed:
            ticket.updated_at = now
        _update_rows(
            db,
            Ticket,
            changed,
            ["status", "solved_at", "reopened_count", "last_message_at",
             "last_customer_message_at", "first_response_at", "updated_at",
             "language", "sentiment", "first_response_due_at", "next_response_due_at",
             "resolution_due_at", "pending_since", "last_agent_reply_at", "sla_state",
             "sla_state_changed_at"],
        )  # fmt: skip
    _insert_rows(db, TicketEvent, events)
    if batch.tags:
        _tag_tickets(batch.tags)
    publish_on_commit(events, fresh_ticket_ids=frozenset(t.pk for t in batch.new_tickets))
    if batch.assign:
        # Imported here: the task module imports services, services must not import it first.
        from inbox.tasks.assignment import assign_tickets_on_commit

        assign_tickets_on_commit(t.pk for t in batch.to_assign)


def _tag_tickets(tagged: dict[str, list[Ticket]]) -> None:
    """Tags routing put on tickets of this batch (tags are created on first use)."""
    names = sorted(tagged)
    Tag.objects.bulk_create([Tag(name=name) for name in names], ignore_conflicts=True)
    ids = dict(Tag.objects.filter(name__in=names).values_list("name", "id"))
    Ticket.tags.through.objects.bulk_create(
        [Ticket.tags.through(ticket_id=t.pk, tag_id=ids[name]) for name in names for t in tagged[name]],
        ignore_conflicts=True,
    )


# --- Bulk writes ------------------------------------------------------------------------------
# bulk_create and bulk_update spend several times more CPU per row (field preparation,
# expression resolution, and on PostgreSQL the client-side parsing of statements with
# hundreds of placeholders) than the database spends storing the row. Here rows are
# written in plain statements: ids are allocated up front from the table's own sequence,
# values get the adaptation Django gives them, PostgreSQL loads rows with COPY and
# updates from arrays, SQLite runs executemany (its driver loops in C).

_sequence_names: dict[tuple[str, str], str] = {}
_row_formats: dict[tuple[str, type[models.Model], tuple[str, ...]], _RowFormat] = {}


def _allocate_ids(db: BaseDatabaseWrapper, wanted: list[tuple[type[models.Model], int]]) -> list[list[int]]:
    """``count`` new ids per model, ascending, as the table's autoincrement would give them."""
    with db.cursor() as cursor:
        if db.vendor == "postgresql":
            parts, params = [], []
            for index, (model, count) in enumerate(wanted):
                parts.append("SELECT %s, nextval(%s::regclass) FROM generate_series(1, %s)")
                params += [index, _sequence(db, cursor, model), count]
            cursor.execute(" UNION ALL ".join(parts), params)
            ids: list[list[int]] = [[] for _ in wanted]
            for index, value in cursor.fetchall():
                ids[index].append(value)
            return [sorted(values) for values in ids]
        if db.vendor == "sqlite":
            # AUTOINCREMENT never reuses an id: start above both the recorded high-water
            # mark and the largest id. The transaction holds SQLite's write lock
            # (BEGIN IMMEDIATE, see settings), so nobody else allocates meanwhile.
            tops, params = [], []
            for model, _ in wanted:
                table, pk = model._meta.db_table, db.ops.quote_name(model._meta.pk.column)
                tops.append(
                    "max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = %s), 0), "
                    f"coalesce((SELECT max({pk}) FROM {db.ops.quote_name(table)}), 0))"
                )
                params.append(table)
            cursor.execute(f"SELECT {', '.join(tops)}", params)
            row = cursor.fetchone()
            return [
                list(range(top + 1, top + 1 + count)) for top, (_, count) in zip(row, wanted, strict=True)
            ]
    raise NotImplementedError(f"id allocation for {db.vendor}")


def _sequence(db: BaseDatabaseWrapper, cursor, model: type[models.Model]) -> str:
    key = (db.alias, model._meta.db_table)
    if key not in _sequence_names:
        cursor.execute("SELECT pg_get_serial_sequence(%s, %s)", [model._meta.db_table, model._meta.pk.column])
        _sequence_names[key] = cursor.fetchone()[0]
    return _sequence_names[key]


@dataclass(frozen=True, slots=True)
class _RowFormat:
    """How to turn objects of one model into rows: the fields, and which need more than a read."""

    fields: list[models.Field]
    read: Callable[[models.Model], tuple]
    # (position, field): auto_now / auto_now_add, filled by pre_save on insert as bulk_create does.
    stamped: list[tuple[int, models.Field]]
    # (position, field): foreign keys, which may hold an object assigned before it had an id.
    relations: list[tuple[int, models.Field]]
    # (position, adapter) for values the database driver cannot take as they are.
    adapted: list[tuple[int, Callable[[object], object]]]


def _row_format(
    db: BaseDatabaseWrapper, model: type[models.Model], field_names: tuple[str, ...] = ()
) -> _RowFormat:
    """The columns of ``model`` (all concrete fields, or ``field_names``) and how to write each value."""
    key = (db.vendor, model, field_names)
    if key not in _row_formats:
        meta = model._meta
        fields = [meta.get_field(n) for n in field_names] if field_names else list(meta.local_concrete_fields)
        adapters = [(i, _adapter(db, f)) for i, f in enumerate(fields)]
        names = [f.attname for f in fields]
        # attrgetter of several names gives a tuple, of one name the bare value.
        read = attrgetter(*names) if len(names) > 1 else lambda obj: (getattr(obj, names[0]),)
        _row_formats[key] = _RowFormat(
            fields=fields,
            read=read,
            stamped=[
                (i, f)
                for i, f in enumerate(fields)
                if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False)
            ],
            relations=[(i, f) for i, f in enumerate(fields) if f.is_relation],
            adapted=[(i, adapt) for i, adapt in adapters if adapt is not None],
        )
    return _row_formats[key]


_PLAIN = (
    models.BooleanField, models.CharField, models.TextField, models.IntegerField, models.FloatField,
    models.AutoField, models.BigAutoField, models.ForeignKey,
)  # fmt: skip


def _adapter(db: BaseDatabaseWrapper, model_field: models.Field) -> Callable[[object], object] | None:
    """What ``get_db_prep_save`` does to a non-null value, for the field types ingest writes."""
    if isinstance(model_field, models.DateTimeField):
        if db.vendor == "postgresql":
            return None  # the driver adapts aware datetimes itself
        # SQLite stores naive text in the connection's time zone (adapt_datetimefield_value).
        zone = db.timezone

        def naive_text(value: datetime) -> object:
            if value.utcoffset() is None:
                return model_field.get_db_prep_save(value, db)  # Django's warning and conversion
            return str(value.astimezone(zone).replace(tzinfo=None))

        return naive_text
    if isinstance(model_field, models.JSONField):
        encoder = model_field.encoder
        return lambda value: json.dumps(value, cls=encoder)
    if isinstance(model_field, _PLAIN):
        return None
    return lambda value: model_field.get_db_prep_save(value, db)


def _values(obj: models.Model, fmt: _RowFormat, *, adding: bool) -> list:
    if adding:
        for _, stamped in fmt.stamped:
            stamped.pre_save(obj, True)
    row = list(fmt.read(obj))
    for i, relation in fmt.relations:
        if row[i] is None and relation.is_cached(obj):
            # Assigned as an object before that had an id (bulk_create does the same).
            related = relation.get_cached_value(obj)
            if related is not None:
                if related.pk is None:
                    raise ValueError(f"{relation.name} of {obj!r} is not saved: refusing to lose it")
                row[i] = related.pk
                setattr(obj, relation.attname, related.pk)
    for i, adapt in fmt.adapted:
        if row[i] is not None:
            row[i] = adapt(row[i])
    return row


def _insert_rows(db: BaseDatabaseWrapper, model: type[models.Model], objs: Sequence[models.Model]) -> None:
    """Insert ``objs``, whose ids were allocated already."""
    if not objs:
        return
    fmt = _row_format(db, model)
    rows = [_values(obj, fmt, adding=True) for obj in objs]
    table = db.ops.quote_name(model._meta.db_table)
    names = ", ".join(db.ops.quote_name(f.column) for f in fmt.fields)
    with db.cursor() as cursor:
        if db.vendor == "postgresql":
            with db.wrap_database_errors, cursor.cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            cursor.executemany(
                f"INSERT INTO {table} ({names}) VALUES ({', '.join(['%s'] * len(fmt.fields))})", rows
            )
    for obj in objs:
        obj._state.adding = False
        obj._state.db = db.alias


def _insert_ignoring_conflicts(
    db: BaseDatabaseWrapper, model: type[models.Model], objs: Sequence[models.Model]
) -> int:
    """Insert ``objs`` (ids allocated already), skipping rows that hit a unique constraint.

    Returns how many rows were inserted.
    """
    if not objs:
        return 0
    fmt = _row_format(db, model)
    rows = [_values(obj, fmt, adding=True) for obj in objs]
    table = db.ops.quote_name(model._meta.db_table)
    quoted = ", ".join(db.ops.quote_name(f.column) for f in fmt.fields)
    with db.cursor() as cursor:
        if db.vendor == "postgresql":
            cursor.execute(
                f"INSERT INTO {table} ({quoted}) SELECT * FROM UNNEST({_array_params(db, fmt)}) "
                "ON CONFLICT DO NOTHING",
                [list(column) for column in zip(*rows, strict=True)],
            )
        else:
            insert = db.ops.insert_statement(on_conflict=OnConflict.IGNORE)
            cursor.executemany(
                f"{insert} {table} ({quoted}) VALUES ({', '.join(['%s'] * len(fmt.fields))})", rows
            )
        inserted = cursor.rowcount
    for obj in objs:
        obj._state.adding = False
        obj._state.db = db.alias
    return inserted


def _update_rows(
    db: BaseDatabaseWrapper,
    model: type[models.Model],
    objs: Sequence[models.Model],
    field_names: Sequence[str],
) -> None:
    """Write ``field_names`` of ``objs`` (rows that exist) in one statement."""
    if not objs:
        return
    pk_field = model._meta.pk
    fmt = _row_format(db, model, (pk_field.name, *field_names))
    rows = [_values(obj, fmt, adding=False) for obj in objs]
    quote = db.ops.quote_name
    names = [quote(f.column) for f in fmt.fields]
    table, pk = quote(model._meta.db_table), quote(pk_field.column)
    with db.cursor() as cursor:
        if db.vendor == "postgresql":
            cursor.execute(
                f"UPDATE {table} SET {', '.join(f'{name} = v.{name}' for name in names[1:])} "
                f"FROM UNNEST({_array_params(db, fmt)}) AS v({', '.join(names)}) "
                f"WHERE {table}.{pk} = v.{pk}",
                [list(column) for column in zip(*rows, strict=True)],
            )
        else:
            cursor.executemany(
                f"UPDATE {table} SET {', '.join(f'{name} = %s' for name in names[1:])} WHERE {pk} = %s",
                [[*row[1:], row[0]] for row in rows],
            )


def _array_params(db: BaseDatabaseWrapper, fmt: _RowFormat) -> str:
    # One typed array per column, as Django's own bulk insert does on PostgreSQL.
    return ", ".join(f"%s::{f.db_type(db).split('(')[0]}[]" for f in fmt.fields)
