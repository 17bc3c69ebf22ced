"""Services behind the ticket view's composer and controls: hold-back, reply templates,
per-platform reply rules, internal notes, retry after rejection, tags."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import factory
import pytest
from django.conf import settings
from django.utils import timezone

from inbox.connectors.limits import Counting, replies_for, reply_length
from inbox.models import Message, OutboundDelivery, ReplyTemplate, Tag, Ticket, TicketEvent
from inbox.services.ingest import ingest_batch
from inbox.services.replies import (
    ReplyError,
    ReplyHeldBack,
    delivery_reject,
    delivery_retry,
    note_create,
    reply_create,
)
from inbox.services.tickets import TicketChangeError, ticket_change_tags, ticket_set_tags
from tests.factories import AgentProfileFactory, SourceFactory, inbound

pytestmark = pytest.mark.django_db


class ReplyTemplateFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ReplyTemplate

    name = factory.Sequence(lambda n: f"Template {n}")
    shortcut = factory.Sequence(lambda n: f"template-{n}")


class TagFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tag

    name = factory.Sequence(lambda n: f"tag-{n}")


@pytest.fixture
def bram(default_queue):
    """A second agent of the same queue."""
    user = AgentProfileFactory(user__username="bram", user__first_name="Bram").user
    default_queue.members.add(user)
    return user


@pytest.fixture
def lead(db):
    return AgentProfileFactory(user__username="lea", role="lead").user


@pytest.fixture
def ticket(source):
    ingest_batch(source=source, messages=[inbound("c1", text="Where is my bag?", minutes=0)])
    return Ticket.objects.get()


def ticket_on(platform: str, default_queue, *, public: bool = True) -> Ticket:
    brand = SourceFactory(name=f"brand-{platform}", platform=platform, default_queue=default_queue)
    ingest_batch(
        source=brand,
        messages=[
            # Recent: Meta's private conversations close 7 days after the customer wrote.
            inbound(f"{platform}-1", text="Hello?", public=public, conversation="dm-1" if not public else "",
                    at=timezone.now() - timedelta(minutes=5))
        ],
    )
    return Ticket.objects.get(source=brand)


def newest_id(ticket: Ticket) -> int:
    return Message.objects.filter(ticket=ticket).order_by("-pk").values_list("pk", flat=True).first()


# --- Hold-back ---------------------------------------------------------------------------------


def test_new_customer_message_after_seen_holds_the_reply_back_and_stores_nothing(source, ticket, anna):
    seen = newest_id(ticket)
    ingest_batch(
        source=source, messages=[inbound("c2", text="Found it, never mind!", reply_to="c1", minutes=5)]
    )
    template = ReplyTemplateFactory(usage_count=4)
    events_before = TicketEvent.objects.count()

    with pytest.raises(ReplyHeldBack) as caught:
        reply_create(
            ticket=ticket,
            author=anna,
            text="We are looking for your bag.",
            seen_message_id=seen,
            reply_template=template,
        )

    assert [m.external_id for m in caught.value.messages] == ["c2"]
    assert str(caught.value) == (
        "A new message from the customer arrived while you were writing. Read it, then send again."
    )
    assert isinstance(caught.value, ReplyError)
    assert not Message.objects.filter(direction="out").exists()
    assert not OutboundDelivery.objects.exists()
    assert TicketEvent.objects.count() == events_before
    template.refresh_from_db()
    assert template.usage_count == 4
    ticket.refresh_from_db()
    assert (ticket.status, ticket.first_response_at) == ("new", None)


def test_another_agents_reply_holds_the_reply_back(ticket, anna, bram):
    seen = newest_id(ticket)
    theirs = reply_create(ticket=ticket, author=bram, text="On it!").message

    with pytest.raises(ReplyHeldBack) as caught:
        reply_create(ticket=ticket, author=anna, text="Also on it!", seen_message_id=seen)

    assert caught.value.messages == [theirs]
    assert (
        str(caught.value) == "Another agent replied while you were writing. Read the reply, then send again."
    )
    assert list(Message.objects.filter(direction="out").values_list("author_user", flat=True)) == [bram.pk]


def test_another_agents_note_holds_the_reply_back(ticket, anna, bram):
    seen = newest_id(ticket)
    note = note_create(ticket=ticket, author=bram, text="Customer is a journalist, careful.")

    with pytest.raises(ReplyHeldBack) as caught:
        reply_create(ticket=ticket, author=anna, text="Hi!", seen_message_id=seen)

    assert caught.value.messages == [note]
    assert str(caught.value).startswith("Another agent added an internal note")


def test_own_earlier_reply_and_note_do_not_hold_back(ticket, anna):
    seen = newest_id(ticket)
    reply_create(ticket=ticket, author=anna, text="First part.", seen_message_id=seen)
    note_create(ticket=ticket, author=anna, text="Asked for the file number.")

    second = reply_create(ticket=ticket, author=anna, text="Second part.", seen_message_id=seen)

    assert second.message.text == "Second part."
    assert list(Message.objects.filter(direction="out").order_by("pk").values_list("text", flat=True)) == [
        "First part.",
        "Second part.",
    ]


def test_reply_goes_through_once_the_new_message_is_seen(source, ticket, anna):
    seen = newest_id(ticket)
    ingest_batch(source=source, messages=[inbound("c2", text="Any news?", reply_to="c1", minutes=5)])
    with pytest.raises(ReplyHeldBack) as caught:
        reply_create(ticket=ticket, author=anna, text="Yes: it is in Paris.", seen_message_id=seen)

    delivery = reply_create(
        ticket=ticket, author=anna, text="Yes: it is in Paris.", seen_message_id=caught.value.messages[-1].pk
    )

    assert delivery.state == "queued"
    assert delivery.message.in_reply_to.external_id == "c2"


def test_brand_post_made_outside_the_desk_holds_back(source, ticket, anna):
    seen = newest_id(ticket)
    ingest_batch(
        source=source, messages=[inbound("b1", author="brand", brand=True, reply_to="c1", minutes=3)]
    )
    echo = Message.objects.get(external_id="b1")
    assert (echo.direction, echo.author_user_id) == ("out", None)

    with pytest.raises(ReplyHeldBack) as caught:
        reply_create(ticket=ticket, author=anna, text="Hi", seen_message_id=seen)

    assert caught.value.messages == [echo]


def test_without_seen_message_id_nothing_is_held_back(source, ticket, anna):
    ingest_batch(source=source, messages=[inbound("c2", text="Hello?", reply_to="c1", minutes=5)])
    delivery = reply_create(ticket=ticket, author=anna, text="Hi!")
    assert delivery.message.in_reply_to.external_id == "c2"


# --- Reply template ----------------------------------------------------------------------------


def test_reply_template_is_stored_and_counted(ticket, anna):
    template = ReplyTemplateFactory(usage_count=7)

    first = reply_create(ticket=ticket, author=anna, text="Sorry for the delay!", reply_template=template)
    reply_create(ticket=ticket, author=anna, text="Again sorry!", reply_template=template)
    plain = reply_create(ticket=ticket, author=anna, text="Bye")

    assert first.message.reply_template == template
    assert plain.message.reply_template is None
    template.refresh_from_db()
    assert template.usage_count == 9


# --- Platform rules ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("platform", "fits", "too_long", "message"),
    [
        ("x", "a" * 280, "a" * 281, "This reply is 281 characters long; X allows 280."),
        # CJK counts 2 on X.
        ("x", "語" * 140, "語" * 141, "This reply is 282 characters long; X allows 280."),
        # A link counts 23 on X however long it is: 257 + 23 = 280.
        (
            "x",
            "a" * 256 + " https://example.com/" + "p" * 100,
            "a" * 257 + " https://example.com/" + "p" * 100,
            "This reply is 281 characters long; X allows 280.",
        ),
        # Bluesky counts graphemes: a family emoji is one (five code points).
        ("bluesky", "👨‍👩‍👧" * 300, "👨‍👩‍👧" * 301, "This reply is 301 characters long; Bluesky allows 300."),
        # Mastodon replies start with the customer's mention; typed here, so it is not added again.
        ("mastodon", "@cust1 " + "é" * 493, "@cust1 " + "é" * 494, "This reply is 501 characters long; Mastodon allows 500."),
        (
            "mastodon",
            "@cust1 " + "a" * 469 + " https://example.org/" + "x" * 300,
            "@cust1 " + "a" * 470 + " https://example.org/" + "x" * 300,
            "This reply is 501 characters long; Mastodon allows 500.",
        ),
        (
            "simulated",
            "a" * 500,
            "a" * 501,
            "This reply is 501 characters long; Simulated (demo) allows 500.",
        ),
    ],
)
def test_reply_longer_than_the_platform_allows_is_refused(
    default_queue, anna, platform, fits, too_long, message
):
    ticket = ticket_on(platform, default_queue)

    with pytest.raises(ReplyError) as caught:
        reply_create(ticket=ticket, author=anna, text=too_long)
    assert str(caught.value) == message
    assert not Message.objects.filter(direction="out").exists()

    assert reply_create(ticket=ticket, author=anna, text=fits).message.text == fits


def test_messenger_takes_no_public_reply(default_queue, anna):
    ticket = ticket_on("messenger", default_queue, public=False)

    with pytest.raises(ReplyError, match="Messenger does not take public replies: send a private reply."):
        reply_create(ticket=ticket, author=anna, text="Hi", is_public=True)

    assert reply_create(ticket=ticket, author=anna, text="Hi").message.is_public is False


def test_public_reply_to_a_private_conversation_is_refused(default_queue, anna):
    ticket = ticket_on("mastodon", default_queue, public=False)

    with pytest.raises(
        ReplyError, match="This conversation is private: there is no public message to reply to."
    ):
        reply_create(ticket=ticket, author=anna, text="Hi", is_public=True)
    assert not Message.objects.filter(direction="out").exists()

    # Private on Mastodon is a direct-visibility post.
    assert reply_create(ticket=ticket, author=anna, text="Hi").message.is_public is False


@pytest.mark.parametrize("platform", ["x", "bluesky"])
def test_no_private_reply_where_the_connector_cannot_send_one(default_queue, anna, platform):
    ticket = ticket_on(platform, default_queue)

    with pytest.raises(ReplyError, match="does not take private replies: send a public reply."):
        reply_create(ticket=ticket, author=anna, text="Hi", is_public=False)
    assert not Message.objects.filter(direction="out").exists()


def test_private_reply_to_a_public_message_answers_that_message(default_queue, anna):
    ticket = ticket_on("facebook", default_queue)

    message = reply_create(ticket=ticket, author=anna, text="We sent you a DM", is_public=False).message

    assert (message.is_public, message.in_reply_to.external_id) == (False, "facebook-1")


def test_line_breaks_are_stored_as_newlines_and_counted_once(default_queue, anna):
    ticket = ticket_on("x", default_queue)
    text = "a" * 139 + "\r\n" + "a" * 140  # 280 with one line break; 281 if CRLF counted twice

    message = reply_create(ticket=ticket, author=anna, text=text).message

    assert message.text == "a" * 139 + "\n" + "a" * 140


def test_unknown_platforms_take_any_length_both_ways():
    rules = replies_for("generic")
    assert rules.allows(is_public=True) and rules.allows(is_public=False)
    assert rules.limit_for(is_public=True).max_length is None


@pytest.mark.parametrize(
    ("text", "counting", "url_length", "expected"),
    [
        ("e\u0301", Counting.CODE_POINTS, None, 2),
        ("e\u0301", Counting.GRAPHEMES, None, 1),
        ("e\u0301", Counting.X, None, 1),  # NFC first
        ("🇳🇱👍🏽", Counting.X, None, 4),
        ("안녕", Counting.X, None, 4),
        ("see https://example.com/x.", Counting.CODE_POINTS, 23, 4 + 23 + 1),
        ("(https://x.co)", Counting.CODE_POINTS, 23, 1 + 23 + 1),
        ("example.com", Counting.CODE_POINTS, 23, 11),
    ],
)
def test_reply_length_counts_as_the_platform(text, counting, url_length, expected):
    assert reply_length(text, counting=counting, url_length=url_length) == expected


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to run the browser counter")
def test_browser_counter_counts_exactly_like_the_server():
    samples = [
        "hello",
        "e\u0301 café",
        "👨‍👩‍👧 family 🇳🇱",
        "日本語のテキスト",
        "see https://example.com/a?x=1. ok",
        "x https://a.co y",
        "(https://x.com/a)",
        "1️⃣ keycap",
        "Привет мир",
        "tab\tand\nnewline",
        "👍🏽",
        "HTTPS://EXAMPLE.COM/x",
        "\u200b zwsp",
        "안녕하세요",
        "https://",
        "a\u0308\u0301 stacked",
    ]
    cases = [(s, c.value, u) for s in samples for c in Counting for u in (None, 23)]
    script = Path(settings.BASE_DIR) / "static/js/desk/ticket.js"
    program = (
        f"require({json.dumps(str(script))});"
        "const cases = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
        "console.log(JSON.stringify(cases.map(([s, c, u]) => DeskReplyLength.count(s, c, u))));"
    )
    run = subprocess.run(
        ["node", "-e", program],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    browser = json.loads(run.stdout)
    server = [reply_length(s, counting=Counting(c), url_length=u) for s, c, u in cases]
    assert browser == server


# --- Notes -------------------------------------------------------------------------------------


def test_note_is_stored_for_the_team_with_its_event(ticket, anna):
    note = note_create(ticket=ticket, author=anna, text="  Called the airport.\r\nNo answer.  ")

    assert (note.direction, note.is_public, note.author_user, note.text) == (
        "note",
        False,
        anna,
        "Called the airport.\nNo answer.",
    )
    assert not OutboundDelivery.objects.exists()
    event = TicketEvent.objects.get(type="message.created", actor=anna)
    assert event.payload == {
        "message_id": note.pk,
        "direction": "note",
        "is_public": False,
        "assignee_id": None,
        "status": "new",
    }
    ticket.refresh_from_db()
    assert (ticket.status, ticket.first_response_at) == ("new", None)


def test_empty_note_is_refused(ticket, anna):
    with pytest.raises(ReplyError, match="note text is empty"):
        note_create(ticket=ticket, author=anna, text=" \n ")
    assert not Message.objects.filter(direction="note").exists()


# --- Retry after rejection ---------------------------------------------------------------------


def test_retrying_a_rejected_reply_asks_a_lead_again(ticket, anna, lead, django_capture_on_commit_callbacks):
    Ticket.objects.filter(pk=ticket.pk).update(reply_approval_required=True)
    delivery = reply_create(ticket=ticket, author=anna, text="Statement")
    delivery_reject(delivery=delivery, actor=lead, reason="Not yet")

    with django_capture_on_commit_callbacks() as callbacks:
        delivery_retry(delivery=delivery, actor=anna)

    delivery.refresh_from_db()
    assert delivery.state == "awaiting_approval"
    assert Message.objects.get(pk=delivery.message_id).delivery_state == "awaiting_approval"
    assert len(callbacks) == 1  # the push only: nothing is sent without a lead's yes


def test_retrying_a_failed_reply_queues_it(ticket, anna, django_capture_on_commit_callbacks):
    delivery = reply_create(ticket=ticket, author=anna, text="Hi")
    OutboundDelivery.objects.filter(pk=delivery.pk).update(state="failed", last_error="422 duplicate")

    with django_capture_on_commit_callbacks() as callbacks:
        delivery_retry(delivery=delivery, actor=anna)

    delivery.refresh_from_db()
    assert delivery.state == "queued"
    assert len(callbacks) == 2  # push + enqueue


# --- Tags --------------------------------------------------------------------------------------


def test_set_tags_creates_reuses_and_reports_changes(ticket, anna):
    TagFactory(name="refund")  # a tag routing created earlier

    ticket_set_tags(ticket=ticket, names=["Refund", "  lost   bag ", "refund"], actor=anna)

    assert sorted(ticket.tags.values_list("name", flat=True)) == ["lost bag", "refund"]
    assert Tag.objects.count() == 2
    event = TicketEvent.objects.get(type="ticket.tags_changed")
    assert event.actor == anna
    assert event.payload == {
        "added": ["lost bag", "refund"],
        "removed": [],
        "tags": ["lost bag", "refund"],
        "assignee_id": None,
        "status": "new",
    }


def test_set_tags_to_the_same_set_writes_nothing(ticket, anna):
    ticket_set_tags(ticket=ticket, names=["delay"], actor=anna)
    ticket_set_tags(ticket=ticket, names=["delay"], actor=anna)
    assert TicketEvent.objects.filter(type="ticket.tags_changed").count() == 1


def test_change_tags_adds_and_removes_keeping_the_rest(ticket, anna):
    ticket_set_tags(ticket=ticket, names=["delay", "vip-route"], actor=anna)

    ticket_change_tags(ticket=ticket, add=["press"], remove=["DELAY"], actor=anna)

    assert sorted(ticket.tags.values_list("name", flat=True)) == ["press", "vip-route"]
    event = TicketEvent.objects.filter(type="ticket.tags_changed").latest("id")
    assert (event.payload["added"], event.payload["removed"]) == (["press"], ["delay"])


def test_too_long_tag_is_refused(ticket, anna):
    with pytest.raises(TicketChangeError, match="A tag is at most 60 characters long"):
        ticket_change_tags(ticket=ticket, add=["x" * 61], actor=anna)
    assert not Tag.objects.exists()


def test_mastodon_counts_the_mention_the_connector_adds(default_queue, anna):
    from inbox.selectors.ticket_view import composer_options

    brand = SourceFactory(name="brand-mastodon-mention", platform="mastodon", default_queue=default_queue)
    ingest_batch(source=brand, messages=[inbound("toot-1", author="9", handle="reiziger@social.example",
                                                 text="Waar is mijn koffer?")])
    ticket = Ticket.objects.select_related("source").get(source=brand)
    # "@reiziger " goes in front: Mastodon counts the remote mention as "@reiziger", 10 with the space.
    public, private = composer_options(ticket=ticket).choices
    assert (public.is_public, public.reserved, public.max_length) == (True, 10, 490)
    assert (private.reserved, private.max_length) == (10, 490)

    with pytest.raises(ReplyError, match="This reply is 501 characters long; Mastodon allows 500."):
        reply_create(ticket=ticket, author=anna, text="x" * 491)
    assert reply_create(ticket=ticket, author=anna, text="x" * 490).state == "queued"
    # Typed by the agent, the mention is not added twice.
    assert reply_create(ticket=ticket, author=anna, text="@reiziger@social.example " + "y" * 474).state == "queued"
