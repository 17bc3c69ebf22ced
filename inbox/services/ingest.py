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

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone

from inbox.connectors.base import InboundMessage, RejectedItem
from inbox.models import Contact, Customer, DeadLetter, Message, Queue, Source, Ticket, TicketEvent
from inbox.realtime.publish import publish_on_commit
from inbox.routing import RoutingFacts, decide
from inbox.services.events import event_for
from inbox.services.normalize import CleanItem, InvalidItem, clean_item, dump_for_operator

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
) -> IngestResult:
    """Store a batch from ``source``. Returns counts; raises only if the database is down."""
    result = IngestResult()
    max_len = settings.WEBCARE["MAX_TEXT_LENGTH"]
    dead: list[DeadLetter] = [
        DeadLetter(
            source=source, origin=origin, external_id=str(r.external_id)[:200],
            reason=r.reason, payload=dump_for_operator(r.raw),
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
                    source=source, origin=origin, external_id=external_id,
                    reason=str(exc), payload=dump_for_operator(_as_dict(item)),
                )
            )
    if dead:
        DeadLetter.objects.bulk_create(dead)
        logger.warning("ingest: %d item(s) from %s dead-lettered", len(dead), source)

    if clean:
        result.merge(_store_with_fallback(source, clean, origin))
    return result


def _store_with_fallback(source: Source, items: list[tuple[int, CleanItem]], origin: str) -> IngestResult:
    # A concurrent writer on another source can win a contact insert race; one
    # retry sees its rows. Any other database error isolates the bad item by
    # storing one at a time, so the rest of the batch still lands.
    for attempt in range(2):
        try:
            with transaction.atomic():
                return _store(source, items)
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
                result.merge(_store(source, [pair]))
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
            source=source, origin=origin, external_id=item.external_id, reason=reason,
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

    def __init__(self, source: Source) -> None:
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
        self.desk_default_queue_id: int | None = (
            Queue.objects.filter(is_default=True).values_list("id", flat=True).first()
        )


def _store(source: Source, items: list[tuple[int, CleanItem]]) -> IngestResult:
    # Serialise batches of one source (PostgreSQL row lock; SQLite takes its write
    # lock at BEGIN IMMEDIATE), so dedupe and threading see every committed row.
    Source.objects.select_for_update().filter(pk=source.pk).values_list("pk", flat=True).first()
    batch = _Batch(source)
    result = batch.result

    # 1. Duplicates, in the database and inside the batch.
    ids = [item.external_id for _, item in items]
    existing: dict[str, _Known] = {}
    for chunk in _chunks(ids):
        for ext, mid, direction in Message.objects.filter(
            source=source, external_id__in=chunk
        ).values_list("external_id", "id", "direction"):
            existing[ext] = _Known(mid, None, direction)
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
    contacts = _upsert_contacts(source.platform, [i for i in fresh.values() if not i.author_is_brand], batch.now)

    # 3. What the batch refers to: parents, conversations, replies waiting for a parent.
    parent_ids = {i.in_reply_to_external_id for i in fresh.values() if i.in_reply_to_external_id} - fresh.keys()
    parent_rows: list[tuple[str, int, int | None, str]] = []
    ticket_ids: set[int] = set()
    for chunk in _chunks(sorted(parent_ids)):
        parent_rows.extend(
            Message.objects.filter(source=source, external_id__in=chunk).values_list(
                "external_id", "id", "ticket_id", "direction"
            )
        )
    ticket_ids.update(row[2] for row in parent_rows if row[2])
    conversations: dict[str, int] = {}
    conv_ids = sorted({i.conversation_id for i in fresh.values() if i.conversation_id})
    for chunk in _chunks(conv_ids):
        for conv, ticket_id in (
            Message.objects.filter(source=source, conversation_id__in=chunk, ticket__isnull=False)
            .order_by("id")
            .values_list("conversation_id", "ticket_id")
        ):
            conversations[conv] = ticket_id  # latest ticket of the conversation wins
            ticket_ids.add(ticket_id)
    orphans: dict[str, list[tuple[int, int | None]]] = defaultdict(list)
    for chunk in _chunks(sorted(fresh.keys())):
        for child_id, parent_ext, ticket_id in Message.objects.filter(
            source=source, in_reply_to_external_id__in=chunk, in_reply_to__isnull=True
        ).values_list("id", "in_reply_to_external_id", "ticket_id"):
            orphans[parent_ext].append((child_id, ticket_id))
            if ticket_id:
                ticket_ids.add(ticket_id)
    for chunk in _chunks(sorted(ticket_ids)):
        for ticket in Ticket.objects.filter(pk__in=chunk):
            batch.tickets[ticket.pk] = ticket
    known: dict[str, _Known] = {
        ext: _Known(mid, batch.tickets.get(ticket_id) if ticket_id else None, direction)
        for ext, mid, ticket_id, direction in parent_rows
    }

    # 4. Thread in causal order: parents before replies, then by time.
    conv_tickets: dict[str, Ticket] = {c: batch.tickets[t] for c, t in conversations.items() if t in batch.tickets}
    for item in _causal_order(fresh):
        parent = known.get(item.in_reply_to_external_id) if item.in_reply_to_external_id else None
        ticket = _thread_ticket(batch, item, parent, conv_tickets, orphans)
        message = Message(
            source=source,
            direction=Message.Direction.OUTBOUND if item.author_is_brand else Message.Direction.INBOUND,
            is_public=item.is_public,
            external_id=item.external_id,
            in_reply_to_external_id=item.in_reply_to_external_id,
            conversation_id=item.conversation_id,
            text=item.text,
            language=item.language,
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
            message.author_contact = contact
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
        else:
            previous, ticket = ticket, None
    if ticket is None:
        ticket = _new_ticket(batch, item, contact, previous)
    else:
        if ticket.status == Ticket.Status.PENDING:
            ticket.status = Ticket.Status.OPEN
            batch.events.append(
                event_for(ticket, "ticket.status_changed", old="pending", new="open",
                          reason="customer replied")
            )
        _mark_changed(batch, ticket)
    if item.created_at > ticket.last_message_at:
        ticket.last_message_at = item.created_at
    if ticket.last_customer_message_at is None or item.created_at > ticket.last_customer_message_at:
        ticket.last_customer_message_at = item.created_at
    return ticket


def _new_ticket(batch: _Batch, item: CleanItem, contact: Contact, previous: Ticket | None) -> Ticket:
    source = batch.source
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
        )
    )
    ticket = Ticket(
        source=source,
        queue_id=decision.queue_id,
        customer_id=contact.customer_id,
        contact=contact,
        status=Ticket.Status.NEW,
        priority=decision.priority if decision.priority is not None else Ticket.Priority.NORMAL,
        is_private=not item.is_public,
        language=item.language,
        subject=item.text[:_PREVIEW],
        previous_ticket=previous,
        opened_at=item.created_at,
        last_message_at=item.created_at,
        last_customer_message_at=item.created_at,
    )
    batch.new_tickets.append(ticket)
    batch.result.tickets_created += 1
    batch.events.append(
        event_for(
            ticket, "ticket.created",
            queue_id=decision.queue_id, routing_reason=decision.reason,
            previous_ticket_id=previous.pk if previous else None,
            is_private=ticket.is_private, language=ticket.language,
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
        customers = Customer.objects.bulk_create(
            [Customer(display_name=latest[a].author.display_name or latest[a].author.handle) for a in missing]
        )
        Contact.objects.bulk_create(
            [
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
            ],
            ignore_conflicts=True,
        )
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
        Contact.objects.bulk_update(
            changed, ["handle", "display_name", "followers_count", "verified", "language", "last_seen_at"]
        )
    return found


def _write(batch: _Batch) -> None:
    result = batch.result
    if batch.new_tickets:
        Ticket.objects.bulk_create(batch.new_tickets)
    Message.objects.bulk_create(batch.messages)
    result.created += len(batch.messages)
    result.message_ids.extend(m.pk for m in batch.messages)

    # Replies whose parent arrived in this batch or later than them.
    relinks: list[Message] = []
    for message, parent in batch.link_to_new_parent:
        message.in_reply_to_id = parent.pk
        relinks.append(message)
    if relinks:
        Message.objects.bulk_update(relinks, ["in_reply_to"])
    if batch.orphans_to_link:
        Message.objects.bulk_update(
            [Message(pk=child_id, in_reply_to_id=parent.pk) for child_id, parent in batch.orphans_to_link],
            ["in_reply_to"],
        )

    if batch.changed_tickets:
        now = batch.now
        changed = list(batch.changed_tickets.values())
        for ticket in changed:
            ticket.updated_at = now
        Ticket.objects.bulk_update(
            changed,
            ["status", "solved_at", "reopened_count", "last_message_at",
             "last_customer_message_at", "first_response_at", "updated_at"],
        )

    events = batch.events
    for ticket_event in events:
        # Events built for tickets created in this batch got their pk only now.
        if ticket_event.ticket is not None:
            ticket_event.ticket_id = ticket_event.ticket.pk
    events.extend(
        event_for(
            message.ticket, "message.created",
            message_id=message.pk, direction=message.direction, is_public=message.is_public,
        )
        for message in batch.messages
        if message.ticket is not None
    )
    TicketEvent.objects.bulk_create(events)
    publish_on_commit(events, fresh_ticket_ids=frozenset(t.pk for t in batch.new_tickets))
