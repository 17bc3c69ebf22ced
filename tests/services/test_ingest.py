from datetime import timedelta

import pytest
from django.utils import timezone

from inbox.connectors.base import InboundMessage, RejectedItem
from inbox.models import Contact, DeadLetter, Message, Ticket, TicketEvent
from inbox.services.ingest import ingest_batch
from tests.factories import inbound

pytestmark = pytest.mark.django_db


def ticket_of(external_id: str) -> Ticket:
    return Message.objects.get(external_id=external_id).ticket


def test_new_message_opens_ticket_in_default_queue_with_events(source, default_queue):
    result = ingest_batch(source=source, messages=[inbound("a1", text="My flight KL1234 is delayed 😡")])

    assert (result.created, result.duplicates, result.tickets_created) == (1, 0, 1)
    ticket = ticket_of("a1")
    assert ticket.status == Ticket.Status.NEW
    assert ticket.queue == default_queue
    assert ticket.subject == "My flight KL1234 is delayed 😡"
    assert ticket.contact.handle == "cust1"
    assert list(TicketEvent.objects.values_list("type", "ticket_id")) == [
        ("ticket.created", ticket.pk),
        ("message.created", ticket.pk),
    ]


def test_same_batch_twice_creates_nothing_the_second_time(source):
    batch = [inbound("a1"), inbound("a2", author="cust2"), inbound("a3", reply_to="a1")]
    first = ingest_batch(source=source, messages=batch)
    second = ingest_batch(source=source, messages=batch)

    assert (first.created, first.duplicates) == (3, 0)
    assert (second.created, second.duplicates, second.tickets_created) == (0, 3, 0)
    assert Message.objects.count() == 3
    assert Ticket.objects.count() == 2
    assert TicketEvent.objects.count() == 2 + 3


def test_duplicate_inside_one_batch_is_stored_once(source):
    result = ingest_batch(source=source, messages=[inbound("a1"), inbound("a1")])
    assert (result.created, result.duplicates) == (1, 1)


def test_reply_joins_ticket_of_the_message_it_answers(source):
    ingest_batch(source=source, messages=[inbound("root", minutes=1)])
    ingest_batch(source=source, messages=[inbound("r1", reply_to="root", minutes=2)])
    ingest_batch(source=source, messages=[inbound("r2", reply_to="r1", minutes=3, author="cust2")])

    assert ticket_of("r1") == ticket_of("root") == ticket_of("r2")
    assert Message.objects.get(external_id="r2").in_reply_to.external_id == "r1"
    assert Ticket.objects.count() == 1


def test_private_thread_stays_one_ticket(source):
    ingest_batch(source=source, messages=[inbound("d1", conversation="dm-9", public=False, minutes=1)])
    ingest_batch(source=source, messages=[inbound("d2", conversation="dm-9", public=False, minutes=5)])
    ticket = ticket_of("d1")
    assert ticket_of("d2") == ticket
    assert ticket.is_private is True
    assert Ticket.objects.count() == 1


def test_reply_before_parent_in_one_batch_threads_correctly(source):
    # The reply's clock says earlier than its parent: causal order still wins.
    result = ingest_batch(
        source=source,
        messages=[inbound("child", reply_to="parent", minutes=1), inbound("parent", minutes=2)],
    )
    assert result.tickets_created == 1
    assert ticket_of("child") == ticket_of("parent")
    assert Message.objects.get(external_id="child").in_reply_to.external_id == "parent"


def test_parent_arriving_later_joins_and_links_the_orphan_reply(source):
    ingest_batch(source=source, messages=[inbound("child", reply_to="parent", minutes=2)])
    orphan = Message.objects.get(external_id="child")
    assert orphan.in_reply_to is None and orphan.ticket is not None

    ingest_batch(source=source, messages=[inbound("parent", minutes=1)])
    orphan.refresh_from_db()
    assert orphan.in_reply_to.external_id == "parent"
    assert ticket_of("parent") == orphan.ticket
    assert Ticket.objects.count() == 1


def test_customer_message_on_solved_ticket_inside_window_reopens_it(source):
    ingest_batch(source=source, messages=[inbound("a1", minutes=0)])
    ticket = ticket_of("a1")
    Ticket.objects.filter(pk=ticket.pk).update(status=Ticket.Status.SOLVED, solved_at=ticket.opened_at)

    later = ticket.opened_at + timedelta(days=6, hours=23)
    result = ingest_batch(source=source, messages=[inbound("a2", reply_to="a1", at=later)])

    ticket.refresh_from_db()
    assert result.tickets_reopened == 1
    assert (ticket.status, ticket.reopened_count, ticket.solved_at) == (Ticket.Status.OPEN, 1, None)
    assert ticket_of("a2") == ticket
    assert TicketEvent.objects.filter(ticket=ticket, type="ticket.reopened").count() == 1


def test_customer_message_after_window_starts_linked_ticket(source):
    ingest_batch(source=source, messages=[inbound("a1", minutes=0)])
    old = ticket_of("a1")
    Ticket.objects.filter(pk=old.pk).update(status=Ticket.Status.SOLVED, solved_at=old.opened_at)

    later = old.opened_at + timedelta(days=7, minutes=1)
    result = ingest_batch(source=source, messages=[inbound("a2", reply_to="a1", at=later)])

    new = ticket_of("a2")
    assert result.tickets_created == 1 and result.tickets_reopened == 0
    assert new != old and new.previous_ticket == old and new.status == Ticket.Status.NEW
    old.refresh_from_db()
    assert old.status == Ticket.Status.SOLVED


def test_customer_reply_on_pending_ticket_opens_it(source):
    ingest_batch(source=source, messages=[inbound("a1", minutes=0)])
    ticket = ticket_of("a1")
    Ticket.objects.filter(pk=ticket.pk).update(status=Ticket.Status.PENDING)
    ingest_batch(source=source, messages=[inbound("a2", reply_to="a1", minutes=3)])
    ticket.refresh_from_db()
    assert ticket.status == Ticket.Status.OPEN


def test_brand_history_answers_ticket_and_sets_first_response(source):
    result = ingest_batch(
        source=source,
        messages=[
            inbound("q", minutes=0),
            inbound("ans", reply_to="q", brand=True, author="brand", minutes=4),
            inbound("ans2", reply_to="q", brand=True, author="brand", minutes=9),
        ],
    )
    ticket = ticket_of("q")
    assert result.tickets_created == 1
    assert ticket_of("ans") == ticket
    assert ticket.first_response_at == ticket.opened_at + timedelta(minutes=4)
    brand = Message.objects.get(external_id="ans")
    assert (brand.direction, brand.delivery_state, brand.author_contact) == ("out", "sent", None)
    assert not Contact.objects.filter(external_id="brand").exists()


def test_brand_post_answering_nothing_opens_no_ticket(source):
    result = ingest_batch(source=source, messages=[inbound("promo", brand=True, author="brand")])
    assert result.created == 1 and result.tickets_created == 0
    assert Message.objects.get(external_id="promo").ticket is None


def test_contact_upsert_keeps_newest_profile(source):
    ingest_batch(source=source, messages=[inbound("a1", handle="old", followers=5, minutes=1)])
    ingest_batch(source=source, messages=[inbound("a2", handle="new", followers=900, minutes=5)])
    ingest_batch(source=source, messages=[inbound("a0", handle="stale", followers=1, minutes=0)])
    contact = Contact.objects.get(external_id="cust1")
    assert (contact.handle, contact.followers_count) == ("new", 900)
    assert Contact.objects.count() == 1


def test_malformed_items_are_dead_lettered_and_rest_lands(source):
    naive = inbound("n1")
    naive.created_at = naive.created_at.replace(tzinfo=None)
    huge = inbound("h1", text="x" * 100_001)
    no_author = InboundMessage(
        external_id="na", author=None, text="hi", created_at=timezone.now()  # type: ignore[arg-type]
    )
    bad_id = inbound("has space")
    result = ingest_batch(
        source=source,
        messages=[inbound("ok1"), naive, huge, no_author, bad_id, inbound("ok2", author="c2")],
        rejected=[RejectedItem(reason="unparseable JSON", raw="{not json")],
    )

    assert result.created == 2
    reasons = {r.external_id: r.reason for r in result.rejected}
    assert reasons["n1"] == "created_at has no time zone"
    assert reasons["h1"] == "text is 100001 characters long (at most 100000)"
    assert reasons["na"] == "author is missing or not an AuthorIdentity"
    assert reasons["has space"].startswith("external_id contains whitespace")
    assert DeadLetter.objects.count() == 5
    assert DeadLetter.objects.filter(reason="unparseable JSON", payload='"{not json"').exists()


def test_hostile_text_is_stored_exactly_except_nul_and_lone_surrogates(source):
    text = "RTL \u202eevil\u202c zero\u200bwidth 👨‍👩‍👧 <script>alert(1)</script> &amp;"
    ingest_batch(source=source, messages=[
        inbound("t1", text=text),
        inbound("t2", text="nul\x00byte and \ud800 surrogate", author="c2"),
    ])
    assert Message.objects.get(external_id="t1").text == text
    assert Message.objects.get(external_id="t2").text == "nul\ufffdbyte and \ufffd surrogate"


def test_sources_do_not_share_threads(source, default_queue):
    from tests.factories import SourceFactory

    other = SourceFactory(name="other")
    ingest_batch(source=source, messages=[inbound("same", minutes=1)])
    ingest_batch(source=other, messages=[inbound("same", minutes=1)])
    assert Message.objects.filter(external_id="same").count() == 2
    assert Ticket.objects.count() == 2


def test_identity_of_author_shared_across_sources_of_a_platform(source):
    from tests.factories import SourceFactory

    other = SourceFactory(name="other")
    ingest_batch(source=source, messages=[inbound("x1", author="same-person")])
    ingest_batch(source=other, messages=[inbound("x2", author="same-person")])
    assert Contact.objects.filter(external_id="same-person").count() == 1


def test_thousand_deep_thread_in_one_batch(source):
    items = [inbound("d0", minutes=0)] + [
        inbound(f"d{i}", reply_to=f"d{i - 1}", minutes=i) for i in range(1, 1000)
    ]
    result = ingest_batch(source=source, messages=list(reversed(items)))
    assert result.tickets_created == 1 and result.created == 1000
