"""Meta's reply windows: 24 hours, then the HUMAN_AGENT tag up to 7 days, then closed; a
private reply to a comment within 7 days. The composer says which applies and the desk
refuses a reply into a closed window before storing it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from inbox.connectors.limits import HUMAN_AGENT_TAG, WindowState, reply_window
from inbox.models import Message, OutboundDelivery, Ticket
from inbox.selectors.ticket_view import composer_options
from inbox.selectors.windows import customer_wrote_at, window_for_reply
from inbox.services.ingest import ingest_batch
from inbox.services.replies import ReplyError, reply_create
from tests.factories import SourceFactory, inbound

NOW = timezone.now()


@pytest.mark.parametrize(
    ("platform", "is_public", "answering_is_public", "hours", "state", "tag"),
    [
        ("messenger", False, False, 1, WindowState.OPEN, ""),
        ("messenger", False, False, 23.9, WindowState.OPEN, ""),
        ("messenger", False, False, 24, WindowState.TAGGED, HUMAN_AGENT_TAG),
        ("messenger", False, False, 30, WindowState.TAGGED, HUMAN_AGENT_TAG),
        ("instagram", False, False, 6 * 24, WindowState.TAGGED, HUMAN_AGENT_TAG),
        ("messenger", False, False, 7 * 24, WindowState.CLOSED, ""),
        ("instagram", False, False, 8 * 24, WindowState.CLOSED, ""),
        # A private reply to a public comment: 7 days, no tag.
        ("facebook", False, True, 30, WindowState.OPEN, ""),
        ("instagram", False, True, 6 * 24, WindowState.OPEN, ""),
        ("facebook", False, True, 7 * 24 + 1, WindowState.CLOSED, ""),
        # Public replies and other platforms have no window.
        ("facebook", True, True, 30 * 24, WindowState.NONE, ""),
        ("messenger", True, False, 30 * 24, WindowState.NONE, ""),
        ("x", False, False, 30 * 24, WindowState.NONE, ""),
        ("mastodon", False, True, 30 * 24, WindowState.NONE, ""),
    ],
)
def test_reply_window(platform, is_public, answering_is_public, hours, state, tag):
    wrote = NOW - timedelta(hours=hours)
    window = reply_window(platform, is_public=is_public, answering_is_public=answering_is_public,
                          customer_wrote_at=wrote, now=NOW)
    assert (window.state, window.tag) == (state, tag)
    assert window.can_send == (state != WindowState.CLOSED)
    if state == WindowState.OPEN and not answering_is_public:
        assert window.closes_at == wrote + timedelta(hours=24)
    if state == WindowState.TAGGED:
        assert window.closes_at == wrote + timedelta(days=7)


def test_nothing_to_count_from_means_no_window():
    window = reply_window("messenger", is_public=False, answering_is_public=False, customer_wrote_at=None, now=NOW)
    assert window.state == WindowState.NONE


@pytest.fixture
def messenger(default_queue):
    return SourceFactory(name="KLM Messenger", platform="messenger", account_id="page-1",
                         default_queue=default_queue)


def dm(source, external_id, *, hours_ago, text="Hallo?"):
    ingest_batch(
        source=source,
        messages=[inbound(external_id, author="psid-7", text=text, public=False, conversation="psid-7",
                          at=timezone.now() - timedelta(hours=hours_ago))],
    )
    return Message.objects.get(external_id=external_id)


@pytest.mark.django_db
def test_a_later_customer_message_reopens_the_window(messenger):
    first = dm(messenger, "m-1", hours_ago=200)
    assert window_for_reply(platform="messenger", is_public=False, answering=first,
                            now=timezone.now()).state == WindowState.CLOSED

    second = dm(messenger, "m-2", hours_ago=2)
    assert customer_wrote_at(first) == second.created_at
    window = window_for_reply(platform="messenger", is_public=False, answering=first, now=timezone.now())
    assert window.state == WindowState.OPEN
    assert window.closes_at == second.created_at + timedelta(hours=24)


@pytest.mark.django_db
def test_reply_into_a_closed_window_is_refused_before_anything_is_stored(messenger, anna):
    dm(messenger, "m-1", hours_ago=8 * 24)
    ticket = Ticket.objects.get()

    with pytest.raises(ReplyError, match="closed until they write again"):
        reply_create(ticket=ticket, author=anna, text="Sorry for the wait!")

    assert not Message.objects.filter(direction=Message.Direction.OUTBOUND).exists()
    assert OutboundDelivery.objects.count() == 0


@pytest.mark.django_db
def test_reply_in_the_tagged_window_is_queued(messenger, anna):
    dm(messenger, "m-1", hours_ago=30)
    ticket = Ticket.objects.get()

    delivery = reply_create(ticket=ticket, author=anna, text="Sorry for the wait!")

    assert delivery.state == OutboundDelivery.State.QUEUED


@pytest.mark.django_db
def test_the_composer_names_the_window(messenger):
    dm(messenger, "m-1", hours_ago=30)
    ticket = Ticket.objects.select_related("source").get()

    (choice,) = composer_options(ticket=ticket).choices

    assert (choice.is_public, choice.window.state, choice.window.tag) == (False, "tagged", "HUMAN_AGENT")
    assert "Human Agent tag" in choice.window_notice


@pytest.mark.django_db
def test_the_composer_says_a_closed_window_is_closed(messenger):
    dm(messenger, "m-1", hours_ago=9 * 24)
    ticket = Ticket.objects.select_related("source").get()

    (choice,) = composer_options(ticket=ticket).choices

    assert choice.window.state == WindowState.CLOSED
    assert "closed until they write again" in choice.window_notice


@pytest.mark.django_db
def test_a_private_reply_to_an_old_comment_is_refused_but_a_public_one_goes(default_queue, anna):
    page = SourceFactory(name="KLM page", platform="facebook", account_id="page-1", default_queue=default_queue)
    ingest_batch(source=page, messages=[inbound("c-1", author="fb-9", public=True,
                                                 at=timezone.now() - timedelta(days=8))])
    ticket = Ticket.objects.select_related("source").get()

    public, private = sorted(composer_options(ticket=ticket).choices, key=lambda c: not c.is_public)
    assert (public.window.state, private.window.state) == ("none", "closed")
    assert "reply publicly instead" in private.window_notice
    with pytest.raises(ReplyError, match="reply publicly instead"):
        reply_create(ticket=ticket, author=anna, text="We sent you a message.", is_public=False)

    assert reply_create(ticket=ticket, author=anna, text="Sorry!", is_public=True).state == "queued"


@pytest.mark.django_db
def test_the_ticket_page_shows_the_closed_window_and_a_post_is_refused(client, messenger, anna):
    from bs4 import BeautifulSoup

    dm(messenger, "m-1", hours_ago=9 * 24)
    ticket = Ticket.objects.get()
    ticket.assignee = anna
    ticket.save(update_fields=["assignee"])
    client.force_login(anna)

    page = BeautifulSoup(client.get(f"/desk/tickets/{ticket.pk}/").content.decode(), "html.parser")
    notice = page.select_one("[data-window-for=private]")
    assert notice["data-window-state"] == "closed"
    assert "closed until they write again" in notice.get_text()

    response = client.post(f"/desk/tickets/{ticket.pk}/reply", {"kind": "reply", "text": "Hello?"},
                           headers={"Accept": "application/json"})
    assert response.status_code == 400
    assert "closed until they write again" in response.content.decode()
    assert OutboundDelivery.objects.count() == 0
